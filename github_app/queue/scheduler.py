"""The fair task scheduler: per-installation and per-repository caps, least-recently-served
first, queue positions. It sits in front of RQ, in Redis, so its caps hold fleet-wide.

A submitted task waits in its installation's FIFO until ``dispatch`` gives it a slot; only then
does it become an RQ job (job id = task key). Slots are the workers serving the task queue, so
a task never waits behind a backlog inside RQ: a flood from one installation delays another
installation's task by at most one slot. Every state change is one Lua script, so two
dispatchers on two machines never hand out the same slot twice.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from heapq import heapify, heappop, heappush
from typing import Any

import redis

from github_app.queue.payloads import PayloadError, TaskJob
from github_app.tasks import TaskKey

PREFIX = "nc:sched"
RING = f"{PREFIX}:ring"  # zset: installations with pending tasks, scored by last service
SERVED = f"{PREFIX}:served"  # hash: installation -> service counter when last served
SEQ = f"{PREFIX}:seq"  # counter behind the service order
DISPATCHED = f"{PREFIX}:dispatched"  # set of task keys that hold a slot
REQUEUE_GRACE_S = 60.0  # a dispatched task without a live job for this long gets its slot back

_SUBMIT = """
local task = KEYS[1]
if redis.call('EXISTS', task) == 1 then return redis.call('HGET', task, 'state') end
redis.call('HSET', task, 'state', 'pending', 'installation', ARGV[2], 'repo', ARGV[3],
           'args', ARGV[4], 'submitted', ARGV[5])
redis.call('SET', KEYS[4], ARGV[6])
redis.call('RPUSH', KEYS[2], ARGV[1])
local served = redis.call('HGET', KEYS[5], ARGV[2]) or '0'
redis.call('ZADD', KEYS[3], 'NX', served, ARGV[2])
return 'new'
"""

# ARGV: slots, per-installation cap, default repo cap, now, prefix.
_DISPATCH = """
local prefix = ARGV[5]
local ring, served, seq, dispatched = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local slots, inst_cap, repo_default = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local picked = {}
while redis.call('SCARD', dispatched) < slots do
  local found = false
  for _, inst in ipairs(redis.call('ZRANGE', ring, 0, -1)) do
    local pending = prefix .. ':pending:' .. inst
    if redis.call('SCARD', prefix .. ':running:inst:' .. inst) < inst_cap then
      for _, key in ipairs(redis.call('LRANGE', pending, 0, 99)) do
        local task = prefix .. ':task:' .. key
        local repo = redis.call('HGET', task, 'repo')
        local cap = tonumber(redis.call('GET', prefix .. ':cap:repo:' .. repo) or repo_default)
        if redis.call('SCARD', prefix .. ':running:repo:' .. repo) < cap then
          redis.call('LREM', pending, 1, key)
          redis.call('HSET', task, 'state', 'dispatched', 'dispatched', ARGV[4])
          redis.call('SADD', dispatched, key)
          redis.call('SADD', prefix .. ':running:inst:' .. inst, key)
          redis.call('SADD', prefix .. ':running:repo:' .. repo, key)
          local n = redis.call('INCR', seq)
          redis.call('HSET', served, inst, n)
          redis.call('ZADD', ring, n, inst)
          table.insert(picked, key)
          table.insert(picked, redis.call('HGET', task, 'args'))
          found = true
          break
        end
      end
    end
    if redis.call('LLEN', pending) == 0 then redis.call('ZREM', ring, inst) end
    if found then break end
  end
  if not found then break end
end
return picked
"""

# Give back a slot. ARGV[1] = 'requeue' puts the task back at the head of its queue;
# 'withdraw' forgets the task only while it is still waiting (never one being dispatched).
_RELEASE = """
local task = KEYS[1]
local prefix = ARGV[3]
local state = redis.call('HGET', task, 'state')
if not state then return 0 end
if ARGV[1] == 'withdraw' and state ~= 'pending' then return 0 end
local inst = redis.call('HGET', task, 'installation')
local repo = redis.call('HGET', task, 'repo')
redis.call('SREM', KEYS[2], ARGV[2])
redis.call('SREM', prefix .. ':running:inst:' .. inst, ARGV[2])
redis.call('SREM', prefix .. ':running:repo:' .. repo, ARGV[2])
if ARGV[1] == 'requeue' then
  if state == 'pending' then return 1 end
  redis.call('HSET', task, 'state', 'pending')
  redis.call('LPUSH', prefix .. ':pending:' .. inst, ARGV[2])
  local served = redis.call('HGET', KEYS[3], inst) or '0'
  redis.call('ZADD', KEYS[4], 'NX', served, inst)
  return 1
end
if state == 'pending' then
  redis.call('LREM', prefix .. ':pending:' .. inst, 1, ARGV[2])
  if redis.call('LLEN', prefix .. ':pending:' .. inst) == 0 then redis.call('ZREM', KEYS[4], inst) end
