"""Run a repository's tests in the sandbox and read the counts from the runner's own summary.

Which command: `test:` from the repo config, else the first detection rule that fits (see
`detect_test_command`). Which parser: the one for the command's runner, then every other one,
so a `make test` or a custom command that wraps a known runner is still counted.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Literal

from runner.sandbox import Sandbox

# No cache provider: .pytest_cache would show up as a change in the task's diff. The default
# -r (fE) stays on: its "FAILED test::name - reason" lines land in the kept tail of long output.
PYTEST_COMMAND: tuple[str, ...] = ("python", "-m", "pytest", "-q", "-p", "no:cacheprovider", "--color=no")
# -v: without it `go test` names only failing tests, so nothing would count as passed.
GO_COMMAND: tuple[str, ...] = ("go", "test", "-v", "./...")
# --no-fail-fast: otherwise one failing unit-test binary hides the integration and doc tests.
CARGO_COMMAND: tuple[str, ...] = ("cargo", "test", "--no-fail-fast")
NPM_COMMAND: tuple[str, ...] = ("npm", "test", "--silent")
MAKE_COMMAND: tuple[str, ...] = ("make", "test")

Runner = Literal["pytest", "tox", "nox", "npm", "go", "cargo", "make", "custom"]

_SUMMARY_LINE = re.compile(
    r"^[=\s]*(?P<body>(?:no tests ran|\d+ [a-z]+)(?:,\s*\d+ [a-z]+)*)"
    r"\s+in\s+[\d.]+\s*s(?:econds)?(?:\s*\([\d:.]+\))?\s*=*\s*$",
    re.MULTILINE,
)
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_COUNT = re.compile(r"(\d+) ([a-z]+)")
_PYTEST_CONFIGS = ("pytest.ini", ".pytest.ini", "conftest.py")
_SECTION_CONFIGS = {"pyproject.toml": "[tool.pytest.ini_options]", "setup.cfg": "[tool:pytest]",
                    "tox.ini": "[pytest]"}
_SKIP_DIRS = {".git", ".venv", "venv", "node_modules", ".tox", "build", "dist", "site-packages"}
_NPM_DEFAULT_TEST = "no test specified"  # npm init's `echo "Error: no test specified" && exit 1`
_MAKEFILES = ("GNUmakefile", "makefile", "Makefile")
# `test:` or `check test::` as a rule; `test := x` / `test ::= x` are variable assignments.
_MAKE_TEST_RULE = re.compile(r"^(?:[\w.-]+[ \t]+)*test(?:[ \t]+[\w.-]+)*[ \t]*::?(?![:=])", re.MULTILINE)


@dataclass(frozen=True)
class TestCommand:
    """A test command and the runner whose output it prints (which picks the parser)."""

    __test__ = False

    argv: list[str]
    runner: Runner


@dataclass(frozen=True)
class TestCounts:
    """The numbers in a runner's summary (pytest's xfailed/xpassed kept apart)."""

    __test__ = False  # not a test class, despite the name

    passed: int = 0
    failed: int = 0
    errors: int = 0
    skipped: int = 0
    xfailed: int = 0
    xpassed: int = 0
    deselected: int = 0
    warnings: int = 0

    def __add__(self, other: TestCounts) -> TestCounts:
        return TestCounts(**{f.name: getattr(self, f.name) + getattr(other, f.name)
                             for f in fields(self)})


@dataclass(frozen=True)
class TestReport:
    """One test run: counts from the summary line, exit code, the (truncated) output, and any kill."""

    __test__ = False

    passed: int
    failed: int
    errors: int
    skipped: int
    exit_code: int
    output: str
    killed: str | None

    @property
    def green(self) -> bool:
        """Exit 0, not killed, nothing failed or errored, and at least one test really passed.

        A run that proves nothing (no tests, all skipped, output we could not count) is not
        green: the test gate needs evidence, not just a zero exit code.
        """
        clean = self.exit_code == 0 and self.killed is None
        return clean and self.failed == 0 and self.errors == 0 and self.passed > 0


# --- parsers: pure functions from a runner's output to counts, None when it is not theirs ---

_FIELD_FOR_WORD = {
    "passed": "passed", "failed": "failed", "error": "errors", "errors": "errors",
    "skipped": "skipped", "xfailed": "xfailed", "xpassed": "xpassed",
    "deselected": "deselected", "warning": "warnings", "warnings": "warnings",
}


def _plain(text: str) -> str:
    return _ANSI.sub("", text)


def _counts_from_words(pairs: Sequence[tuple[str, str]], words: dict[str, str]) -> TestCounts:
    """TestCounts from ("3", "passed") pairs, mapping each runner's word to a field."""
    counts: dict[str, int] = {}
    for number, word in pairs:
        field = words.get(word)
        if field is not None:
            counts[field] = counts.get(field, 0) + int(number)
    return TestCounts(**counts)


