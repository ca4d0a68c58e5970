"""The output parsers on real output of each runner, and run_tests choosing among them."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest

from runner.sandbox import ExecResult
from runner.testrun import (
    PYTEST_COMMAND,
    Runner,
    TestCommand,
    TestCounts,
    TestReport,
    parse_cargo_test,
    parse_generic_summary,
    parse_go_test,
    parse_jest_summary,
    parse_junit_xml,
    parse_mocha_summary,
    parse_node_test_summary,
    parse_pytest_summary,
    parse_session_summaries,
    parse_test_output,
    parse_vitest_summary,
    run_tests,
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


# --- other runners: tails of real runs (go 1.19, cargo 1.95, node 20.20, jest, mocha, vitest 4.1,
# tox 4.67, nox 2026.10) on tiny projects with one test of each outcome; stack traces trimmed.

GO_VERBOSE_WITH_BUILD_FAILURE = """\
# example.com/calc/broken [example.com/calc/broken.test]
broken/broken.go:3:23: undefined: undefined
FAIL\texample.com/calc/broken [build failed]
=== RUN   TestAdd
--- PASS: TestAdd (0.00s)
=== RUN   TestAddFails
    calc_test.go:13: Add(2, 2) = 4, want 5
--- FAIL: TestAddFails (0.00s)
=== RUN   TestSkipped
    calc_test.go:17: not today
--- SKIP: TestSkipped (0.00s)
=== RUN   TestTable
=== RUN   TestTable/one
=== RUN   TestTable/two
    calc_test.go:23: two is wrong
--- FAIL: TestTable (0.00s)
    --- PASS: TestTable/one (0.00s)
    --- FAIL: TestTable/two (0.00s)
=== RUN   TestOther
--- PASS: TestOther (0.00s)
FAIL
FAIL\texample.com/calc/calc\t0.004s
FAIL
"""
GO_VERBOSE_PANIC = """\
?   \texample.com/calc/notests\t[no test files]
=== RUN   TestFine
--- PASS: TestFine (0.00s)
=== RUN   TestPanics
--- FAIL: TestPanics (0.00s)
panic: assignment to entry in nil map [recovered]
\tpanic: assignment to entry in nil map

goroutine 19 [running]:
example.com/calc/panicky.TestPanics(0xc000098680?)
\t/tmp/cap/go/panicky/p_test.go:9 +0x2e
FAIL\texample.com/calc/panicky\t0.005s
FAIL
"""
GO_VERBOSE_TIMEOUT = """\
=== RUN   TestQuick
--- PASS: TestQuick (0.00s)
=== RUN   TestSlow
panic: test timed out after 1s

goroutine 17 [running]:
testing.(*M).startAlarm.func1()
\t/usr/lib/go-1.19/src/testing/testing.go:2036 +0x8e
FAIL\texample.com/calc/slow\t1.007s
FAIL
"""
GO_VERBOSE_GREEN = """\
=== RUN   TestAdd
--- PASS: TestAdd (0.00s)
=== RUN   TestOther
--- PASS: TestOther (0.00s)
PASS
ok  \texample.com/calc/calc\t(cached)
"""
GO_QUIET = """\
--- FAIL: TestAddFails (0.00s)
    calc_test.go:13: Add(2, 2) = 4, want 5
--- FAIL: TestTable (0.00s)
    --- FAIL: TestTable/two (0.00s)
        calc_test.go:23: two is wrong
FAIL
FAIL\texample.com/calc/calc\t0.003s
?   \texample.com/calc/notests\t[no test files]
FAIL
"""
CARGO_NO_FAIL_FAST = """\
    Finished `test` profile [unoptimized + debuginfo] target(s) in 0.05s
     Running unittests src/lib.rs (/tmp/cap/cargotarget/debug/deps/calc-c6626fb655a8d231)

