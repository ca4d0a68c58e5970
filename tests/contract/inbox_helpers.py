"""Ingress tests look at what a worker would see: the inbox pumped into RQ intake jobs."""

from __future__ import annotations

import json
from typing import Any

import redis
from rq import Queue

from github_app.ingress.inbox import DELIVERY_TTL_S, Pump
from github_app.queue.jobqueue import INTAKE_QUEUE, RQJobQueue
from github_app.queue.payloads import IntakeJob


def redis_url(connection: redis.Redis) -> str:
    """The URL of the Redis a test connection talks to (the app opens its own clients)."""
    kwargs = connection.connection_pool.connection_kwargs
    if "path" in kwargs:
        return f"unix://{kwargs['path']}"
    return f"redis://{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}/{kwargs.get('db', 0)}"


def pumped(connection: redis.Redis) -> list[Any]:
    """The intake jobs, after a pump (as in a worker) has moved everything in the inbox."""
    Pump(connection, RQJobQueue(connection), owner="test", keep_s=DELIVERY_TTL_S).drain()
    return Queue(INTAKE_QUEUE, connection=connection).get_jobs()


def payload_of(job: Any) -> dict[str, Any]:
    """An RQ job's argument as a dict: the intake job's ``IntakeJob`` JSON text, read back
    through the record (so a test sees what the worker will), or a plain JSON object."""
    [raw] = job.args
    if isinstance(raw, str):
        data = json.loads(IntakeJob.from_json(raw).to_json())
        assert isinstance(data, dict)
        return data
    assert isinstance(raw, dict)
    return raw
