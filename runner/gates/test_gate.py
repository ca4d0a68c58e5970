"""The test gate: may the change go out as a pull request ready for review? A pure judgement.

Tests run on the base commit first and after the change. The change is ready when no test that
passed before fails after (no regression) and the task's own checks pass: the suite is green,
or the tests that failed before now fail fewer and none newly (the issue's failing tests were
the target). Anything else is not ready: per config a draft PR carrying the failure report,
or no PR at all.
"""

from __future__ import annotations

from dataclasses import dataclass

from runner.agent.tools import failing_tests
from runner.testrun import TestReport


@dataclass(frozen=True)
class GateVerdict:
    ready: bool
    reasons: tuple[str, ...]  # why not ready (empty when ready)
    regressions: tuple[str, ...] = ()  # tests that passed before and fail after (when named)
    fixed: tuple[str, ...] = ()  # tests that failed before and pass after (when named)


def judge(before: TestReport | None, after: TestReport) -> GateVerdict:
    """Compare the runs before and after the change."""
    if after.killed is not None:
        return GateVerdict(False, (f"the test run after the change was stopped ({after.killed})",))
    if after.passed == 0:
        return GateVerdict(False, ("no test passed after the change, so nothing proves it works",))
    if before is None:
        return _green_only(after)
    was, now = set(failing_tests(before.output)), set(failing_tests(after.output))
    regressions = tuple(sorted(now - was))
    fixed = tuple(sorted(was - now))
    reasons = []
    if regressions:
        reasons.append(f"{len(regressions)} test(s) that passed before fail now: "
                       + ", ".join(f"`{t}`" for t in regressions[:10]))
    elif not was and not now and _bad(after) > _bad(before):
        # The runner's output names no tests: fall back on the counts.
        reasons.append(f"more tests fail after the change ({_bad(after)}) than before ({_bad(before)})")
    if not reasons and not after.green:
        if not (fixed and _bad(after) < _bad(before)):
            reasons.append(f"tests still fail after the change ({after.failed} failed, "
                           f"{after.errors} errors) and none of the failing ones was fixed")
    return GateVerdict(not reasons, tuple(reasons), regressions, fixed)


def _green_only(after: TestReport) -> GateVerdict:
    if after.green:
        return GateVerdict(True, ())
    return GateVerdict(False, (f"tests fail after the change ({after.failed} failed, "
                               f"{after.errors} errors)",))


def _bad(report: TestReport) -> int:
    return report.failed + report.errors