def parse_pytest_summary(text: str) -> TestCounts | None:
    """Counts from the last pytest summary line in `text` (`3 passed, 1 failed in 0.12s`), or None."""
    matches = list(_SUMMARY_LINE.finditer(_plain(text)))
    if not matches:
        return None
    return _counts_from_words(_COUNT.findall(matches[-1].group("body")), _FIELD_FOR_WORD)


_JUNIT_SUITE = re.compile(r"<testsuite\b([^>]*)>")  # `\b` keeps the <testsuites> wrapper out
_XML_INT_ATTR = re.compile(r"""(\w+)\s*=\s*["'](\d+)["']""")


def parse_junit_xml(text: str) -> TestCounts | None:
    """Counts summed over the `<testsuite tests= failures= errors= skipped=>` elements, or None.

    Read with a regex, not an XML parser: the report comes from the repository's own code, and
    entity expansion in an untrusted document is a known way to exhaust memory.
    """
    total = None
    for attributes in _JUNIT_SUITE.findall(text):
        values = {name: int(number) for name, number in _XML_INT_ATTR.findall(attributes)}
        failed, errors = values.get("failures", 0), values.get("errors", 0)
        skipped = values.get("skipped", 0) + values.get("disabled", 0)
        passed = max(0, values.get("tests", 0) - failed - errors - skipped)
        suite = TestCounts(passed=passed, failed=failed, errors=errors, skipped=skipped)
        total = suite if total is None else total + suite
    return total


_SESSION_START = re.compile(r"^(?=nox > Running session |[\w.-]+: commands\[\d+\]> )", re.MULTILINE)


def parse_session_summaries(text: str) -> TestCounts | None:
    """tox/nox: the pytest summary of each session (env) summed, or None if there is none."""
    total = None
    for chunk in _SESSION_START.split(_plain(text)):
        counts = parse_pytest_summary(chunk)
        if counts is not None:
            total = counts if total is None else total + counts
    return total


_GO_RESULT = re.compile(r"^\s*--- (PASS|FAIL|SKIP): (\S+)")
# go prints `ok  \tpkg\t0.01s`, `FAIL\tpkg [build failed]`: the tab keeps TAP's "ok 1 - x" out.
_GO_PACKAGE = re.compile(r"^(ok|FAIL|\?) *\t\S")


def parse_go_test(text: str) -> TestCounts | None:
    """`go test -v`: `--- PASS/FAIL/SKIP` lines per package (subtests as leaves), or None.

    A package that FAILs with no failing test (build failure, panic in TestMain, timeout)
    counts as one error.
    """
    total, seen = TestCounts(), False
    package: dict[str, str] = {}  # test name → PASS/FAIL/SKIP, for the package being printed
    for line in _plain(text).splitlines():
        if result := _GO_RESULT.match(line):
            package[result.group(2)] = result.group(1)
            seen = True
        elif done := _GO_PACKAGE.match(line):
            counts = _count_go_package(package)
            if done.group(1) == "FAIL" and counts.failed == 0:
                counts += TestCounts(errors=1)
            total, package, seen = total + counts, {}, True
    total += _count_go_package(package)  # truncated output may end before the package line
    return total if seen else None


def _count_go_package(statuses: dict[str, str]) -> TestCounts:
    """Leaves count; a parent counts only when it failed and none of its subtests did."""
    parents = {name[:i] for name in statuses for i, ch in enumerate(name) if ch == "/"}
    with_failed_subtest = {name[:i] for name, status in statuses.items() if status == "FAIL"
                           for i, ch in enumerate(name) if ch == "/"}
    counted = [status for name, status in statuses.items()
               if name not in parents or (status == "FAIL" and name not in with_failed_subtest)]
    return TestCounts(passed=counted.count("PASS"), failed=counted.count("FAIL"),
                      skipped=counted.count("SKIP"))


