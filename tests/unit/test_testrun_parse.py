"""parse_pytest_summary on real pytest 9 output, and detect_test_command on small trees."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.testrun import (
    PYTEST_COMMAND,
    TestCounts,
    TestReport,
    detect_test_command,
    parse_pytest_summary,
)

# Tails of real runs (pytest 9.2, -q unless noted) of a file with one test of each outcome.
MIXED_QUIET = """\
.F.sxXE.                                                                 [100%]
=================================== FAILURES ===================================
__________________________________ test_fail ___________________________________

    def test_fail(): assert 1 == 2
E   assert 1 == 2
FAILED test_a.py::test_fail - assert 1 == 2
ERROR test_a.py::test_err - RuntimeError: x
1 failed, 2 passed, 1 skipped, 1 xfailed, 1 xpassed, 1 warning, 1 error in 0.02s
"""
MIXED_VERBOSE = (
    "ERROR test_a.py::test_err - RuntimeError: x\n"
    "= 1 failed, 2 passed, 1 skipped, 1 xfailed, 1 xpassed, 1 warning, 1 error in 0.02s =\n"
)
COLLECTION_ERROR = """\
ERROR e/test_c.py
!!!!!!!!!!!!!!!!!!!! Interrupted: 1 error during collection !!!!!!!!!!!!!!!!!!!!
1 error in 0.06s
"""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("..\n2 passed in 0.01s\n", TestCounts(passed=2)),
        (MIXED_QUIET, TestCounts(passed=2, failed=1, errors=1, skipped=1, xfailed=1, xpassed=1,
                                 warnings=1)),
        (MIXED_VERBOSE, TestCounts(passed=2, failed=1, errors=1, skipped=1, xfailed=1, xpassed=1,
                                   warnings=1)),
        (COLLECTION_ERROR, TestCounts(errors=1)),
        ("2 errors in 0.10s\n", TestCounts(errors=2)),
        ("1 passed, 6 deselected in 0.00s\n", TestCounts(passed=1, deselected=6)),
        ("7 deselected in 0.00s\n", TestCounts(deselected=7)),
        ("\nno tests ran in 0.00s\n", TestCounts()),
        ("============================ no tests ran in 0.00s =============================\n",
         TestCounts()),
        ("3 failed, 40 passed, 5 warnings in 61.20s (0:01:01)\n",
         TestCounts(passed=40, failed=3, warnings=5)),
        ("\x1b[31m\x1b[1m1 failed\x1b[0m, \x1b[32m1 passed\x1b[0m\x1b[31m in 0.01s\x1b[0m\n",
         TestCounts(passed=1, failed=1)),
    ],
)
def test_parses_real_summary_lines(text: str, expected: TestCounts) -> None:
    assert parse_pytest_summary(text) == expected


def test_last_summary_wins_over_one_printed_by_a_test() -> None:
    text = "captured: 9 passed in 0.01s\n5 passed in 0.01s\n.F\n1 failed, 1 passed in 0.03s\n"
    assert parse_pytest_summary(text) == TestCounts(passed=1, failed=1)


@pytest.mark.parametrize("text", ["", "make: *** [test] Error 2\n", "Ran 4 tests in 0.001s\n\nOK\n"])
def test_no_summary_is_none(text: str) -> None:
    assert parse_pytest_summary(text) is None


def _report(**overrides: object) -> TestReport:
    fields: dict[str, object] = dict(passed=3, failed=0, errors=0, skipped=0, exit_code=0,
                                     output="", killed=None)
    fields.update(overrides)
    return TestReport(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("overrides", "green"),
    [
        ({}, True),
        ({"failed": 1, "exit_code": 1}, False),
        ({"errors": 1, "exit_code": 1}, False),
        ({"passed": 0, "skipped": 3}, False),
        ({"exit_code": 5, "passed": 0}, False),
        ({"killed": "wall_timeout", "exit_code": 137}, False),
    ],
)
def test_green_needs_evidence(overrides: dict[str, object], green: bool) -> None:
    assert _report(**overrides).green is green


def test_detects_tests_dir(tmp_path: Path) -> None:
    (tmp_path / "tests").mkdir()
    assert detect_test_command(tmp_path) == list(PYTEST_COMMAND)


def test_detects_nested_test_module(tmp_path: Path) -> None:
    (tmp_path / "pkg" / "sub").mkdir(parents=True)
    (tmp_path / "pkg" / "sub" / "test_core.py").write_text("def test_x(): pass\n")
    assert detect_test_command(tmp_path) == list(PYTEST_COMMAND)


def test_detects_pyproject_pytest_section(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.pytest.ini_options]\naddopts = '-q'\n")
    assert detect_test_command(tmp_path) == list(PYTEST_COMMAND)


def test_no_tests_no_command(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    (tmp_path / "app.py").write_text("print(1)\n")
    (tmp_path / ".venv" / "lib").mkdir(parents=True)
    (tmp_path / ".venv" / "lib" / "test_vendored.py").write_text("")
    assert detect_test_command(tmp_path) is None
