"""The job queue on RQ. Jobs are named by dotted path with JSON-safe arguments.

``github_app`` never imports ``runner``: it enqueues runner jobs by name.
"""

from __future__ import annotations

from typing import Any, Protocol

import redis
from rq import Queue, Worker
from rq.exceptions import DuplicateJobError, NoSuchJobError
from rq.job import Job, JobStatus

INTAKE_QUEUE = "nightcrew-intake"
TASK_QUEUE = "nightcrew-tasks"
QUEUES: tuple[str, ...] = (INTAKE_QUEUE, TASK_QUEUE)  # worker order = priority
INTAKE_JOB = "github_app.intake.intake"
INSTALLATION_JOB = "github_app.installations.record"
TASK_JOB = "runner.jobs.run_task"
POSITIONS_JOB = "github_app.dispatch.refresh_positions"
_LIVE = {JobStatus.QUEUED, JobStatus.STARTED, JobStatus.SCHEDULED, JobStatus.DEFERRED}


class JobQueue(Protocol):
    def enqueue(
        self, func: str, *args: Any, queue: str, job_id: str | None = None,
        timeout_s: int = 3600,
    ) -> bool: ...

    def is_live(self, job_id: str) -> bool: ...

    def enqueue_once(
        self, func: str, *args: Any, queue: str, job_id: str, keep_s: int, timeout_s: int = 120,
    ) -> bool: ...


class RQJobQueue:
    """RQ on a real Redis. A job id that is still live is not enqueued twice."""

    def __init__(self, connection: redis.Redis) -> None:
        self.connection = connection

    def enqueue(
        self, func: str, *args: Any, queue: str, job_id: str | None = None,
        timeout_s: int = 3600,
    ) -> bool:
        """Enqueue ``func(*args)``; False when a live job already has this id."""
        # RQ alone runs a reused job id twice; `unique=True` blocks re-runs for a year after a
        # failure. So: skip while the previous run is live, overwrite once it has ended.
        if job_id is not None and self.is_live(job_id):
            return False
        Queue(queue, connection=self.connection).enqueue(
            func, *args, job_id=job_id, job_timeout=timeout_s, result_ttl=3600,
            failure_ttl=7 * 24 * 3600,
        )
        return True

    def enqueue_once(
        self, func: str, *args: Any, queue: str, job_id: str, keep_s: int, timeout_s: int = 120,
    ) -> bool:
        """Enqueue unless a job with this id was enqueued within ``keep_s``; one atomic call.

        RQ's ``unique=True`` checks and enqueues in one Lua script; the job hash (and so the
        memory of the id) lives ``keep_s`` after the job ends, whether it succeeded or failed.
        """
        try:
            Queue(queue, connection=self.connection).enqueue(
                func, *args, job_id=job_id, job_timeout=timeout_s, result_ttl=keep_s,
                failure_ttl=keep_s, unique=True,
            )
        except DuplicateJobError:
            return False
        return True

    def is_live(self, job_id: str) -> bool:
        """True while a job with this id is queued, running, scheduled or deferred."""
        try:
            job = Job.fetch(job_id, connection=self.connection)
        except NoSuchJobError:
            return False
        return job.get_status(refresh=False) in _LIVE

    def worker_count(self, queue: str) -> int:
        """Workers registered on a queue, fleet-wide (dead ones drop out with their TTL)."""
        return int(Worker.count(connection=self.connection, queue=Queue(queue, connection=self.connection)))
