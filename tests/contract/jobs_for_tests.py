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


def beat_and_hang(args: dict[str, Any]) -> None:
    """A task job that beats quickly, then hangs until it is killed."""
    import time

    from github_app.queue.jobqueue import beating

    job = get_current_job()
    assert job is not None
    with beating(job.connection, job.id, ttl_s=2, every_s=0.3):
        job.connection.rpush("test:runs", args["n"])
        time.sleep(60)


def sleep_then_record(args: dict[str, Any]) -> None:
    """Sleep (Redis may restart meanwhile), then record that the job got to its end."""
    import time

    time.sleep(args["sleep_s"])
    job = get_current_job()
    assert job is not None
    job.connection.rpush("test:runs", args["n"])
