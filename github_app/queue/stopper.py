"""The kill switch behind ``/nightcrew cancel|pause``: a grace period, then a stop from outside.

A stop request is a flag the running task honours at its next step boundary
(``controls.request_stop``); it carries a deadline. A task that has not stopped by then — a hung
test run, a model call that never returns, a long setup: anything that never reaches a step
boundary — is stopped by a worker's maintenance pass:

1. **claim** (one Lua call): the request still stands, its deadline has passed, nobody claimed it.
   Two workers never both act; a task that honoured its request in time has cleared it, so the
   claim fails and the task is not touched.
2. **kill**: RQ's stop-job command. The worker that runs the job SIGKILLs its work-horse (its
   ``finally`` blocks never run); the sandbox dies with it (bwrap ``--die-with-parent``) and that
   worker reaps whatever else named the run's workspace (``runner.worker.rq_worker``).
3. **finish from outside**, once the job is no longer live, under a lease so one worker does it:
   the status comment rewritten to the final state ("Cancelled by @x; the run did not stop
   within 60s and was stopped.") keeping the last checkpoint's data, re-signed with the final
   state so ``/nightcrew retry`` (``resume``) continues from it; the state label; the scheduler
   slot; the stop request, the heartbeat and the claim cleared.

A task whose worker died while a stop request was pending is finished the same way by the sweep
(``dispatch.sweep`` asks ``drop_lost``) instead of being run again.

A run that did not end by itself never writes its ``run_finished``; the fleet closes its event
log for it, once: with the final state when it is finished from outside, and with ``queued`` when
the sweep puts a task whose worker died back in the queue (``close_lost``). Either closing says
how the run ended (``interrupted``: "lost" or "killed"), so no run's log stays open forever.

The race with a task that finishes itself at the same moment ends in one consistent state: if
its own ``finally`` ran (the scheduler no longer holds it, or RQ says the job finished), what it
wrote stands and only the claim is dropped; otherwise it was killed before it was done, and the
final state written here replaces whatever part of its own it had written.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import redis

from github_app import logs, wiring
from github_app.queue import controls
from github_app.queue.dispatch import advance
from github_app.queue.jobqueue import RQJobQueue, heartbeat_key, job_enqueued_at, job_state, stop_job
from github_app.queue.scheduler import TaskScheduler
from github_app.settings import Settings
from github_app.tasks import TaskKey
from github_app.tracker import lifecycle, status
from github_app.tracker.checkpoint import Checkpoint
from github_app.tracker.eventlog import Event, EventLog, new_run_id, open_runs, read_events, tail
from github_app.tracker.issue import IssueTracker
from github_app.tracker.stopped import final_view, resigned

CLAIM_PREFIX = f"{controls.PREFIX}:stopping"  # + ":" + task (lower case): hash, one per claim
CLAIMS = f"{controls.PREFIX}:stopping-index"  # set of task keys with a claim
CLAIM_TTL_S = controls.STOP_TTL_S
KILL_RESEND_S = 15.0  # a claimed job still live this long after its stop command gets another
FINISH_LEASE_S = 120.0  # a finisher that died half-way is taken over after this long
Why = Literal["grace", "lost"]
LOST_DETAIL = "The worker running this was lost; the task waits to run again from its last checkpoint."
HostFor = wiring.HostFor
StopJob = Callable[[redis.Redis, str], None]
log = logs.get("nightcrew.stopper")

# KEYS: stop request, deadlines, claim, claims index · ARGV: task, now, claimer, run marker, ttl.
# Returns the request ("kind:actor") when this caller now holds the claim, else nil.
_CLAIM = """
local request = redis.call('GET', KEYS[1])
if not request then return false end
local due = redis.call('ZSCORE', KEYS[2], ARGV[1])
if (not due) or tonumber(due) > tonumber(ARGV[2]) then return false end
if redis.call('EXISTS', KEYS[3]) == 1 then return false end
redis.call('HSET', KEYS[3], 'task', ARGV[1], 'request', request, 'why', 'grace', 'phase', 'kill',
           'by', ARGV[3], 'at', ARGV[2], 'run', ARGV[4])
