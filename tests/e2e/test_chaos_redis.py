"""Chaos: restart Redis, and FLUSHALL it, under 20 queued tasks; every task still finishes once.

The whole system runs as in ``tests/e2e/test_chaos.py`` (embedded Redis, the GitHub stand-in,
the adaptive Messages server, the web app), here with two workers and at most two tasks running
fleet-wide, so 18 of the 20 wait in the scheduler when Redis is hit. The moment is chosen by
events, not by time: the first model request of each running task is held, so both slots are
busy mid-run and no task can finish before all 20 are queued; Redis is hit, then they go on:

- ``restart``: the embedded Redis is stopped (SIGTERM, so its append-only file is flushed) and
  started again on the same directory; the workers reconnect and carry on from what it kept.
- ``flushall``: everything in Redis is gone (the scheduler's queue, RQ's jobs, the inbox, the
  ``nc:reconciled`` mark); the tasks survive only on the tracker, and the first worker to run its
  maintenance pass reconciles them back from their signed status comments.

Counted (a ``CHAOS-REDIS`` line; appended as JSON to ``$NIGHTCREW_CHAOS_REPORT`` when set): lost
tasks (never labeled done with a PR), duplicated PRs, status comments and commits.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pytest

from github_app.tasks import TaskKey
from github_app.tracker.status import LABELS, MARKER
from runner.cli.demo import DEMO_FILES, OWNER, REPO
from tests.e2e.chaos_harness import ChaosHarness, report

pytestmark = pytest.mark.e2e

TASKS = 20
WORKERS = 2
MAX_RUNNING = 2
STALL_S = 60.0  # nothing moved for this long (no task queued, no model call, none done): stuck
REDIS_DOWN_S = 1.0  # how long the restarted Redis stays away: the workers see a real outage
ACTIVE = frozenset({LABELS["queued"], LABELS["running"]})
CONFIG = ".github/nightcrew.yml"


@dataclass
class RedisTally:
    """What one Redis disruption lost or did twice, over all the tasks."""

    mode: str
    tasks: int = TASKS
    finished: int = 0
    lost: int = 0
    duplicated_prs: int = 0
    duplicated_comments: int = 0
    duplicated_commits: int = 0
    seconds: float = 0.0  # the disruption → the last task done (or the timeout)
    running_at_disruption: list[int] = field(default_factory=list)
    max_running_seen: int = 0  # most issues labeled running at once after the disruption
    model_requests: int = 0  # 5 per task undisturbed
    problems: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (f"CHAOS-REDIS {self.mode}: tasks={self.tasks} finished={self.finished} "
                f"lost={self.lost} duplicated_prs={self.duplicated_prs} "
                f"duplicated_comments={self.duplicated_comments} "
                f"duplicated_commits={self.duplicated_commits} seconds={self.seconds:.1f} "
                f"running_at_disruption={self.running_at_disruption} "
                f"max_running_seen={self.max_running_seen} "
                f"model_requests={self.model_requests}")


def _files() -> dict[str, str]:
    """The demo repository, two of its tasks allowed to run at once (the demo allows one)."""
    config = DEMO_FILES[CONFIG]
    assert "per_repository: 1" in config
    return {**DEMO_FILES, CONFIG: config.replace("per_repository: 1", f"per_repository: {MAX_RUNNING}")}


def _status_comments(issue: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for c in issue["comments"] if MARKER in c["body"]]


def _issues(h: ChaosHarness, numbers: list[int]) -> dict[int, dict[str, Any]]:
    return {n: h.hub.issue(OWNER, REPO, n) for n in numbers}


class Progress:
    """Watches the issues until a condition holds, or nothing moved for ``STALL_S``: no issue
    queued, no model request, no task done. Waiting on what the system does, not on a clock,
    holds on a loaded machine (a task takes ~7 s alone, several times that under load)."""

    def __init__(self, h: ChaosHarness, numbers: list[int]) -> None:
        self.h, self.numbers = h, numbers
        self.issues: dict[int, dict[str, Any]] = {}
        self.moved: tuple[int, ...] = ()
        self.last_change = time.monotonic()
        self.max_running = 0
        self.stalled = False

    def wait(self, what: str, done: Callable[[Progress], bool]) -> bool:
        """Poll until ``done(self)`` (True) or a stall (False); fail at once when a process died."""
        self.last_change, self.stalled = time.monotonic(), False
        while not self.stalled:
            for proc in [*self.h.workers, *([self.h.web] if self.h.web else [])]:
                if proc.proc.poll() is not None:
                    pytest.fail(f"{what}: {proc.name} exited with {proc.proc.returncode} "
                                f"(logs under {self.h.root})\n{self.h.logs()}", pytrace=False)
            self._look()
            if done(self):
                return True
            self.stalled = time.monotonic() - self.last_change > STALL_S
            time.sleep(0.25)
        return False

    def _look(self) -> None:
        self.issues = _issues(self.h, self.numbers)
        self.max_running = max(self.max_running, len(self.running()))
        moved = (self.queued(), self.h.model.arrivals, self.done())
        if moved != self.moved:
            self.moved, self.last_change = moved, time.monotonic()

    def queued(self) -> int:
        """Issues with their status comment and a queued or running label."""
        return sum(bool(_status_comments(i)) and bool(ACTIVE & set(i["labels"]))
                   for i in self.issues.values())

    def running(self) -> list[int]:
        return sorted(n for n, i in self.issues.items() if LABELS["running"] in i["labels"])

    def done(self) -> int:
        return sum(LABELS["done"] in i["labels"] for i in self.issues.values())


def _tally(h: ChaosHarness, mode: str, numbers: list[int]) -> RedisTally:
    tally = RedisTally(mode)
    pulls = h.hub.pulls(OWNER, REPO)
    heads = {TaskKey(OWNER, REPO, n).branch for n in numbers}
    strays = [p["head"] for p in pulls if p["head"] not in heads]
    if strays:
        tally.problems.append(f"PRs on other heads: {strays}")
    for number, issue in _issues(h, numbers).items():
        task = TaskKey(OWNER, REPO, number)
        status = _status_comments(issue)
        tally.duplicated_comments += max(0, len(status) - 1)
        if len(status) != 1:
            tally.problems.append(f"#{number}: {len(status)} status comments (want 1)")
        elif status[0]["user"] != h.hub.bot.login:
            tally.problems.append(f"#{number}: the status comment is not the App's")
        mine = [p for p in pulls if p["head"] == task.branch]
        tally.duplicated_prs += max(0, len(mine) - 1)
        if len(mine) != 1:
            tally.problems.append(f"#{number}: {len(mine)} PRs with head {task.branch} (want 1)")
        commits, repeated = h.branch_commits(task)
        tally.duplicated_commits += repeated
        if repeated:
            tally.problems.append(f"#{number}: duplicated commits on {task.branch}: {commits}")
        labels = set(issue["labels"])
        if LABELS["done"] in labels and mine:
            tally.finished += 1
            stale = labels & {LABELS["queued"], LABELS["running"], LABELS["failed"]}
            if stale:
                tally.problems.append(f"#{number}: stale state labels {sorted(labels)}")
        else:
            tally.lost += 1
            tally.problems.append(f"#{number}: never finished: labels {sorted(labels)}, "
                                  f"{len(mine)} PRs")
    tally.model_requests = len(h.model.moves)
    tally.problems += h.contract_problems()[1]
    return tally


def _report(tally: RedisTally) -> None:
    report(tally.line(), asdict(tally))


@pytest.mark.timeout(600)
@pytest.mark.parametrize("mode", ["restart", "flushall"])
def test_redis_disruption_under_queued_tasks_loses_nothing(mode: str, tmp_path: Path) -> None:
    env = {"NIGHTCREW_MAX_RUNNING": str(MAX_RUNNING)}
    with ChaosHarness(tmp_path, _files(), extra_env=env) as h:
        while len(h.workers) < WORKERS:
            h.start_worker()
        # A task asks the model first for its plan, and waits for it: the first MAX_RUNNING
        # requests are the running tasks' plans, held over the disruption.
        for index in range(MAX_RUNNING):
            h.model.hold(index)
        numbers = h.trigger_many(TASKS)
        assert len(set(numbers)) == TASKS
        progress = Progress(h, numbers)
        # Both slots busy mid-run (two runs whose Redis records vanish), all others queued.
        if not progress.wait("all tasks queued, two held mid-run", lambda p: p.queued() == TASKS
                             and h.model.arrived(MAX_RUNNING - 1, timeout=0)):
            pytest.fail(f"not every task was queued with {MAX_RUNNING} running (nothing moved for "
                        f"{STALL_S:.0f}s): { {n: i['labels'] for n, i in progress.issues.items()} }"
                        f"\n{h.logs()}", pytrace=False)
        running = progress.running()
        started = time.monotonic()
        if mode == "restart":
            h.restart_redis(REDIS_DOWN_S)
        else:
            h.flush_redis()
        h.model.release()  # the held plans are answered: the two runs go on
        progress.wait("all tasks done", lambda p: p.done() == TASKS)
        seconds = time.monotonic() - started
        h.hub.wait_deliveries(timeout=10)
        tally = _tally(h, mode, numbers)
        tally.seconds = seconds
        tally.running_at_disruption = running
        tally.max_running_seen = progress.max_running
        if len(running) != MAX_RUNNING:
            tally.problems.append(f"running at the disruption: {running} (want {MAX_RUNNING})")
        if progress.stalled:
            tally.problems.append(f"nothing moved in the last {STALL_S:.0f}s: stopped waiting")
        _report(tally)
        if tally.problems or tally.lost or tally.duplicated_prs or tally.duplicated_comments:
            pytest.fail(f"{tally.line()}\n  " + "\n  ".join(tally.problems)
                        + f"\nlogs under {h.root}\n{h.logs()}", pytrace=False)
