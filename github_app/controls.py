"""In-thread control of a task: what people asked with ``/nightcrew …``, for the runner to see.

Intake writes requests here; the running task reads them between steps. A stop request
(``cancel``, ``pause``) is a flag the loop honours at the next step boundary, so the task
winds down itself — commits what passes, writes its checkpoint, reports — instead of being
killed mid-write (RQ's stop command kills at once, without ``finally``). Grants (raised budget,
approved change kinds) are kept here until the next run folds them into its checkpoint, which is
what survives a lost Redis.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import redis

from github_app.tasks import TaskKey

PREFIX = "nc:control"
STOP_TTL_S = 24 * 3600  # a stop request for a task that never runs again expires
GRANT_TTL_S = 30 * 24 * 3600
StopKind = Literal["cancel", "pause"]


@dataclass(frozen=True)
class StopRequest:
    kind: StopKind
    actor: str


def _key(task: TaskKey, what: str) -> str:
    return f"{PREFIX}:{what}:{str(task).lower()}"


def request_stop(connection: redis.Redis, task: TaskKey, kind: StopKind, actor: str) -> None:
    """Ask the running task to stop at its next step (a later request replaces an earlier one)."""
    connection.set(_key(task, "stop"), f"{kind}:{actor}", ex=STOP_TTL_S)


def stop_requested(connection: redis.Redis, task: TaskKey) -> StopRequest | None:
    """The pending stop request, if any (read between steps)."""
    raw = connection.get(_key(task, "stop"))
    if raw is None:
        return None
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    kind, _, actor = text.partition(":")
    if kind not in ("cancel", "pause"):
        return None
    return StopRequest("cancel" if kind == "cancel" else "pause", actor)


def clear_stop(connection: redis.Redis, task: TaskKey) -> None:
    """Forget the stop request (the task honoured it, or is being resumed)."""
    connection.delete(_key(task, "stop"))


def request_render(connection: redis.Redis, task: TaskKey) -> None:
    """``/nightcrew status``: the running task writes its status comment at its next step."""
    connection.set(_key(task, "render"), "1", ex=STOP_TTL_S)


def render_requested(connection: redis.Redis, task: TaskKey) -> bool:
    """True once per ``request_render`` (the flag is taken)."""
    return connection.getdel(_key(task, "render")) is not None


def grant_budget(connection: redis.Redis, task: TaskKey, usd: float) -> float:
    """Add dollars to the task's budget; returns the total granted so far (not yet folded in)."""
    key = _key(task, "budget")
    total = float(connection.incrbyfloat(key, usd))
    connection.expire(key, GRANT_TTL_S)
    return total


def take_budget(connection: redis.Redis, task: TaskKey) -> float:
    """The dollars granted since the last run, removed so they are added exactly once."""
    raw = connection.getdel(_key(task, "budget"))
    return float(raw) if raw is not None else 0.0


def approve(connection: redis.Redis, task: TaskKey, kinds: list[str]) -> None:
    """Record that a maintainer approved these change kinds for the task."""
    key = _key(task, "approved")
    if kinds:
        connection.sadd(key, *kinds)
        connection.expire(key, GRANT_TTL_S)


def approved(connection: redis.Redis, task: TaskKey) -> set[str]:
    """Change kinds approved for the task (the checkpoint keeps them across Redis loss)."""
    return {m.decode() if isinstance(m, bytes) else str(m)
            for m in connection.smembers(_key(task, "approved"))}
