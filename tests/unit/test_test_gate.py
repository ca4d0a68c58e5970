"""The test gate judges a change by the test runs before and after it (pure)."""

from __future__ import annotations

from runner.gates.test_gate import judge
from runner.testrun import TestReport


def report(passed: int, failed: int, output: str = "", errors: int = 0, killed: str | None = None) -> TestReport:
    exit_code = 0 if failed == errors == 0 else 1
    return TestReport(passed, failed, errors, 0, exit_code, output, killed)


FAIL_ADD = "FAILED tests/test_calc.py::test_add - assert -1 == 5\n"
FAIL_SUB = "FAILED tests/test_calc.py::test_sub - assert 7 == 1\n"
FAIL_MUL = "FAILED tests/test_calc.py::test_mul\n"


def test_green_after_with_the_target_fixed_is_ready() -> None:
    verdict = judge(report(1, 1, FAIL_ADD), report(2, 0))
    assert verdict.ready and verdict.fixed == ("tests/test_calc.py::test_add",) and not verdict.reasons


def test_a_test_that_passed_before_and_fails_after_is_a_regression() -> None:
    verdict = judge(report(2, 1, FAIL_ADD), report(2, 1, FAIL_SUB))
    assert not verdict.ready and verdict.regressions == ("tests/test_calc.py::test_sub",)
    assert "passed before fail now" in verdict.reasons[0]


def test_fixing_the_target_while_an_unrelated_old_failure_stays_is_ready() -> None:
    verdict = judge(report(1, 2, FAIL_ADD + FAIL_MUL), report(2, 1, FAIL_MUL))
    assert verdict.ready and verdict.fixed == ("tests/test_calc.py::test_add",)


def test_still_failing_with_nothing_fixed_is_not_ready() -> None:
    verdict = judge(report(1, 1, FAIL_ADD), report(1, 1, FAIL_ADD))
    assert not verdict.ready and "none of the failing ones was fixed" in verdict.reasons[0]


def test_unnamed_failures_fall_back_on_counts() -> None:
    assert not judge(report(3, 0), report(2, 1, "1 failed, 2 passed")).ready
    assert judge(report(3, 0), report(3, 0)).ready


def test_no_passing_test_or_a_killed_run_proves_nothing() -> None:
    assert not judge(report(0, 1, FAIL_ADD), report(0, 0)).ready
    killed = judge(report(1, 1, FAIL_ADD), report(2, 0, killed="wall_timeout"))
    assert not killed.ready and "stopped (wall_timeout)" in killed.reasons[0]


def test_without_a_run_before_only_green_is_ready() -> None:
    assert judge(None, report(2, 0)).ready
    assert not judge(None, report(1, 1, FAIL_ADD)).ready
