"""Chaos: SIGKILL the worker (and its work-horse and sandbox) at chosen points of a task, start a
new worker, and check the task still finishes exactly once.

The whole system runs as in ``nightcrew demo`` (embedded Redis, the GitHub stand-in, the web app
and a worker as processes, the production Anthropic adapter against a local Messages server).
Each point is reached by watching from outside: a held model request; a request held in the
stand-in (a git push of the task branch or of the hidden work-in-progress ref, the PR, the status
comment's edit once the branch landed, the issue's label once the PR is labelled); or the
sandboxed ``sleep`` of a slow setup or test command. After the kill, anything held is let go
(dropped, or for ``push_pr_landed`` carried out, so the PR exists although the dead worker never
heard of it), a new worker starts, and the issue is watched until it ends. Counted per point (and
printed as a ``CHAOS`` line with where the time went; appended as JSON to the file named by
``NIGHTCREW_CHAOS_REPORT`` when set): lost tasks, duplicated status comments, PRs and commits,
model steps answered again (at most one: every step that changed the tree is saved, a green one
as a commit, any other as work in progress); the next run must start within 2 minutes of the kill.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from devhub import Hold
from runner.cli.demo import OWNER, REPO
from tests.e2e.chaos_harness import BASELINE_REQUESTS, ChaosHarness, Tally, repo_files, report

pytestmark = pytest.mark.e2e

SETUP_SLEEP = "4.1"  # distinct values, so the process is recognisably the setup's / the tests'
TEST_SLEEP = "2.6"
RESUME_WITHIN_S = 120.0
FINISH_WITHIN_S = 180.0

Reached = Callable[[], bool]
Release = Callable[[], None]


@dataclass(frozen=True)
class KillPoint:
    """Where to kill: ``arm`` prepares the system before the task starts and returns (how to
    tell the point is reached, what to let go after the kill)."""

    name: str
    arm: Callable[[ChaosHarness], tuple[Reached, Release]] | None
    setup: tuple[str, ...] | None = None
    test: str | None = None
    fast: bool = True  # heartbeat and worker timings shortened (False: production defaults)
    respend: int = 1  # model steps a resume may answer again


def _model_call(index: int) -> Callable[[ChaosHarness], tuple[Reached, Release]]:
    """Hold the ``index``-th model request; after the kill it is dropped unanswered."""
    def arm(h: ChaosHarness) -> tuple[Reached, Release]:
        h.model.hold(index)
        return (lambda: h.model.arrived(index, timeout=0),
                lambda: h.model.release(index, drop=True))
    return arm


def _in_sandbox(argv: list[str], *, after_requests: int = 0) -> Callable[[ChaosHarness], tuple[Reached, Release]]:
    """The point where ``argv`` runs in the sandbox (after that many model answers)."""
    def arm(h: ChaosHarness) -> tuple[Reached, Release]:
        return (lambda: h.model.served >= after_requests and h.sandboxed(argv), lambda: None)
    return arm


def _held(method: str, path: str, *, apply: bool, refs: str | None = None,
          when: Callable[[ChaosHarness], bool] | None = None,
          ) -> Callable[[ChaosHarness], tuple[Reached, Release]]:
    """Hold a request in the stand-in (a push only when it updates a ref matching ``refs``;
    only once ``when`` holds); after the kill it is carried out (``apply``) or not."""
    def arm(h: ChaosHarness) -> tuple[Reached, Release]:
        hold = h.hub.hold(Hold(method, path, refs=refs,
                               when=None if when is None else lambda: when(h)))
        return hold.arrived.is_set, lambda: hold.release(apply=apply)
    return arm


def _branch_landed(h: ChaosHarness) -> bool:
    """The task branch (so its first green commit) is on the stand-in."""
    return h.task.branch in h.hub.git.branches(OWNER, REPO)


def _pr_labelled(h: ChaosHarness) -> bool:
    """The PR exists and carries its `nightcrew` label: what is left is the issue's labels."""
    pulls = [p for p in h.hub.pulls(OWNER, REPO) if p["head"] == h.task.branch]
    return bool(pulls) and "nightcrew" in h.hub.issue(OWNER, REPO, pulls[0]["number"])["labels"]