end
redis.call('DEL', task)
return 1
"""


@dataclass(frozen=True)
class Caps:
    """Fleet-wide limits. ``slots`` None = one per live worker on the task queue."""

    per_installation: int = 3
    per_repository: int = 2
    slots: int | None = None


@dataclass(frozen=True)
class Dispatched:
    task: TaskKey
    payload: TaskJob


@dataclass(frozen=True)
class Submitted:
    """``new`` is False when the task was already pending or running (nothing added)."""

    new: bool
    state: str


class TaskScheduler:
    """Submit, dispatch, finish; all state in Redis."""

    def __init__(
        self, connection: redis.Redis, caps: Caps | None = None,
        *, live_slots: Callable[[], int] | None = None,
    ) -> None:
        self.connection = connection
        self.caps = caps or Caps()
        self._live_slots = live_slots or (lambda: 1)
        self._submit = connection.register_script(_SUBMIT)
        self._dispatch = connection.register_script(_DISPATCH)
        self._release = connection.register_script(_RELEASE)

    def submit(self, payload: TaskJob, *, repo_cap: int | None = None) -> Submitted:
        """Queue a task unless it is already pending or running."""
        task, installation = payload.task, payload.installation_id
        state = self._submit(
            keys=[_task(task), _pending(installation), RING, f"{PREFIX}:cap:repo:{task.full_name}",
                  SERVED],
            args=[str(task), installation, task.full_name, payload.to_json(), time.time(),
                  repo_cap or self.caps.per_repository],
        )
        text = _text(state)
        return Submitted(new=text == "new", state="pending" if text == "new" else text)

    def dispatch(self) -> list[Dispatched]:
        """Hand free slots to waiting tasks, least-recently-served installation first."""
        slots = self.caps.slots if self.caps.slots is not None else self._live_slots()
        raw = self._dispatch(
            keys=[RING, SERVED, SEQ, DISPATCHED],
            args=[slots, self.caps.per_installation, self.caps.per_repository, time.time(), PREFIX],
        )
        pairs = [_text(item) for item in raw]
        return [
            Dispatched(TaskKey.parse(key), TaskJob.from_json(args))
            for key, args in zip(pairs[::2], pairs[1::2], strict=True)
        ]

    def finish(self, task: TaskKey) -> bool:
        """Forget a task that ended (or was cancelled while waiting) and free its slot."""
        return bool(self._release(keys=[_task(task), DISPATCHED, SERVED, RING],
                                  args=["finish", str(task), PREFIX]))

    def withdraw(self, task: TaskKey) -> bool:
        """Forget a task only if it still waits; False when it was dispatched meanwhile (or is
        unknown), so a cancel racing the dispatcher never loses a job that is about to run."""
        return bool(self._release(keys=[_task(task), DISPATCHED, SERVED, RING],
                                  args=["withdraw", str(task), PREFIX]))

    def requeue(self, task: TaskKey) -> bool:
        """Give a dispatched task's slot back and put it first in its installation's queue."""
        return bool(self._release(keys=[_task(task), DISPATCHED, SERVED, RING],
                                  args=["requeue", str(task), PREFIX]))

    def state(self, task: TaskKey) -> dict[str, str]:
        """The task's record (state, installation, repo, args…), empty when unknown."""
        raw = self.connection.hgetall(_task(task))
        return {_text(k): _text(v) for k, v in raw.items()}

    def payload(self, task: TaskKey) -> TaskJob | None:
        """The job argument the task was submitted with (None: unknown, or unreadable)."""
        raw = self.connection.hget(_task(task), "args")
        if raw is None:
            return None
        try:
            return TaskJob.from_json(_text(raw))
        except PayloadError:
            return None

    def mark_shown(self, task: TaskKey, position: int) -> bool:
        """Record the position shown on the issue; True when it differs from the last one."""
        previous = self.connection.hget(_task(task), "shown")
        if previous is not None and int(previous) == position:
            return False
        self.connection.hset(_task(task), "shown", position)
        return True

    def dispatched(self) -> list[TaskKey]:
        return sorted(TaskKey.parse(_text(k)) for k in self.connection.smembers(DISPATCHED))

    def positions(self) -> dict[TaskKey, int]:
        """Each waiting task's place in the dispatch order (1 = next), by the same rule."""
        members = self.connection.zrange(RING, 0, -1, withscores=True)
        ring = [(float(pair[1]), _text(pair[0])) for pair in members if isinstance(pair, tuple)]
        queues = {inst: [_text(k) for k in self.connection.lrange(_pending(inst), 0, -1)]
                  for _, inst in ring}
        seq = float(self.connection.get(SEQ) or 0)
        heap = [(score, inst) for score, inst in ring if queues[inst]]
        heapify(heap)
        order: dict[TaskKey, int] = {}
        while heap:
            _, inst = heappop(heap)
            order[TaskKey.parse(queues[inst].pop(0))] = len(order) + 1
            seq += 1
            if queues[inst]:
                heappush(heap, (seq, inst))
        return order

    def stale(self, is_live: Callable[[str], bool], grace_s: float = REQUEUE_GRACE_S) -> list[TaskKey]:
        """Dispatched tasks whose RQ job is gone (crashed worker, lost enqueue) past the grace."""
        now = time.time()
        lost = []
        for task in self.dispatched():
            since = float(self.state(task).get("dispatched") or now)
            if now - since > grace_s and not is_live(task.job_id):
                lost.append(task)
        return lost


def _task(task: TaskKey) -> str:
    return f"{PREFIX}:task:{task}"


def _pending(installation: int | str) -> str:
    return f"{PREFIX}:pending:{installation}"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)

