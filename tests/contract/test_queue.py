"""The task queue on a real Redis with RQ: one live run per task key."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from rq import Queue, SimpleWorker
from rq.executions import Execution
from rq.job import Job, JobStatus
from rq.registry import StartedJobRegistry

from github_app.queue import jobqueue as queue_module
from github_app.queue.jobqueue import TASK_QUEUE, RQJobQueue, heartbeat_key
from github_app.tasks import TaskKey

JOB = "tests.contract.jobs_for_tests.record"


def test_a_live_task_is_not_enqueued_twice_and_runs_once(connection: redis.Redis) -> None:
    queue = RQJobQueue(connection)
    key = TaskKey("octo", "hello", 5)
    assert queue.enqueue(JOB, {"n": 1}, queue=TASK_QUEUE, job_id=key.job_id)
    assert not queue.enqueue(JOB, {"n": 2}, queue=TASK_QUEUE, job_id=key.job_id)
    assert queue.is_live(key.job_id)
    SimpleWorker([Queue(TASK_QUEUE, connection=connection)], connection=connection).work(burst=True)
    assert connection.lrange("test:runs", 0, -1) == [b"1"]
    assert not queue.is_live(key.job_id)


def test_a_finished_or_failed_task_can_be_run_again(connection: redis.Redis) -> None:
    queue = RQJobQueue(connection)
    key = TaskKey("octo", "hello", 6)
    worker = SimpleWorker([Queue(TASK_QUEUE, connection=connection)], connection=connection)
    assert queue.enqueue(JOB, {"n": 1, "fail": True}, queue=TASK_QUEUE, job_id=key.job_id)
    worker.work(burst=True)
    # RQ's unique=True would block this for a year after a failure; a retry must still run.
    assert queue.enqueue(JOB, {"n": 2}, queue=TASK_QUEUE, job_id=key.job_id)
    worker.work(burst=True)
    assert connection.lrange("test:runs", 0, -1) == [b"1", b"2"]


def test_a_killed_task_job_is_dead_by_its_missing_heartbeat_and_runs_again(
    connection: redis.Redis, redis_server: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(queue_module, "HEARTBEAT_GRACE_S", 1.0)
    queue = RQJobQueue(connection)
    key = TaskKey("octo", "hello", 7)
    assert queue.enqueue("tests.contract.jobs_for_tests.beat_and_hang", {"n": 1}, queue=TASK_QUEUE,
                         job_id=key.job_id, heartbeat=True)
    worker = subprocess.Popen(
        [sys.executable, "-c", "import sys, redis; from rq import Queue, SimpleWorker; "
         "c = redis.Redis.from_url(sys.argv[1]); "
         f"SimpleWorker([Queue('{TASK_QUEUE}', connection=c)], connection=c).work(burst=True)",
         redis_server], cwd=Path(__file__).resolve().parents[2])
    try:
        deadline = time.monotonic() + 20
        while not connection.exists(heartbeat_key(key.job_id)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert queue.is_live(key.job_id)  # running and beating
    finally:
        worker.kill()  # SIGKILL: no finally, no cleanup, the job stays STARTED in RQ
        worker.wait()
    assert Job.fetch(key.job_id, connection=connection).get_status() == JobStatus.STARTED
    time.sleep(2.5)  # the heartbeat's TTL
    assert not queue.is_live(key.job_id)  # dead now — RQ itself would take ~10 minutes
    assert queue.enqueue(JOB, {"n": 2}, queue=TASK_QUEUE, job_id=key.job_id, heartbeat=True)
    registry = StartedJobRegistry(TASK_QUEUE, connection=connection)
    assert key.job_id not in registry.get_job_ids(cleanup=False)  # RQ's cleanup can't hit run 2
    SimpleWorker([Queue(TASK_QUEUE, connection=connection)], connection=connection).work(burst=True)
    assert connection.lrange("test:runs", 0, -1) == [b"1", b"2"]


def test_a_job_without_heartbeats_keeps_rqs_own_liveness(connection: redis.Redis) -> None:
    queue = RQJobQueue(connection)
    key = TaskKey("octo", "hello", 8)
    assert queue.enqueue(JOB, {"n": 1}, queue=TASK_QUEUE, job_id=key.job_id)
    job = Job.fetch(key.job_id, connection=connection)
    job.set_status(JobStatus.STARTED)
    assert queue.is_live(key.job_id)


def test_a_run_whose_execution_ends_as_it_is_enqueued_again_is_enqueued(
    connection: redis.Redis,
) -> None:
    """An execution another worker is just ending can have its hash gone or half written (a late
    heartbeat recreates it without ``created_at``); taking the old run out of the started registry
    must not read it (RQ's ``remove_executions`` raised KeyError, and the worker died)."""
    queue = RQJobQueue(connection)
    key = TaskKey("octo", "hello", 9)
    assert queue.enqueue(JOB, {"n": 1}, queue=TASK_QUEUE, job_id=key.job_id)
    SimpleWorker([Queue(TASK_QUEUE, connection=connection)], connection=connection).work(burst=True)
    job = Job.fetch(key.job_id, connection=connection)
    ending = Execution(id="ending", job_id=key.job_id, connection=connection)
    connection.zadd(job.execution_registry.key, {ending.id: time.time() + 60})
    connection.hset(ending.key, "last_heartbeat", time.time())  # no created_at
    registry = StartedJobRegistry(TASK_QUEUE, connection=connection)
    connection.zadd(registry.key, {ending.composite_key: time.time() + 60})

    assert queue.enqueue(JOB, {"n": 2}, queue=TASK_QUEUE, job_id=key.job_id)
    assert ending.composite_key.encode() not in connection.zrange(registry.key, 0, -1)
    SimpleWorker([Queue(TASK_QUEUE, connection=connection)], connection=connection).work(burst=True)
    assert connection.lrange("test:runs", 0, -1) == [b"1", b"2"]