running 4 tests
test tests::adds ... ok
test tests::also_adds ... ok
test tests::slow ... ignored
test tests::adds_wrong ... FAILED

failures:

---- tests::adds_wrong stdout ----

thread 'tests::adds_wrong' (11494) panicked at src/lib.rs:14:23:
assertion `left == right` failed
  left: 4
 right: 5
note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace


failures:
    tests::adds_wrong

test result: FAILED. 2 passed; 1 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.00s

error: test failed, to rerun pass `--lib`
     Running tests/it.rs (/tmp/cap/cargotarget/debug/deps/it-b462ec70d69dbcd3)

running 1 test
test integration ... ok

test result: ok. 1 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s

   Doc-tests calc

running 1 test
test src/lib.rs - add (line 3) ... ok

test result: ok. 1 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.10s

error: 1 target failed:
    `--lib`
"""
CARGO_COMPILE_ERROR = """\
   Compiling calc v0.1.0 (/tmp/cap/rs)
error[E0425]: cannot find value `undefined_thing` in this scope
 --> src/lib.rs:6:45
  |
6 | pub fn add(a: i32, b: i32) -> i32 { a + b + undefined_thing }
  |                                             ^^^^^^^^^^^^^^^ not found in this scope

For more information about this error, try `rustc --explain E0425`.
error: could not compile `calc` (lib) due to 1 previous error
warning: build failed, waiting for other jobs to finish...
error: could not compile `calc` (lib test) due to 1 previous error
"""
NODE_TAP = """\
TAP version 13
# Subtest: adds
ok 1 - adds
  ---
  duration_ms: 0.771097
  ...
# Subtest: adds wrong
not ok 2 - adds wrong
  ---
  duration_ms: 0.802567
  location: '/tmp/cap/node/calc.test.js:4:1'
  failureType: 'testCodeFailure'
  ...
# Subtest: skipped
ok 3 - skipped # SKIP
  ---
  duration_ms: 0.081058
  ...
# Subtest: also adds
ok 4 - also adds
  ---
  duration_ms: 0.080101
  ...
1..4
# tests 4
# suites 0
# pass 2
# fail 1
# cancelled 0
# skipped 1
# todo 0
# duration_ms 71.345468
"""
NODE_SPEC = """\
✔ adds (0.888846ms)
✖ adds wrong (0.894042ms)
  AssertionError [ERR_ASSERTION]: Expected values to be strictly equal:

﹣ skipped (0.08468ms) # SKIP
✔ also adds (0.084364ms)
ℹ tests 4
ℹ suites 0
ℹ pass 2
ℹ fail 1
ℹ cancelled 0
ℹ skipped 1
ℹ todo 0
ℹ duration_ms 69.465002
"""
JEST_WITH_BROKEN_SUITE = """\
FAIL jt/calc.test.js
  ● adds wrong

    expect(received).toBe(expected) // Object.is equality

    Expected: 5
    Received: 4

FAIL jt/broken.test.js
  ● Test suite failed to run

    Jest encountered an unexpected token

Test Suites: 2 failed, 2 total
Tests:       1 failed, 1 skipped, 2 passed, 4 total
Snapshots:   0 total
Time:        0.291 s
Ran all test suites matching jt.
"""
JEST_GREEN = """\
Test Suites: 1 passed, 1 total
Tests:       1 skipped, 3 passed, 4 total
Snapshots:   0 total
Time:        0.201 s, estimated 1 s
Ran all test suites matching jt.
"""
MOCHA_WITH_HOOK_FAILURE = """\


  calc
    ✔ adds
    1) adds wrong
    - skipped
    ✔ also adds

  db
    2) "before all" hook for "reads"


  2 passing (3ms)
  1 pending
  2 failing

  1) calc
       adds wrong:

      AssertionError [ERR_ASSERTION]: Expected values to be strictly equal:
"""
VITEST_COLOR = (
    "\x1b[2m Test Files \x1b[22m \x1b[1m\x1b[31m1 failed\x1b[39m\x1b[22m\x1b[90m (1)\x1b[39m\n"
    "\x1b[2m      Tests \x1b[22m \x1b[1m\x1b[31m1 failed\x1b[39m\x1b[22m\x1b[2m | \x1b[22m\x1b[1m"
    "\x1b[32m2 passed\x1b[39m\x1b[22m\x1b[2m | \x1b[22m\x1b[33m1 skipped\x1b[39m\x1b[90m (4)\x1b[39m\n"
)
VITEST_BROKEN_SUITE = """\
 ❯ vt/calc.test.js (4 tests | 1 failed | 1 skipped) 6ms
   ✓ adds 1ms
   × adds wrong 4ms
   ↓ skipped
   ✓ also adds 0ms
 ❯ vt/broken.test.js (0 test)

⎯⎯⎯⎯⎯⎯ Failed Suites 1 ⎯⎯⎯⎯⎯⎯⎯

 FAIL  vt/broken.test.js [ vt/broken.test.js ]
RolldownError: Parse failure: Parse failed with 1 error:

⎯⎯⎯⎯⎯⎯⎯ Failed Tests 1 ⎯⎯⎯⎯⎯⎯⎯

 FAIL  vt/calc.test.js > adds wrong
AssertionError: expected 4 to be 5 // Object.is equality

 Test Files  2 failed (2)
      Tests  1 failed | 2 passed | 1 skipped (4)
   Start at  05:37:17
   Duration  331ms (transform 12ms, setup 0ms, import 47ms, tests 6ms, environment 0ms)
