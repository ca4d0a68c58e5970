"""The agent's tools: what the model may do in the task's workspace.

File reads and edits happen on the worker side, confined to the workspace (symlinks that point
out of it are refused); anything that executes repository code runs in the sandbox.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.agent.edits import Edit, apply_edit
from runner.gates.command_policy import DEFAULT_POLICY, CommandPolicy, check_command
from runner.model import ToolCall, ToolSpec
from runner.sandbox import Sandbox
from runner.testrun import TestCommand, TestReport, run_tests

# Tools that never change the work tree: a step of only these needs no work-in-progress save.
READ_ONLY_TOOLS = frozenset({"read_file", "list_files", "search", "finish"})
MAX_READ_CHARS = 20_000
MAX_LIST_ENTRIES = 400
SKIP_DIRS = frozenset({".git", "__pycache__", ".venv", "node_modules", ".mypy_cache", ".tox"})

TOOL_SPECS: list[ToolSpec] = [
    {
        "name": "read_file",
        "description": "Read a file of the repository, optionally a range of lines (1-based).",
        "input_schema": {
            "type": "object",
            "properties": {
                "path": {"type": "string"},
                "start_line": {"type": "integer", "minimum": 1},
                "end_line": {"type": "integer", "minimum": 1},
            },
            "required": ["path"],
        },
    },
    {
        "name": "list_files",
        "description": "List files under a directory of the repository (default: the root).",
        "input_schema": {
            "type": "object", "properties": {"path": {"type": "string"}}, "required": [],
        },
    },
    {
        "name": "search",
        "description": "Search the repository with a ripgrep regular expression.",
        "input_schema": {
            "type": "object",
            "properties": {"pattern": {"type": "string"}, "path": {"type": "string"}},
            "required": ["pattern"],
        },
    },
    {
        "name": "edit_file",
        "description": (
            "Replace exactly one occurrence of `search` in a file with `replace`. `search` must "
            "match the file exactly, whitespace included. An empty `search` creates a new file."
        ),
        "input_schema": {
            "type": "object",
            "properties": {
                "path": {"type": "string"},
                "search": {"type": "string"},
                "replace": {"type": "string"},
            },
            "required": ["path", "search", "replace"],
        },
    },
    {
        "name": "run_command",
        "description": (
            "Run a shell command (bash -c) in the repository's sandbox: no network, the repo at "
            "the working directory. Destructive commands, pushing and history rewrites are refused."
        ),
        "input_schema": {
            "type": "object",
            "properties": {
                "command": {"type": "string"},
                "timeout_s": {"type": "integer", "minimum": 1, "maximum": 600},
            },
            "required": ["command"],
        },
    },
    {
        "name": "run_tests",
        "description": "Run the repository's test suite in the sandbox and report the result.",
        "input_schema": {"type": "object", "properties": {}, "required": []},
    },
    {
        "name": "finish",
        "description": "Stop working: the change is complete. Give a short summary for the PR.",
        "input_schema": {
            "type": "object",
            "properties": {"summary": {"type": "string"}},
            "required": ["summary"],
        },
    },
]


@dataclass(frozen=True)
class Observation:
    """A tool's answer to the model; ``finished`` ends the loop."""

    content: str
    is_error: bool = False
    finished: bool = False


class OutsideWorkspace(ValueError):
    """A path that leaves the workspace."""


