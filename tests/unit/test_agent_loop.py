"""The agent loop with the scripted model and a hand-written sandbox fake (no processes)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from runner.agent import Agent, StepEvent
from runner.model import ToolCall
from runner.model.script import ScriptStep
from runner.model.scripted import ScriptedModel
from runner.sandbox import ExecResult
from runner.tools import Toolbox

PASSING = "2 passed in 0.01s"
FAILING = "FAILED tests/test_calc.py::test_add\n1 failed, 1 passed in 0.02s"


class FakeSandbox:
    """Answers test runs from the workspace's state: green once calc.py adds."""

    def __init__(self, workspace: Path) -> None:
        self.workspace = workspace
        self.calls: list[list[str]] = []

    def run(self, argv: Sequence[str], *, cwd: str = ".", timeout: float | None = None) -> ExecResult:
        self.calls.append(list(argv))
        green = "a + b" in (self.workspace / "calc.py").read_text()
        return ExecResult(0 if green else 1, PASSING if green else FAILING, "", 0.01)


def script(*steps: dict[str, Any]) -> ScriptedModel:
    return ScriptedModel([ScriptStep.from_json(step) for step in steps])


def call(name: str, **args: Any) -> dict[str, Any]:
    return {"tool_calls": [{"name": name, "input": args}]}


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    (tmp_path / "calc.py").write_text("def add(a, b):\n    return a - b\n")
    return tmp_path


def toolbox(repo: Path) -> Toolbox:
    return Toolbox(repo, FakeSandbox(repo), ["python", "-m", "pytest"])


def test_loop_edits_tests_and_finishes(repo: Path) -> None:
    model = script(
        call("run_tests"),
        call("edit_file", path="calc.py", search="return a - b", replace="return a + b"),
        call("run_tests"),
        call("finish", summary="add adds now"),
    )
    events: list[StepEvent] = []
    result = Agent(model, toolbox(repo), on_step=events.append).run("fix add")
    assert result.finished and result.summary == "add adds now" and result.steps == 4
    assert "return a + b" in (repo / "calc.py").read_text()
    assert [e.step for e in events] == [1, 2, 3, 4]
    assert result.usage.total_tokens > 0 and events[-1].usage == result.usage
    # The model saw the failing run, then the passing one.
    results = [m for m in model.requests[-1]["messages"] if m["role"] == "user"][1:]
    texts = [block["content"] for m in results for block in m["content"]]
    assert "1 failed" in texts[0] and "2 passed" in texts[2]


def test_failed_edit_is_feedback_and_the_loop_goes_on(repo: Path) -> None:
    model = script(
        call("edit_file", path="calc.py", search="return a-b", replace="return a + b"),
        call("edit_file", path="calc.py", search="return a - b", replace="return a + b"),
        call("finish", summary="ok"),
    )
    result = Agent(model, toolbox(repo)).run("fix add")
    assert result.finished
    feedback = model.requests[1]["messages"][-1]["content"][0]
    assert feedback["is_error"] is True and "SEARCH block not found" in feedback["content"]
    assert "return a - b" in feedback["content"]  # the closest match is shown


def test_step_limit_stops_the_loop(repo: Path) -> None:
    model = script(*[call("run_tests") for _ in range(5)])
    result = Agent(model, toolbox(repo), max_steps=3).run("fix add")
    assert not result.finished and result.steps == 3 and "step limit" in result.stop_reason


def test_text_only_answer_ends_the_turn(repo: Path) -> None:
    result = Agent(script({"text": "Nothing to do."}), toolbox(repo)).run("fix add")
    assert result.finished and result.summary == "Nothing to do."


@pytest.mark.parametrize(
    ("name", "args", "message"),
    [
        ("read_file", {"path": "../../etc/passwd"}, "outside the repository"),
        ("read_file", {"path": "/etc/passwd"}, "absolute"),
        ("read_file", {"path": ".git/config"}, ".git is not accessible"),
        ("read_file", {}, "missing argument 'path'"),
        ("read_file", {"path": "nope.py"}, "no such file"),
        ("delete_everything", {}, "unknown tool"),
    ],
)
def test_bad_tool_calls_become_error_observations(repo: Path, name: str, args: dict[str, Any], message: str) -> None:
    (repo / ".git").mkdir()
    (repo / ".git" / "config").write_text("[core]\n")
    observation = toolbox(repo).execute(ToolCall("t1", name, args))
    assert observation.is_error and message in observation.content


def test_symlink_out_of_the_workspace_is_refused(repo: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    secret = tmp_path_factory.mktemp("outside") / "token.txt"
    secret.write_text("ghs_not_for_the_agent")
    (repo / "link.txt").symlink_to(secret)
    observation = toolbox(repo).execute(ToolCall("t1", "read_file", {"path": "link.txt"}))
    assert observation.is_error and "ghs_" not in observation.content
    edit = toolbox(repo).execute(ToolCall("t2", "edit_file", {"path": "link.txt", "search": "", "replace": "x"}))
    assert edit.is_error and secret.read_text() == "ghs_not_for_the_agent"


def test_read_file_line_range_is_numbered(repo: Path) -> None:
    observation = toolbox(repo).execute(ToolCall("t1", "read_file", {"path": "calc.py", "start_line": 2}))
    assert observation.content == "    2      return a - b"