_CARGO_RESULT = re.compile(
    r"^test result: \w+\. (\d+) passed; (\d+) failed; (\d+) ignored; \d+ measured", re.MULTILINE
)
_CARGO_BUILD_ERROR = re.compile(r"^error: could not compile ", re.MULTILINE)


def parse_cargo_test(text: str) -> TestCounts | None:
    """`cargo test`: every `test result:` line summed (unit, integration, doc tests), or None.

    Each target that did not compile counts as one error.
    """
    plain = _plain(text)
    results = _CARGO_RESULT.findall(plain)
    build_errors = len(_CARGO_BUILD_ERROR.findall(plain))
    if not results and not build_errors:
        return None
    total = TestCounts(errors=build_errors)
    for passed, failed, ignored in results:
        total += TestCounts(passed=int(passed), failed=int(failed), skipped=int(ignored))
    return total


_JEST_TESTS = re.compile(r"^Tests:\s+((?:\d+ \w+, )*\d+ total)\s*$", re.MULTILINE)
_JEST_SUITE_ERROR = re.compile(r"^\s*● Test suite failed to run", re.MULTILINE)
# jest and vitest name their counts the same way; "todo" tests are not run.
_JS_WORDS = {"passed": "passed", "failed": "failed", "skipped": "skipped", "todo": "skipped"}


def parse_jest_summary(text: str) -> TestCounts | None:
    """Jest's `Tests:  1 failed, 1 skipped, 2 passed, 4 total`; a suite that failed to run is an error."""
    plain = _plain(text)
    matches = _JEST_TESTS.findall(plain)
    if not matches:
        return None
    counts = _counts_from_words(_COUNT.findall(matches[-1]), _JS_WORDS)
    return counts + TestCounts(errors=len(_JEST_SUITE_ERROR.findall(plain)))


_VITEST_TESTS = re.compile(r"^\s*Tests\s+((?:\d+ \w+(?: \| )?)+)\s*\(\d+\)\s*$", re.MULTILINE)
_VITEST_ERRORS = re.compile(r"Failed Suites (\d+)|^\s*Errors\s+(\d+) errors?", re.MULTILINE)


def parse_vitest_summary(text: str) -> TestCounts | None:
    """Vitest's `Tests  1 failed | 2 passed | 1 skipped (4)`; failed suites and errors are errors."""
    plain = _plain(text)
    matches = _VITEST_TESTS.findall(plain)
    if not matches:
        return None
    counts = _counts_from_words(_COUNT.findall(matches[-1]), _JS_WORDS)
    errors = sum(int(suites or unhandled) for suites, unhandled in _VITEST_ERRORS.findall(plain))
    return counts + TestCounts(errors=errors)


_MOCHA_LINE = re.compile(r"^\s*(\d+) (passing|failing|pending)\b", re.MULTILINE)
_MOCHA_WORDS = {"passing": "passed", "failing": "failed", "pending": "skipped"}


def parse_mocha_summary(text: str) -> TestCounts | None:
    """Mocha's `2 passing (3ms)` / `1 pending` / `1 failing` block, or None."""
    pairs = _MOCHA_LINE.findall(_plain(text))
    if not any(word == "passing" for _, word in pairs):
        return None  # mocha always prints "N passing", even when N is 0
    return _counts_from_words(pairs, _MOCHA_WORDS)


_NODE_LINE = re.compile(r"^[#ℹ] (pass|fail|cancelled|skipped|todo) (\d+)\s*$", re.MULTILINE)
_NODE_WORDS = {"pass": "passed", "fail": "failed", "cancelled": "errors", "skipped": "skipped",
               "todo": "skipped"}


def parse_node_test_summary(text: str) -> TestCounts | None:
    """`node --test` (TAP `# pass 3` or spec `ℹ pass 3`); cancelled tests are errors."""
    last = {word: number for word, number in _NODE_LINE.findall(_plain(text))}
    if "pass" not in last or "fail" not in last:
        return None
    return _counts_from_words([(number, word) for word, number in last.items()], _NODE_WORDS)


_GENERIC_LINE = re.compile(
    r"^\s*(?:\w+:\s*)?(\d+) passed, (\d+) failed(?:, (\d+) skipped)?\s*$", re.MULTILINE
)