redis.call('EXPIRE', KEYS[3], ARGV[5])
redis.call('SADD', KEYS[4], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return request
"""

# Take the lease to finish a task from outside; creates the claim when there is none (the sweep).
# KEYS: claim, claims index · ARGV: task, now, finisher, lease, request, why, ttl. Returns 1 or 0.
_TAKE_FINISH = """
local phase = redis.call('HGET', KEYS[1], 'phase')
if phase == 'finish' then
  local since = tonumber(redis.call('HGET', KEYS[1], 'finish_at') or '0')
  if tonumber(ARGV[2]) - since < tonumber(ARGV[4]) then return 0 end
end
if not phase then
  redis.call('HSET', KEYS[1], 'task', ARGV[1], 'request', ARGV[5], 'why', ARGV[6], 'by', ARGV[3],
             'at', ARGV[2], 'run', '')
  redis.call('SADD', KEYS[2], ARGV[1])
end
redis.call('HSET', KEYS[1], 'phase', 'finish', 'finish_by', ARGV[3], 'finish_at', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[7])
return 1
"""

# Give the lease back after a failure (GitHub down): the next pass tries again at once.
# KEYS: claim · ARGV: finisher.
_RELEASE_FINISH = """
if redis.call('HGET', KEYS[1], 'finish_by') == ARGV[1] then
  redis.call('HSET', KEYS[1], 'phase', 'kill', 'finish_at', '0')
end
return 1
"""


@dataclass(frozen=True)
class Claim:
    """A stop the fleet took over from the task: who asked, why, and which run it concerns."""

    task: TaskKey
    kind: controls.StopKind
    actor: str
    why: Why
    phase: str  # "kill": stop command sent · "finish": someone is writing the final state
    at: float  # when the claim (or the last stop command) was made
    run: str  # the RQ job's enqueue time when claimed: tells the killed run from a later one


def claim_key(task: TaskKey) -> str:
    return f"{CLAIM_PREFIX}:{str(task).lower()}"


def read_claim(connection: redis.Redis, task: TaskKey) -> Claim | None:
    """The task's claim, if a worker took on its stop request."""
    raw = {_text(k): _text(v) for k, v in connection.hgetall(claim_key(task)).items()}
    kind, _, actor = raw.get("request", "").partition(":")
    if kind not in ("cancel", "pause"):
        return None
    return Claim(task, "cancel" if kind == "cancel" else "pause", actor,
                 "lost" if raw.get("why") == "lost" else "grace", raw.get("phase", "kill"),
                 float(raw.get("at") or 0), raw.get("run", ""))


class Stopper:
    """One worker's side of the kill switch: ``tick`` from the maintenance pass."""

    def __init__(
        self, connection: redis.Redis, scheduler: TaskScheduler, queue: RQJobQueue, hosts: HostFor,
        *, checkpoint_key: bytes | None, grace_s: float, name: str, data_dir: Path | None = None,
        stop: StopJob = stop_job, clock: Callable[[], float] = time.time,
    ) -> None:
        self.connection = connection
        self.scheduler = scheduler
        self.queue = queue
        self.hosts = hosts
        self.checkpoint_key = checkpoint_key
        self.grace_s = grace_s
        self.name = name
        self.data_dir = data_dir
        self._stop = stop
        self._clock = clock
        self._claim = connection.register_script(_CLAIM)
        self._take_finish = connection.register_script(_TAKE_FINISH)
        self._release_finish = connection.register_script(_RELEASE_FINISH)

    def tick(self) -> tuple[list[TaskKey], list[TaskKey]]:
        """Kill what overstayed its grace, finish what was killed: (killed, finished)."""
        return self.kill_overdue(), self.finish_stopped()

    # -- kill --------------------------------------------------------------------------------

    def kill_overdue(self) -> list[TaskKey]:
        """Claim and stop every task still live past its stop request's deadline."""
        now = self._clock()
        killed = []
        for task in controls.overdue_stops(self.connection, now):
            if controls.stop_requested(self.connection, task) is None:
                controls.forget_deadline(self.connection, task)  # honoured, or expired
                continue
            if not self.queue.is_live(task.job_id):
                if not self.scheduler.state(task):
                    # The run ended by itself before it read the request: a stale flag must not
                    # stop the task's next run at its first step.
                    controls.clear_stop(self.connection, task)
                # else: its worker is gone; the sweep finishes it (``drop_lost``)
                continue
            request = self._claim(
                keys=[controls.stop_key(task), controls.STOP_DEADLINES, claim_key(task), CLAIMS],
                args=[str(task), now, self.name, self._run_marker(task), CLAIM_TTL_S])
            if request is None:
                continue  # another worker claimed it, or the task cleared it just now
            log.warning("stopper.kill", task=str(task), request=_text(request), grace_s=self.grace_s)
            self._stop(self.connection, task.job_id)
            killed.append(task)
        return killed

    # -- finish ------------------------------------------------------------------------------

    def finish_stopped(self) -> list[TaskKey]:
        """Finish every claimed task whose job is gone; stop again one that is still live."""
        finished = []
        for member in self.connection.smembers(CLAIMS):
            try:
                task = TaskKey.parse(_text(member))
            except ValueError:
                self.connection.srem(CLAIMS, member)
                continue
            claim = read_claim(self.connection, task)
            if claim is None:
                self.connection.srem(CLAIMS, member)  # expired, or finished meanwhile
                continue
            if self.queue.is_live(task.job_id):
                self._still_live(claim)
            elif self._finish_logged(claim):
                finished.append(task)
        return finished

    def drop_lost(self, task: TaskKey) -> bool:
        """For the sweep: a lost task with a stop request pending ends stopped instead of running
        again. True when it must not be requeued (it was finished here, or is being finished)."""
        claim = read_claim(self.connection, task)
        if claim is None:
            request = controls.stop_requested(self.connection, task)
            if request is None:
                return False
            claim = Claim(task, request.kind, request.actor, "lost", "", self._clock(), "")
        self._finish_logged(claim)
        return True

    def close_lost(self, task: TaskKey) -> list[str]:
        """For the sweep, before it queues a lost task again: close the log of every run of it
        left open (its worker died); returns those run ids."""
        return self._close_runs(task, "queued", LOST_DETAIL, interrupted="lost")

    def _finish_logged(self, claim: Claim) -> bool:
        """``_finish``; a failure (GitHub down) is logged and the next pass tries again."""
        try:
            return self._finish(claim)
        except Exception as exc:
            log.warning("stopper.finish_failed", task=str(claim.task),
                        error=f"{type(exc).__name__}: {exc}"[:300])
            return False

    def _still_live(self, claim: Claim) -> None:
        run = self._run_marker(claim.task)
        if claim.run and run and run != claim.run:
            # The killed run ended and a later one (a retry) runs now: the claim is not about it.
            self._drop_claim(claim.task)
            return
        if claim.phase == "kill" and self._clock() - claim.at > KILL_RESEND_S:
            log.warning("stopper.kill_again", task=str(claim.task))
            self.connection.hset(claim_key(claim.task), "at", self._clock())
            self._stop(self.connection, claim.task.job_id)

    def _finish(self, claim: Claim) -> bool:
        """Write the final state of a stopped task, if it did not end by itself; True if written."""
        task = claim.task
        taken = self._take_finish(
            keys=[claim_key(task), CLAIMS],
            args=[str(task), self._clock(), self.name, FINISH_LEASE_S,
                  f"{claim.kind}:{claim.actor}", claim.why, CLAIM_TTL_S])
        if not taken:
            return False  # another worker is writing it
        try:
            record = self.scheduler.state(task)
            if record.get("state") != "dispatched" or self._ended_by_itself(task):
                # Its own `finally` ran (or a new run waits): what it wrote stands.
                log.info("stopper.ended_by_itself", task=str(task))
                self._drop_claim(task)
                return False
            if self.queue.is_live(task.job_id):  # it came back (a requeue raced us): not now
                self._release_finish(keys=[claim_key(task)], args=[self.name])
                return False
            if claim.why == "grace" and not self._stopped_by_rq(task):
                # The stop command found no worker: the one running the job had died.
                claim = replace(claim, why="lost")
            self._write_final(claim, record)
            controls.clear_stop(self.connection, task)
            self.connection.delete(heartbeat_key(task.job_id))
            self.scheduler.finish(task)
            self._drop_claim(task)
        except Exception:
            self._release_finish(keys=[claim_key(task)], args=[self.name])
            raise
        log.warning("stopper.finished", task=str(task), kind=claim.kind, actor=claim.actor,
                    why=claim.why)
        advance(self.scheduler, self.queue)  # its slot is free: the next task starts
        return True

    def _ended_by_itself(self, task: TaskKey) -> bool:
        return job_state(self.connection, task.job_id) == "finished"

    def _stopped_by_rq(self, task: TaskKey) -> bool:
        return job_state(self.connection, task.job_id) in ("stopped", "canceled")

    def _write_final(self, claim: Claim, record: dict[str, str]) -> None:
        """The status comment (final state, re-signed checkpoint), then the state label."""
        task = claim.task
        payload = self.scheduler.payload(task)
        installation = payload.installation_id if payload else record.get("installation")
        host = self.hosts(task, int(installation) if installation else None)
        move = lifecycle.transition("running", "stopped_cancel" if claim.kind == "cancel"
                                    else "stopped_pause")
        assert isinstance(move, lifecycle.Move)  # the table moves every running task so
        state = move.to
        tracker = IssueTracker(host, task, self.checkpoint_key,
                               comment_id=payload.status_comment if payload else None)
        checkpoint = resigned(task, tracker.status_body(), state, self.checkpoint_key)
        detail = final_detail(task, claim, self.grace_s, checkpoint)
        tracker.write(final_view(task, state, detail, checkpoint, self.checkpoint_key))
        tracker.set_state(state)
        how = "killed" if claim.why == "grace" else "lost"
        if not self._close_runs(task, state, detail, interrupted=how):
            # No run of it is open (it was killed before its run started, or its log is on
            # another machine and gone from the stream): the final state is still recorded.
            self._close_runs(task, state, detail, interrupted=how, runs={new_run_id(): 0})

    def _close_runs(self, task: TaskKey, state: status.State, detail: str, *, interrupted: str,
                    runs: dict[str, int] | None = None) -> list[str]:
        """Write ``run_finished`` for each run left open (or for ``runs``: id → seq to follow);
        best effort, the issue is the record. Returns the runs closed."""
        if self.data_dir is None:
            return []
        closed = []
        try:
            for run, seq in (open_runs(self._events(task)) if runs is None else runs).items():
                EventLog(self.data_dir, task, run, redis=self.connection, after_seq=seq).emit(
                    "run_finished", state=state, detail=detail, interrupted=interrupted)
                closed.append(run)
        except (OSError, ValueError) as exc:
            log.warning("stopper.event_failed", task=str(task), error=f"{type(exc).__name__}: {exc}")
        if closed:
            log.info("stopper.runs_closed", task=str(task), runs=closed, state=state,
                     interrupted=interrupted)
        return closed

    def _events(self, task: TaskKey) -> list[Event]:
        """The task's events in this machine's file, then those only the Redis stream holds (a
        run on another machine); a Redis failure leaves just the file's."""
        assert self.data_dir is not None
        events = read_events(self.data_dir, task)
        seen = {(e.run, e.seq) for e in events}
        last = "0-0"
        try:
            while True:
                batch, after = tail(self.connection, task, last, block_ms=None)
                events += [e for e in batch if (e.run, e.seq) not in seen]
                if after == last:
                    return events
                last = after
        except redis.RedisError as exc:
            log.warning("stopper.stream_unreadable", task=str(task), error=type(exc).__name__)
            return events

    def _drop_claim(self, task: TaskKey) -> None:
        with self.connection.pipeline(transaction=True) as pipe:
            pipe.delete(claim_key(task))
            pipe.srem(CLAIMS, str(task))
            pipe.execute()

    def _run_marker(self, task: TaskKey) -> str:
        return job_enqueued_at(self.connection, task.job_id)


def final_detail(task: TaskKey, claim: Claim, grace_s: float, checkpoint: Checkpoint | None) -> str:
    """What the status comment says about a task stopped from outside, and what to type next."""
    verb = "Cancelled" if claim.kind == "cancel" else "Paused"
    if claim.why == "grace":
        how = f"the run did not stop within {grace_s:g}s and was stopped."
    else:
        how = "its worker was lost before it could stop, so it was not started again."
    kept = f" Work that passed the tests is on branch `{task.branch}`." \
        if checkpoint is not None and checkpoint.head_sha else ""
    go_on = "retry" if claim.kind == "cancel" else "resume"
    return f"{verb} by @{claim.actor}; {how}{kept} Say `/nightcrew {go_on}` to go on."


def stopper_for(settings: Settings, connection: redis.Redis, scheduler: TaskScheduler,
                queue: RQJobQueue, *, name: str) -> Stopper:
    """The worker's stopper, wired from settings."""
    return Stopper(connection, scheduler, queue, wiring.hosts(settings),
                   checkpoint_key=wiring.checkpoint_key(settings), grace_s=settings.stop_grace_s,
                   name=name, data_dir=settings.data_dir.resolve())


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
