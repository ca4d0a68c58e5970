"""GitHub throttling longer than the adapter waits in-process: the task job waits as GitHub asks
and runs the task again from its checkpoint — nothing marked failed, nothing written twice, the
model not asked again. Real task pipeline, GitHub stand-in with fault injection, real git, bwrap.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from github_app.checkpoint import checkpoint_key
from github_app.devhub import DevHub, Fault
from github_app.eventlog import read_events
from github_app.github import GitHubApp, Retryable
from github_app.tasks import TaskKey
from runner.jobs import LONGEST_GITHUB_WAIT_S, through_github_waits
from runner.model.script import ScriptStep
from runner.model.scripted import ScriptedModel
from runner.sandbox import Sandbox, SandboxPolicy
from runner.sandbox.bwrap import BwrapSandbox
from runner.task import TaskConfig, TaskOutcome, run

OWNER, REPO = "octo", "calc"
FILES = {
    "calc.py": "def add(a, b):\n    return a - b\n",
    "tests/test_calc.py": "from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n",
}
STEPS = [
    {"text": "- [ ] Fix add\nAcceptance:\n- [ ] test_add passes"},
    {"tool_calls": [{"name": "edit_file", "input": {
        "path": "calc.py", "search": "    return a - b\n", "replace": "    return a + b\n"}}]},
    {"tool_calls": [{"name": "run_tests", "input": {}}]},
    {"tool_calls": [{"name": "finish", "input": {"summary": "add() adds"}}]},
]


@pytest.mark.e2e
def test_a_long_rate_limit_on_the_pr_waits_and_resumes_into_publishing(
    devhub: DevHub, app_private_key: str, tmp_path: Path,
) -> None:
    devhub.create_repo(OWNER, REPO, FILES)
    devhub.install(OWNER)
    number = devhub.create_issue(OWNER, REPO, "add() subtracts", "`add(2, 3)` is -1, not 5.")
    task = TaskKey(OWNER, REPO, number)
    model = ScriptedModel([ScriptStep.from_json(s) for s in STEPS], model="claude-sonnet-4-5")
    app = GitHubApp(devhub.app_id, app_private_key, devhub.url)
    installation = app.installation_for(OWNER, REPO)
    config = TaskConfig(data_dir=tmp_path / "data", checkpoint_key=checkpoint_key("not-a-real-secret"))

    def sandbox_for(path: Path, *, network: bool = False) -> Sandbox:
        return BwrapSandbox(path, SandboxPolicy())

    def attempt(first: bool) -> TaskOutcome:
        return run(task, host=app.host(installation), models=lambda _id: model,
                   sandbox_for=sandbox_for, config=config)

    waited: list[float] = []
    # A secondary rate limit on opening the PR, asking for two minutes: far past the adapter's
    # in-process limit, so the run gives up with Retryable after it pushed its work.
    pulls = rf"/repos/{OWNER}/{REPO}/pulls"
    with devhub.inject(Fault(403, "POST", pulls, retry_after=120)) as injection:
        outcome = through_github_waits(attempt, what=str(task), sleep=waited.append)
        assert injection.faults[0].answered == 1

    assert waited == [120.0]
    assert outcome.state == "pr_opened" and outcome.pr_number is not None
    assert model.remaining == 0  # the second run published; it asked the model nothing
    issue = devhub.issue(OWNER, REPO, number)
    assert len([c for c in issue["comments"] if "nightcrew:status" in c["body"]]) == 1
    assert len(devhub.pulls(OWNER, REPO)) == 1
    assert "nightcrew:done" in issue["labels"] and "nightcrew:failed" not in issue["labels"]
    events = read_events(config.data_dir, task)
    assert [e.data.get("state") for e in events if e.kind == "run_finished"] == ["pr_opened"]
    assert [e.data.get("resumed") for e in events if e.kind == "run_started"] == [False, True]
    [wait] = [e for e in events if e.kind == "error"]
    assert wait.data["fatal"] is False and "rate limited" in wait.data["message"]


def test_waits_follow_retry_after_then_back_off_and_give_up() -> None:
    calls: list[bool] = []
    waited: list[float] = []

    def always_throttled(first: bool) -> None:
        calls.append(first)
        hint = timedelta(hours=2) if len(calls) == 1 else None  # capped, then no hint
        raise Retryable("rate limited by GitHub", 429, retry_after=hint)

    with pytest.raises(Retryable):
        through_github_waits(always_throttled, sleep=waited.append, waits=3)
    assert calls == [True, False, False, False]  # only the first run is "first" (fresh)
    assert waited == [LONGEST_GITHUB_WAIT_S, 60.0, 120.0]


def test_other_errors_are_not_waited_on() -> None:
    waited: list[float] = []

    def broken(first: bool) -> None:
        raise ValueError("a bug, not GitHub")

    with pytest.raises(ValueError):
        through_github_waits(broken, sleep=waited.append)
    assert waited == []
