"""The fleet's word on the model API keys: which were refused, and whether task work is held.

When the API refuses a key (401/403) every worker skips it (``RedisRefusals``, read by
``runner.model.keys.KeyRing``). When no configured key is left the fleet *holds*: dispatch hands
out no task slot (queued tasks stay queued, in order), running tasks pause at their next model
call and are *parked* here, and a worker's maintenance pass probes the refused keys. As soon as
one works again the hold is lifted and every parked task is submitted again to resume from its
checkpoint — nobody has to type ``/nightcrew resume``.

Redis may be lost: then the refusals are simply tried again (and re-recorded if still refused);
parked tasks keep their paused label and signed checkpoint, so ``/nightcrew resume`` still works.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import redis

PREFIX = "nc:model"
REFUSED = f"{PREFIX}:refused-keys"  # hash: key fingerprint -> "<epoch> <why>"
HOLD = f"{PREFIX}:hold"  # string: why task work is held (set while no key works)
PARKED = f"{PREFIX}:parked"  # hash: task key -> the task job's payload (JSON), to resume it
PROBE_LOCK = f"{PREFIX}:probe"
PROBE_EVERY_S = 30


@dataclass(frozen=True)
class Refusal:
    fingerprint: str
    at: float
    why: str


class RedisRefusals:
    """``runner.model.keys.Refusals`` in Redis: one record for the whole fleet.

    A read that fails (Redis restarting) answers "nothing refused": the call then goes to the
    API, which says again what it thinks of the key.
    """

    def __init__(self, connection: redis.Redis) -> None:
        self.connection = connection

    def refused(self) -> set[str]:
        try:
            return {_text(k) for k in self.connection.hkeys(REFUSED)}
        except redis.RedisError:
            return set()

    def refuse(self, fingerprint: str, why: str) -> bool:
        """Record the refusal; True for the first process that records it (it logs the line)."""
        try:
            return bool(self.connection.hsetnx(REFUSED, fingerprint, f"{time.time():.0f} {why}"))
        except redis.RedisError:
            return True

    def clear(self, fingerprint: str) -> None:
        self.connection.hdel(REFUSED, fingerprint)


def refusals(connection: redis.Redis) -> list[Refusal]:
    """Every recorded refusal (for ``nightcrew doctor`` and the probe)."""
    found = []
    for fingerprint, raw in connection.hgetall(REFUSED).items():
        at, _, why = _text(raw).partition(" ")
        found.append(Refusal(_text(fingerprint), float(at or 0), why))
    return sorted(found, key=lambda r: r.at)


def hold(connection: redis.Redis, why: str) -> None:
    """Hold task work fleet-wide: no key works."""
    connection.set(HOLD, why)


def held(connection: redis.Redis) -> str | None:
    """Why task work is held, or None (also when Redis cannot say: dispatch then goes on)."""
    try:
        raw = connection.get(HOLD)
    except redis.RedisError:
        return None
    return None if raw is None else _text(raw)


def park(connection: redis.Redis, task: str, payload: str) -> None:
    """Remember a task paused for want of a working key, to resume it when one works."""
    connection.hset(PARKED, task, payload)


def release(connection: redis.Redis) -> dict[str, str]:
    """Lift the hold and hand back every parked task (task -> payload), removing them."""
    with connection.pipeline(transaction=True) as pipe:
        pipe.hgetall(PARKED)
        pipe.delete(PARKED, HOLD)
        parked = pipe.execute()[0]
    return {_text(k): _text(v) for k, v in parked.items()}


def probe_due(connection: redis.Redis, every_s: int = PROBE_EVERY_S) -> bool:
    """True for the one worker that should probe the refused keys now."""
    return bool(connection.set(PROBE_LOCK, "1", nx=True, ex=every_s))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
