"""Importable job functions for queue tests (RQ jobs must not live in __main__ or a test)."""

from __future__ import annotations

from typing import Any

from rq import get_current_job


def record(args: dict[str, Any]) -> None:
    job = get_current_job()
    assert job is not None
    job.connection.rpush("test:runs", args["n"])
    if args.get("fail"):
        raise RuntimeError("planned failure")
