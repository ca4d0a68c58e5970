"""The worker entry point: an RQ worker on the nightcrew queues that also moves the scheduler
and pumps the webhook inbox into intake jobs."""

from __future__ import annotations

import os
import threading
from typing import Any

import redis
from rq import Queue, Worker

from github_app import logs, reconcile
from github_app.dispatch import advance, scheduler_for, sweep
from github_app.inbox import DELIVERY_TTL_S, Pump, recover
from github_app.queue import QUEUES, RQJobQueue
from github_app.redis_conn import connect
from github_app.settings import Settings
from runner.workspace import Workspaces

PUMP_WAIT_S = 5.0  # how long one BLMOVE waits; also how soon a stopping pump notices
log = logs.get("nightcrew.worker")

# RQ forks a work horse per job. The pump thread holds this lock while it turns an entry into a
# job, and fork waits for it, so a horse never starts with a lock the pump thread held
# (a Redis connection pool's, a logger's) and deadlocks on it.
_FORK_GUARD = threading.Lock()
os.register_at_fork(before=_FORK_GUARD.acquire, after_in_parent=_FORK_GUARD.release,
                    after_in_child=_FORK_GUARD.release)


class PumpThread(threading.Thread):
    """Moves inbox entries into intake jobs as they arrive, beside the RQ work loop."""

    def __init__(self, connection: redis.Redis, owner: str) -> None:
        super().__init__(name=f"inbox-pump-{owner}", daemon=True)
        # Its own client: the blocking BLMOVE must not hold a connection the worker needs.
        own = redis.Redis(connection_pool=redis.ConnectionPool(
            connection_class=connection.connection_pool.connection_class,
            **connection.connection_pool.connection_kwargs))
        self.pump = Pump(own, RQJobQueue(own), owner=owner, keep_s=DELIVERY_TTL_S,
                         guard=lambda: _FORK_GUARD)
        self.stopping = threading.Event()

    def run(self) -> None:
        self.pump.resume()
        while not self.stopping.is_set():
            try:
                self.pump.pump_one(block_s=PUMP_WAIT_S)
            except redis.RedisError as exc:  # Redis restarting: wait, then carry on
                log.warning("inbox.pump_error", error=exc.__class__.__name__)
                self.stopping.wait(1.0)


class NightcrewWorker(Worker):
    """An RQ worker whose maintenance pass also sweeps and dispatches the fair queue."""

    def __init__(self, *args: Any, settings: Settings, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.settings = settings
        self.jobs = RQJobQueue(self.connection, heartbeat_grace_s=settings.heartbeat_ttl_s + 10.0)
        self.task_scheduler = scheduler_for(settings, self.jobs)

        self.pump_thread: PumpThread | None = None

    def register_birth(self) -> None:
        """Registered (so other workers see this one live): now the pump may take entries."""
        super().register_birth()  # type: ignore[no-untyped-call]  # rq leaves it untyped
        if self.pump_thread is None:
            self.pump_thread = PumpThread(self.connection, self.name)
            self.pump_thread.start()

    def register_death(self) -> None:
        if self.pump_thread is not None:
            self.pump_thread.stopping.set()
        super().register_death()  # type: ignore[no-untyped-call]

    def run_maintenance_tasks(self) -> None:
        super().run_maintenance_tasks()  # type: ignore[no-untyped-call]  # rq leaves it untyped
        live = [worker.name for worker in Worker.all(connection=self.connection)]
        recover(self.connection, live)  # entries a killed worker's pump had taken
        # A task dispatched this long ago without a live (beating) job lost its worker.
        sweep(self.task_scheduler, self.jobs, grace_s=self.settings.heartbeat_ttl_s + 10.0)
        if reconcile.due(self.connection):  # one worker every 10 min, and at once on a fresh Redis
            try:
                reconcile.reconcile_from_settings(self.settings)
            except Exception as exc:  # GitHub down: the next pass tries again
                log.warning("reconcile.failed", error=f"{type(exc).__name__}: {exc}"[:300])
        advance(self.task_scheduler, self.jobs)


def run_worker(settings: Settings, *, burst: bool = False) -> bool:
    """Work the intake queue first, then tasks; returns when stopped (or empty, in burst)."""
    Workspaces(settings.data_dir.resolve()).sweep()  # leftovers of a killed worker
    connection = connect(settings)
    queues = [Queue(name, connection=connection) for name in QUEUES]
    worker = NightcrewWorker(queues, connection=connection, settings=settings,
                             worker_ttl=settings.worker_ttl_s,
                             maintenance_interval=settings.maintenance_interval_s)
    if burst:  # work what has arrived: the inbox too, which no pump thread may reach in time
        Pump(connection, worker.jobs, owner=worker.name, keep_s=DELIVERY_TTL_S).drain()
    return bool(worker.work(burst=burst, logging_level="WARNING", with_scheduler=False))
