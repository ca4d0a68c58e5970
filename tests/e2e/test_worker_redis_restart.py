"""A Redis restart while a worker runs a task must not end the worker: RQ quits its work loop on
any exception, and the parent's bookkeeping writes (working time, heartbeats, maintenance) hit
the restart every few seconds. Real ``nightcrew worker`` process, real Redis restarted."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis
from rq import Queue

from github_app.queue.jobqueue import TASK_QUEUE
from runner.worker.procs import ManagedProcess, nightcrew_command
from tests.e2e.conftest import WorkerSetup

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def test_a_busy_worker_lives_through_a_redis_restart_and_finishes_its_job(
    tmp_path: Path, worker_setup: WorkerSetup,
) -> None:
    server, url = worker_setup.server, worker_setup.url
    env = {**worker_setup.env, "NIGHTCREW_MAINTENANCE_INTERVAL": "1",  # beats every second
           "PYTHONPATH": str(ROOT)}
    client = redis.Redis.from_url(url)
    Queue(TASK_QUEUE, connection=client).enqueue(
        "tests.contract.jobs_for_tests.sleep_then_record", {"n": 1, "sleep_s": 8}, job_timeout=60)
    worker = ManagedProcess("worker", nightcrew_command("worker"), env, tmp_path / "worker.log")
    try:
        deadline = time.monotonic() + 30
        while Queue(TASK_QUEUE, connection=client).count and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)  # the horse runs; the parent beats
        client.close()
        server.stop()
        time.sleep(3.0)  # several failed beats
        server.ensure_started()
        client = redis.Redis.from_url(url)
        deadline = time.monotonic() + 30
        while client.lrange("test:runs", 0, -1) != [b"1"] and time.monotonic() < deadline:
            worker.check_alive()
            time.sleep(0.2)
        assert client.lrange("test:runs", 0, -1) == [b"1"], worker.tail(40)
        time.sleep(1.5)  # past the job: the worker's own loop goes on
        worker.check_alive()
    finally:
        worker.stop()
        client.close()