PULLS = rf"/repos/{OWNER}/{REPO}/pulls"
RECEIVE_PACK = rf"/{OWNER}/{REPO}\.git/git-receive-pack"
COMMENT = rf"/repos/{OWNER}/{REPO}/issues/comments/\d+"
LABELS = rf"/repos/{OWNER}/{REPO}/issues/\d+/labels"
SLOW_TESTS = f"sleep {TEST_SLEEP} && python -m pytest -q"
POINTS = [
    # the control: no kill; shows the harness and the baseline counts are right
    KillPoint("none", None),
    # setup runs `sleep` in the (networked) sandbox before anything else
    KillPoint("setup", _in_sandbox(["sleep", SETUP_SLEEP]), setup=(f"sleep {SETUP_SLEEP}",)),
    # the test run before any change (the baseline of the test gate), before planning
    KillPoint("tests_before", _in_sandbox(["sleep", TEST_SLEEP]), test=SLOW_TESTS),
    # requests: 0 plan, 1 edit_file, 2 run_tests, 3 mark_done, 4 finish.
    KillPoint("planning", _model_call(0)),
    # the edit is pushed as work in progress (a hidden ref) before request 2 goes out
    KillPoint("model_call", _model_call(2), fast=False),  # the production timings: < 2 min
    # that work-in-progress push on the wire, never landing: the edit is asked for again
    KillPoint("wip_push", _held("POST", RECEIVE_PACK, refs="refs/nightcrew/wip/.*", apply=False)),
    # the agent's run_tests after the edit (answer 2 served), the test command sleeping first:
    # the resumed run restores the edit from the WIP and answers only run_tests again
    KillPoint("tests", _in_sandbox(["sleep", TEST_SLEEP], after_requests=3), test=SLOW_TESTS),
    # committed locally, the push of the green checkpoint commit on the wire, never landing
    KillPoint("commit_push", _held("POST", RECEIVE_PACK, refs="refs/heads/.*", apply=False)),
    # the green commit landed, the status comment's edit naming it (the checkpoint) did not
    KillPoint("status_checkpoint", _held("PATCH", COMMENT, apply=False, when=_branch_landed)),
    # at 3 the green commit and its checkpoint are in
    KillPoint("model_call_after_checkpoint", _model_call(3)),
    # pushed, the PR request on the wire: lost, or landing after the worker died
    KillPoint("push_pr_lost", _held("POST", PULLS, apply=False)),
    KillPoint("push_pr_landed", _held("POST", PULLS, apply=True)),
    # the PR is open and labelled; the issue's final `nightcrew:done` label never lands
    KillPoint("label_done", _held("POST", LABELS, apply=False, when=_pr_labelled)),
]


@pytest.mark.timeout(420)
@pytest.mark.parametrize("point", POINTS, ids=[p.name for p in POINTS])
def test_sigkilled_worker_finishes_the_task_once(point: KillPoint, tmp_path: Path) -> None:
    files = repo_files(setup=list(point.setup) if point.setup else None, test=point.test)
    began = time.monotonic()
    with ChaosHarness(tmp_path, files, fast=point.fast, respend=point.respend) as h:
        timings = {"start_s": time.monotonic() - began}
        reached, release = point.arm(h) if point.arm else (None, None)
        h.trigger()
        if reached is not None and release is not None:
            h.wait_until(f"kill point {point.name}", reached, timeout=90)
            timings["to_kill_s"] = time.monotonic() - began - timings["start_s"]
            h.kill_worker()
            release()
            h.start_worker()
        issue = h.wait_finished(FINISH_WITHIN_S)
        tally = h.tally(point.name, issue, time.monotonic() if issue else None)
        failure = (f"{tally.line()}\n  " + "\n  ".join(tally.problems)
                   + f"\ncommits: {tally.commits}\n{h.logs()}") if tally.problems else ""
        stopping = time.monotonic()
    timings.update(stop_s=time.monotonic() - stopping, total_s=time.monotonic() - began)
    _report(tally, timings)
    if point.arm is None:  # the control run sets the baseline the others are counted against
        assert tally.moves == ["plan", "edit_file", "run_tests", "mark_done", "finish"]
        assert len(tally.moves) == BASELINE_REQUESTS
    if failure:
        pytest.fail(failure, pytrace=False)


def _report(tally: Tally, timings: dict[str, float]) -> None:
    """The CHAOS line with where the time went (harness start, until the kill, stopping, all)."""
    spent = " ".join(f"{name}={seconds:.1f}s" for name, seconds in timings.items())
    report(f"{tally.line()} {spent}", {**dataclasses.asdict(tally), **timings})
