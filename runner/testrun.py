"""Run a repository's tests in the sandbox and read the counts from the runner's own summary."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from runner.sandbox import Sandbox

# No cache provider: .pytest_cache would show up as a change in the task's diff. The default
# -r (fE) stays on: its "FAILED test::name - reason" lines land in the kept tail of long output.
PYTEST_COMMAND: tuple[str, ...] = ("python", "-m", "pytest", "-q", "-p", "no:cacheprovider", "--color=no")

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


@dataclass(frozen=True)
class TestCounts:
    """The numbers in pytest's final summary line (xfailed/xpassed kept apart)."""

    __test__ = False  # not a test class, despite the name

    passed: int = 0
    failed: int = 0
    errors: int = 0
    skipped: int = 0
    xfailed: int = 0
    xpassed: int = 0
    deselected: int = 0
    warnings: int = 0


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


_FIELD_FOR_WORD = {
    "passed": "passed", "failed": "failed", "error": "errors", "errors": "errors",
    "skipped": "skipped", "xfailed": "xfailed", "xpassed": "xpassed",
    "deselected": "deselected", "warning": "warnings", "warnings": "warnings",
}


def parse_pytest_summary(text: str) -> TestCounts | None:
    """Counts from the last pytest summary line in `text` (`3 passed, 1 failed in 0.12s`), or None."""
    matches = list(_SUMMARY_LINE.finditer(_ANSI.sub("", text)))
    if not matches:
        return None
    counts: dict[str, int] = {}
    for number, word in _COUNT.findall(matches[-1].group("body")):
        field = _FIELD_FOR_WORD.get(word)
        if field is not None:
            counts[field] = counts.get(field, 0) + int(number)
    return TestCounts(**counts)


def run_tests(
    sandbox: Sandbox, command: Sequence[str] | None = None, *, timeout: float | None = None
) -> TestReport:
    """Run the test command (pytest by default) in the sandbox and report what happened."""
    result = sandbox.run(list(command or PYTEST_COMMAND), timeout=timeout)
    counts = parse_pytest_summary(result.stdout) or parse_pytest_summary(result.stderr) or TestCounts()
    output = result.stdout
    if result.stderr:
        output += ("\n" if output and not output.endswith("\n") else "") + "[stderr]\n" + result.stderr
    return TestReport(
        passed=counts.passed + counts.xpassed,
        failed=counts.failed,
        errors=counts.errors,
        skipped=counts.skipped + counts.xfailed,
        exit_code=result.exit_code,
        output=output,
        killed=result.killed,
    )


def detect_test_command(workspace_path: Path) -> list[str] | None:
    """The test command for a Python repo (pytest when it has tests or pytest config), else None."""
    root = Path(workspace_path)
    if _has_pytest_config(root) or (root / "tests").is_dir() or (root / "test").is_dir():
        return list(PYTEST_COMMAND)
    if any(_is_test_module(path.name) for path in _python_files(root, depth=3)):
        return list(PYTEST_COMMAND)
    return None


def _has_pytest_config(root: Path) -> bool:
    if any((root / name).is_file() for name in _PYTEST_CONFIGS):
        return True
    for name, section in _SECTION_CONFIGS.items():
        path = root / name
        if path.is_file() and section in path.read_text(errors="replace"):
            return True
    return False


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
