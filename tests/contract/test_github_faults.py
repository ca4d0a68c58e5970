"""Exactly-once writes and bounded back-off: nightcrew's GitHub adapter (real githubkit, real
HTTP) against the stand-in while it answers the way GitHub misbehaves (`DevHub.inject`).

Waits go through `github_app.github.sleep`, which these tests record instead of sleeping (one
test sleeps for real), so what the adapter *would* wait is asserted and the suite stays fast.
"""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import pytest

import github_app.github as gh_module
from devhub import DevHub, Fault
from github_app.github import GitHubApp, GitHubKitHost, Retryable, write_marker
from github_app.tasks import TaskKey
from tests.conftest import DEVHUB_APP_ID
from tests.contract.test_devhub import FILES, OWNER, REPO, push_branch

COMMENTS = rf"/repos/{OWNER}/{REPO}/issues/\d+/comments"
BRANCH = "nightcrew/issue-1"


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Every wait the adapter asks for, in seconds (nothing is slept)."""
    asked: list[float] = []
    monkeypatch.setattr(gh_module, "sleep", asked.append)
    return asked


@pytest.fixture
def app(devhub: DevHub, app_private_key: str) -> GitHubApp:
    devhub.install(OWNER)
    devhub.create_repo(OWNER, REPO, FILES)
    return GitHubApp(DEVHUB_APP_ID, app_private_key, devhub.url)


@pytest.fixture
def host(app: GitHubApp) -> GitHubKitHost:
    return app.host(app.installation_for(OWNER, REPO))


@pytest.fixture
def task(devhub: DevHub, host: GitHubKitHost) -> TaskKey:
    return TaskKey(OWNER, REPO, devhub.create_issue(OWNER, REPO, "Crash on start", "It crashes."))


def bodies(hub: DevHub, task: TaskKey) -> list[str]:
    return [c["body"] for c in hub.issue(OWNER, REPO, task.number)["comments"]]


def outcomes(hub: DevHub, operation_id: str) -> list[tuple[int, bool]]:
    """(status answered, whether the operation was carried out) of each request, in order."""
    return [(r.status, r.applied) for r in hub.requests_for(operation_id)]


def test_comment_applied_then_502_is_found_not_written_again(
    devhub: DevHub, host: GitHubKitHost, task: TaskKey, waits: list[float]
) -> None:
    with devhub.inject(Fault(502, "POST", COMMENTS, applied=True, count=3)):
        comment_id = host.create_comment(task, "queued", key="status-1")
    [body] = bodies(devhub, task)
    assert body == "queued\n\n" + write_marker("status-1")
    assert devhub.issue(OWNER, REPO, task.number)["comments"][0]["id"] == comment_id
    # One POST, which landed although GitHub answered 502; the look-up found it.
    assert outcomes(devhub, "issues/create-comment") == [(502, True)]
    assert waits == [1.0]
    # The whole job retried: the key finds the comment, nothing is written.
    assert host.create_comment(task, "queued", key="status-1") == comment_id
    assert len(bodies(devhub, task)) == 1 and len(devhub.requests_for("issues/create-comment")) == 1


def test_comment_without_key_is_still_written_once_after_an_applied_502(
    devhub: DevHub, host: GitHubKitHost, task: TaskKey, waits: list[float]
) -> None:
    with devhub.inject(Fault(502, "POST", COMMENTS, applied=True)):
        host.create_comment(task, "help text")
    [body] = bodies(devhub, task)
    assert body.startswith("help text\n\n<!-- nightcrew:write once-")
    assert outcomes(devhub, "issues/create-comment") == [(502, True)]


def test_burst_of_502_not_applied_is_retried_until_it_lands(
    devhub: DevHub, host: GitHubKitHost, task: TaskKey, waits: list[float]
) -> None:
    with devhub.inject(Fault(502, "POST", COMMENTS, count=2)):
        host.create_comment(task, "queued", key="k")
    assert len(bodies(devhub, task)) == 1
    assert outcomes(devhub, "issues/create-comment") == [(502, False), (502, False), (201, True)]
    assert waits == [1.0, 2.0]  # back-off 1 s, 2 s; each retry came after a look that found nothing
    assert len(devhub.requests_for("issues/list-comments")) == 3  # before the first POST, then 2


def test_endless_503_gives_up_after_max_attempts_with_nothing_written(
    devhub: DevHub, host: GitHubKitHost, task: TaskKey, waits: list[float]
) -> None:
    before = len(devhub.requests)
    with devhub.inject(Fault(503, "POST", COMMENTS, count=None)), pytest.raises(Retryable) as caught:
        host.create_comment(task, "queued", key="k")
    assert caught.value.status == 503 and caught.value.retry_after == timedelta(seconds=4)
    assert bodies(devhub, task) == []
    assert outcomes(devhub, "issues/create-comment") == [(503, False)] * gh_module.MAX_ATTEMPTS
    assert waits == [1.0, 2.0, 4.0]
    # 4 POSTs, a look before the first and after each of the 3 retries' waits, 1 installation read.
    assert len(devhub.requests) - before == 4 + 4 + 1


def test_503_retry_after_is_honoured(devhub: DevHub, host: GitHubKitHost, task: TaskKey,
                                     waits: list[float]) -> None:
    with devhub.inject(Fault(503, "GET", rf"/repos/{OWNER}/{REPO}/issues/\d+", retry_after=3)):
        assert host.issue(task).title == "Crash on start"
    assert waits == [3.0]


def test_429_with_retry_after_one_second_waits_then_succeeds(
    devhub: DevHub, host: GitHubKitHost, task: TaskKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    slept: list[float] = []

    def real_sleep(seconds: float) -> None:
        slept.append(seconds)
        time.sleep(seconds)

    monkeypatch.setattr(gh_module, "sleep", real_sleep)
    labels = rf"/repos/{OWNER}/{REPO}/issues/\d+/labels"
    started = time.monotonic()
    with devhub.inject(Fault(429, "POST", labels, retry_after=1)):
        host.add_labels(task, ["nightcrew:queued"])
    assert time.monotonic() - started >= 1.0 and slept == [1.0]
    assert devhub.issue(OWNER, REPO, task.number)["labels"] == ["nightcrew:queued"]
    assert outcomes(devhub, "issues/add-labels") == [(429, False), (200, True)]
    assert devhub.requests_for("issues/add-labels")[0].fault == "429 secondary-rate-limit"


def test_secondary_rate_limit_403_waits_and_writes_once(
    devhub: DevHub, host: GitHubKitHost, task: TaskKey, waits: list[float]
) -> None:
    with devhub.inject(Fault(403, "POST", COMMENTS, retry_after=1, count=2)):
        host.create_comment(task, "queued", key="k")
    assert len(bodies(devhub, task)) == 1
    assert outcomes(devhub, "issues/create-comment") == [(403, False), (403, False), (201, True)]
    assert waits == [1.0, 1.0]


def test_rate_limit_longer_than_the_bound_goes_back_to_the_queue(
    devhub: DevHub, host: GitHubKitHost, task: TaskKey, waits: list[float]
) -> None:
    with devhub.inject(Fault(429, "POST", COMMENTS, retry_after=90)), pytest.raises(Retryable) as caught:
        host.create_comment(task, "queued", key="k")
    assert caught.value.retry_after == timedelta(seconds=90) and caught.value.status == 429
    assert waits == [] and bodies(devhub, task) == []
    assert len(devhub.requests_for("issues/create-comment")) == 1


def test_primary_rate_limit_until_reset_is_retryable_without_waiting(
    devhub: DevHub, host: GitHubKitHost, task: TaskKey, waits: list[float]
) -> None:
    with devhub.inject(Fault(403, "GET", r".*", primary=True, retry_after=1800)), \
            pytest.raises(Retryable) as caught:
        host.issue(task)
    assert caught.value.retry_after is not None and caught.value.retry_after > gh_module.MAX_RETRY_WAIT
    assert waits == []


def test_expired_installation_token_is_minted_again_once(
    devhub: DevHub, host: GitHubKitHost, task: TaskKey, waits: list[float]
) -> None:
    host.add_labels(task, ["a"])
    mints = len(devhub.requests_for("apps/create-installation-access-token"))
    devhub.expire_tokens()  # githubkit still holds the old token in its cache
    host.create_comment(task, "after expiry", key="k")
    assert len(devhub.requests_for("apps/create-installation-access-token")) == mints + 1
    assert len(bodies(devhub, task)) == 1
    # the first request with the old token was refused, nothing else was
    assert [r.status for r in devhub.requests if r.status == 401] == [401]
    assert waits == []


def test_bad_credentials_fault_revokes_the_token_and_one_new_mint_fixes_it(
    devhub: DevHub, host: GitHubKitHost, task: TaskKey, waits: list[float]
) -> None:
    host.add_labels(task, ["a"])
    mints = len(devhub.requests_for("apps/create-installation-access-token"))
    with devhub.inject(Fault(401, "POST", COMMENTS)):
        host.create_comment(task, "hello", key="k")
    assert len(devhub.requests_for("apps/create-installation-access-token")) == mints + 1
    assert outcomes(devhub, "issues/create-comment") == [(401, False), (201, True)]
    assert len(bodies(devhub, task)) == 1


def test_a_second_401_is_not_retried_forever(
    devhub: DevHub, host: GitHubKitHost, task: TaskKey, waits: list[float]
) -> None:
    with devhub.inject(Fault(401, "POST", COMMENTS, count=None)), pytest.raises(gh_module.GitHubError) as caught:
        host.create_comment(task, "hello")
    assert caught.value.status == 401 and not isinstance(caught.value, Retryable)
    assert len(devhub.requests_for("issues/create-comment")) == 2


def test_pull_request_applied_then_502_is_opened_once(
    devhub: DevHub, app: GitHubApp, host: GitHubKitHost, tmp_path: Path, waits: list[float]
) -> None:
    fixed = FILES["src/calc.py"].replace("a - b", "a + b")
    push_branch(devhub, tmp_path, host.token(), BRANCH, {"src/calc.py": fixed})
    with devhub.inject(Fault(502, "POST", rf"/repos/{OWNER}/{REPO}/pulls", applied=True, count=None)):
        pull = host.create_pull(OWNER, REPO, head=BRANCH, base="main", title="Fix add", body="Fixes #1")
    [opened] = devhub.pulls(OWNER, REPO)
    assert (opened["number"], opened["head"]) == (pull.number, BRANCH) and pull.head == BRANCH
    assert outcomes(devhub, "pulls/create") == [(502, True)]
    # A retried job that skipped the look-up: GitHub's 422 "already exists" leads to the same PR.
    again = host.create_pull(OWNER, REPO, head=BRANCH, base="main", title="Fix add", body="Fixes #1")
    assert again == pull and len(devhub.pulls(OWNER, REPO)) == 1
    assert outcomes(devhub, "pulls/create") == [(502, True), (422, False)]


def test_idempotent_writes_are_retried_after_applied_5xx(
    devhub: DevHub, host: GitHubKitHost, task: TaskKey, waits: list[float]
) -> None:
    comment_id = host.create_comment(task, "queued", key="k")
    issue_path = rf"/repos/{OWNER}/{REPO}/issues/{task.number}"
    with devhub.inject(
        Fault(502, "POST", issue_path + "/labels", applied=True),
        Fault(502, "DELETE", issue_path + "/labels/.*", applied=True),
        Fault(502, "POST", issue_path + "/reactions", applied=True),
        Fault(502, "PATCH", rf"/repos/{OWNER}/{REPO}/issues/comments/\d+", applied=True),
    ):
        host.add_labels(task, ["nightcrew:queued", "x"])
        host.remove_label(task, "x")
        host.react(task, "eyes")
        host.update_comment(task, comment_id, "running", key="k")
    seen = devhub.issue(OWNER, REPO, task.number)
    assert seen["labels"] == ["nightcrew:queued"] and seen["reactions"] == ["eyes"]
    [comment] = seen["comments"]
    # The PATCH landed twice with the same body: harmless, which is why it may be retried.
    assert comment["body"] == "running\n\n" + write_marker("k") and comment["edits"] == 2
    assert [r.status for r in devhub.requests_for("reactions/create-for-issue")] == [502, 200]  # 200: already there
    assert outcomes(devhub, "issues/remove-label") == [(502, True), (404, False)]
    # update kept the marker: the key still finds the comment
    assert host.create_comment(task, "queued", key="k") == comment_id


def test_find_comment_counts_only_the_apps_own_comments(
    devhub: DevHub, host: GitHubKitHost, task: TaskKey
) -> None:
    devhub.add_comment(OWNER, REPO, task.number, "copied " + write_marker("k"), actor="mallory")
    for n in range(gh_module.PAGE_SIZE + 5):  # the bot's comment is on page 2
        devhub.add_comment(OWNER, REPO, task.number, f"chatter {n}")
    mine = host.create_comment(task, "queued", key="k")
    assert host.find_comment(task, write_marker("k")) == mine
    assert len(host.list_comments(task)) == gh_module.PAGE_SIZE + 7
    assert host.find_comment(task, write_marker("other")) is None


def test_write_keys_must_stay_inside_the_hidden_comment() -> None:
    for bad in ("a -->b", "two\nlines", "", "x" * 201):
        with pytest.raises(ValueError):
            write_marker(bad)
