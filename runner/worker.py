"""The worker entry point: an RQ worker on the nightcrew queues that also moves the scheduler."""

from __future__ import annotations

from typing import Any

from rq import Queue, Worker

from github_app import logs
from github_app.dispatch import advance, scheduler_for, sweep
from github_app.queue import QUEUES, RQJobQueue
from github_app.redis_conn import connect
from github_app.settings import Settings
from runner.workspace import Workspaces

# RQ's defaults notice a dead worker after ~10 minutes; these make it about a minute, and the
# maintenance pass is where lost slots are taken back and the queue moves on.
WORKER_TTL_S = 60
MAINTENANCE_INTERVAL_S = 30
log = logs.get("nightcrew.worker")


class NightcrewWorker(Worker):
    """An RQ worker whose maintenance pass also sweeps and dispatches the fair queue."""

    def __init__(self, *args: Any, settings: Settings, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.jobs = RQJobQueue(self.connection)
        self.task_scheduler = scheduler_for(settings, self.jobs)

    def run_maintenance_tasks(self) -> None:
        super().run_maintenance_tasks()  # type: ignore[no-untyped-call]  # rq leaves it untyped
        sweep(self.task_scheduler, self.jobs)
        advance(self.task_scheduler, self.jobs)


def run_worker(settings: Settings, *, burst: bool = False) -> bool:
    """Work the intake queue first, then tasks; returns when stopped (or empty, in burst)."""
    Workspaces(settings.data_dir.resolve()).sweep()  # leftovers of a killed worker
    connection = connect(settings)
    queues = [Queue(name, connection=connection) for name in QUEUES]
    worker = NightcrewWorker(queues, connection=connection, settings=settings,
                             worker_ttl=WORKER_TTL_S, maintenance_interval=MAINTENANCE_INTERVAL_S)
    return bool(worker.work(burst=burst, logging_level="WARNING", with_scheduler=False))
