"""Chaos: the GitHub stand-in misbehaves in bursts for a whole run, and every write still lands once.

The whole system runs as in ``tests/e2e/test_chaos.py`` (embedded Redis, the GitHub stand-in,
the adaptive Messages server, the web app and a worker as processes). Before the first issue is
labeled, faults are put in force on the stand-in for the whole run:

- every 3rd comment POST (every one, with a single task) answered 502 *after* the comment was written (a blind retry doubles it);
- every 4th comment PATCH answered 502 without being carried out;
- comment PATCHes hit GitHub's secondary rate limit (403 with ``Retry-After: 1``) a few times;
- label POSTs answered 429 with ``Retry-After: 1`` a few times;
- the first PR POST answered 502 after the PR was opened;
- an installation token rejected with 401 (and revoked), and, once the first task's agent is
  under way, every installation token expired at once.

Then every task must end done with one status comment, no App comment twice, one PR on its
branch, no commit twice, clean labels, and every fault must have been answered at least once (so
the run proves it met them). One ``CHAOS-GITHUB`` line is printed and appended as JSON to
``$NIGHTCREW_CHAOS_REPORT`` when set.

The git stand-in misbehaving instead: every 2nd push refused with 502 for the whole run, two of
them carried out with their answer lost; the worker's in-process git retries carry every task
to done with nothing lost, failed or written twice (one ``CHAOS-GIT`` line). A git outage
longer than those retries, waited out by the job, is ``tests/e2e/test_git_transport.py``'s.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pytest

from devhub import Fault
from github_app.tasks import TaskKey
from github_app.tracker.eventlog import read_events
from github_app.tracker.status import LABELS, MARKER
from runner.cli.demo import OWNER, REPO
from tests.e2e.chaos_harness import ChaosHarness, report

pytestmark = pytest.mark.e2e

FINISH_WITHIN_S = 180.0
EXPIRE_AFTER_MODEL_ANSWERS = 2  # the first task's plan and edit answered: mid-run
BASE = rf"/repos/{OWNER}/{REPO}"
COMMENT_POST = rf"{BASE}/issues/\d+/comments"
COMMENT_PATCH = rf"{BASE}/issues/comments/\d+"
LABELS_POST = rf"{BASE}/issues/\d+/labels"
PULLS_POST = rf"{BASE}/pulls"
WRITE_MARKER = re.compile(r"\s*<!-- nightcrew:write [^>]*-->\s*$")
ACTIVE = frozenset({LABELS["queued"], LABELS["running"]})


def _faults(tasks: int) -> dict[str, Fault]:
    """The faults in force for the whole run, by a short name (checked in this order).

    A task POSTs one comment (its status comment): with one task every such POST fails, with
    three every 3rd.
    """
    return {
        "comment_post_502_applied": Fault(502, "POST", COMMENT_POST, count=None,
                                          every=min(tasks, 3), applied=True),
        "comment_patch_403_secondary": Fault(403, "PATCH", COMMENT_PATCH, count=2, every=5,
                                             retry_after=1),
        "comment_patch_502": Fault(502, "PATCH", COMMENT_PATCH, count=None, every=4),
        "labels_post_429": Fault(429, "POST", LABELS_POST, count=3, every=2, retry_after=1),
        "pulls_post_502_applied": Fault(502, "POST", PULLS_POST, count=1, applied=True),
        "token_401": Fault(401, "*", rf"{BASE}/.*", count=1, every=6),
    }


@dataclass
class GitHubTally:
    """What the run did twice or left undone, over all its tasks."""

    tasks: int
    finished: int = 0
    comments: int = 0  # the App's comments on the task issues
    prs: int = 0
    duplicated: int = 0  # status comments beyond one, App comments twice, PRs beyond one, commits
    seconds: float = 0.0
    tokens_expired: bool = False
    faults_answered: dict[str, int] = field(default_factory=dict)
    faults_recorded: dict[str, int] = field(default_factory=dict)  # RecordedRequest.fault counts
    problems: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (f"CHAOS-GITHUB: tasks={self.tasks} faults_answered={self.faults_answered} "
                f"comments={self.comments} prs={self.prs} duplicated={self.duplicated} "
                f"seconds={self.seconds:.1f}")


def _body(comment: dict[str, Any]) -> str:
    """A comment's body without its hidden write marker (a random key on unkeyed comments)."""
    return WRITE_MARKER.sub("", comment["body"]).strip()