"""
TOX_TWO_ENVS = """\
py311: install_deps> python -I -m pip install pytest
py311: commands[0]> pytest -q -p no:cacheprovider --color=no
..FEs                                                                    [100%]
FAILED test_a.py::test_fail - assert 1 == 2
ERROR test_a.py::test_err - RuntimeError: x
1 failed, 2 passed, 1 skipped, 1 error in 0.01s
py311: exit 1 (0.16 seconds) /tmp/cap/tx> pytest -q -p no:cacheprovider --color=no pid=7777
py311: FAIL ✖ in 1.95 seconds
lint: install_deps> python -I -m pip install pytest
lint: commands[0]> pytest -q -p no:cacheprovider --color=no -k ok
..                                                                       [100%]
2 passed, 3 deselected in 0.00s
  py311: FAIL code 1 (1.95=setup[1.79]+cmd[0.16] seconds)
  lint: OK (1.64=setup[1.50]+cmd[0.14] seconds)
  evaluation failed :( (3.61 seconds)
"""
NOX_TWO_SESSIONS = """\
nox > Running session tests
nox > pytest -q -p no:cacheprovider --color=no
..FEs                                                                    [100%]
FAILED test_a.py::test_fail - assert 1 == 2
ERROR test_a.py::test_err - RuntimeError: x
1 failed, 2 passed, 1 skipped, 1 error in 0.01s
nox > Command pytest -q -p no:cacheprovider --color=no failed with exit code 1
nox > Session tests failed.
nox > Running session quick
nox > pytest -q -p no:cacheprovider --color=no -k ok
..                                                                       [100%]
2 passed, 3 deselected in 0.00s
nox > Session quick was successful.
nox > Ran 2 sessions:
nox > * tests: failed
nox > * quick: success
"""
MAKE_AROUND_CARGO = (
    "cargo test --no-fail-fast\n" + CARGO_NO_FAIL_FAST + "make: *** [Makefile:2: test] Error 101\n"
)
# What a shell script that keeps its own tally prints (the plain line any runner may use).
GENERIC_SCRIPT = "checking parser... ok\nchecking writer... FAIL\nresult: 3 passed, 1 failed, 2 skipped\n"
PYTEST_JUNIT_XML = (
    '<?xml version="1.0" encoding="utf-8"?><testsuites name="pytest tests"><testsuite '
    'name="pytest" errors="1" failures="1" skipped="1" tests="5" time="0.030" '
    'timestamp="2026-11-25T04:57:44.178663+00:00" hostname="vm"><testcase classname="test_a" '
    'name="test_ok" time="0.000" /><testcase classname="test_a" name="test_ok2" time="0.000" />'
    '<testcase classname="test_a" name="test_fail" time="0.000"><failure message="assert 1 == 2">'
    "E   assert 1 == 2</failure></testcase><testcase classname=\"test_a\" name=\"test_err\" "
    'time="0.000"><error message="failed on setup with &quot;RuntimeError: x&quot;">E   '
    'RuntimeError: x</error></testcase><testcase classname="test_a" name="test_skip" '
    'time="0.000"><skipped type="pytest.skip" message="unconditional skip">unconditional skip'
    "</skipped></testcase></testsuite></testsuites>"
)


def counts(passed: int = 0, failed: int = 0, errors: int = 0, skipped: int = 0) -> TestCounts:
    return TestCounts(passed=passed, failed=failed, errors=errors, skipped=skipped)


@pytest.mark.parametrize(
    ("parser", "text", "expected"),
    [
        # subtests count as leaves: TestTable/one passed, TestTable/two failed, TestTable is not
        # counted again; the package that did not build is one error
        (parse_go_test, GO_VERBOSE_WITH_BUILD_FAILURE, counts(3, 2, 1, 1)),
        (parse_go_test, GO_VERBOSE_PANIC, counts(1, 1)),
        (parse_go_test, GO_VERBOSE_TIMEOUT, counts(passed=1, errors=1)),
        (parse_go_test, GO_VERBOSE_GREEN, counts(passed=2)),
        (parse_go_test, GO_QUIET, counts(failed=2)),
        (parse_cargo_test, CARGO_NO_FAIL_FAST, counts(4, 1, 0, 1)),
        (parse_cargo_test, CARGO_COMPILE_ERROR, counts(errors=2)),
        (parse_node_test_summary, NODE_TAP, counts(2, 1, 0, 1)),
        (parse_node_test_summary, NODE_SPEC, counts(2, 1, 0, 1)),
        (parse_jest_summary, JEST_WITH_BROKEN_SUITE, counts(2, 1, 1, 1)),
        (parse_jest_summary, JEST_GREEN, counts(3, 0, 0, 1)),
        (parse_mocha_summary, MOCHA_WITH_HOOK_FAILURE, counts(2, 2, 0, 1)),
        (parse_vitest_summary, VITEST_COLOR, counts(2, 1, 0, 1)),
        (parse_vitest_summary, VITEST_BROKEN_SUITE, counts(2, 1, 1, 1)),
        (parse_junit_xml, PYTEST_JUNIT_XML, counts(2, 1, 1, 1)),
        (parse_session_summaries, TOX_TWO_ENVS, TestCounts(passed=4, failed=1, errors=1, skipped=1,
                                                           deselected=3)),
        (parse_session_summaries, NOX_TWO_SESSIONS, TestCounts(passed=4, failed=1, errors=1,
                                                               skipped=1, deselected=3)),
        (parse_generic_summary, GENERIC_SCRIPT, counts(3, 1, 0, 2)),
    ],
)
def test_parses_real_runner_output(
    parser: Callable[[str], TestCounts | None], text: str, expected: TestCounts
) -> None:
    assert parser(text) == expected


ALL_FIXTURES = [GO_VERBOSE_WITH_BUILD_FAILURE, GO_QUIET, CARGO_NO_FAIL_FAST, NODE_TAP, NODE_SPEC,
                JEST_WITH_BROKEN_SUITE, MOCHA_WITH_HOOK_FAILURE, VITEST_BROKEN_SUITE,
                PYTEST_JUNIT_XML, GENERIC_SCRIPT, MIXED_QUIET]
OWN_PARSER: dict[Callable[[str], TestCounts | None], list[str]] = {
    parse_go_test: [GO_VERBOSE_WITH_BUILD_FAILURE, GO_QUIET],
    parse_cargo_test: [CARGO_NO_FAIL_FAST], parse_node_test_summary: [NODE_TAP, NODE_SPEC],
    parse_jest_summary: [JEST_WITH_BROKEN_SUITE], parse_mocha_summary: [MOCHA_WITH_HOOK_FAILURE],
    parse_vitest_summary: [VITEST_BROKEN_SUITE], parse_junit_xml: [PYTEST_JUNIT_XML],
    parse_generic_summary: [GENERIC_SCRIPT], parse_pytest_summary: [MIXED_QUIET],
}


@pytest.mark.parametrize("parser", list(OWN_PARSER))
def test_parser_ignores_other_runners_output(parser: Callable[[str], TestCounts | None]) -> None:
    # the fall-back tries every parser in turn, so each must say None to output not its own
    for text in ALL_FIXTURES:
        if text not in OWN_PARSER[parser]:
            assert parser(text) is None, text[:60]


@pytest.mark.parametrize(
    ("text", "runner", "expected"),
    [
        (MAKE_AROUND_CARGO, "make", counts(4, 1, 0, 1)),
        (CARGO_NO_FAIL_FAST, "custom", counts(4, 1, 0, 1)),
        (GO_VERBOSE_PANIC, "make", counts(1, 1)),
        (JEST_GREEN, "npm", counts(3, 0, 0, 1)),
        (MIXED_QUIET, "npm", TestCounts(passed=2, failed=1, errors=1, skipped=1, xfailed=1,
                                        xpassed=1, warnings=1)),  # npm test that runs pytest
        (TOX_TWO_ENVS, "tox", TestCounts(passed=4, failed=1, errors=1, skipped=1, deselected=3)),
        (GENERIC_SCRIPT, "custom", counts(3, 1, 0, 2)),
        ("make: *** No rule to make target 'test'.  Stop.\n", "make", None),
    ],
)
def test_output_parsed_by_runner_then_any_parser(
    text: str, runner: Runner, expected: TestCounts | None
) -> None:
    assert parse_test_output(text, runner) == expected


class ScriptedSandbox:
    """Answers every command with one fixed result and records what it was asked to run."""

    def __init__(self, result: ExecResult) -> None:
        self.result = result
        self.argv: list[str] = []

    def run(self, argv: Sequence[str], *, cwd: str = ".", timeout: float | None = None) -> ExecResult:
        self.argv = list(argv)
        return self.result


def test_run_tests_uses_the_commands_parser_on_stdout_and_stderr() -> None:
    # jest prints its summary on stderr; cargo its compile errors there and results on stdout
    sandbox = ScriptedSandbox(ExecResult(1, "", JEST_WITH_BROKEN_SUITE, 0.3))
    report = run_tests(sandbox, TestCommand(["npm", "test", "--silent"], "npm"))
    assert (report.passed, report.failed, report.errors, report.skipped) == (2, 1, 1, 1)
    assert sandbox.argv == ["npm", "test", "--silent"] and "[stderr]" in report.output
    assert not report.green


def test_run_tests_accepts_a_plain_argv_and_defaults_to_pytest() -> None:
    sandbox = ScriptedSandbox(ExecResult(0, GO_VERBOSE_GREEN, "", 0.1))
    assert run_tests(sandbox, ["go", "test", "-v", "./..."]).green
    run_tests(sandbox)
    assert sandbox.argv == list(PYTEST_COMMAND)


def test_unreadable_output_counts_nothing_and_is_not_green() -> None:
    report = run_tests(ScriptedSandbox(ExecResult(0, "all good!\n", "", 0.1)), ["./check.sh"])
    assert (report.passed, report.failed, report.errors) == (0, 0, 0) and not report.green
