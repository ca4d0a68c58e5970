"""nightcrew's GitHub adapter (githubkit, App auth) against the stand-in: every call it makes is
checked against GitHub's OpenAPI description by the `devhub` fixture, every answer parsed."""

from __future__ import annotations

import pytest

from devhub import DevHub
from github_app.github import GitHubApp, GitHubError, GitHubKitHost, Retryable
from github_app.tasks import TaskKey
from runner.worker.procs import free_port
from tests.conftest import DEVHUB_APP_ID

OWNER, REPO = "octo", "hello"


@pytest.fixture
def host(devhub: DevHub, app_private_key: str) -> GitHubKitHost:
    devhub.install(OWNER)
    devhub.create_repo(OWNER, REPO, {"README.md": "# hello\n"})
    app = GitHubApp(DEVHUB_APP_ID, app_private_key, devhub.url)
    return app.host(app.installation_for(OWNER, REPO))


@pytest.fixture
def task(devhub: DevHub, host: GitHubKitHost) -> TaskKey:
    number = devhub.create_issue(OWNER, REPO, "Crash on start", "It <!-- hidden --> crashes.")
    return TaskKey(OWNER, REPO, number)


def test_reads_repository_issue_and_permission(devhub: DevHub, host: GitHubKitHost, task: TaskKey) -> None:
    repo = host.repository(OWNER, REPO)
    assert repo.default_branch == "main" and repo.clone_url == f"{devhub.url}/{OWNER}/{REPO}.git"
    issue = host.issue(task)
    assert (issue.number, issue.title, issue.author) == (task.number, "Crash on start", "octocat")
    assert host.permission(OWNER, REPO, "octocat") == "admin"
    devhub.set_permission(OWNER, REPO, "mallory", "read")
    assert host.permission(OWNER, REPO, "mallory") == "read"


def test_comment_labels_and_reactions_land_as_the_bot(devhub: DevHub, host: GitHubKitHost, task: TaskKey) -> None:
    comment_id = host.create_comment(task, "queued")
    host.update_comment(task, comment_id, "running")
    host.add_labels(task, ["nightcrew:queued"])
    host.add_labels(task, ["nightcrew:running"])
    host.remove_label(task, "nightcrew:queued")
    host.remove_label(task, "nightcrew:queued")  # already gone: not an error
    host.react(task, "eyes")
    host.react(task, "rocket", comment_id)
    issue = devhub.issue(OWNER, REPO, task.number)
    [comment] = issue["comments"]
    assert comment["body"] == "running" and comment["user"] == "nightcrew[bot]"
    assert issue["labels"] == ["nightcrew:running"]


def test_token_is_a_fresh_installation_token(host: GitHubKitHost) -> None:
    token = host.token()
    assert token.startswith("ghs_") and token != host.token()


def test_missing_issue_is_a_github_error_with_status(host: GitHubKitHost) -> None:
    with pytest.raises(GitHubError) as caught:
        host.issue(TaskKey(OWNER, REPO, 999))
    assert caught.value.status == 404 and not isinstance(caught.value, Retryable)
    assert "ghs_" not in str(caught.value)


def test_unreachable_github_is_retryable(app_private_key: str) -> None:
    app = GitHubApp(DEVHUB_APP_ID, app_private_key, f"http://127.0.0.1:{free_port()}")
    with pytest.raises(Retryable, match="cannot reach GitHub"):
        app.installation_for(OWNER, REPO)
