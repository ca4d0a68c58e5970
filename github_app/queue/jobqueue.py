"""The job queue on RQ. Jobs are named by dotted path with JSON-safe arguments.

``github_app`` never imports ``runner``: it enqueues runner jobs by name.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, Protocol

import redis
from rq import Queue, Worker
from rq.command import send_stop_job_command
from rq.exceptions import DuplicateJobError, InvalidJobOperation, NoSuchJobError
from rq.job import Job, JobStatus
from rq.registry import StartedJobRegistry

INTAKE_QUEUE = "nightcrew-intake"
TASK_QUEUE = "nightcrew-tasks"
REVIEW_QUEUE = "nightcrew-reviews"  # review rounds: no sandbox, no checkout, short
QUEUES: tuple[str, ...] = (INTAKE_QUEUE, REVIEW_QUEUE, TASK_QUEUE)  # worker order = priority
INTAKE_JOB = "github_app.queue.intake.intake"
INSTALLATION_JOB = "github_app.queue.installations.record"
TASK_JOB = "runner.worker.jobs.run_task"
REVIEW_JOB = "runner.worker.jobs.review_pull"
POSITIONS_JOB = "github_app.queue.dispatch.refresh_positions"
_LIVE = {JobStatus.QUEUED, JobStatus.STARTED, JobStatus.SCHEDULED, JobStatus.DEFERRED}
# A task job proves it is alive by refreshing a key; RQ alone notices a SIGKILLed worker's job
# only after ~10 minutes (see research/dependencies.md), the issue asks for a resume within 2.
HEARTBEAT_EVERY_S = 5.0
HEARTBEAT_TTL_S = 20
HEARTBEAT_GRACE_S = 30.0  # a job that just started may not have beaten yet


class JobQueue(Protocol):
    def enqueue(
        self, func: str, *args: Any, queue: str, job_id: str | None = None,
        timeout_s: int = 3600, heartbeat: bool = False,
    ) -> bool: ...

    def is_live(self, job_id: str) -> bool: ...

    def enqueue_once(
        self, func: str, *args: Any, queue: str, job_id: str, keep_s: int, timeout_s: int = 120,
    ) -> bool: ...


class RQJobQueue:
    """RQ on a real Redis. A job id that is still live is not enqueued twice."""

    def __init__(self, connection: redis.Redis, *, heartbeat_grace_s: float | None = None) -> None:
        self.connection = connection
        self.heartbeat_grace_s = heartbeat_grace_s

    def enqueue(
        self, func: str, *args: Any, queue: str, job_id: str | None = None,
        timeout_s: int = 3600, heartbeat: bool = False,
    ) -> bool:
        """Enqueue ``func(*args)``; False when a live job already has this id.

        ``heartbeat``: the job refreshes its heartbeat while it runs (``beating``), so a job
        whose worker was killed counts as dead within ``HEARTBEAT_TTL_S``, not RQ's minutes.
        """
        # RQ alone runs a reused job id twice; `unique=True` blocks re-runs for a year after a
        # failure. So: skip while the previous run is live, overwrite once it has ended.
        if job_id is not None and self.is_live(job_id):
            return False
        if job_id is not None:
            self._forget_dead_run(job_id, queue)
        Queue(queue, connection=self.connection).enqueue(
            func, *args, job_id=job_id, job_timeout=timeout_s, result_ttl=3600,
            failure_ttl=7 * 24 * 3600, meta={"heartbeat": True} if heartbeat else None,
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
            # Redis was wiped under a running task: its job record is gone, but the run keeps
            # beating, and it must not be started a second time next to itself.
            return bool(self.connection.exists(heartbeat_key(job_id)))
        state = job.get_status(refresh=False)
        if state == JobStatus.STARTED and job.meta.get("heartbeat"):
            return self._beating(job)
        return state in _LIVE

    def _forget_dead_run(self, job_id: str, queue: str) -> None:
        """Take a dead run out of RQ's started registry, so RQ's own cleanup, minutes later,
        cannot mark the new run under the same id as failed."""
        try:
            old = Job.fetch(job_id, connection=self.connection)
        except NoSuchJobError:
            return
        # By execution id, not RQ's ``remove_executions``: that reads every execution's hash, and
        # one that is ending in another worker meanwhile (its hash gone or half written) raised
        # KeyError, which ended the enqueueing worker (two workers died so under load).
        ids = old.execution_registry.get_execution_ids()
        if ids:
            registry = StartedJobRegistry(queue, connection=self.connection)
            self.connection.zrem(registry.key, *(f"{job_id}:{execution}" for execution in ids))

    def _beating(self, job: Job) -> bool:
        """A heartbeat job is alive while its key is fresh (or it started moments ago)."""
        if self.connection.exists(heartbeat_key(job.id)):
            return True
        started = job.started_at
        if started is None:
            return True
        if started.tzinfo is None:
            started = started.replace(tzinfo=UTC)
        grace = HEARTBEAT_GRACE_S if self.heartbeat_grace_s is None else self.heartbeat_grace_s
        return (datetime.now(UTC) - started).total_seconds() < grace

    def worker_count(self, queue: str) -> int:
        """Workers registered on a queue, fleet-wide (dead ones drop out with their TTL)."""
        return int(Worker.count(connection=self.connection, queue=Queue(queue, connection=self.connection)))


def heartbeat_key(job_id: str) -> str:
    return f"nc:alive:{job_id}"


@contextmanager
def beating(connection: redis.Redis, job_id: str, *, ttl_s: int = HEARTBEAT_TTL_S,
            every_s: float = HEARTBEAT_EVERY_S) -> Iterator[None]:
    """Refresh the job's heartbeat every few seconds while the block runs."""
    stop = threading.Event()
    key = heartbeat_key(job_id)

    def beat() -> None:
        while not stop.is_set():
            try:
                connection.set(key, str(time.time()), ex=ttl_s)
            except redis.RedisError:
                pass  # Redis restarting: the next beat tries again; a long gap means "dead"
            stop.wait(every_s)

    thread = threading.Thread(target=beat, name=f"heartbeat-{job_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=2)
        try:
            connection.delete(key)
        except redis.RedisError:
            pass


def stop_job(connection: redis.Redis, job_id: str) -> None:
    """RQ's stop-job command to the worker running the job (it kills the work horse at once,
    without ``finally``); a job still waiting is cancelled instead."""
    try:
        send_stop_job_command(connection, job_id)
    except InvalidJobOperation:  # not executing yet: take it off RQ's queue instead
        try:
            Job.fetch(job_id, connection=connection).cancel()
        except (NoSuchJobError, InvalidJobOperation):
            pass
    except NoSuchJobError:
        pass


def job_state(connection: redis.Redis, job_id: str) -> str | None:
    """RQ's status of the job ("finished", "stopped", "canceled", …), None when it has none."""
    try:
        job = Job.fetch(job_id, connection=connection)
    except NoSuchJobError:
        return None
    state = job.get_status(refresh=False)
    return None if state is None else str(state.value)


def job_enqueued_at(connection: redis.Redis, job_id: str) -> str:
    """When the job was enqueued (ISO), "" when there is no such job: tells one run from the next."""
    try:
        job = Job.fetch(job_id, connection=connection)
    except NoSuchJobError:
        return ""
    return job.enqueued_at.isoformat() if job.enqueued_at else ""
