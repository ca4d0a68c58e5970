"""In-thread control of a task: what people asked with ``/nightcrew …``, for the runner to see.

Intake writes requests here; the running task reads them between steps. A stop request
(``cancel``, ``pause``) is a flag the loop honours at the next step boundary, so the task
winds down itself — commits what passes, writes its checkpoint, reports — instead of being
killed mid-write (RQ's stop command kills at once, without ``finally``). Each request carries a
deadline: a task that has not stopped by then (a hung command never reaches a step boundary) is
killed and finished from outside by ``github_app.queue.stopper``. Grants (raised budget,
approved change kinds) are kept here until the next run folds them into its checkpoint, which is
what survives a lost Redis.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

import redis

from github_app.tasks import TaskKey

PREFIX = "nc:control"
STOP_TTL_S = 24 * 3600  # a stop request for a task that never runs again expires
STOP_DEADLINES = f"{PREFIX}:stop-deadlines"  # zset: task key -> when its grace period ends
DEFAULT_STOP_GRACE_S = 60.0
GRANT_TTL_S = 30 * 24 * 3600
StopKind = Literal["cancel", "pause"]


@dataclass(frozen=True)
class StopRequest:
    kind: StopKind
    actor: str


def _key(task: TaskKey, what: str) -> str:
    return f"{PREFIX}:{what}:{str(task).lower()}"


def stop_key(task: TaskKey) -> str:
    """The Redis key of the task's stop request (for scripts that act on it atomically)."""
    return _key(task, "stop")


def request_stop(
    connection: redis.Redis, task: TaskKey, kind: StopKind, actor: str,
    *, grace_s: float = DEFAULT_STOP_GRACE_S, now: float | None = None,
) -> float:
    """Ask the running task to stop at its next step (a later request replaces an earlier one).

    Records when the grace period ends: a task still running then is killed and finished from
    outside (``github_app.queue.stopper``). A repeated request keeps the first deadline, so saying
    ``cancel`` again never buys a hung task more time. Returns the deadline (epoch seconds).
    """
    deadline = (time.time() if now is None else now) + grace_s
    member = str(task)
    with connection.pipeline(transaction=True) as pipe:
        pipe.set(_key(task, "stop"), f"{kind}:{actor}", ex=STOP_TTL_S)
        pipe.zadd(STOP_DEADLINES, {member: deadline}, nx=True)
        pipe.zscore(STOP_DEADLINES, member)
        recorded = pipe.execute()[-1]
    return float(recorded) if recorded is not None else deadline


def stop_deadline(connection: redis.Redis, task: TaskKey) -> float | None:
    """When the grace period of the task's stop request ends (None: no request pending)."""
    score = connection.zscore(STOP_DEADLINES, str(task))
    return None if score is None else float(score)


def overdue_stops(connection: redis.Redis, now: float | None = None) -> list[TaskKey]:
    """Tasks whose stop request's grace period has ended, earliest first."""
    moment = time.time() if now is None else now
    members = connection.zrangebyscore(STOP_DEADLINES, "-inf", moment)
    found = []
    for member in members:
        text = member.decode() if isinstance(member, bytes) else str(member)
        try:
            found.append(TaskKey.parse(text))
        except ValueError:
            connection.zrem(STOP_DEADLINES, text)  # not a task key: nothing can ever act on it
    return found


def forget_deadline(connection: redis.Redis, task: TaskKey) -> None:
    """Drop the task's grace deadline (its request is gone, or a worker took it on)."""
    connection.zrem(STOP_DEADLINES, str(task))


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
    """Forget the stop request and its deadline (the task honoured it, or is being resumed)."""
    with connection.pipeline(transaction=True) as pipe:
        pipe.delete(_key(task, "stop"))
        pipe.zrem(STOP_DEADLINES, str(task))
        pipe.execute()


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
