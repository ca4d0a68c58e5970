"""Chaos: a maintainer says ``/nightcrew cancel`` at each phase of a task, and the task ends in a
clean, clearly reported state — whether it stopped itself at a step boundary, was taken off the
queue, or overstayed the grace period and was killed and finished from outside.

The whole system runs as processes (``ChaosHarness``: embedded Redis, the GitHub stand-in, the
Messages server, the web app, ONE worker: while it runs the task, the cancel's intake job goes
to the intake helper every ``nightcrew worker`` runs beside it). The cancel is a comment on the
issue, delivered as a signed webhook through the web app, as a person's would be. Phases (one repository each, so
each has its own setup and test command; one harness for all, to keep the wall time small):

- ``queued``: a second task waits behind the first (one slot); it is dequeued at once.
- ``setup``: the setup command sleeps far longer than the grace → killed in setup.
- ``tests``: the test command hangs in the tests before any change → killed, never at a boundary.
- ``model_call``: a model request held after the first green checkpoint → killed mid-request;
  then ``/nightcrew retry`` resumes from the re-signed checkpoint and opens exactly one PR.
- ``lost_worker``: the worker running the task is SIGKILLed, then the cancel comes while the
  fleet cannot yet tell (its heartbeat is held fresh, as a production TTL would keep it, until the
  cancel is recorded; then it lapses) → the sweep that finds the lost job ends the task cancelled
  instead of running it again, and closes the lost run's event log.
- ``between_steps``: the held request is answered once the cancel is recorded → the task stops
  itself at the next step boundary, within the grace, and is not touched from outside.

Counted per phase and printed as a ``CANCEL`` line (appended as JSON to $NIGHTCREW_CHAOS_REPORT):
the final labels, status comments, PRs, live RQ jobs, scheduler records, heartbeat keys, stop
requests, processes and checkouts of the run left behind, the branch's commits and duplicates,
and the event log: every run closed exactly once, the fleet's closings saying how the run ended.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pytest
from redis import Redis
from rq import Queue, Worker

from github_app.ingress.inbox import INBOX_KEY, PUMPING_PREFIX
from github_app.queue import controls
from github_app.queue.jobqueue import INTAKE_QUEUE, RQJobQueue, heartbeat_key
from github_app.queue.scheduler import TaskScheduler
from github_app.queue.stopper import claim_key
from github_app.tasks import TaskKey
from github_app.tracker.eventlog import read_events
from github_app.tracker.status import MARKER
from runner.cli.demo import DEMO_ISSUE_BODY, DEMO_ISSUE_TITLE, OWNER
from runner.workspace import Workspaces
from tests.e2e.chaos_harness import (
    ChaosHarness,
    _cmdline,
    _pids,
    _read,
    _tree,
    repo_files,
    report,
    without_self_review,
)

pytestmark = pytest.mark.e2e

GRACE_S = 3
SETUP_SLEEP = "61.3"  # far longer than the grace; distinct, so the process is recognisably it
TEST_SLEEP = "62.7"
ACTIVE_LABELS = frozenset({"nightcrew:queued", "nightcrew:running", "nightcrew:done",
                           "nightcrew:failed", "nightcrew:paused"})
CHECKPOINT_SUBJECT = "nightcrew: checkpoint of #{n} (tests pass)"


@dataclass
class Count:
    """What one cancelled task left behind; every number but ``commits`` should be zero."""

    phase: str
    how: str = ""  # dequeued | honoured | killed: how the task ended, read off its status
    final_s: float | None = None  # the cancel comment → the final state
    labels: list[str] = field(default_factory=list)
    status_comments: int = 0
    prs: int = 0
    live_jobs: int = 0
    scheduler_records: int = 0
    heartbeats: int = 0
    stop_requests: int = 0
    processes: int = 0  # processes of the run (its sandboxed command, or naming its checkout)
    checkouts: int = 0  # the run's checkout directories still on disk
    commits: int = 0
    duplicated_commits: int = 0
    problems: list[str] = field(default_factory=list)

    def line(self) -> str:
        final = "never" if self.final_s is None else f"{self.final_s:.1f}s"
        return (f"CANCEL {self.phase}: how={self.how} final={final} status_comments="
                f"{self.status_comments} prs={self.prs} live_jobs={self.live_jobs} scheduler="
                f"{self.scheduler_records} heartbeats={self.heartbeats} stop_requests="
                f"{self.stop_requests} processes={self.processes} checkouts={self.checkouts} "
                f"commits={self.commits} duplicated_commits={self.duplicated_commits} "
                f"labels={','.join(self.labels)}")


class Cancels:
    """The harness, seen as a maintainer and an operator: issues in several repositories."""

    def __init__(self, h: ChaosHarness) -> None:
        self.h = h
        self.redis = Redis(unix_socket_path=str(h.redis.socket_path))
        # Liveness as the workers judge it: a started job counts as live this long without a beat.
        ttl = float(h.env["NIGHTCREW_HEARTBEAT_TTL"])
        self.queue = RQJobQueue(self.redis, heartbeat_grace_s=ttl + 10.0)
        self.scheduler = TaskScheduler(self.redis)
        self.roots = Workspaces(h.data_dir.resolve()).roots()

    def repo(self, name: str, *, setup: list[str] | None = None, test: str | None = None) -> str:
        self.h.hub.create_repo(OWNER, name, without_self_review(repo_files(setup=setup, test=test)))
        return name

    def trigger(self, repo: str) -> TaskKey:
        number = self.h.hub.create_issue(OWNER, repo, DEMO_ISSUE_TITLE, DEMO_ISSUE_BODY)
        self.h.hub.add_label(OWNER, repo, number, "nightcrew")
        return TaskKey(OWNER, repo, number)

    def say(self, task: TaskKey, command: str) -> float:
        """A maintainer comments on the issue (a signed webhook through the web app)."""
        self.h.hub.add_comment(OWNER, task.repo, task.number, command)
        return time.monotonic()

    def issue(self, task: TaskKey) -> dict[str, Any]:
        return self.h.hub.issue(OWNER, task.repo, task.number)

    def labels(self, task: TaskKey) -> set[str]:
        return set(self.issue(task)["labels"])

    def wait(self, what: str, check: Callable[[], bool], timeout: float = 60.0) -> None:
        try:
            self.h.wait_until(what, check, timeout)
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}\n{self.diagnosis()}") from None

    def diagnosis(self) -> str:
        """Where the queues and workers stand, for a failure message."""
        workers = [(w.name, w.get_state(), w.get_current_job_id())
                   for w in Worker.all(connection=self.redis)]
        pumping = {_text(k): self.redis.llen(k) for k in self.redis.scan_iter(f"{PUMPING_PREFIX}*")}
        intake = Queue(INTAKE_QUEUE, connection=self.redis)
        return (f"workers={workers} inbox={self.redis.llen(INBOX_KEY)} pumping={pumping} "
                f"intake_queue={intake.count} intake_jobs={intake.job_ids[:5]} "
                f"stops={[_text(m) for m in self.redis.zrange(controls.STOP_DEADLINES, 0, -1)]}")

    def settled(self, task: TaskKey) -> bool:
        """Cancelled on the issue and nothing of it left in Redis."""
        return ("nightcrew:cancelled" in self.labels(task) and not self.scheduler.state(task)
                and not self.queue.is_live(task.job_id)
                and not self.redis.exists(heartbeat_key(task.job_id)))

    def cancel(self, task: TaskKey, timeout: float = 60.0) -> float:
        """``/nightcrew cancel``; waits for the final state, returns the seconds it took."""
        said = self.say(task, "/nightcrew cancel")
        self.wait(f"{task} cancelled", lambda: self.settled(task), timeout)
        return time.monotonic() - said

    def running(self, argv: list[str]) -> list[int]:
        """Processes anywhere on this machine with exactly this argv."""
        return [pid for pid in _pids() if _cmdline(pid) == argv]

    def of_run(self, task: TaskKey) -> list[int]:
        """Processes naming the task's checkout (argv or environment), e.g. bwrap, git."""
        paths = [str(root / task.job_id) for root in self.roots]
        found = []
        for pid in _pids():
            if pid == os.getpid():
                continue
            blob = _read(pid, "cmdline") + b"\0" + _read(pid, "environ")
            if any(p.encode() + tail in blob for p in paths for tail in (b"\0", b"/", b".git")):
                found.append(pid)
        return found

    def count(self, phase: str, task: TaskKey, final_s: float | None, *, how: str,
              argv: list[str] | None = None, pr: bool = False,
              interrupted: dict[str, int] | None = None) -> Count:
        """Everything the cancelled task left, against what a clean cancel leaves.

        ``interrupted``: the runs the fleet closed, by how they ended (default: the one run a
        kill or a lost worker ended, none otherwise).
        """
        count = Count(phase, final_s=final_s)
        issue = self.issue(task)
        count.labels = sorted(issue["labels"])
        if "nightcrew:cancelled" not in issue["labels"] and not pr:
            count.problems.append("no nightcrew:cancelled label")
        stale = set(issue["labels"]) & (ACTIVE_LABELS - ({"nightcrew:done"} if pr else set()))
        if stale:
            count.problems.append(f"stale state labels {sorted(stale)}")
        statuses = [c for c in issue["comments"] if MARKER in c["body"]]
        count.status_comments = len(statuses)
        if len(statuses) != 1:
            count.problems.append(f"{len(statuses)} status comments (want 1)")
        body = statuses[-1]["body"] if statuses else ""
        if statuses and statuses[-1]["user"] != self.h.hub.bot.login:
            count.problems.append("the status comment is not the App's")
        count.how = ("killed" if "did not stop within" in body else
                     "lost" if "worker was lost" in body else
                     "dequeued" if "while queued" in body else
                     "pr" if "pull request opened" in body else "honoured")
        if count.how != how:
            count.problems.append(f"ended {count.how}, expected {how}")
        if not pr and not ("🛑 **cancelled**" in body and "by @octocat" in body.lower()
                           and "`/nightcrew retry`" in body):
            count.problems.append(f"the status does not say cancelled, by whom, and retry: {body!r}")
        pulls = [p for p in self.h.hub.pulls(OWNER, task.repo) if p["head"] == task.branch]
        count.prs = len(pulls)
        if count.prs != (1 if pr else 0):
            count.problems.append(f"{count.prs} PRs (want {1 if pr else 0})")
        count.live_jobs = int(self.queue.is_live(task.job_id))
        count.scheduler_records = int(bool(self.scheduler.state(task)))
        count.heartbeats = int(bool(self.redis.exists(heartbeat_key(task.job_id))))
        count.stop_requests = int(controls.stop_requested(self.redis, task) is not None
                                  or controls.stop_deadline(self.redis, task) is not None
                                  or bool(self.redis.exists(claim_key(task))))
        for name in ("live_jobs", "scheduler_records", "heartbeats", "stop_requests"):
            if getattr(count, name):
                count.problems.append(f"{name} left: {getattr(count, name)}")
        pids = set(self.of_run(task)) | set(self.running(argv) if argv else [])
        count.processes = len(pids)
        if pids:
            count.problems.append(f"processes of the run left: "
                                  f"{[(pid, _cmdline(pid)) for pid in sorted(pids)]}")
        left = [root / name for root in self.roots for name in (task.job_id, f"{task.job_id}.git")
                if (root / name).exists()]
        count.checkouts = len(left)
        if left:
            count.problems.append(f"checkouts left: {left}")
        commits, count.duplicated_commits = self.h.branch_commits(task)
        count.commits = len(commits)
        if count.duplicated_commits:
            count.problems.append(f"duplicated commits: {commits}")
        green = CHECKPOINT_SUBJECT.format(n=task.number)
        if not pr and any(not c.endswith(green) for c in commits):
            count.problems.append(f"commits that are not green checkpoints: {commits}")
        events = read_events(self.h.data_dir, task)
        for run in {e.run for e in events if e.kind == "run_started"}:
            ends = sum(1 for e in events if e.run == run and e.kind == "run_finished")
            if ends != 1:  # a killed or lost run's end is written by the fleet
                count.problems.append(f"run {run} has {ends} run_finished events (want 1)")
        closed = Counter(str(e.data["interrupted"]) for e in events
                         if e.kind == "run_finished" and "interrupted" in e.data)
        wanted = interrupted if interrupted is not None else (
            {how: 1} if how in ("killed", "lost") else {})
        if dict(closed) != wanted:
            count.problems.append(f"runs closed by the fleet {dict(closed)}, want {wanted}")
        gaps, problems = self.h.contract_problems()
        count.problems += problems
        return count

    def kill_busy_worker(self) -> None:
        """SIGKILL the worker running the task (its horse, sandbox and intake helper too)."""
        busy = [w for w in self.h.workers if w.proc.poll() is None and _horses(w.proc.pid)]
        assert len(busy) == 1, f"{len(busy)} busy workers"
        pumps = self.blocked_pumps()  # the pumps of the workers alive now (its and its helper's)
        self.h.kill_lineage(busy[0])
        # Each pump is blocked in BLMOVE; a dead one whose connection lingered (a fork of it
        # still holding the socket) would still take an inbox entry and keep it for the dead
        # worker until the fleet stops counting that worker as live (over a minute).
        deadline = time.monotonic() + 10
        while pumps & self.blocked_pumps():
            assert time.monotonic() < deadline, "the killed worker's Redis connections stay open"
            time.sleep(0.05)

    def blocked_pumps(self) -> set[int]:
        """Ids of the Redis clients waiting in an inbox pump's BLMOVE."""
        return {int(client["id"]) for client in self.redis.client_list()
                if client.get("cmd") == "blmove"}

    def idle_workers(self) -> bool:
        """No worker has a work-horse (or anything else) under it."""
        return not any(_horses(w.proc.pid) for w in self.h.workers)


