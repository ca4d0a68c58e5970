"""Review requests through intake and the review job: real Redis and RQ, the stand-in, the real
Anthropic SDK against the fake Messages server; nightcrew's PR opened by the real pipeline."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from rq import Queue

import github_app.github as gh_module
from devhub import DevHub
from github_app import wiring
from github_app.queue import intake
from github_app.queue.jobqueue import REVIEW_QUEUE, RQJobQueue
from github_app.queue.reviews import review_job_id
from github_app.settings import load_settings
from github_app.tasks import TaskKey
from runner.fakes.messages_server import FakeMessagesServer
from runner.fakes.script import ScriptStep
from runner.review.reviewer import TOOL
from runner.worker import jobs
from tests.conftest import DEVHUB_APP_ID
from tests.e2e.task_helpers import OWNER, REPO, scripted_task

pytestmark = pytest.mark.e2e
SECRET = "checkpoint-test-secret-not-real"  # the one task_helpers.KEY is made from
HIGH = {"path": "calc.py", "line": 2, "severity": "high", "body": "add() concatenates strings."}


@pytest.fixture
def env(devhub: DevHub, app_private_key: str, redis_server: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    values = {"NIGHTCREW_APP_ID": str(DEVHUB_APP_ID), "NIGHTCREW_PRIVATE_KEY": app_private_key,
              "NIGHTCREW_GITHUB_API_URL": devhub.url, "REDIS_URL": redis_server,
              "NIGHTCREW_CHECKPOINT_SECRET": SECRET, "NIGHTCREW_DATA_DIR": str(tmp_path / "srv"),
              "ANTHROPIC_API_KEY": "sk-ant-" + "review-jobs-test-key"}
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(gh_module, "sleep", lambda _s: None)
    yield values


def request(pull: TaskKey, installation: int, **fields: Any) -> dict[str, Any]:
    return {"task": str(pull), "kind": "review", "actor": "nightcrew[bot]",
            "installation_id": installation, "is_pull_request": True, **fields}


def nightcrew_pr(devhub: DevHub, app_private_key: str, tmp_path: Path) -> tuple[TaskKey, TaskKey, int]:
    scripted = scripted_task(devhub, app_private_key, tmp_path)
    outcome = scripted.attempt()
    assert outcome.pr_number is not None
    installation = devhub.install(OWNER)
    return scripted.task, scripted.task.with_number(outcome.pr_number), installation


def test_an_opened_nightcrew_pr_is_reviewed_and_its_findings_go_back_as_a_revision(
    env: dict[str, str], devhub: DevHub, app_private_key: str, tmp_path: Path,
    connection: redis.Redis, monkeypatch: pytest.MonkeyPatch,
) -> None:
    issue, pull, installation = nightcrew_pr(devhub, app_private_key, tmp_path)
    assert intake.intake(request(pull, installation, trigger="pull_request.opened")) == "review:queued"
    # Asked again while the round waits: the same job (one waiting per PR), marked to go once more.
    assert intake.intake(request(pull, installation, trigger="pull_request.ready_for_review")) == "review:pending"
    [job] = Queue(REVIEW_QUEUE, connection=connection).jobs
    assert job.id == review_job_id(pull)
    review = [ScriptStep.from_json({"tool_calls": [{"name": TOOL, "input": {"findings": [HIGH]}}]})]
    with FakeMessagesServer(review) as server:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", server.base_url)
        result = jobs.review_pull(job.args[0])
    # The second round (the pending request) saw the same head: no model call, nothing posted.
    assert (result["rounds"], result["state"]) == (2, "nothing_new")
    assert len(server.requests) == 1 and server.requests[0].body["model"] == "claude-haiku-4-5"
    [comment] = [c for c in devhub.pulls(OWNER, REPO) if c["number"] == pull.number]
    assert "**Review**: 1 round(s), 1 fix round(s)" in comment["body"]
    [posted] = gh_review_comments(devhub, pull)
    assert (posted["path"], posted["line"], posted["user"]["login"]) == ("calc.py", 2, "nightcrew[bot]")
    # The fix loop: a revision task of the issue, with the PR, in the fair scheduler.
    status = [c for c in devhub.issue(OWNER, REPO, issue.number)["comments"]
              if "nightcrew:status" in c["body"]]
    status_ids = [c["id"] for c in status]
    assert len(status) == 1 and f"Revising #{pull.number}" in status[0]["body"]
    assert "nightcrew:queued" in devhub.issue(OWNER, REPO, issue.number)["labels"]
    scheduler = wiring.scheduler_for(load_settings(), RQJobQueue(connection))
    payload = scheduler.payload(issue)
    assert payload is not None and (payload.revise_pr, payload.status_comment) == (
        pull.number, status_ids[0])


def gh_review_comments(devhub: DevHub, pull: TaskKey) -> list[dict[str, Any]]:
    comments: list[dict[str, Any]] = []
    for thread in devhub.review_threads(OWNER, REPO, pull.number):
        comments.append({"path": thread["path"], "line": thread["line"],
                         "user": {"login": thread["comments"][0]["author"]}})
    return comments


def test_requests_that_must_not_start_a_review_are_answered_and_queue_nothing(
    env: dict[str, str], devhub: DevHub, app_private_key: str, tmp_path: Path,
    connection: redis.Redis,
) -> None:
    issue, pull, installation = nightcrew_pr(devhub, app_private_key, tmp_path)
    devhub.set_permission(OWNER, REPO, "alice", "write")
    people = devhub.open_pull(OWNER, REPO, head="alice-change", title="Docs", files={"README.md": "x\n"},
                              actor="alice")
    theirs = pull.with_number(people)
    # A person's PR is reviewed automatically only with review.on_open (off by default).
    assert intake.intake(request(theirs, installation, actor="alice",
                                 trigger="pull_request.opened")) == "review:off"
    # Review on a plain issue, revise on a PR nightcrew did not open: a reply, nothing queued.
    assert intake.intake(request(issue, installation, actor="alice", is_pull_request=False)) == \
        "review:not-a-pull-request"
    assert intake.intake(request(theirs, installation, kind="revise", actor="alice",
                                 args="tidy it")) == "revise:not-ours"
    # Someone who may not trigger nightcrew cannot ask for a review (it costs money).
    devhub.set_permission(OWNER, REPO, "mallory", "read")
    assert intake.intake(request(pull, installation, actor="mallory")) == "refused"
    assert Queue(REVIEW_QUEUE, connection=connection).jobs == []
    replies = [c["body"] for c in devhub.issue(OWNER, REPO, people)["comments"]]
    assert any("revises only the pull requests it opened" in body for body in replies)
    assert any("works on pull requests" in c["body"]
               for c in devhub.issue(OWNER, REPO, issue.number)["comments"])
    # A person's /nightcrew review on their own PR is queued.
    assert intake.intake(request(theirs, installation, actor="alice")) == "review:queued"
