"""Every ``nightcrew worker`` runs an intake-only helper beside it: it takes no task slot, and it
stops with its parent even when the parent is SIGKILLed. Real processes and a real Redis."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
import redis

from github_app.queue.jobqueue import INTAKE_QUEUE, TASK_QUEUE, RQJobQueue
from runner.worker.procs import ManagedProcess, nightcrew_command
from tests.e2e.conftest import WorkerSetup

pytestmark = pytest.mark.e2e


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rfind(")") + 2:].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return state[state.rfind(")") + 2] in "ZX"


def _until(what: str, check: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(check) and check():
            return
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout}s")


def test_the_intake_helper_takes_no_slot_and_dies_with_its_sigkilled_worker(
    tmp_path: Path, worker_setup: WorkerSetup,
) -> None:
    worker = ManagedProcess("worker", nightcrew_command("worker"), worker_setup.env,
                            tmp_path / "worker.log")
    client = redis.Redis.from_url(worker_setup.url)
    queue = RQJobQueue(client)
    try:
        _until("the worker and its helper to register",
               lambda: queue.worker_count(INTAKE_QUEUE) == 2, timeout=60)
        assert queue.worker_count(TASK_QUEUE) == 1  # the helper is no task slot
        [helper] = [pid for pid in _children(worker.proc.pid)
                    if b"--intake-only" in Path(f"/proc/{pid}/cmdline").read_bytes()]
        os.kill(worker.proc.pid, signal.SIGKILL)  # the parent alone: nothing stops the helper
        worker.proc.wait(5)
        _until("the helper to stop by itself", lambda: _gone(helper), timeout=20)
    finally:
        worker.stop()
        client.close()