def _tally(h: ChaosHarness, numbers: list[int], faults: dict[str, Fault],
           tally: GitHubTally) -> GitHubTally:
    bot = h.hub.bot.login
    pulls = h.hub.pulls(OWNER, REPO)
    heads = {TaskKey(OWNER, REPO, n).branch for n in numbers}
    strays = [p["head"] for p in pulls if p["head"] not in heads]
    if strays:
        tally.problems.append(f"PRs on other heads: {strays}")
    for number in numbers:
        task = TaskKey(OWNER, REPO, number)
        issue = h.hub.issue(OWNER, REPO, number)
        mine = [c for c in issue["comments"] if c["user"] == bot]
        tally.comments += len(mine)
        status = [c for c in issue["comments"] if MARKER in c["body"]]
        if len(status) != 1 or status[0]["user"] != bot:
            tally.duplicated += max(0, len(status) - 1)
            tally.problems.append(f"#{number}: {len(status)} status comments "
                                  f"by {[c['user'] for c in status]} (want 1 by {bot})")
        twice = {body: n for body, n in Counter(_body(c) for c in mine).items() if n > 1}
        if twice:
            tally.duplicated += sum(n - 1 for n in twice.values())
            tally.problems.append(f"#{number}: App comments written twice: "
                                  f"{[body[:80] for body in twice]}")
        prs = [p for p in pulls if p["head"] == task.branch]
        tally.prs += len(prs)
        if len(prs) != 1:
            tally.duplicated += max(0, len(prs) - 1)
            tally.problems.append(f"#{number}: {len(prs)} PRs with head {task.branch} (want 1)")
        commits, repeated = h.branch_commits(task)
        if repeated:
            tally.duplicated += repeated
            tally.problems.append(f"#{number}: duplicated commits on {task.branch}: {commits}")
        labels = set(issue["labels"])
        if LABELS["done"] in labels and prs:
            tally.finished += 1
        else:
            tally.problems.append(f"#{number}: did not end done with a PR: labels "
                                  f"{sorted(labels)}, {len(prs)} PRs")
        stale = labels & ACTIVE | (labels & {LABELS["failed"]} if LABELS["done"] in labels else set())
        if stale:
            tally.problems.append(f"#{number}: stale state labels {sorted(labels)}")
    tally.faults_answered = {name: fault.answered for name, fault in faults.items()}
    tally.faults_recorded = dict(Counter(r.fault for r in h.hub.requests if r.fault))
    unanswered = [name for name, n in tally.faults_answered.items() if n == 0]
    if unanswered:
        tally.problems.append(f"faults never answered (the run did not exercise them): {unanswered}")
    if not tally.tokens_expired:
        tally.problems.append("the tokens were never expired mid-run")
    tally.problems += h.contract_problems()[1]
    return tally


def _report(tally: GitHubTally) -> None:
    report(tally.line(), {"kind": "chaos-github", **asdict(tally)})


def _all_ended(h: ChaosHarness, numbers: list[int]) -> bool:
    ended = {LABELS["done"], LABELS["failed"]}
    return all(ended & set(h.hub.issue(OWNER, REPO, n)["labels"]) for n in numbers)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("tasks", [1, 3], ids=["1-task", "3-tasks"])
def test_github_faults_in_bursts_write_everything_once(tasks: int, tmp_path: Path) -> None:
    faults = _faults(tasks)
    with ChaosHarness(tmp_path) as h:
        h.hub.inject(*faults.values())
        started = time.monotonic()
        numbers = h.trigger_many(tasks)
        h.number = numbers[0]  # the harness's own task: its events and wait helpers
        tally = GitHubTally(tasks)
        try:
            h.wait_until("the first agent under way",
                         lambda: h.model.served >= EXPIRE_AFTER_MODEL_ANSWERS, timeout=90)
            h.hub.expire_tokens()
            tally.tokens_expired = True
            h.wait_until("every task to end", lambda: _all_ended(h, numbers), FINISH_WITHIN_S)
        except TimeoutError as exc:
            tally.problems.append(str(exc).splitlines()[0])
        tally.seconds = time.monotonic() - started
        h.hub.wait_deliveries(timeout=10)
        _tally(h, numbers, faults, tally)
        _report(tally)
        if tally.problems:
            pytest.fail(f"{tally.line()}\n  " + "\n  ".join(tally.problems)
                        + f"\nfaults recorded: {tally.faults_recorded}"
                        + f"\nlogs under {h.root}\n{h.logs()}", pytrace=False)


# -- the git stand-in refusing pushes ------------------------------------------------------------

RECEIVE_PACK = rf"/{OWNER}/{REPO}\.git/git-receive-pack"
GIT_TASKS = 2


