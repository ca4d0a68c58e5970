"""Chaos: restart Redis, and FLUSHALL it, under 20 queued tasks; every task still finishes once.

The whole system runs as in ``tests/e2e/test_chaos.py`` (embedded Redis, the GitHub stand-in,
the adaptive Messages server, the web app), here with two workers and at most two tasks running
fleet-wide, so 18 of the 20 wait in the scheduler when Redis is hit:

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
QUEUED_WITHIN_S = 90.0
BOTH_RUNNING_S = 15.0
STALL_S = 60.0  # no task finished for this long (one takes ~7 s): stuck, stop waiting
FINISH_WITHIN_S = 240.0
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


def _poll(h: ChaosHarness, what: str, check: Any, timeout: float) -> bool:
    """Poll ``check`` until true (True) or the timeout (False); fail at once when a process died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in [*h.workers, *([h.web] if h.web else [])]:
            if proc.proc.poll() is not None:
                pytest.fail(f"{what}: {proc.name} exited with {proc.proc.returncode} "
                            f"(logs under {h.root})\n{h.logs()}", pytrace=False)
        if check():
            return True
        time.sleep(0.25)
    return False


def _all_queued(h: ChaosHarness, numbers: list[int]) -> bool:
    """Every issue has its status comment and a queued/running label; one is running."""
    issues = _issues(h, numbers)
    settled = all(_status_comments(i) and ACTIVE & set(i["labels"]) for i in issues.values())
    return settled and any(LABELS["running"] in i["labels"] for i in issues.values())


def _running(h: ChaosHarness, numbers: list[int]) -> list[int]:
    return sorted(n for n, i in _issues(h, numbers).items() if LABELS["running"] in i["labels"])


class Progress:
    """Watches the issues until all are done or none finished for ``STALL_S``."""

    def __init__(self, h: ChaosHarness, numbers: list[int]) -> None:
        self.h, self.numbers = h, numbers
        self.done = 0
        self.last_change = time.monotonic()
        self.max_running = 0
        self.stalled = False

    def check(self) -> bool:
        issues = _issues(self.h, self.numbers).values()
        done = sum(LABELS["done"] in i["labels"] for i in issues)
        self.max_running = max(self.max_running,
                               sum(LABELS["running"] in i["labels"] for i in issues))
        if done != self.done:
            self.done, self.last_change = done, time.monotonic()
        self.stalled = time.monotonic() - self.last_change > STALL_S
        return done == len(self.numbers) or self.stalled


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


@pytest.mark.timeout(420)
@pytest.mark.parametrize("mode", ["restart", "flushall"])
def test_redis_disruption_under_queued_tasks_loses_nothing(mode: str, tmp_path: Path) -> None:
    env = {"NIGHTCREW_MAX_RUNNING": str(MAX_RUNNING)}
    with ChaosHarness(tmp_path, _files(), extra_env=env) as h:
        while len(h.workers) < WORKERS:
            h.start_worker()
        numbers = h.trigger_many(TASKS)
        assert len(set(numbers)) == TASKS
        if not _poll(h, "all tasks queued", lambda: _all_queued(h, numbers), QUEUED_WITHIN_S):
            pytest.fail(f"not every task was queued (one running) within {QUEUED_WITHIN_S}s: "
                        f"{ {n: i['labels'] for n, i in _issues(h, numbers).items()} }\n{h.logs()}",
                        pytrace=False)
        # Both slots busy makes the harder case (two runs whose Redis records vanish); one is
        # enough when the second worker is still busy with intake.
        _poll(h, "two tasks running", lambda: len(_running(h, numbers)) >= MAX_RUNNING, BOTH_RUNNING_S)
        running = _running(h, numbers)
        started = time.monotonic()
        if mode == "restart":
            h.restart_redis(REDIS_DOWN_S)
        else:
            h.flush_redis()
        progress = Progress(h, numbers)
        _poll(h, "all tasks done", progress.check, FINISH_WITHIN_S)
        seconds = time.monotonic() - started
        h.hub.wait_deliveries(timeout=10)
        tally = _tally(h, mode, numbers)
        tally.seconds = seconds
        tally.running_at_disruption = running
        tally.max_running_seen = progress.max_running
        if progress.stalled:
            tally.problems.append(f"no task finished in the last {STALL_S:.0f}s: stopped waiting")
        _report(tally)
        if tally.problems or tally.lost or tally.duplicated_prs or tally.duplicated_comments:
            pytest.fail(f"{tally.line()}\n  " + "\n  ".join(tally.problems)
                        + f"\nlogs under {h.root}\n{h.logs()}", pytrace=False)
