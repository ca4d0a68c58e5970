"""The worker entry point: an RQ worker on the nightcrew queues."""

from __future__ import annotations

from rq import Queue, Worker

from github_app.queue import QUEUES
from github_app.redis_conn import connect
from github_app.settings import Settings


def run_worker(settings: Settings, *, burst: bool = False) -> bool:
    """Work the intake queue first, then tasks; returns when stopped (or empty, in burst)."""
    connection = connect(settings)
    queues = [Queue(name, connection=connection) for name in QUEUES]
    worker = Worker(queues, connection=connection)
    return bool(worker.work(burst=burst, logging_level="WARNING", with_scheduler=False))
