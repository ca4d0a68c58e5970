"""The task pipeline's outcomes besides a PR, end to end: GitHub stand-in, real git, real sandbox,
the scripted model behind the loop. What the issue shows is what a person would see."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import pytest

from devhub import DevHub
from github_app.github import GitHubApp
from github_app.tasks import TaskKey
from github_app.tracker.checkpoint import read_block
from github_app.tracker.eventlog import fold, read_events
from github_app.tracker.status import split_block
from runner.agent.failure_log import FailureLog
from runner.fakes.script import ScriptStep
from runner.fakes.scripted import ScriptedModel
from runner.pipeline.run import NoControls, TaskConfig, TaskControls, TaskOutcome, run
from runner.sandbox import Sandbox, SandboxPolicy
from runner.sandbox.bwrap import BwrapSandbox
from tests.e2e.task_helpers import KEY, OWNER, REPO, scripted_task

pytestmark = pytest.mark.e2e

FILES = {
    "calc.py": "def add(a, b):\n    return a - b\n",
    "tests/test_calc.py": "from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n\n\n"
                          "def test_zero():\n    assert add(0, 0) == 0\n",
}
PLAN = {"text": "- [ ] Fix add\n- [ ] Run the tests\nAcceptance:\n- [ ] test_add passes"}
FIX = {"tool_calls": [{"name": "edit_file", "input": {
    "path": "calc.py", "search": "    return a - b\n", "replace": "    return a + b\n"}}]}


def call(name: str, **args: Any) -> dict[str, Any]:
    return {"tool_calls": [{"name": name, "input": args}]}


def run_task(hub: DevHub, app_private_key: str, tmp_path: Path, steps: list[dict[str, Any]],
             files: dict[str, str] | None = None, controls: TaskControls | None = None,
             ) -> tuple[TaskOutcome, ScriptedModel, dict[str, Any]]:
    scripted = scripted_task(hub, app_private_key, tmp_path, steps, files=files or FILES,
                             controls=controls)
    return scripted.attempt(), scripted.model, hub.issue(OWNER, REPO, scripted.task.number)


def status_body(issue: dict[str, Any]) -> str:
    [status] = [c["body"] for c in issue["comments"] if "nightcrew:status" in c["body"]]
    return str(status)


def test_a_dependency_change_stops_as_needs_approval_and_pushes_nothing(
    devhub: DevHub, app_private_key: str, tmp_path: Path,
) -> None:
    steps = [PLAN, FIX, call("edit_file", path="requirements.txt", search="", replace="numpy==2.1\n"),
             call("run_tests"), call("finish", summary="fixed add, pinned numpy")]
    outcome, _, issue = run_task(devhub, app_private_key, tmp_path, steps)
    assert outcome.state == "needs_approval" and outcome.pr_number is None
    # The tests passed with the gated change in place, yet no checkpoint pushed it.
    assert outcome.commits == [] and f"nightcrew/issue-{issue['number']}" not in devhub.git.branches(OWNER, REPO)
    assert "nightcrew:needs-approval" in issue["labels"] and "nightcrew:running" not in issue["labels"]
    body = status_body(issue)
    assert "needs approval" in body and "requirements.txt" in body and "/nightcrew approve" in body
    assert devhub.pulls(OWNER, REPO) == []


def test_a_spent_budget_pauses_and_keeps_what_passes_on_the_branch(
    devhub: DevHub, app_private_key: str, tmp_path: Path,
) -> None:
    files = {**FILES, ".github/nightcrew.yml": "budget: {usd: 0.08}\n"}
    # The fix lands, then the model dawdles until the money runs out.
    steps = [PLAN, FIX, *[call("read_file", path="calc.py") for _ in range(60)]]
    outcome, model, issue = run_task(devhub, app_private_key, tmp_path, steps, files)
    assert outcome.state == "paused" and outcome.cost_usd <= 0.08 and model.remaining > 0
    assert outcome.tests_after is not None and outcome.tests_after.green and outcome.commits
    assert "nightcrew:paused" in issue["labels"]
    body = status_body(issue)
    assert "paused" in body and "/nightcrew budget" in body and "nightcrew/issue-" in body
    assert devhub.pulls(OWNER, REPO) == []  # a paused task opens no PR
    # The status comment carries the signed checkpoint a resume starts from.
    read = read_block(body, KEY, task=f"{OWNER}/{REPO}#{issue['number']}")
    assert read.problem is None and read.checkpoint is not None
    assert read.checkpoint.state == "paused" and read.checkpoint.head_sha == outcome.commits[-1]
    assert 0 < read.checkpoint.budget["spent"]["usd"] <= 0.08
    assert [done for _, done in read.checkpoint.plan] == [False, False]
    assert "nightcrew:state" not in split_block(body)[0]  # hidden from people


def test_a_failed_run_is_remembered_and_shown_to_the_next_task_on_the_repo(
    devhub: DevHub, app_private_key: str, tmp_path: Path,
) -> None:
    failing = [PLAN, *[call("run_tests") for _ in range(6)]]  # the same failure, again and again
    outcome, _, issue = run_task(devhub, app_private_key, tmp_path, failing)
    assert outcome.state == "failed" and "repeated" in status_body(issue)
    [record] = FailureLog(tmp_path / "data", OWNER, REPO).recent()
    assert record.failed == "halted" and "test_add" in record.why

    outcome, model, _ = run_task(devhub, app_private_key, tmp_path,
                                 [PLAN, FIX, call("finish", summary="fixed")])
    assert outcome.state == "pr_opened"
    planner_saw = model.requests[0]["messages"][0]["content"][0]["text"]
    assert "halted" in planner_saw and "test_add" in planner_saw  # the memory layer


def test_a_secret_in_the_change_blocks_the_push_and_is_never_echoed(
    devhub: DevHub, app_private_key: str, tmp_path: Path,
) -> None:
    canary = "ghp_" + "Zq7" * 12  # built at run time: the repo keeps no token-shaped text
    steps = [PLAN, FIX,
             call("edit_file", path="settings_local.py", search="", replace=f'TOKEN = "{canary}"\n'),
             call("finish", summary="fixed add")]
    outcome, _, issue = run_task(devhub, app_private_key, tmp_path, steps)
    assert outcome.state == "failed" and outcome.pr_number is None
    body = status_body(issue)
    assert "Push blocked" in body and "settings_local.py:1" in body and "GitHub token" in body
    assert all(canary not in c["body"] for c in issue["comments"])
    assert devhub.pulls(OWNER, REPO) == []
    assert not any(b.startswith("nightcrew/") for b in devhub.git.branches(OWNER, REPO))


class CancelAfter(NoControls):
    """A person says `/nightcrew cancel` while the task is at its Nth step."""

    def __init__(self, steps: int) -> None:
        self.asked, self.steps, self.cleared = 0, steps, False

    def stop_requested(self) -> tuple[Literal["cancel", "pause"], str] | None:
        self.asked += 1
        return ("cancel", "alice") if self.asked > self.steps else None

    def clear_stop(self) -> None:
        self.cleared = True


def test_cancel_mid_run_stops_cleanly_keeping_the_last_green_checkpoint(
    devhub: DevHub, app_private_key: str, tmp_path: Path,
) -> None:
    controls = CancelAfter(steps=3)
    steps = [PLAN, FIX, call("run_tests"), call("read_file", path="calc.py"),
             *[call("read_file", path="calc.py") for _ in range(5)]]
    outcome, model, issue = run_task(devhub, app_private_key, tmp_path, steps, controls=controls)
    assert outcome.state == "cancelled" and controls.cleared and model.remaining == 5
    assert "nightcrew:cancelled" in issue["labels"] and "nightcrew:running" not in issue["labels"]
    body = status_body(issue)
    assert "cancelled by @alice" in body.lower() and "/nightcrew retry" in body
    # The green run after the fix became a pushed checkpoint commit, named in the signed block.
    [sha] = outcome.commits
    read = read_block(body, KEY, task=f"{OWNER}/{REPO}#{issue['number']}")
    assert read.checkpoint is not None and read.checkpoint.head_sha == sha
    assert read.checkpoint.state == "cancelled"
    assert devhub.git.branches(OWNER, REPO).get(f"nightcrew/issue-{issue['number']}") == sha
    assert devhub.pulls(OWNER, REPO) == []
    # The run's event log tells the same story, and folds back into what the issue shows.
    events = read_events(tmp_path / "data", f"{OWNER}/{REPO}#{issue['number']}")
    kinds = [e.kind for e in events]
    assert kinds[0] == "run_started" and kinds[-1] == "run_finished" and "test_result" in kinds
    assert [e.data["step"] for e in events if e.kind == "step_finished"] == [1, 2, 3]
    progress = fold(events)
    assert progress.state == "cancelled" and progress.commits == (sha,) and progress.step == 3


class Crash(BaseException):
    """What a SIGKILL looks like from inside: nothing after it runs, not even `except Exception`."""


class CrashAt:
    """The model dies (with the worker) on its Nth call."""

    def __init__(self, inner: ScriptedModel, at: int) -> None:
        self.inner, self.at, self.model = inner, at, inner.model

    def complete(self, **kwargs: Any) -> Any:
        if len(self.inner.requests) + 1 >= self.at:
            raise Crash()
        return self.inner.complete(**kwargs)


def test_a_crashed_run_resumes_from_its_checkpoint_without_repeating_anything(
    devhub: DevHub, app_private_key: str, tmp_path: Path,
) -> None:
    devhub.create_repo(OWNER, REPO, FILES)
    devhub.install(OWNER)
    number = devhub.create_issue(OWNER, REPO, "add() subtracts", "`add(2, 3)` is -1, not 5.")
    app = GitHubApp(devhub.app_id, app_private_key, devhub.url)
    host = app.host(app.installation_for(OWNER, REPO))
    task = TaskKey(OWNER, REPO, number)
    config = TaskConfig(data_dir=tmp_path / "data", checkpoint_key=KEY)

    def sandbox_for(path: Path, *, network: bool = False) -> Sandbox:
        return BwrapSandbox(path, SandboxPolicy())

    first = ScriptedModel([ScriptStep.from_json(s) for s in [
        PLAN, FIX, call("run_tests"), call("mark_done", items=[1]), call("read_file", path="calc.py")]],
        model="claude-sonnet-4-5")
    with pytest.raises(Crash):  # the worker dies at the 5th model call
        run(task, host=host, models=lambda _m: CrashAt(first, 5), sandbox_for=sandbox_for,
            config=config)  # type: ignore[arg-type, return-value]
    issue = devhub.issue(OWNER, REPO, number)
    [status_id] = [c["id"] for c in issue["comments"] if "nightcrew:status" in c["body"]]
    branch_head = devhub.git.branches(OWNER, REPO)[task.branch]
    spent_before = read_block(status_body(issue), KEY, task=str(task)).checkpoint

    second = ScriptedModel([ScriptStep.from_json(s) for s in [
        call("run_tests"), call("mark_done", items=[2]), call("finish", summary="add adds")]],
        model="claude-sonnet-4-5")
    outcome = run(task, host=host, models=lambda _m: second, sandbox_for=sandbox_for, config=config,
                  status_comment=status_id)

    assert outcome.state == "pr_opened"
    issue = devhub.issue(OWNER, REPO, number)
    assert [c["id"] for c in issue["comments"] if "nightcrew:status" in c["body"]] == [status_id]
    [pull] = devhub.pulls(OWNER, REPO)
    assert pull["head"] == task.branch
    # The resumed run did not plan again: its first call was the executor's, with the old plan.
    assert "planner" not in str(second.requests[0]["system"])
    assert "1. Fix add" in second.requests[0]["messages"][0]["content"][0]["text"]
    # The checkpoint commit of run 1 is the base of run 2: nothing was committed twice.
    assert branch_head == outcome.commits[0]
    final = read_block(status_body(issue), KEY, task=str(task)).checkpoint
    assert spent_before is not None and final is not None
    assert final.budget["spent"]["usd"] > spent_before.budget["spent"]["usd"]  # carried, not reset
    assert final.plan == (("Fix add", True), ("Run the tests", True))


@pytest.mark.parametrize("policy", ["draft", "none"])
def test_red_tests_after_the_change_give_a_draft_pr_or_none_per_config(
    devhub: DevHub, app_private_key: str, tmp_path: Path, policy: str,
) -> None:
    files = {**FILES, ".github/nightcrew.yml": f"pull_request: {{on_failing_tests: {policy}}}\n"}
    wrong = {"tool_calls": [{"name": "edit_file", "input": {
        "path": "calc.py", "search": "    return a - b\n", "replace": "    return a * b\n"}}]}
    outcome, _, issue = run_task(devhub, app_private_key, tmp_path,
                                 [PLAN, wrong, call("finish", summary="multiplied")], files)
    assert outcome.state == "failed" and "nightcrew:failed" in issue["labels"]
    pulls = devhub.pulls(OWNER, REPO)
    if policy == "none":
        assert pulls == [] and "No pull request" in status_body(issue)
        return
    [pull] = pulls
    assert pull["draft"] is True and "Fixes #" in pull["body"] and "Draft:" in pull["body"]
    assert "`calc.py`" in pull["body"] and "**Plan**" in pull["body"]
    assert "draft" in status_body(issue) and str(pull["number"]) in status_body(issue)


class Approved(NoControls):
    """A maintainer said `/nightcrew approve dependencies` (now or before the run)."""

    def approved(self) -> set[str]:
        return {"dependencies"}


def test_an_approved_change_kind_goes_through_the_gate(
    devhub: DevHub, app_private_key: str, tmp_path: Path,
) -> None:
    steps = [PLAN, FIX, call("edit_file", path="requirements.txt", search="", replace="numpy==2.1\n"),
             call("run_tests"), call("finish", summary="fixed add, pinned numpy")]
    outcome, _, issue = run_task(devhub, app_private_key, tmp_path, steps, controls=Approved())
    assert outcome.state == "pr_opened" and outcome.pr_number is not None
    read = read_block(status_body(issue), KEY, task=f"{OWNER}/{REPO}#{issue['number']}")
    assert read.checkpoint is not None and read.checkpoint.approved == ("dependencies",)