class Toolbox:
    """Executes tool calls against one workspace and its sandbox."""

    def __init__(
        self, workspace: Path, sandbox: Sandbox, test_command: TestCommand | Sequence[str] | None,
        *, test_timeout: float | None = None, output_limit: int = 8_000,
        command_policy: CommandPolicy = DEFAULT_POLICY,
    ) -> None:
        self.root = workspace.resolve()
        self.output_limit = output_limit
        self.command_policy = command_policy
        self.sandbox = sandbox
        self.test_command = test_command
        self.test_timeout = test_timeout
        self.last_tests: TestReport | None = None
        self._handlers: dict[str, Callable[[dict[str, Any]], Observation]] = {
            "read_file": self._read_file, "list_files": self._list_files,
            "search": self._search, "edit_file": self._edit_file,
            "run_command": self._run_command, "run_tests": self._run_tests,
            "finish": self._finish,
        }

    @property
    def specs(self) -> list[ToolSpec]:
        return TOOL_SPECS

    def execute(self, call: ToolCall) -> Observation:
        """Run one tool call; bad input becomes an error observation, not an exception."""
        if call.malformed is not None:
            return Observation(f"{call.name}: {call.malformed}. Send the call again with the "
                               "arguments as one JSON object.", is_error=True)
        handler = self._handlers.get(call.name)
        if handler is None:
            return Observation(f"unknown tool {call.name!r}; use one of "
                               f"{', '.join(self._handlers)}", is_error=True)
        try:
            return handler(call.input)
        except (OutsideWorkspace, KeyError, TypeError, ValueError, OSError) as exc:
            return Observation(f"{call.name}: {_describe(exc)}", is_error=True)

    def resolve(self, relative: str) -> Path:
        """A path inside the workspace; refuses escapes, absolute paths and .git."""
        if Path(relative).is_absolute():
            raise OutsideWorkspace(f"{relative!r} is absolute; use a path relative to the repo")
        target = (self.root / relative).resolve()
        if target != self.root and self.root not in target.parents:
            raise OutsideWorkspace(f"{relative!r} is outside the repository")
        if ".git" in target.relative_to(self.root).parts:
            raise OutsideWorkspace(".git is not accessible to the agent")
        return target

    def _read_file(self, args: dict[str, Any]) -> Observation:
        path = self.resolve(str(args["path"]))
        lines = path.read_text(errors="replace").splitlines()
        start = int(args.get("start_line") or 1)
        end = int(args.get("end_line") or len(lines))
        numbered = "\n".join(f"{n:5d}  {lines[n - 1]}" for n in range(start, min(end, len(lines)) + 1))
        if len(numbered) > MAX_READ_CHARS:
            numbered = numbered[:MAX_READ_CHARS] + "\n… (cut; read a smaller line range)"
        return Observation(numbered or "(empty file)")

    def files(self, relative: str = ".") -> list[str]:
        """Repository files under a directory, sorted, without VCS and cache directories."""
        base = self.resolve(relative)
        return sorted(
            str(p.relative_to(self.root)) for p in base.rglob("*")
            if p.is_file() and not SKIP_DIRS.intersection(p.relative_to(self.root).parts)
        )

    def _list_files(self, args: dict[str, Any]) -> Observation:
        entries = self.files(str(args.get("path") or "."))
        shown = entries[:MAX_LIST_ENTRIES]
        more = f"\n… and {len(entries) - len(shown)} more" if len(entries) > len(shown) else ""
        return Observation("\n".join(shown) + more if shown else "(no files)")

    def _search(self, args: dict[str, Any]) -> Observation:
        target = self.resolve(str(args.get("path") or "."))
        relative = str(target.relative_to(self.root)) or "."
        result = self.sandbox.run(
            ["rg", "--line-number", "--max-count", "50", "--", str(args["pattern"]), relative],
            timeout=30,
        )
        if result.exit_code == 1:
            return Observation("no matches")
        return Observation(result.stdout or result.stderr, is_error=result.exit_code != 0)

    def _edit_file(self, args: dict[str, Any]) -> Observation:
        edit = Edit(str(args["path"]), str(args["search"]), str(args["replace"]))
        path = self.resolve(edit.path)
        original = path.read_text() if path.exists() else ""
        result = apply_edit(original, edit)
        if result.text is None:
            return Observation(result.message, is_error=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(result.text)
        return Observation(result.message)

    def _run_command(self, args: dict[str, Any]) -> Observation:
        command = str(args["command"])
        verdict = check_command(command, self.command_policy)
        if not verdict.allowed:
            return Observation(verdict.reason, is_error=True)
        timeout = min(float(args.get("timeout_s") or 120), 600.0)
        result = self.sandbox.run(["bash", "-c", command], timeout=timeout)
        head = f"exit {result.exit_code}" + (f" (killed: {result.killed})" if result.killed else "")
        output = result.stdout + (f"\n[stderr]\n{result.stderr}" if result.stderr else "")
        return Observation(f"{head}\n{truncate_middle(output, self.output_limit)}",
                           is_error=result.exit_code != 0)

    def _run_tests(self, args: dict[str, Any]) -> Observation:
        if not self.test_command:
            return Observation("no test command is known for this repository", is_error=True)
        report = run_tests(self.sandbox, self.test_command, timeout=self.test_timeout)
        self.last_tests = report
        summary = (f"exit {report.exit_code}: {report.passed} passed, {report.failed} failed, "
                   f"{report.errors} errors")
        output = truncate_middle(report.output, self.output_limit)
        if report.green:
            return Observation(f"{summary}\n{output}")
        # A failing run is an error observation: the same failure twice is what the loop halts on.
        names = failing_tests(report.output)
        failing = ", ".join(names[:10]) if names else f"exit {report.exit_code}"
        return Observation(f"tests fail: {failing}\n{summary}\n{output}", is_error=True)

    def _finish(self, args: dict[str, Any]) -> Observation:
        return Observation(str(args.get("summary") or "done"), finished=True)


_FAILING = [
    re.compile(r"^(?:FAILED|ERROR) (\S+)", re.MULTILINE),  # pytest -ra summary
    re.compile(r"^\s*--- FAIL: (\S+)", re.MULTILINE),  # go test
    re.compile(r"^test (\S+) \.\.\. FAILED", re.MULTILINE),  # cargo test
    re.compile(r"^\s*[✕×] (.+?)(?: \(\d+ ?ms\))?$", re.MULTILINE),  # jest, vitest
]


def failing_tests(output: str) -> list[str]:
    """Names of failing tests in a runner's output (sorted, unique), for "same failure" checks."""
    names = {m.group(1).strip() for pattern in _FAILING for m in pattern.finditer(output)}
    return sorted(names)


def truncate_middle(text: str, limit: int) -> str:
    """At most ``limit`` characters: the head and the tail, where errors and summaries are."""
    if len(text) <= limit:
        return text
    head = limit // 3
    tail = limit - head
    cut = len(text) - head - tail
    return f"{text[:head]}\n… ({cut} characters cut) …\n{text[-tail:]}"


def _describe(exc: Exception) -> str:
    if isinstance(exc, KeyError):
        return f"missing argument {exc.args[0]!r}"
    if isinstance(exc, FileNotFoundError):
        return f"no such file: {exc.filename}"
    return str(exc)


def render_input(call: ToolCall) -> str:
    """A short one-line form of a tool call, for logs and the status comment."""
    text = json.dumps(call.input, ensure_ascii=False)
    return f"{call.name}({text[:80]}{'…' if len(text) > 80 else ''})"