def parse_generic_summary(text: str) -> TestCounts | None:
    """The plain `N passed, N failed[, N skipped]` line any script can print, or None."""
    matches = _GENERIC_LINE.findall(_plain(text))
    if not matches:
        return None
    passed, failed, skipped = matches[-1]
    return TestCounts(passed=int(passed), failed=int(failed), skipped=int(skipped or 0))


Parser = Callable[[str], TestCounts | None]
_JS_PARSERS: tuple[Parser, ...] = (parse_jest_summary, parse_vitest_summary,
                                   parse_mocha_summary, parse_node_test_summary)
# Most specific first: a later parser's pattern is looser and could match inside earlier output.
ALL_PARSERS: tuple[Parser, ...] = (parse_pytest_summary, parse_junit_xml, parse_cargo_test,
                                   parse_go_test, *_JS_PARSERS, parse_generic_summary)
PARSERS_FOR: dict[Runner, tuple[Parser, ...]] = {
    "pytest": (parse_pytest_summary, parse_junit_xml),
    "tox": (parse_session_summaries,), "nox": (parse_session_summaries,),
    "go": (parse_go_test,), "cargo": (parse_cargo_test,), "npm": _JS_PARSERS,
    "make": (), "custom": (),
}


def parse_test_output(text: str, runner: Runner) -> TestCounts | None:
    """Counts by the runner's own parsers first, then by any parser that recognises the output."""
    for parser in (*PARSERS_FOR[runner], *ALL_PARSERS):
        counts = parser(text)
        if counts is not None:
            return counts
    return None


# --- running ---


def run_tests(
    sandbox: Sandbox, command: TestCommand | Sequence[str] | None = None, *,
    timeout: float | None = None,
) -> TestReport:
    """Run the test command (pytest by default) in the sandbox and report what happened."""
    test = as_test_command(command)
    result = sandbox.run(test.argv, timeout=timeout)
    output = result.stdout
    if result.stderr:
        output += ("\n" if output and not output.endswith("\n") else "") + "[stderr]\n" + result.stderr
    counts = parse_test_output(output, test.runner) or TestCounts()
    return TestReport(
        passed=counts.passed + counts.xpassed,
        failed=counts.failed,
        errors=counts.errors,
        skipped=counts.skipped + counts.xfailed,
        exit_code=result.exit_code,
        output=output,
        killed=result.killed,
    )


def as_test_command(command: TestCommand | Sequence[str] | None) -> TestCommand:
    """A TestCommand from what callers pass: one already, a plain argv (runner guessed), or None."""
    if isinstance(command, TestCommand):
        return command
    argv = list(command or PYTEST_COMMAND)
    return TestCommand(argv, guess_runner(shlex.join(argv)))


# --- detection ---

_RUNNER_WORDS: dict[str, Runner] = {
    "pytest": "pytest", "py.test": "pytest", "tox": "tox", "nox": "nox", "cargo": "cargo",
    "make": "make", "gmake": "make", "gotestsum": "go",
    "npm": "npm", "npx": "npm", "yarn": "npm", "pnpm": "npm", "node": "npm", "jest": "npm",
    "vitest": "npm", "mocha": "npm",
}
_SHELL_WORD = re.compile(r"[^\s;&|()<>'\"`]+")


def guess_runner(command: str) -> Runner:
    """The runner named first in a shell command (`cd x && make test` → make), else custom."""
    words = [word.rsplit("/", 1)[-1] for word in _SHELL_WORD.findall(command)]
    for index, word in enumerate(words):
        if word == "go" and words[index + 1 : index + 2] == ["test"]:
            return "go"
        if word in _RUNNER_WORDS:
            return _RUNNER_WORDS[word]
    return "custom"


def configured_command(text: str) -> TestCommand:
    """The repo config's `test:` shell string, run by sh, parsed as the runner it names."""
    return TestCommand(["sh", "-c", text], guess_runner(text))


