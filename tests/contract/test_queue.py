"""The task queue on a real Redis with RQ: one live run per task key."""

from __future__ import annotations

import redis
from rq import Queue, SimpleWorker

from github_app.queue import TASK_QUEUE, RQJobQueue
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
