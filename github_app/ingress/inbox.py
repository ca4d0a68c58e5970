"""The webhook inbox: ingress's single write per delivery, and the pump that makes intake jobs.

Building an RQ job costs ingress ~0.3 ms of CPU and four Redis round trips (measured: it capped
the web process at ~1,100 deliveries/s). So ingress does one atomic Lua call instead: remember
the delivery id (``SET NX`` with a TTL: the dedupe) and append a small JSON entry to the inbox
list. A pump in every worker process moves entries into RQ intake jobs whose job id is the
delivery's, so moving an entry twice (a pump killed between its two steps) still makes one job.

An entry being moved sits in its pump's own list (``BLMOVE``), never only in memory: a pump that
dies mid-move leaves it there, and ``recover`` hands it back to the inbox once that worker is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio as aioredis
from redis.commands.core import AsyncScript

from github_app import logs
from github_app.queue.jobqueue import INSTALLATION_JOB, INTAKE_JOB, INTAKE_QUEUE, JobQueue

INBOX_KEY = "nc:inbox"
PUMPING_PREFIX = "nc:inbox:pumping:"  # + the pump's owner (its RQ worker name)
REJECTED_KEY = "nc:inbox:rejected"  # entries that are not a job nightcrew knows: kept, not run
SEEN_PREFIX = "nc:seen:"  # + job id: remembered for keep_s (the dedupe)
DELIVERY_TTL_S = 3 * 24 * 3600  # GitHub redelivers up to three days back
MAX_BATCH = 500  # deliveries per Redis call, so one call never holds Redis for long
JOBS = frozenset({INTAKE_JOB, INSTALLATION_JOB})  # all the inbox may ever start
log = logs.get("nightcrew.inbox")

# KEYS: n seen-keys, then the inbox · ARGV: keep seconds, then n entries.
# Returns n flags: 1 = accepted, 0 = seen before (also earlier in the same batch).
_ACCEPT = """
local inbox, out = KEYS[#KEYS], {}
for i = 1, #KEYS - 1 do
  if redis.call('SET', KEYS[i], '1', 'NX', 'EX', ARGV[1]) then
    redis.call('RPUSH', inbox, ARGV[i + 1])
    out[i] = 1
  else
    out[i] = 0
  end
end
return out
"""


def _accept_call(entries: list[Entry]) -> tuple[list[str], list[str]]:
    """KEYS and the entries' part of ARGV for one ``_ACCEPT`` call."""
    keys = [SEEN_PREFIX + entry.job_id for entry in entries]
    keys.append(INBOX_KEY)
    return keys, [entry.encode() for entry in entries]


@dataclass(frozen=True)
class Entry:
    """One accepted delivery: the intake job to create, by dotted name, with its argument (an
    ``IntakeJob``'s JSON text, or a JSON object for the installation job)."""

    job_id: str
    func: str
    args: str | dict[str, Any]

    def encode(self) -> str:
        return json.dumps({"id": self.job_id, "func": self.func, "args": self.args},
                          separators=(",", ":"))

    @classmethod
    def decode(cls, raw: bytes | str) -> Entry | None:
        """The entry, or None when it is not one the inbox could have written."""
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            return None
        if not isinstance(data, dict):
            return None
        job_id, func, args = data.get("id"), data.get("func"), data.get("args")
        if not isinstance(job_id, str) or func not in JOBS or not isinstance(args, str | dict):
            return None
        return cls(job_id, str(func), args)


class Inbox:
    """Ingress's side: one round trip that dedupes and appends."""

    def __init__(self, connection: redis.Redis, *, keep_s: int) -> None:
        self._connection = connection
        self._keep_s = keep_s
        self._accept = connection.register_script(_ACCEPT)

    def accept(self, entry: Entry) -> bool:
        """Append the entry unless its job id was accepted within ``keep_s``; atomic."""
        keys, values = _accept_call([entry])
        return bool(self._accept(keys=keys, args=[self._keep_s, *values])[0])

    def depth(self) -> int:
        """Entries not yet picked up by a pump."""
        return int(self._connection.llen(INBOX_KEY))


class BatchingInbox:
    """Ingress's side in the web process: concurrent deliveries share one round trip.

    The first delivery to arrive is written at once; those that arrive while a write is in
    flight go together in the next one (group commit). Idle, that is one Lua call per
    delivery; under load, one per batch — and the event loop keeps reading requests while
    Redis works instead of blocking on each call. Each caller gets its own entry's answer, or
    the Redis error, which ingress turns into a 503 so GitHub redelivers.
    """

    def __init__(self, url: str, *, keep_s: int) -> None:
        self._url = url
        self._keep_s = keep_s
        self._pending: list[tuple[Entry, asyncio.Future[bool]]] = []
        self._flushing = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: aioredis.Redis | None = None
        self._script: AsyncScript | None = None

    async def accept(self, entry: Entry) -> bool:
        """As ``Inbox.accept``, batched with whatever else is being accepted right now."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # first use, or a test client that runs a loop per request
            self._bind(loop)
        answer: asyncio.Future[bool] = loop.create_future()
        self._pending.append((entry, answer))
        if not self._flushing:
            self._flushing = True
            loop.create_task(self._flush())
        return await answer

    def _bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._pending, self._flushing = [], False
        self._client = aioredis.Redis.from_url(self._url, socket_connect_timeout=5)
        self._script = self._client.register_script(_ACCEPT)

    async def _flush(self) -> None:
        assert self._script is not None
        try:
            while self._pending:
                batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
                keys, values = _accept_call([entry for entry, _ in batch])
                try:
                    flags = await self._script(keys=keys, args=[self._keep_s, *values])
                except Exception as exc:  # every waiter must hear about it
                    for _, answer in batch:
                        if not answer.done():
                            answer.set_exception(exc)
                    continue
                for (_, answer), flag in zip(batch, flags, strict=True):
                    if not answer.done():
                        answer.set_result(bool(flag))
        finally:
            self._flushing = False

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()


class Pump:
    """A worker's side: move inbox entries into intake jobs, one at a time, never losing one.

    ``guard`` is held while an entry is turned into a job (not while waiting for one): the
    worker takes it around ``fork`` so a work horse never inherits a lock the pump held.
    """

    def __init__(
        self, connection: redis.Redis, jobs: JobQueue, *, owner: str, keep_s: int,
        guard: Callable[[], AbstractContextManager[Any]] = contextlib.nullcontext,
    ) -> None:
        self._connection = connection
        self._jobs = jobs
        self._mine = PUMPING_PREFIX + owner
        self._keep_s = keep_s
        self._guard = guard

    def pump_one(self, block_s: float = 0.0) -> bool:
        """Move one entry (waiting up to ``block_s`` for it); False when the inbox stayed empty."""
        if block_s > 0:
            raw = self._connection.blmove(INBOX_KEY, self._mine, block_s,  # type: ignore[arg-type]  # redis-py types the timeout int; it takes seconds as float
                                          "LEFT", "RIGHT")
        else:
            raw = self._connection.lmove(INBOX_KEY, self._mine, "LEFT", "RIGHT")
        if raw is None:
            # Idle: settle anything of ours an earlier failure left half-moved (it would else
            # wait for this worker's death and ``recover``).
            return self.resume() > 0
        with self._guard():
            self._settle(raw)
        return True

    def drain(self) -> int:
        """Move everything now in the inbox (and anything this owner left half-moved)."""
        moved = self.resume()
        while self.pump_one():
            moved += 1
        return moved

    def resume(self) -> int:
        """Finish the entries this owner had taken but not settled (after a restart)."""
        raws = self._connection.lrange(self._mine, 0, -1)
        for raw in raws:
            with self._guard():
                self._settle(raw)
        return len(raws)

    def _settle(self, raw: bytes | str) -> None:
        entry = Entry.decode(raw)
        if entry is None:
            # Only ingress writes the inbox; anything else is kept aside for a person, not run.
            log.error("inbox.rejected_entry", size=len(raw))
            self._connection.rpush(REJECTED_KEY, raw)
        else:
            first = self._jobs.enqueue_once(entry.func, entry.args, queue=INTAKE_QUEUE,
                                            job_id=entry.job_id, keep_s=self._keep_s)
            if not first:
                log.info("inbox.already_enqueued", job_id=entry.job_id)
        self._connection.lrem(self._mine, 1, raw)  # type: ignore[arg-type]  # bytes are fine


def recover(connection: redis.Redis, live_owners: Iterable[str]) -> int:
    """Give the entries of pumps whose worker is gone back to the inbox; how many moved."""
    live = {PUMPING_PREFIX + owner for owner in live_owners}
    moved = 0
    for key in connection.scan_iter(match=PUMPING_PREFIX + "*", count=100):
        name = key.decode() if isinstance(key, bytes) else str(key)
        if name in live:
            continue
        while connection.lmove(name, INBOX_KEY, "RIGHT", "LEFT") is not None:
            moved += 1
    if moved:
        log.warning("inbox.recovered", entries=moved)
    return moved