def detect_test_command(workspace_path: Path, configured: str | None = None) -> TestCommand | None:
    """The repo's test command: `test:` from config, else the first detection rule that fits.

    Rules, first match wins:
      1. pytest configuration (pytest.ini, conftest.py, a pytest section) → pytest
      2. go.mod → `go test -v ./...`;  3. Cargo.toml → `cargo test --no-fail-fast`
      4. package.json with a real `scripts.test` → `npm test --silent`
      5. Python test modules (test_*.py, *_test.py, 3 levels deep) → pytest
      6. tox.ini / [tool.tox] → tox;  noxfile.py → nox
      7. a Makefile with a `test` rule → `make test`
      8. a tests/ or test/ directory → pytest
    pytest beats tox/nox: they build their own virtualenvs from the network, which the test
    phase does not have; a repo that wants tox says so with `test: tox -e py311`. Explicit
    ecosystem manifests beat a bare tests/ directory, which JS and C projects have too.
    """
    if configured and configured.strip():
        return configured_command(configured.strip())
    root = Path(workspace_path)
    for rule in _DETECTION_RULES:
        command = rule(root)
        if command is not None:
            return command
    return None


def _pytest_configured(root: Path) -> TestCommand | None:
    return TestCommand(list(PYTEST_COMMAND), "pytest") if _has_pytest_config(root) else None


def _go_module(root: Path) -> TestCommand | None:
    return TestCommand(list(GO_COMMAND), "go") if (root / "go.mod").is_file() else None


def _cargo_crate(root: Path) -> TestCommand | None:
    return TestCommand(list(CARGO_COMMAND), "cargo") if (root / "Cargo.toml").is_file() else None


def _npm_script(root: Path) -> TestCommand | None:
    try:
        manifest = json.loads((root / "package.json").read_text(errors="replace"))
    except (OSError, ValueError):
        return None
    scripts = manifest.get("scripts") if isinstance(manifest, dict) else None
    script = scripts.get("test") if isinstance(scripts, dict) else None
    if not isinstance(script, str) or not script.strip() or _NPM_DEFAULT_TEST in script:
        return None
    return TestCommand(list(NPM_COMMAND), "npm")


def _python_test_modules(root: Path) -> TestCommand | None:
    if any(_is_test_module(path.name) for path in _python_files(root, depth=3)):
        return TestCommand(list(PYTEST_COMMAND), "pytest")
    return None


def _tox_or_nox(root: Path) -> TestCommand | None:
    if (root / "tox.ini").is_file() or (root / "tox.toml").is_file() or _has_section(
        root / "pyproject.toml", "[tool.tox"
    ):
        return TestCommand(["tox"], "tox")
    if (root / "noxfile.py").is_file():
        return TestCommand(["nox"], "nox")
    return None


def _make_target(root: Path) -> TestCommand | None:
    for name in _MAKEFILES:
        path = root / name
        if path.is_file():  # make reads the first of these that exists, in this order
            text = path.read_text(errors="replace")
            return TestCommand(list(MAKE_COMMAND), "make") if _MAKE_TEST_RULE.search(text) else None
    return None


def _tests_directory(root: Path) -> TestCommand | None:
    if (root / "tests").is_dir() or (root / "test").is_dir():
        return TestCommand(list(PYTEST_COMMAND), "pytest")
    return None


_DETECTION_RULES: tuple[Callable[[Path], TestCommand | None], ...] = (
    _pytest_configured, _go_module, _cargo_crate, _npm_script, _python_test_modules,
    _tox_or_nox, _make_target, _tests_directory,
)


def _has_pytest_config(root: Path) -> bool:
    if any((root / name).is_file() for name in _PYTEST_CONFIGS):
        return True
    return any(_has_section(root / name, section) for name, section in _SECTION_CONFIGS.items())


def _has_section(path: Path, section: str) -> bool:
    return path.is_file() and section in path.read_text(errors="replace")


def _is_test_module(name: str) -> bool:
    return (name.startswith("test_") or name.endswith("_test.py")) and name.endswith(".py")


def _python_files(directory: Path, depth: int) -> Iterator[Path]:
    """Python files up to `depth` levels down, skipping VCS, virtualenv and build directories."""
    try:
        entries = sorted(directory.iterdir())
    except OSError:
        return
    for entry in entries:
        if entry.is_symlink():
            continue  # a symlink may point out of the workspace
        if entry.is_file() and entry.suffix == ".py":
            yield entry
        elif entry.is_dir() and depth > 1 and entry.name not in _SKIP_DIRS:
            yield from _python_files(entry, depth - 1)
