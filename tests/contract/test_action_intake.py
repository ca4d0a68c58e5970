"""``nightcrew action``'s intake steering a task on the stand-in, in process: the tracker is the
only store (no Redis), so a budget raise and an approval must land in the signed checkpoint, and
a cancel of a queued task must end it there."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from devhub import DevHub
from github_app.github import GitHubKitHost, WorkflowToken
from github_app.tasks import TaskKey
from github_app.tracker.issue import IssueTracker, empty_checkpoint
from github_app.tracker.status import StatusView
from runner.action.environment import ActionEnv
from runner.action.run import ActionDeps, intake
from runner.pipeline.run import TaskConfig
from tests.e2e.task_helpers import FILES, KEY, OWNER, REPO


def never(*_args: Any, **_kwargs: Any) -> Any:
    raise AssertionError("intake runs no model and no sandbox")


@pytest.fixture
def deps(devhub: DevHub, tmp_path: Path) -> ActionDeps:
    devhub.create_repo(OWNER, REPO, FILES)
    env = ActionEnv(event_name="issue_comment", event_path=tmp_path / "event.json",
                    repository=f"{OWNER}/{REPO}", api_url=devhub.url,
                    server_url="https://github.example", run_id="1")
    host = GitHubKitHost(WorkflowToken(devhub.workflow_token(OWNER, REPO), devhub.url))
    return ActionDeps(env=env, host=host, models=never, sandbox_for=never,
                      config=TaskConfig(data_dir=tmp_path / "data", checkpoint_key=KEY))


def comment(deps: ActionDeps, devhub: DevHub, number: int, text: str) -> None:
    """The issue_comment event of a comment really written, as the workflow's event file."""
    comment_id = devhub.add_comment(OWNER, REPO, number, text, actor="octocat")
    deps.env.event_path.write_text(json.dumps({
        "action": "created",
        "issue": {"number": number, "title": "t", "body": "", "state": "open",
                  "user": {"login": "octocat", "id": 1, "type": "User"}, "labels": []},
        "comment": {"id": comment_id, "body": text, "user": {"login": "octocat", "id": 1, "type": "User"}},
        "repository": {"full_name": f"{OWNER}/{REPO}", "name": REPO, "id": 1,
                       "owner": {"login": OWNER, "id": 2, "type": "User"}},
        "sender": {"login": "octocat", "id": 1, "type": "User"},
    }))


def paused_task(deps: ActionDeps, devhub: DevHub) -> IssueTracker:
    number = devhub.create_issue(OWNER, REPO, "add() subtracts")
    task = TaskKey(OWNER, REPO, number)
    tracker = IssueTracker(deps.host, task, KEY)
    budget = {"limits": {"tokens": 1000, "usd": 1.0, "wall_s": 600.0, "steps": 10},
              "spent": {"tokens": 900, "usd": 0.95, "wall_s": 60.0, "steps": 4}, "warned": True}
    checkpoint = replace(empty_checkpoint(task, "paused"), step=4, budget=budget)
    tracker.write(StatusView("paused", str(task), detail="Paused: the budget is spent."), checkpoint)
    tracker.set_state("paused")
    return tracker


def test_a_budget_raise_goes_into_the_signed_checkpoint_and_queues_the_task(
    deps: ActionDeps, devhub: DevHub,
) -> None:
    tracker = paused_task(deps, devhub)
    comment(deps, devhub, tracker.task.number, "/nightcrew budget +$5")
    handled = intake(deps)
    assert (handled.conclusion, handled.state) == ("success", "queued")
    read = IssueTracker(deps.host, tracker.task, KEY).checkpoint()
    assert read.checkpoint is not None and read.checkpoint.state == "queued"
    assert read.checkpoint.budget["limits"]["usd"] == 6.0  # 1 + 5, spend kept
    assert read.checkpoint.budget["spent"]["usd"] == 0.95 and read.checkpoint.step == 4
    assert "nightcrew:queued" in devhub.issue(OWNER, REPO, tracker.task.number)["labels"]
    assert deps.queued == [tracker.task]


def test_an_approval_is_kept_in_the_checkpoint_and_an_unknown_kind_is_answered(
    deps: ActionDeps, devhub: DevHub,
) -> None:
    tracker = paused_task(deps, devhub)
    comment(deps, devhub, tracker.task.number, "/nightcrew approve teleportation")
    assert intake(deps).conclusion == "skipped"
    assert "Nothing to approve called teleportation" in devhub.issue(
        OWNER, REPO, tracker.task.number)["comments"][-1]["body"]
    comment(deps, devhub, tracker.task.number, "/nightcrew approve dependencies")
    assert intake(deps).state == "queued"
    read = IssueTracker(deps.host, tracker.task, KEY).checkpoint()
    assert read.checkpoint is not None and read.checkpoint.approved == ("dependencies",)


def test_cancelling_a_queued_task_ends_it_and_a_second_cancel_is_told_why_not(
    deps: ActionDeps, devhub: DevHub,
) -> None:
    number = devhub.create_issue(OWNER, REPO, "add() subtracts")
    task = TaskKey(OWNER, REPO, number)
    tracker = IssueTracker(deps.host, task, KEY)
    tracker.write(StatusView("queued", str(task)), empty_checkpoint(task, "queued"))
    tracker.set_state("queued")
    comment(deps, devhub, number, "/nightcrew cancel")
    assert intake(deps).state == "cancelled"
    read = IssueTracker(deps.host, task, KEY).checkpoint()
    assert read.checkpoint is not None and read.checkpoint.state == "cancelled"
    assert "nightcrew:cancelled" in devhub.issue(OWNER, REPO, number)["labels"]
    comment(deps, devhub, number, "/nightcrew cancel")
    assert intake(deps).conclusion == "skipped"
    assert deps.queued == []
