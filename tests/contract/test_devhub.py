"""The GitHub stand-in, driven the way production drives GitHub: githubkit with App auth, real
`git` over smart-HTTP, and a real HTTP receiver for its signed webhooks. No mocks."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from githubkit import AppAuthStrategy, GitHub
from githubkit.cache import MemCacheStrategy
from githubkit.exception import RequestFailed

from devhub import DevHub, Fault
from devhub.webhook_schemas import webhook_errors
from tests.conftest import DEVHUB_APP_ID, DEVHUB_WEBHOOK_SECRET

OWNER, REPO = "octo", "hello"
FILES = {"README.md": "# hello\n", "src/calc.py": "def add(a, b):\n    return a - b\n\n\nLIMIT = 10\n"}
AnyGitHub = GitHub[Any]


# ------------------------------------------------------------------------------ helpers


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes

    @property
    def payload(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(self.body)
        return loaded


@dataclass
class Receiver:
    url: str
    hits: list[Received] = field(default_factory=list)

    def events(self, event: str, action: str | None = None) -> list[Received]:
        return [h for h in self.hits if h.headers["x-github-event"] == event
                and (action is None or h.payload.get("action") == action)]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A small webhook endpoint that keeps every raw delivery."""
    hits: list[Received] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            hits.append(Received({k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(202)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield Receiver(f"http://127.0.0.1:{server.server_address[1]}/webhooks", hits)
    server.shutdown()


def app_client(hub: DevHub, private_key: str) -> AnyGitHub:
    return GitHub(AppAuthStrategy(DEVHUB_APP_ID, private_key), base_url=hub.url,
                  cache_strategy=MemCacheStrategy(), http_cache=False, timeout=10)


def installation_client(hub: DevHub, private_key: str) -> tuple[AnyGitHub, AnyGitHub]:
    """(app client, installation client) exactly as production builds them."""
    app_gh = app_client(hub, private_key)
    inst = app_gh.rest.apps.get_repo_installation(OWNER, REPO).parsed_data
    assert isinstance(app_gh.auth, AppAuthStrategy)
    return app_gh, app_gh.with_auth(app_gh.auth.as_installation(inst.id))


@pytest.fixture
def repo(devhub: DevHub) -> DevHub:
    devhub.create_repo(OWNER, REPO, FILES)
    devhub.install(OWNER)
    return devhub


def git(args: list[str], cwd: Path, token: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run real git; the token reaches it only through GIT_ASKPASS, never the URL or argv."""
    askpass = cwd.parent / "askpass.sh" if cwd.name else cwd / "askpass.sh"
    askpass.write_text('#!/bin/sh\ncase "$1" in Username*) echo x-access-token;; *) echo "$DEVHUB_TEST_TOKEN";; esac\n')
    askpass.chmod(askpass.stat().st_mode | stat.S_IEXEC)
    env = {
        "PATH": os.environ["PATH"], "HOME": str(cwd.parent), "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_TERMINAL_PROMPT": "0", "GIT_AUTHOR_NAME": "bot", "GIT_AUTHOR_EMAIL": "bot@example.com",
        "GIT_COMMITTER_NAME": "bot", "GIT_COMMITTER_EMAIL": "bot@example.com",
    }
    if token is not None:
        env |= {"GIT_ASKPASS": str(askpass), "DEVHUB_TEST_TOKEN": token}
    return subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          check=check, timeout=60)


def push_branch(hub: DevHub, tmp_path: Path, token: str, branch: str, files: dict[str, str]) -> str:
    """Clone, commit `files` on `branch`, push; return the pushed sha."""
    work = tmp_path / f"clone-{branch.replace('/', '-')}"
    git(["clone", "--quiet", f"{hub.url}/{OWNER}/{REPO}.git", str(work)], tmp_path, token)
    git(["checkout", "--quiet", "-b", branch], work)
    for rel, text in files.items():
        (work / rel).parent.mkdir(parents=True, exist_ok=True)
        (work / rel).write_text(text)
    git(["add", "-A"], work)
    git(["commit", "--quiet", "-m", f"work on {branch}"], work)
    git(["push", "--quiet", "origin", branch], work, token)
    return git(["rev-parse", "HEAD"], work).stdout.strip()


def mint_token(app_gh: AnyGitHub) -> str:
    iid = app_gh.rest.apps.get_repo_installation(OWNER, REPO).parsed_data.id
    token = app_gh.rest.apps.create_installation_access_token(iid).parsed_data
    assert token.token.startswith("ghs_") and len(token.token) == 40
    return token.token


def assert_signed_and_valid(hit: Received) -> None:
    expected = "sha256=" + hmac.new(DEVHUB_WEBHOOK_SECRET.encode(), hit.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(hit.headers["x-hub-signature-256"], expected)
    assert hit.headers["user-agent"].startswith("GitHub-Hookshot/")
    assert hit.headers["x-github-hook-installation-target-type"] == "integration"
    assert hit.headers["x-github-hook-installation-target-id"] == str(DEVHUB_APP_ID)
    assert webhook_errors(hit.headers["x-github-event"], hit.payload) == []


# -------------------------------------------------------------------------------- tests


def test_installation_client_can_do_everything_nightcrew_needs(repo: DevHub, app_private_key: str) -> None:
    number = repo.create_issue(OWNER, REPO, "add() subtracts", "calc.add(1, 2) == -1")
    _, gh = installation_client(repo, app_private_key)

    comment = gh.rest.issues.create_comment(OWNER, REPO, number, body="queued").parsed_data
    assert comment.user is not None and comment.user.login == "nightcrew[bot]"
    assert comment.user.type == "Bot"
    edited = gh.rest.issues.update_comment(OWNER, REPO, comment.id, body="running").parsed_data
    assert edited.body == "running"
    labels = gh.rest.issues.add_labels(OWNER, REPO, number, labels=["nightcrew:queued"]).parsed_data
    assert [label.name for label in labels] == ["nightcrew:queued"]
    assert gh.rest.issues.remove_label(OWNER, REPO, number, "nightcrew:queued").parsed_data == []
    with pytest.raises(RequestFailed) as missing:
        gh.rest.issues.remove_label(OWNER, REPO, number, "nope")
    assert missing.value.response.status_code == 404
    eyes = gh.rest.reactions.create_for_issue(OWNER, REPO, number, content="eyes")
    assert eyes.status_code == 201 and eyes.parsed_data.content == "eyes"
    again = gh.rest.reactions.create_for_issue(OWNER, REPO, number, content="eyes")
    assert again.status_code == 200 and again.parsed_data.id == eyes.parsed_data.id
    rocket = gh.rest.reactions.create_for_issue_comment(OWNER, REPO, comment.id, content="rocket")
    assert rocket.parsed_data.user is not None and rocket.parsed_data.user.login == "nightcrew[bot]"
    assert gh.rest.repos.get_collaborator_permission_level(OWNER, REPO, "octocat").parsed_data.permission == "admin"
    issue = gh.rest.issues.get(OWNER, REPO, number).parsed_data
    assert issue.comments == 1 and issue.user is not None and issue.user.login == "octocat"
    [listed] = gh.rest.issues.list_comments(OWNER, REPO, number, per_page=100).parsed_data
    assert listed.id == comment.id
    assert gh.rest.repos.get(OWNER, REPO).parsed_data.clone_url == f"{repo.url}/{OWNER}/{REPO}.git"
    content = gh.rest.repos.get_content(OWNER, REPO, "src/calc.py", ref="main").parsed_data
    assert not isinstance(content, list) and content.type == "file"
    assert gh.rest.git.get_ref(OWNER, REPO, "heads/main").parsed_data.object_.sha == repo.branches(OWNER, REPO)["main"]

    opened = gh.rest.issues.create(OWNER, REPO, title="from the API", body="b", labels=["bug"]).parsed_data
    assert [label.name for label in gh.rest.issues.list_labels_on_issue(OWNER, REPO, opened.number).parsed_data] == ["bug"]
    closed = gh.rest.issues.update(OWNER, REPO, opened.number, state="closed", state_reason="not_planned").parsed_data
    assert closed.state == "closed" and closed.closed_at is not None
    assert gh.rest.issues.get_comment(OWNER, REPO, comment.id).parsed_data.body == "running"
    assert gh.rest.issues.create_label(OWNER, REPO, name="nightcrew:done", color="0e8a16").parsed_data.color == "0e8a16"
    with pytest.raises(RequestFailed) as duplicate:
        gh.rest.issues.create_label(OWNER, REPO, name="nightcrew:done", color="0e8a16")
    assert duplicate.value.response.json()["errors"][0]["code"] == "already_exists"
    listing = gh.rest.repos.get_content(OWNER, REPO, "src").parsed_data
    assert isinstance(listing, list) and [e.name for e in listing] == ["calc.py"]
    raw = gh.rest.repos.get_content(OWNER, REPO, "src/calc.py", headers={"Accept": "application/vnd.github.raw+json"})
    assert raw.text == FILES["src/calc.py"]
    with pytest.raises(RequestFailed) as absent:
        gh.rest.repos.get_content(OWNER, REPO, "nope.txt")
    assert absent.value.response.status_code == 404

    seen = repo.issue(OWNER, REPO, number)
    assert seen["reactions"] == ["eyes"]
    assert seen["comments"] == [{"id": comment.id, "body": "running", "user": "nightcrew[bot]",
                                 "edits": 1, "reactions": ["rocket"]}]
    ops = [(r.operation_id, r.status, r.actor) for r in repo.requests]
    assert ("apps/create-installation-access-token", 201, None) in ops
    assert ("issues/create-comment", 201, "nightcrew[bot]") in ops


def test_credentials_are_checked_like_github(repo: DevHub) -> None:
    stranger_key, _ = DevHub.generate_app_keypair()
    stranger = app_client(repo, stranger_key)  # keep a reference: `.rest` holds only a weakref
    with pytest.raises(RequestFailed) as bad_jwt:
        stranger.rest.apps.get_repo_installation(OWNER, REPO)
    assert bad_jwt.value.response.status_code == 401

    expired = jwt.encode({"iat": int(time.time()) - 900, "exp": int(time.time()) - 300,
                          "iss": str(DEVHUB_APP_ID)}, stranger_key, algorithm="RS256")
    answer = httpx.get(f"{repo.url}/repos/{OWNER}/{REPO}/installation",
                       headers={"Authorization": f"Bearer {expired}"})
    assert answer.status_code == 401
    anonymous = httpx.get(f"{repo.url}/repos/{OWNER}/{REPO}")
    assert anonymous.status_code == 404 and anonymous.json()["message"] == "Not Found"
    bogus = httpx.get(f"{repo.url}/repos/{OWNER}/{REPO}", headers={"Authorization": "token ghs_" + "x" * 36})
    assert bogus.status_code == 401 and bogus.json()["message"] == "Bad credentials"


def test_expired_installation_token_is_refused(repo: DevHub, app_private_key: str) -> None:
    _, gh = installation_client(repo, app_private_key)
    assert gh.rest.repos.get(OWNER, REPO).parsed_data.private is True
    repo.expire_tokens()
    with pytest.raises(RequestFailed) as refused:
        gh.rest.repos.get(OWNER, REPO)  # githubkit keeps the cached token: GitHub says 401
    assert refused.value.response.status_code == 401


def test_token_of_another_installation_sees_nothing(repo: DevHub, app_private_key: str) -> None:
    repo.create_repo("other", "secret", {"a.txt": "a\n"})
    repo.install("other")
    _, gh = installation_client(repo, app_private_key)
    with pytest.raises(RequestFailed) as hidden:
        gh.rest.repos.get("other", "secret")
    assert hidden.value.response.status_code == 404


def test_git_over_smart_http_needs_a_token(repo: DevHub, app_private_key: str, tmp_path: Path) -> None:
    url = f"{repo.url}/{OWNER}/{REPO}.git"
    anonymous = git(["clone", "--quiet", url, str(tmp_path / "anon")], tmp_path, check=False)
    assert anonymous.returncode != 0 and not (tmp_path / "anon" / "README.md").exists()

    app_gh = app_client(repo, app_private_key)
    token = mint_token(app_gh)
    git(["clone", "--quiet", url, str(tmp_path / "ok")], tmp_path, token)
    assert (tmp_path / "ok" / "src" / "calc.py").read_text() == FILES["src/calc.py"]
    assert token not in (tmp_path / "ok" / ".git" / "config").read_text()

    big = os.urandom(3 * 1024 * 1024).hex()  # a multi-MB pack, sent chunked by git
    sha = push_branch(repo, tmp_path, token, "nightcrew/big", {"blob.txt": big})
    assert repo.branches(OWNER, REPO)["nightcrew/big"] == sha
    assert repo.file_at(OWNER, REPO, "nightcrew/big", "blob.txt") == big


def test_pull_request_lifecycle(repo: DevHub, app_private_key: str, tmp_path: Path,
                                receiver: Receiver) -> None:
    repo.webhook_url = receiver.url
    app_gh, gh = installation_client(repo, app_private_key)
    token = mint_token(app_gh)
    fixed = FILES["src/calc.py"].replace("a - b", "a + b")
    sha = push_branch(repo, tmp_path, token, "nightcrew/issue-1", {"src/calc.py": fixed})

    pr = gh.rest.pulls.create(OWNER, REPO, head="nightcrew/issue-1", base="main",
                              title="Fix add", body="Fixes #1", draft=False).parsed_data
    assert pr.head.sha == sha and pr.user.type == "Bot" and pr.commits == 1
    for head, message in (("nightcrew/issue-1", "A pull request already exists for octo:nightcrew/issue-1."),
                          ("main", "No commits between main and main")):
        with pytest.raises(RequestFailed) as rejected:
            gh.rest.pulls.create(OWNER, REPO, head=head, base="main", title="again")
        assert rejected.value.response.status_code == 422
        assert rejected.value.response.json()["errors"][0]["message"] == message

    [listed] = gh.rest.pulls.list(OWNER, REPO, head=f"{OWNER}:nightcrew/issue-1", state="open").parsed_data
    assert listed.number == pr.number
    assert gh.rest.pulls.list(OWNER, REPO, head=f"{OWNER}:nope", state="open").parsed_data == []
    [changed] = gh.rest.pulls.list_files(OWNER, REPO, pr.number).parsed_data
    assert (changed.filename, changed.status, changed.additions, changed.deletions) == ("src/calc.py", "modified", 1, 1)
    assert changed.patch is not None and "+    return a + b" in changed.patch

    review = gh.rest.pulls.create_review(
        OWNER, REPO, pr.number, event="COMMENT", body="Looks right.",
        comments=[{"path": "src/calc.py", "line": 2, "side": "RIGHT", "body": "add, not subtract"}],
    ).parsed_data
    assert review.state == "COMMENTED" and review.commit_id == sha
    [inline] = gh.rest.pulls.list_review_comments(OWNER, REPO, pr.number).parsed_data
    assert (inline.path, inline.line, inline.body) == ("src/calc.py", 2, "add, not subtract")
    assert inline.diff_hunk.startswith("@@") and gh.rest.pulls.list_reviews(OWNER, REPO, pr.number).parsed_data
    for event, comments, why in (
        ("COMMENT", [{"path": "src/calc.py", "line": 40, "body": "x"}], "line must be part of the diff"),
        ("APPROVE", [], "Can not approve your own pull request"),
    ):
        with pytest.raises(RequestFailed) as refused:
            gh.rest.pulls.create_review(OWNER, REPO, pr.number, event=event, body="b", comments=comments)
        assert refused.value.response.status_code == 422 and why in refused.value.response.text

    again = push_branch_again(repo, tmp_path, token, fixed + "# more\n")
    assert gh.rest.pulls.get(OWNER, REPO, pr.number).parsed_data.head.sha == again
    closed = gh.rest.pulls.update(OWNER, REPO, pr.number, state="closed").parsed_data
    assert closed.state == "closed" and closed.merged is False

    assert repo.wait_deliveries(10)
    assert len(receiver.events("pull_request", "opened")) == 1
    [sync] = receiver.events("pull_request", "synchronize")
    assert sync.payload["before"] == sha and sync.payload["after"] == again
    assert receiver.events("pull_request", "closed") and receiver.events("pull_request_review", "submitted")
    for hit in receiver.hits:
        assert_signed_and_valid(hit)
    assert [p["head_sha"] for p in repo.pulls(OWNER, REPO)] == [again]


def push_branch_again(hub: DevHub, tmp_path: Path, token: str, text: str) -> str:
    work = tmp_path / "clone-nightcrew-issue-1"
    (work / "src" / "calc.py").write_text(text)
    git(["commit", "--quiet", "-am", "more"], work)
    git(["push", "--quiet", "origin", "nightcrew/issue-1"], work, token)
    return git(["rev-parse", "HEAD"], work).stdout.strip()


def test_request_github_would_reject_is_422_and_recorded(repo: DevHub, app_private_key: str) -> None:
    number = repo.create_issue(OWNER, REPO, "t", "b")
    app_gh = app_client(repo, app_private_key)
    token = mint_token(app_gh)
    answer = httpx.post(f"{repo.url}/repos/{OWNER}/{REPO}/issues/{number}/reactions",
                        json={"content": "thumbsup"}, headers={"Authorization": f"token {token}"})
    assert answer.status_code == 422 and answer.json()["message"] == "Validation Failed"
    [violation] = repo.violations
    assert violation.startswith(f"POST /repos/{OWNER}/{REPO}/issues/{number}/reactions: content:")
    assert "thumbsup" in violation
    nowhere = httpx.post(f"{repo.url}/repos/{OWNER}/{REPO}/nonexistent", json={},
                         headers={"Authorization": f"token {token}"})
    assert nowhere.status_code == 404 and len(repo.violations) == 2
    repo.violations.clear()


def test_webhooks_are_signed_real_shaped_and_include_the_apps_own_actions(
        repo: DevHub, app_private_key: str, receiver: Receiver) -> None:
    repo.webhook_url = receiver.url
    number = repo.create_issue(OWNER, REPO, "add() subtracts", "please fix")
    repo.add_label(OWNER, REPO, number, "nightcrew")
    comment_id = repo.add_comment(OWNER, REPO, number, "/nightcrew fix", actor="alice")
    repo.edit_comment(OWNER, REPO, comment_id, "/nightcrew fix please", actor="alice")
    app_gh, gh = installation_client(repo, app_private_key)
    installation_id = app_gh.rest.apps.get_repo_installation(OWNER, REPO).parsed_data.id
    gh.rest.issues.add_labels(OWNER, REPO, number, labels=["nightcrew:queued"])
    assert repo.wait_deliveries(10)

    [human] = [h for h in receiver.events("issues", "labeled") if h.payload["label"]["name"] == "nightcrew"]
    assert human.payload["sender"] == {**human.payload["sender"], "login": "octocat", "type": "User"}
    assert human.payload["installation"]["id"] == installation_id
    [own] = [h for h in receiver.events("issues", "labeled") if h.payload["label"]["name"] == "nightcrew:queued"]
    assert own.payload["sender"]["type"] == "Bot" and own.payload["sender"]["login"] == "nightcrew[bot]"
    [edited] = receiver.events("issue_comment", "edited")
    assert edited.payload["changes"] == {"body": {"from": "/nightcrew fix"}}
    assert edited.payload["comment"]["author_association"] == "NONE"
    assert [h.headers["x-github-event"] for h in receiver.hits] == \
        ["issues", "issues", "issue_comment", "issue_comment", "issues"]
    for hit in receiver.hits:
        assert_signed_and_valid(hit)

    first = receiver.hits[0].headers["x-github-delivery"]
    repo.redeliver(first)
    assert repo.wait_deliveries(10)
    assert receiver.hits[-1].headers["x-github-delivery"] == first
    assert receiver.hits[-1].body == receiver.hits[0].body
    before_url, *sent = repo.deliveries
    assert (before_url.event, before_url.error) == ("installation", "no webhook url configured")
    assert [d.status for d in sent] == [202] * 6 and sent[-1].redelivery


def test_every_event_nightcrew_listens_to_is_delivered_in_githubs_shape(
        devhub: DevHub, app_private_key: str, tmp_path: Path, receiver: Receiver) -> None:
    devhub.webhook_url = receiver.url
    devhub.install(OWNER)
    devhub.create_repo(OWNER, REPO, FILES)
    number = devhub.create_issue(OWNER, REPO, "t", "b", labels=["nightcrew"])
    app_gh, gh = installation_client(devhub, app_private_key)
    gh.rest.issues.update(OWNER, REPO, number, assignees=["octocat"], title="t2")
    sha = push_branch(devhub, tmp_path, mint_token(app_gh), "nightcrew/issue-1", {"new.py": "x = 1\n"})
    pr = gh.rest.pulls.create(OWNER, REPO, head="nightcrew/issue-1", base="main", title="PR").parsed_data
    gh.rest.issues.add_labels(OWNER, REPO, pr.number, labels=["nightcrew:review"])
    gh.rest.issues.create_comment(OWNER, REPO, pr.number, body="on the PR")
    devhub.set_permission(OWNER, REPO, "alice", "write")
    gh.rest.pulls.create_review(OWNER, REPO, pr.number, event="COMMENT", body="ok", commit_id=sha,
                                comments=[{"path": "new.py", "position": 1, "body": "nit"}])
    devhub.close_issue(OWNER, REPO, number)
    assert devhub.wait_deliveries(10)

    kinds = [(h.headers["x-github-event"], h.payload.get("action")) for h in receiver.hits]
    assert kinds == [
        ("installation", "created"), ("issues", "opened"), ("issues", "labeled"),
        ("issues", "edited"), ("issues", "assigned"), ("pull_request", "opened"),
        ("pull_request", "labeled"), ("issue_comment", "created"),
        ("pull_request_review", "submitted"), ("pull_request_review_comment", "created"),
        ("issues", "closed"),
    ]
    for hit in receiver.hits:
        assert_signed_and_valid(hit)
    on_pr = receiver.events("issue_comment", "created")[0].payload["issue"]
    assert on_pr["pull_request"]["url"].endswith(f"/pulls/{pr.number}")
    review = receiver.events("pull_request_review", "submitted")[0].payload["review"]
    assert review["state"] == "commented"  # webhooks use lower case, REST upper case
    [pull] = devhub.pulls(OWNER, REPO)
    assert pull["reviews"][0]["comments"] == [{"path": "new.py", "line": 1, "side": "RIGHT", "body": "nit"}]


def test_injected_faults_answer_like_github_and_are_recorded(repo: DevHub, app_private_key: str) -> None:
    # githubkit's own auto_retry would repeat the POST after the 502 (and comment twice).
    app_gh = GitHub(AppAuthStrategy(DEVHUB_APP_ID, app_private_key), base_url=repo.url,
                    cache_strategy=MemCacheStrategy(), http_cache=False, timeout=10, auto_retry=False)
    inst = app_gh.rest.apps.get_repo_installation(OWNER, REPO).parsed_data
    assert isinstance(app_gh.auth, AppAuthStrategy)
    gh = app_gh.with_auth(app_gh.auth.as_installation(inst.id))
    number = repo.create_issue(OWNER, REPO, "Bug")
    comments = rf"/repos/{OWNER}/{REPO}/issues/\d+/comments"
    with repo.inject(Fault(502, "POST", comments, applied=True)) as injection:
        with pytest.raises(RequestFailed) as failed:
            gh.rest.issues.create_comment(OWNER, REPO, number, body="landed anyway")
        assert failed.value.response.status_code == 502
        assert failed.value.response.json()["message"] == "Server Error"
        gh.rest.issues.create_comment(OWNER, REPO, number, body="second")  # count=1: spent
    assert injection.faults[0].answered == 1
    assert [c["body"] for c in repo.issue(OWNER, REPO, number)["comments"]] == ["landed anyway", "second"]
    recorded = [(r.status, r.applied, r.fault) for r in repo.requests_for("issues/create-comment")]
    assert recorded == [(502, True, "502 applied"), (201, True, None)]

    with repo.inject(Fault(429, "GET", r".*/labels", count=None, every=2, retry_after=7)):
        statuses = []
        for _ in range(4):
            try:
                gh.rest.issues.list_labels_on_issue(OWNER, REPO, number)
                statuses.append(200)
            except RequestFailed as exc:
                statuses.append(exc.response.status_code)
                assert exc.response.headers["retry-after"] == "7"
                assert "secondary rate limit" in exc.response.json()["message"]
    assert statuses == [200, 429, 200, 429]

    with repo.inject(Fault(403, "GET", r".*", primary=True, retry_after=60)):
        with pytest.raises(RequestFailed) as limited:
            gh.rest.issues.get(OWNER, REPO, number)
    headers = limited.value.response.headers
    assert limited.value.response.status_code == 403 and headers["x-ratelimit-remaining"] == "0"
    assert int(headers["x-ratelimit-reset"]) >= int(time.time()) + 58 and "retry-after" not in headers

    with repo.inject(Fault(401, "GET", r".*")):
        with pytest.raises(RequestFailed) as refused:
            gh.rest.issues.get(OWNER, REPO, number)
        assert refused.value.response.status_code == 401
        assert refused.value.response.json()["message"] == "Bad credentials"
        # the token is revoked, not just refused once
        with pytest.raises(RequestFailed) as again:
            gh.rest.issues.get(OWNER, REPO, number)
        assert again.value.response.status_code == 401 and again.value.response.json()["message"] == "Bad credentials"
    assert [r.fault for r in repo.requests if r.status == 401] == ["401 bad-credentials", None]


def test_faults_must_be_answers_github_gives() -> None:
    with pytest.raises(ValueError):
        Fault(418)
    with pytest.raises(ValueError):
        Fault(429, applied=True)  # a rate-limited request is never carried out