def _horses(worker: int) -> list[int]:
    """What runs under a worker besides its intake helper (and the helper's own children)."""
    helpers = [pid for pid in _tree(worker)[1:] if "--intake-only" in _cmdline(pid)]
    theirs = {pid for helper in helpers for pid in _tree(helper)}
    return [pid for pid in _tree(worker)[1:] if pid not in theirs]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _report(count: Count) -> None:
    report(count.line(), asdict(count))


@pytest.mark.timeout(400)
def test_cancel_at_each_phase_leaves_a_clean_state_and_a_clear_final_status(tmp_path: Path) -> None:
    started = time.monotonic()
    env = {"NIGHTCREW_STOP_GRACE_S": str(GRACE_S), "NIGHTCREW_MAX_RUNNING": "1"}
    counts: list[Count] = []
    with ChaosHarness(tmp_path, extra_env=env) as h:
        c = Cancels(h)
        repos = {
            "setup": c.repo("cancel-setup", setup=[f"sleep {SETUP_SLEEP}"]),
            "tests": c.repo("cancel-tests", test=f"sleep {TEST_SLEEP} && python -m pytest -q"),
            "model_call": c.repo("cancel-model"),
            "lost_worker": c.repo("cancel-lost"),
            "between_steps": c.repo("cancel-steps"),
        }

        # -- setup: the setup command sleeps; killed after the grace, in the sandbox --------------
        task = c.trigger(repos["setup"])
        c.wait("setup to run", lambda: bool(c.running(["sleep", SETUP_SLEEP])))
        took = c.cancel(task)
        counts.append(c.count("setup", task, took, how="killed", argv=["sleep", SETUP_SLEEP]))

        # -- tests: the tests before any change hang; they never reach a step boundary ------------
        task = c.trigger(repos["tests"])
        c.wait("the tests to run", lambda: bool(c.running(["sleep", TEST_SLEEP])))
        took = c.cancel(task)
        counts.append(c.count("tests", task, took, how="killed", argv=["sleep", TEST_SLEEP]))

        # -- model_call (+ queued): held after the first green checkpoint; a second task waits ----
        first = h.model.arrivals  # requests: 0 plan, 1 edit, 2 run_tests (green → commit), 3 …
        h.model.hold(first + 3)
        task = c.trigger(repos["model_call"])
        c.wait("the held model call", lambda: h.model.arrived(first + 3, timeout=0), timeout=90)
        waiting = c.trigger(repos["model_call"])  # one slot: it stays queued
        c.wait("the second task to queue", lambda: "nightcrew:queued" in c.labels(waiting)
               and c.scheduler.state(waiting).get("state") == "pending")
        took = c.cancel(waiting)
        counts.append(c.count("queued", waiting, took, how="dequeued"))
        took = c.cancel(task)
        h.model.release(first + 3, drop=True)  # the killed run's request, never answered
        c.wait("the workers to be idle", c.idle_workers, timeout=10)
        counts.append(c.count("model_call", task, took, how="killed"))
        if counts[-1].commits != 1:
            counts[-1].problems.append(f"{counts[-1].commits} commits (want the one green checkpoint)")
        # The state was clean: a retry resumes from the re-signed checkpoint, one PR.
        said = c.say(task, "/nightcrew retry")
        c.wait("the retried task to open its PR", lambda: "nightcrew:done" in c.labels(task),
               timeout=120)
        h.hub.wait_deliveries(timeout=10)
        c.wait("the retried run to end", lambda: not c.scheduler.state(task)
               and not c.queue.is_live(task.job_id), timeout=20)
        counts.append(c.count("model_call_retry", task, time.monotonic() - said, how="pr", pr=True,
                              interrupted={"killed": 1}))  # the first run's
        if "return a + b" not in h.hub.file_at(OWNER, task.repo, task.branch, "calc.py"):
            counts[-1].problems.append("the fix is not on the task branch")
        starts = [e for e in read_events(h.data_dir, task) if e.kind == "run_started"]
        if not starts or starts[-1].data.get("resumed") is not True:
            counts[-1].problems.append("the retry did not resume from the re-signed checkpoint")

        # -- lost_worker: the worker dies, then the cancel comes: it must not run again ---------
        first = h.model.arrivals
        h.model.hold(first + 1)
        task = c.trigger(repos["lost_worker"])
        c.wait("the held model call", lambda: h.model.arrived(first + 1, timeout=0), timeout=90)
        c.kill_busy_worker()  # no worker is left: nothing can sweep before the hold is in place
        lapse = h.hold_heartbeat(task)  # the fleet cannot tell yet, so the cancel lands in time
        h.model.release(first + 1, drop=True)
        h.start_worker()
        said = c.say(task, "/nightcrew cancel")
        c.wait("the cancel to be recorded",
               lambda: controls.stop_requested(c.redis, task) is not None)
        held = c.scheduler.state(task).get("state")  # "dispatched": not queued again meanwhile
        lapse()
        # The sweep finds the lost job (no heartbeat) and drops the task instead of requeueing it.
        c.wait(f"{task} cancelled", lambda: c.settled(task))
        took = time.monotonic() - said
        counts.append(c.count("lost_worker", task, took, how="lost"))
        runs = {e.run for e in read_events(h.data_dir, task) if e.kind == "run_started"}
        if held != "dispatched" or len(runs) != 1:
            counts[-1].problems.append(f"at the cancel the task was {held!r} (want 'dispatched'), "
                                       f"{len(runs)} runs started (want 1: it never ran again)")

        # -- between_steps: the cancel is recorded during a model call that is then answered -----
        first = h.model.arrivals
        h.model.hold(first + 1)
        task = c.trigger(repos["between_steps"])
        c.wait("the held model call", lambda: h.model.arrived(first + 1, timeout=0), timeout=90)
        said = c.say(task, "/nightcrew cancel")
        c.wait("the cancel to be recorded",
               lambda: controls.stop_requested(c.redis, task) is not None)
        h.model.release(first + 1)  # answered: the step ends, the next one sees the request
        c.wait(f"{task} cancelled", lambda: c.settled(task))
        counts.append(c.count("between_steps", task, time.monotonic() - said, how="honoured"))

        for count in counts:
            _report(count)
        problems = [f"{count.phase}: {p}" for count in counts for p in count.problems]
        elapsed = time.monotonic() - started
        print(f"CANCEL total: phases={len(counts)} problems={len(problems)} wall={elapsed:.0f}s")
        if problems:
            pytest.fail("\n".join([*(c.line() for c in counts), *problems, h.logs(60)]), pytrace=False)
