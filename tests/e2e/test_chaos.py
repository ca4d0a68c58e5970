"""Chaos: SIGKILL the worker (and its work-horse and sandbox) at chosen points of a task, start a
new worker, and check the task still finishes exactly once.

The whole system runs as in ``nightcrew demo`` (embedded Redis, the GitHub stand-in, the web app
and a worker as processes, the production Anthropic adapter against a local Messages server).
Each point is reached by watching from outside: a held model request, a held git push or PR
request in the stand-in, or the sandboxed ``sleep`` of a slow setup or test command. After the
kill, anything held is let go (dropped, or for ``push_pr_landed`` carried out, so the PR exists
although the dead worker never heard of it), a new worker starts, and the issue is watched until
it ends. Counted per point (and printed as a ``CHAOS`` line; appended as JSON to the file named
by ``NIGHTCREW_CHAOS_REPORT`` when set): lost tasks, duplicated status comments, PRs and commits,
model steps answered again; the next run must start within 2 minutes of the kill.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from github_app.devhub import Hold
from runner.demo import OWNER, REPO
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


def _held(method: str, path: str, *, apply: bool) -> Callable[[ChaosHarness], tuple[Reached, Release]]:
    """Hold a request in the stand-in; after the kill it is carried out (``apply``) or not."""
    def arm(h: ChaosHarness) -> tuple[Reached, Release]:
        hold = h.hub.hold(Hold(method, path))
        return hold.arrived.is_set, lambda: hold.release(apply=apply)
    return arm


PULLS = rf"/repos/{OWNER}/{REPO}/pulls"
RECEIVE_PACK = rf"/{OWNER}/{REPO}\.git/git-receive-pack"
POINTS = [
    # the control: no kill; shows the harness and the baseline counts are right
    KillPoint("none", None),
    # setup runs `sleep` in the (networked) sandbox before anything else
    KillPoint("setup", _in_sandbox(["sleep", SETUP_SLEEP]), setup=(f"sleep {SETUP_SLEEP}",)),
    # requests: 0 plan, 1 edit_file, 2 run_tests, 3 mark_done, 4 finish. At 2 the edit is only
    # in the dead worker's workspace; at 3 it was pushed as the green checkpoint.
    KillPoint("model_call", _model_call(2), fast=False),  # the production timings: < 2 min
    KillPoint("model_call_after_checkpoint", _model_call(3)),
    # the agent's run_tests after the edit (answer 2 served), the test command sleeping first
    # Only green steps are checkpoints: a kill while the edit's tests run, or before its green
    # commit lands, loses that edit, so the resumed run answers the edit and its test again.
    KillPoint("tests", _in_sandbox(["sleep", TEST_SLEEP], after_requests=3),
              test=f"sleep {TEST_SLEEP} && python -m pytest -q", respend=2),
    # committed locally, the push (of the checkpoint commit) on the wire, never landing
    KillPoint("commit_push", _held("POST", RECEIVE_PACK, apply=False), respend=2),
    # pushed, the PR request on the wire: lost, or landing after the worker died
    KillPoint("push_pr_lost", _held("POST", PULLS, apply=False)),
    KillPoint("push_pr_landed", _held("POST", PULLS, apply=True)),
]


@pytest.mark.timeout(420)
@pytest.mark.parametrize("point", POINTS, ids=[p.name for p in POINTS])
def test_sigkilled_worker_finishes_the_task_once(point: KillPoint, tmp_path: Path) -> None:
    files = repo_files(setup=list(point.setup) if point.setup else None, test=point.test)
    with ChaosHarness(tmp_path, files, fast=point.fast, respend=point.respend) as h:
        reached, release = point.arm(h) if point.arm else (None, None)
        h.trigger()
        if reached is not None and release is not None:
            h.wait_until(f"kill point {point.name}", reached, timeout=90)
            h.kill_worker()
            release()
            h.start_worker()
        issue = h.wait_finished(FINISH_WITHIN_S)
        tally = h.tally(point.name, issue, time.monotonic() if issue else None)
        _report(tally)
        if point.arm is None:  # the control run sets the baseline the others are counted against
            assert tally.moves == ["plan", "edit_file", "run_tests", "mark_done", "finish"]
            assert len(tally.moves) == BASELINE_REQUESTS
        if tally.problems:
            pytest.fail(f"{tally.line()}\n  " + "\n  ".join(tally.problems)
                        + f"\ncommits: {tally.commits}\n{h.logs()}", pytrace=False)


def _report(tally: Tally) -> None:
    report(tally.line(), dataclasses.asdict(tally))
