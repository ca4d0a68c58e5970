"""The agent loop with the scripted model and a hand-written sandbox fake (no processes)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import pytest

from github_app.repo_config import ApprovalPolicy
from runner.agent.loop import Agent, LoopLimits, StepEvent
from runner.agent.tools import Toolbox
from runner.fakes.script import ScriptStep
from runner.fakes.scripted import ScriptedModel
from runner.gates.approval import Change, Gate, classify_changes, gate
from runner.gates.budget import BudgetLimits, RunBudget
from runner.model import ToolCall
from runner.sandbox import ExecResult

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


PLAN = {"text": "- [ ] Find the bug in add\n- [ ] Fix add\n- [ ] Run the tests\n"
                "Acceptance:\n- [ ] test_add passes"}


def agent(model: ScriptedModel, repo: Path, **kwargs: Any) -> Agent:
    return Agent(model, kwargs.pop("tools", None) or toolbox(repo), **kwargs)


def tool_results(request: dict[str, Any]) -> list[dict[str, Any]]:
    """The tool results and texts the model was sent in its last user message."""
    return list(request["messages"][-1]["content"])


def test_loop_plans_edits_tests_and_finishes(repo: Path) -> None:
    model = script(
        PLAN,
        call("run_tests"),
        call("edit_file", path="calc.py", search="return a - b", replace="return a + b"),
        call("run_tests"),
        call("mark_done", items=[1, 2, 3]),
        call("finish", summary="add adds now"),
    )
    events: list[StepEvent] = []
    result = agent(model, repo, on_step=events.append).run("fix add")
    assert result.outcome == "finished" and result.summary == "add adds now" and result.steps == 5
    assert result.plan is not None and result.plan.items == ["Find the bug in add", "Fix add", "Run the tests"]
    assert result.plan.acceptance == ["test_add passes"] and result.plan.done == {1, 2, 3}
    assert "return a + b" in (repo / "calc.py").read_text()
    assert [e.step for e in events] == [1, 2, 3, 4, 5]
    assert events[0].plan_item == "Find the bug in add" and events[-1].plan_item == "all items done"
    assert result.usage.total_tokens > 0 and events[-1].usage == result.usage
    # The planner was asked without tools; the executor got the plan in its first message.
    assert model.requests[0].get("tools") in (None, [])
    assert "1. Find the bug in add" in model.requests[1]["messages"][0]["content"][0]["text"]
    # The executor saw the failing run (as an error), then the passing one.
    first_run = tool_results(model.requests[2])[0]
    assert first_run["is_error"] and "tests fail: tests/test_calc.py::test_add" in first_run["content"]
    assert "2 passed" in tool_results(model.requests[4])[0]["content"]


def test_a_failing_fix_is_reported_and_the_next_one_lands(repo: Path) -> None:
    model = script(
        PLAN,
        call("edit_file", path="calc.py", search="return a - b", replace="return a * b"),
        call("run_tests"),
        call("edit_file", path="calc.py", search="return a * b", replace="return a + b"),
        call("run_tests"),
        call("finish", summary="fixed on the second try"),
    )
    result = agent(model, repo).run("fix add")
    assert result.finished and result.steps == 5
    assert tool_results(model.requests[3])[0]["is_error"] is True
    assert tool_results(model.requests[5])[0]["is_error"] is False


def test_failed_edit_is_feedback_and_the_loop_goes_on(repo: Path) -> None:
    model = script(
        PLAN,
        call("edit_file", path="calc.py", search="return a-b", replace="return a + b"),
        call("edit_file", path="calc.py", search="return a - b", replace="return a + b"),
        call("finish", summary="ok"),
    )
    result = agent(model, repo).run("fix add")
    assert result.finished
    feedback = tool_results(model.requests[2])[0]
    assert feedback["is_error"] is True and "SEARCH block not found" in feedback["content"]
    assert "return a - b" in feedback["content"]  # the closest match is shown


def test_iteration_limit_stops_the_loop(repo: Path) -> None:
    model = script(PLAN, *[call("read_file", path="calc.py") for _ in range(5)])
    result = agent(model, repo, limits=LoopLimits(max_iterations=3)).run("fix add")
    assert result.outcome == "iteration_limit" and result.steps == 3
    assert "iteration limit (3)" in result.stop_reason and model.remaining == 2


def test_text_only_and_empty_answers_are_nudged_not_taken_as_done(repo: Path) -> None:
    model = script(PLAN, {"text": "I think it is fine."}, {"text": ""},
                   call("finish", summary="done"))
    result = agent(model, repo).run("fix add")
    assert result.finished and result.summary == "done" and result.steps == 3
    nudge = model.requests[2]["messages"][-1]["content"][0]["text"]
    assert "No tool was called" in nudge
    assert "Your reply was empty" in model.requests[3]["messages"][-1]["content"][0]["text"]


def test_unknown_tool_is_an_error_observation_and_the_loop_goes_on(repo: Path) -> None:
    model = script(PLAN, call("delete_repo", target="x"), call("finish", summary="ok"))
    result = agent(model, repo).run("fix add")
    assert result.finished
    observation = tool_results(model.requests[2])[0]
    assert observation["is_error"] and "unknown tool 'delete_repo'" in observation["content"]


def test_arguments_that_are_not_json_come_back_as_an_error_and_the_loop_goes_on(repo: Path) -> None:
    broken = {"tool_calls": [{"name": "edit_file", "input": '{"path": "calc.py", "search": "return a'}]}
    listed = {"tool_calls": [{"name": "read_file", "input": '["calc.py"]'}]}
    model = script(PLAN, broken, listed,
                   call("edit_file", path="calc.py", search="return a - b", replace="return a + b"),
                   call("finish", summary="ok"))
    result = agent(model, repo).run("fix add")
    assert result.finished and "return a + b" in (repo / "calc.py").read_text()
    bad_json = tool_results(model.requests[2])[0]
    assert bad_json["is_error"] and "not valid JSON" in bad_json["content"]
    not_object = tool_results(model.requests[3])[0]
    assert not_object["is_error"] and "must be a JSON object, not list" in not_object["content"]
    # What went back to the API as the assistant's turn is still a valid request (input: {}).
    assert model.requests[2]["messages"][-2]["content"][0]["input"] == {}


def test_the_same_failure_repeated_halts_with_a_report(repo: Path) -> None:
    model = script(PLAN, *[call("run_tests") for _ in range(10)])
    result = agent(model, repo, limits=LoopLimits(repeat_failure_limit=3)).run("fix add")
    assert result.outcome == "halted" and result.steps == 3 and model.remaining == 7
    assert "repeated 3 times" in result.stop_reason and "test_add" in result.stop_reason


def test_a_planner_answer_without_a_checklist_gives_a_one_item_plan(repo: Path) -> None:
    model = script({"text": "Sure! I will help."}, call("finish", summary="ok"))
    result = agent(model, repo).run("fix add")
    assert result.plan is not None and len(result.plan.items) == 1 and result.finished


def test_conversation_past_the_threshold_is_compacted_and_work_continues(repo: Path) -> None:
    handoff = "HANDOFF: add() subtracts; next: edit calc.py line 2, then run the tests."
    model = script(
        PLAN,
        call("read_file", path="calc.py"),
        call("list_files"),
        {"text": handoff},  # the summarizer's answer
        call("edit_file", path="calc.py", search="return a - b", replace="return a + b"),
        call("finish", summary="ok"),
    )
    limits = LoopLimits(compact_at_tokens=200)  # the first exchange is already past it
    result = agent(model, repo, limits=limits).run("fix add " + "context " * 50)
    assert result.finished and result.compactions >= 1
    summarize = model.requests[3]
    assert "handoff note" in summarize["system"][0]["text"] if isinstance(summarize["system"], list) \
        else "handoff note" in summarize["system"]
    assert "read_file" in summarize["messages"][0]["content"][0]["text"]  # the transcript
    fresh = model.requests[4]["messages"]
    assert len(fresh) == 1 and handoff in fresh[0]["content"][0]["text"]
    assert "1. Find the bug in add" in fresh[0]["content"][0]["text"]  # the plan survives


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


def test_budget_warns_at_80_percent_then_winds_down_without_overspending(repo: Path) -> None:
    model = ScriptedModel([ScriptStep.from_json(PLAN)] + [ScriptStep.from_json(call("read_file", path="calc.py"))] * 40,
                          model="claude-sonnet-4-5")
    limits = BudgetLimits(tokens=10_000_000, usd=0.02, wall_s=3600, steps=100)
    budget = RunBudget(limits)
    events: list[StepEvent] = []
    result = agent(model, repo, budget=budget, on_step=events.append,
                   limits=LoopLimits(max_tokens=200, plan_max_tokens=200)).run("fix add")
    assert result.outcome == "paused_budget" and "dollars" in result.stop_reason.lower()
    assert result.budget_warned and any("budget 80 %" in e.note for e in events)
    assert result.cost_usd <= limits.usd  # refused before the call that could cross it
    assert 2 < result.steps < 40
    told = [block.get("text", "") for r in model.requests for block in r["messages"][-1]["content"]]
    assert sum("Wrap up now" in text for text in told) == 1  # said once


def test_a_blocked_command_is_refused_with_the_reason_and_never_runs(repo: Path) -> None:
    tools = toolbox(repo)
    model = script(PLAN, call("run_command", command="git push --force origin HEAD"),
                   call("run_command", command="echo hello"), call("finish", summary="ok"))
    result = agent(model, repo, tools=tools).run("fix add")
    assert result.finished
    refusal = tool_results(model.requests[2])[0]
    assert refusal["is_error"] and "refused" in refusal["content"].lower() and "push" in refusal["content"]
    sandbox = tools.sandbox
    assert isinstance(sandbox, FakeSandbox)
    assert sandbox.calls == [["bash", "-c", "echo hello"]]


def test_an_approval_gated_change_stops_the_task_with_a_question(repo: Path) -> None:
    policy = ApprovalPolicy()

    def approval() -> Gate | None:
        changes = [Change("requirements.txt", "added")] if (repo / "requirements.txt").exists() else []
        return gate(classify_changes(changes, policy, existing_top_level={"calc.py"}), policy)

    model = script(PLAN, call("edit_file", path="requirements.txt", search="", replace="numpy\n"),
                   call("finish", summary="added numpy"))
    result = agent(model, repo, gate=approval).run("fix add")
    assert result.outcome == "needs_approval" and "requirements.txt" in result.question
    assert "/nightcrew approve" in result.question and result.summary == ""


def test_a_stop_request_is_honoured_at_the_next_step(repo: Path) -> None:
    asked: list[int] = []

    def stop_check() -> tuple[Literal["cancel", "pause"], str] | None:
        asked.append(1)
        return ("pause", "alice") if len(asked) >= 3 else None

    model = script(PLAN, *[call("read_file", path="calc.py") for _ in range(10)])
    result = agent(model, repo, stop_check=stop_check).run("fix add")
    assert result.outcome == "paused" and result.stop_reason == "paused by @alice"
    assert result.steps == 2 and model.remaining == 8  # no model call after the request


def test_green_tests_after_a_change_call_the_checkpoint_hook(repo: Path) -> None:
    greens: list[str] = []
    model = script(PLAN, call("run_tests"),
                   call("edit_file", path="calc.py", search="return a - b", replace="return a + b"),
                   call("run_tests"), call("finish", summary="ok"))
    result = agent(model, repo, on_green=lambda: greens.append((repo / "calc.py").read_text())).run("x")
    assert result.finished and greens == ["def add(a, b):\n    return a + b\n"]  # only the green run