def _git_faults() -> dict[str, Fault]:
    """Pushes (work in progress and green commits alike) fail for the whole run: every 2nd is
    refused, and twice one is carried out with its answer lost (a retry that were not idempotent
    would write a second commit). Never as many in a row as the worker's in-process tries."""
    return {
        "push_502_applied": Fault(502, "POST", RECEIVE_PACK, count=2, every=3, applied=True,
                                  git=True),
        "push_502": Fault(502, "POST", RECEIVE_PACK, count=None, every=2, git=True),
    }


@dataclass
class GitTally:
    """What a run with a failing git front lost, failed or did twice; every count should be 0."""

    tasks: int
    lost: int = 0  # never ended, or ended without its PR
    failed: int = 0  # ended nightcrew:failed
    duplicated_comments: int = 0  # status comments beyond one, App comments written twice
    duplicated_prs: int = 0  # PRs on a task branch beyond one
    duplicated_commits: int = 0  # empty commits, or the same (tree, subject) twice
    finished_runs: int = 0  # run_finished events over all tasks: one each
    pushes_refused: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (f"CHAOS-GIT: tasks={self.tasks} pushes_refused={self.pushes_refused} "
                f"lost={self.lost} failed={self.failed} duplicated_comments="
                f"{self.duplicated_comments} duplicated_prs={self.duplicated_prs} "
                f"duplicated_commits={self.duplicated_commits} finished_runs={self.finished_runs} "
                f"seconds={self.seconds:.1f}")


def _git_tally(h: ChaosHarness, numbers: list[int], faults: dict[str, Fault],
               tally: GitTally) -> GitTally:
    bot = h.hub.bot.login
    pulls = h.hub.pulls(OWNER, REPO)
    for number in numbers:
        task = TaskKey(OWNER, REPO, number)
        issue = h.hub.issue(OWNER, REPO, number)
        mine = [c for c in issue["comments"] if c["user"] == bot]
        status = [c for c in issue["comments"] if MARKER in c["body"]]
        twice = sum(n - 1 for n in Counter(_body(c) for c in mine).values() if n > 1)
        tally.duplicated_comments += max(0, len(status) - 1) + twice
        prs = [p for p in pulls if p["head"] == task.branch]
        tally.duplicated_prs += max(0, len(prs) - 1)
        commits, repeated = h.branch_commits(task)
        tally.duplicated_commits += repeated
        labels = set(issue["labels"])
        tally.failed += LABELS["failed"] in labels
        if LABELS["done"] not in labels or not prs:
            tally.lost += 1
            tally.problems.append(f"#{number}: labels {sorted(labels)}, {len(prs)} PRs")
        landed = task.branch in h.hub.branches(OWNER, REPO)
        if not landed or "return a + b" not in h.hub.file_at(OWNER, REPO, task.branch, "calc.py"):
            tally.problems.append(f"#{number}: the fix is not on {task.branch}: {commits}")
        finished = [e for e in read_events(h.data_dir, task) if e.kind == "run_finished"]
        tally.finished_runs += len(finished)
        if len(finished) != 1:
            tally.problems.append(f"#{number}: {len(finished)} run_finished events (want 1)")
    tally.pushes_refused = {name: fault.answered for name, fault in faults.items()}
    for name, count in {"lost": tally.lost, "failed": tally.failed,
                        "duplicated comments": tally.duplicated_comments,
                        "duplicated PRs": tally.duplicated_prs,
                        "duplicated commits": tally.duplicated_commits}.items():
        if count:
            tally.problems.append(f"{name}: {count}")
    unanswered = [name for name, n in tally.pushes_refused.items() if n == 0]
    if unanswered:
        tally.problems.append(f"faults never answered (the run did not exercise them): {unanswered}")
    tally.problems += h.contract_problems()[1]
    return tally


@pytest.mark.timeout(300)
def test_git_pushes_failing_for_the_whole_run_finish_every_task_once(tmp_path: Path) -> None:
    faults = _git_faults()
    with ChaosHarness(tmp_path) as h:
        h.hub.inject(*faults.values())
        started = time.monotonic()
        numbers = h.trigger_many(GIT_TASKS)
        h.number = numbers[0]
        tally = GitTally(GIT_TASKS)
        try:
            h.wait_until("every task to end", lambda: _all_ended(h, numbers), FINISH_WITHIN_S)
        except TimeoutError as exc:
            tally.problems.append(str(exc).splitlines()[0])
        tally.seconds = time.monotonic() - started
        h.hub.wait_deliveries(timeout=10)
        _git_tally(h, numbers, faults, tally)
        report(tally.line(), {"kind": "chaos-git", **asdict(tally)})
        if tally.problems:
            pytest.fail(f"{tally.line()}\n  " + "\n  ".join(tally.problems)
                        + f"\nlogs under {h.root}\n{h.logs()}", pytrace=False)
