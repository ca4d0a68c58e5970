"""nightcrew's review-side GitHub adapter (``PullReviews`` on ``GitHubKitHost``) against the
stand-in: every REST request is checked against GitHub's OpenAPI description and every GraphQL
query against the stand-in's schema by the `devhub` fixture (a violation fails the test)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

import github_app.github as gh_module
from devhub import DevHub, Fault, OrphanReview
from github_app.github import GitHubApp, GitHubError, GitHubKitHost, ReviewThread
from tests.conftest import DEVHUB_APP_ID

OWNER, REPO = "octo", "hello"
CALC = "".join(f"v{i} = {i}\n" for i in range(1, 31))
BASE = {"README.md": "# hello\n", "src/calc.py": CALC, "notes.txt": "a\nb\nc\nd\ne\n"}
# Two hunks in calc.py (new lines 1-6 and 22-28); notes.txt loses its lines 4 and 5.
CHANGE = {"src/calc.py": CALC.replace("v3 = 3\n", "v3 = 33\n").replace("v25 = 25\n", "v25 = 250\n"),
          "notes.txt": "a\nb\nc\n"}


@pytest.fixture(autouse=True)
def no_waits(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[float]]:
    asked: list[float] = []
    monkeypatch.setattr(gh_module, "sleep", asked.append)
    yield asked


@pytest.fixture
def host(devhub: DevHub, app_private_key: str) -> GitHubKitHost:
    devhub.install(OWNER)
    devhub.create_repo(OWNER, REPO, BASE)
    app = GitHubApp(DEVHUB_APP_ID, app_private_key, devhub.url)
    return app.host(app.installation_for(OWNER, REPO))


@pytest.fixture
def number(devhub: DevHub, host: GitHubKitHost) -> int:
    """A pull request by alice, who has write access."""
    devhub.set_permission(OWNER, REPO, "alice", "write")
    return devhub.open_pull(OWNER, REPO, head="feature", title="Tune values", body="Fixes #9",
                            files=CHANGE, actor="alice")


def comment(path: str = "src/calc.py", line: int = 3, **extra: Any) -> dict[str, Any]:
    return {"path": path, "line": line, "side": "RIGHT", "body": f"about {path}:{line}", **extra}


def graphql(hub: DevHub, token: str, query: str, **variables: Any) -> dict[str, Any]:
    answer = httpx.post(f"{hub.url}/graphql", json={"query": query, "variables": variables},
                        headers={"Authorization": f"bearer {token}"})
    assert answer.status_code == 200
    data: dict[str, Any] = answer.json()
    return data


# ---------------------------------------------------------------------------- reading


def test_pull_diff_commits_and_body_round_trip(devhub: DevHub, host: GitHubKitHost, number: int) -> None:
    pr = host.pull(OWNER, REPO, number)
    assert (pr.number, pr.title, pr.body, pr.state, pr.draft, pr.author) == (
        number, "Tune values", "Fixes #9", "open", False, "alice")
    assert (pr.head_ref, pr.base_ref, pr.head_repo, pr.base_repo) == ("feature", "main", "octo/hello", "octo/hello")
    assert not pr.is_fork and pr.head_sha == devhub.branches(OWNER, REPO)["feature"]
    diff = host.pull_diff(OWNER, REPO, number)
    assert "+v3 = 33" in diff and "-v25 = 25" in diff and "-d" in diff
    assert host.compare_diff(OWNER, REPO, pr.base_sha, pr.head_sha) == diff
    assert host.compare_diff(OWNER, REPO, "main", "feature") == diff
    [commit] = host.pull_commits(OWNER, REPO, number)
    assert (commit.sha, commit.author, commit.message, commit.parents) == (pr.head_sha, "alice", "Tune values", 1)
    host.update_pull_body(OWNER, REPO, number, "Fixes #9\n\nReviewed: 1 round")
    assert host.pull(OWNER, REPO, number).body.endswith("Reviewed: 1 round")
    assert host.bot_login(OWNER, REPO) == "nightcrew[bot]"


def test_compare_answers_githubs_comparison(devhub: DevHub, host: GitHubKitHost, number: int) -> None:
    token = host.token()
    answer = httpx.get(f"{devhub.url}/repos/{OWNER}/{REPO}/compare/main...feature",
                       headers={"Authorization": f"token {token}"}).json()
    assert (answer["status"], answer["ahead_by"], answer["behind_by"], answer["total_commits"]) == ("ahead", 1, 0, 1)
    assert sorted(f["filename"] for f in answer["files"]) == ["notes.txt", "src/calc.py"]
    assert all(f["patch"].startswith("@@") for f in answer["files"])
    missing = httpx.get(f"{devhub.url}/repos/{OWNER}/{REPO}/compare/main...nope",
                        headers={"Authorization": f"token {token}"})
    assert missing.status_code == 404


# ---------------------------------------------------------------------------- reviews


def test_review_with_comments_round_trips(devhub: DevHub, host: GitHubKitHost, number: int) -> None:
    sha = host.pull(OWNER, REPO, number).head_sha
    review = host.create_review(OWNER, REPO, number, commit_id=sha, body="Two notes.", key="round-1", comments=[
        comment(line=5, start_line=2, start_side="RIGHT"),
        {"path": "notes.txt", "line": 4, "side": "LEFT", "body": "why drop d?"},
    ])
    assert (review.author, review.state, review.commit_id) == ("nightcrew[bot]", "COMMENTED", sha)
    assert review.body.startswith("Two notes.") and gh_module.write_marker("round-1") in review.body
    assert host.reviews(OWNER, REPO, number) == [review]
    multi, deleted = host.review_comments(OWNER, REPO, number)
    assert (multi.path, multi.line, multi.side, multi.start_line, multi.start_side) == ("src/calc.py", 5, "RIGHT", 2, "RIGHT")
    assert (multi.review_id, multi.commit_id, multi.in_reply_to, multi.author) == (review.id, sha, None, "nightcrew[bot]")
    assert multi.diff_hunk.startswith("@@ -1,6 +1,6 @@") and multi.diff_hunk.endswith("v5 = 5")
    assert (deleted.path, deleted.line, deleted.side, deleted.body) == ("notes.txt", 4, "LEFT", "why drop d?")
    assert multi.html_url.endswith(f"#discussion_r{multi.id}")


@pytest.mark.parametrize(("bad", "message"), [
    (comment(path="nope.py"), "Path could not be resolved"),
    (comment(line=12), "Pull request review thread line must be part of the diff"),
    (comment(path="notes.txt", line=4), "Pull request review thread line must be part of the diff"),
    (comment(line=25, start_line=3), "Pull request review thread start line must be part of the same hunk as the line."),
    (comment(line=4, start_line=4), "Pull request review thread start line must precede the end line"),
    (comment(line=4, start_line=5), "Pull request review thread start line must precede the end line"),
    (comment(line=4, start_line=2, start_side="MIDDLE"), "start side is not included in the list"),
    (comment(side="UP"), "side is not included in the list"),
])
def test_each_refusal_carries_githubs_reason_and_posts_nothing(
    devhub: DevHub, host: GitHubKitHost, number: int, bad: dict[str, Any], message: str,
) -> None:
    sha = host.pull(OWNER, REPO, number).head_sha
    with pytest.raises(GitHubError) as refused:
        host.create_review(OWNER, REPO, number, commit_id=sha, body="b", key="round-1",
                           comments=[comment(), bad])  # the good one does not land either
    assert refused.value.status == 422
    assert refused.value.detail == f"Unprocessable Entity: {message}" or message in refused.value.detail
    assert message in str(refused.value) and "ghs_" not in str(refused.value)
    assert host.reviews(OWNER, REPO, number) == [] and host.review_comments(OWNER, REPO, number) == []


def test_pending_review_is_the_apps_alone_and_can_be_deleted(
    devhub: DevHub, host: GitHubKitHost, number: int,
) -> None:
    sha = host.pull(OWNER, REPO, number).head_sha
    pending = host.create_review(OWNER, REPO, number, commit_id=sha, body="", comments=[comment()], event=None)
    assert pending.state == "PENDING" and pending.body == ""
    assert host.reviews(OWNER, REPO, number) == [pending]
    assert host.review_comments(OWNER, REPO, number) == []  # not part of the PR's comments
    assert host.review_threads(OWNER, REPO, number) == []
    alice = {"Authorization": f"token {devhub.user_token('alice')}"}
    base = f"{devhub.url}/repos/{OWNER}/{REPO}/pulls/{number}/reviews"
    assert httpx.get(base, headers=alice).json() == []
    assert httpx.get(f"{base}/{pending.id}", headers=alice).status_code == 404
    mine = httpx.get(f"{base}/{pending.id}/comments", headers={"Authorization": f"token {host.token()}"})
    assert [c["line"] for c in mine.json()] == [3]
    with pytest.raises(GitHubError, match="one pending review"):
        host.create_review(OWNER, REPO, number, commit_id=sha, body="", comments=[comment()], event=None)

    host.delete_pending_review(OWNER, REPO, number, pending.id)
    assert host.reviews(OWNER, REPO, number) == []
    submitted = host.create_review(OWNER, REPO, number, commit_id=sha, body="ok", comments=[])
    with pytest.raises(GitHubError) as refused:
        host.delete_pending_review(OWNER, REPO, number, submitted.id)
    assert refused.value.status == 422 and "non-pending" in refused.value.detail


def test_orphan_review_is_left_behind_although_github_answers_422(
    devhub: DevHub, host: GitHubKitHost, number: int,
) -> None:
    sha = host.pull(OWNER, REPO, number).head_sha
    with devhub.inject(OrphanReview()) as injected:
        with pytest.raises(GitHubError) as refused:
            host.create_review(OWNER, REPO, number, commit_id=sha, body="Round 1.", key="round-1",
                               comments=[comment()])
        assert refused.value.status == 422 and "must be part of the diff" in refused.value.detail
    [orphan] = host.reviews(OWNER, REPO, number)
    assert orphan.state == "COMMENTED" and gh_module.write_marker("round-1") in orphan.body
    assert host.review_comments(OWNER, REPO, number) == []  # body only
    [request] = devhub.requests_for("pulls/create-review")
    assert (request.status, request.fault, request.applied) == (422, "422 orphan-review", False)
    assert injected.faults[0].answered == 1
    # Spent: the next review posts normally.
    host.create_review(OWNER, REPO, number, commit_id=sha, body="Round 1.", key="round-1b", comments=[comment()])
    assert len(host.review_comments(OWNER, REPO, number)) == 1


def test_server_error_after_the_review_landed_is_recovered_not_reposted(
    devhub: DevHub, host: GitHubKitHost, number: int, no_waits: list[float],
) -> None:
    sha = host.pull(OWNER, REPO, number).head_sha
    with devhub.inject(Fault(502, "POST", rf"/repos/{OWNER}/{REPO}/pulls/{number}/reviews", applied=True)):
        review = host.create_review(OWNER, REPO, number, commit_id=sha, body="Once.", key="round-1",
                                    comments=[comment()])
    assert host.reviews(OWNER, REPO, number) == [review] and no_waits == [1.0]
    [request] = devhub.requests_for("pulls/create-review")
    assert (request.status, request.applied) == (502, True)
    assert len(host.review_comments(OWNER, REPO, number)) == 1


def test_server_error_before_a_pending_review_landed_is_tried_again(
    devhub: DevHub, host: GitHubKitHost, number: int,
) -> None:
    sha = host.pull(OWNER, REPO, number).head_sha
    with devhub.inject(Fault(503, "POST", r".*/reviews")):
        pending = host.create_review(OWNER, REPO, number, commit_id=sha, body="", comments=[comment()], event=None)
    assert [r.id for r in host.reviews(OWNER, REPO, number)] == [pending.id]
    assert [r.status for r in devhub.requests_for("pulls/create-review")] == [503, 200]


# ---------------------------------------------------------------------------- threads


def test_replies_join_the_thread_and_are_announced(devhub: DevHub, host: GitHubKitHost, number: int) -> None:
    devhub.submit_review(OWNER, REPO, number, actor="bob", event="COMMENT", body="",
                         comments=[comment(line=25)])
    [root] = host.review_comments(OWNER, REPO, number)
    reply_id = host.reply_to_review_comment(OWNER, REPO, number, root.id, "Fixed in abc123.")
    again = devhub.reply_to_review_comment(OWNER, REPO, number, reply_id, "Thanks", actor="bob")
    _, reply, bobs = host.review_comments(OWNER, REPO, number)
    assert (reply.id, reply.in_reply_to, reply.author, reply.path, reply.line) == (
        reply_id, root.id, "nightcrew[bot]", "src/calc.py", 25)
    assert reply.body.startswith("Fixed in abc123.")
    assert (bobs.id, bobs.in_reply_to) == (again, root.id)  # a reply to a reply joins the root
    [thread] = devhub.review_threads(OWNER, REPO, number)
    assert [c["author"] for c in thread["comments"]] == ["bob", "nightcrew[bot]", "bob"]
    assert devhub.wait_deliveries(10)
    created = [d.payload["comment"] for d in devhub.deliveries
               if (d.event, d.action) == ("pull_request_review_comment", "created")]
    assert [c.get("in_reply_to_id") for c in created] == [None, root.id, root.id]
    with pytest.raises(GitHubError) as missing:
        host.reply_to_review_comment(OWNER, REPO, number, 999_999, "?")
    assert missing.value.status == 404


def test_threads_page_through_graphql_with_rest_logins_and_resolve(
    devhub: DevHub, host: GitHubKitHost, number: int, monkeypatch: pytest.MonkeyPatch,
) -> None:
    sha = host.pull(OWNER, REPO, number).head_sha
    host.create_review(OWNER, REPO, number, commit_id=sha, body="Notes.", key="r1",
                       comments=[comment(line=3), comment(line=25)])
    devhub.submit_review(OWNER, REPO, number, actor="bob", event="COMMENT", comments=[comment(line=26)])
    bot_root = host.review_comments(OWNER, REPO, number)[0]
    devhub.reply_to_review_comment(OWNER, REPO, number, bot_root.id, "disagree", actor="bob")
    monkeypatch.setattr(gh_module, "THREAD_PAGE_SIZE", 2)

    threads = host.review_threads(OWNER, REPO, number)
    assert len(devhub.requests_for("graphql")) == 2  # two pages
    assert [(t.path, t.line, t.root_author) for t in threads] == [
        ("src/calc.py", 3, "nightcrew[bot]"), ("src/calc.py", 25, "nightcrew[bot]"), ("src/calc.py", 26, "bob")]
    assert [c.author for c in threads[0].comments] == ["nightcrew[bot]", "bob"]
    assert threads[0].comments[0].id == bot_root.id and threads[0].id.startswith("PRRT_")
    assert not any(t.is_resolved or t.is_outdated for t in threads)

    host.resolve_review_thread(threads[0].id)
    host.resolve_review_thread(threads[0].id)  # idempotent
    views = {v["id"]: v for v in devhub.review_threads(OWNER, REPO, number)}
    assert views[threads[0].id]["resolved_by"] == "nightcrew[bot]"
    assert not views[threads[2].id]["resolved"]
    assert [t.is_resolved for t in host.review_threads(OWNER, REPO, number)] == [True, False, False]

    # The head moves and line 3 changes: that thread is outdated (its line gone), line 25's not.
    devhub.push_files(OWNER, REPO, "feature", {"src/calc.py": CHANGE["src/calc.py"].replace("v3 = 33", "v3 = 333")},
                      actor="alice")
    moved: list[ReviewThread] = host.review_threads(OWNER, REPO, number)
    assert [(t.is_outdated, t.line) for t in moved] == [(True, None), (False, 25), (False, 26)]


def test_graphql_speaks_githubs_dialect(devhub: DevHub, host: GitHubKitHost, number: int) -> None:
    sha = host.pull(OWNER, REPO, number).head_sha
    host.create_review(OWNER, REPO, number, commit_id=sha, body="n", comments=[comment()])
    token = host.token()
    query = """query($owner: String!, $repo: String!, $n: Int!) { repository(owner: $owner, name: $repo) {
      pullRequest(number: $n) { reviewThreads(first: 5) { totalCount nodes { id
        comments(first: 1) { nodes { author { login __typename } } } } } } } }"""
    data = graphql(devhub, token, query, owner=OWNER, repo=REPO, n=number)["data"]
    threads = data["repository"]["pullRequest"]["reviewThreads"]
    assert threads["totalCount"] == 1
    assert threads["nodes"][0]["comments"]["nodes"][0]["author"] == {"login": "nightcrew", "__typename": "Bot"}

    missing = graphql(devhub, token, query, owner=OWNER, repo="nope", n=number)
    assert missing["data"] == {"repository": None} and missing["errors"][0]["type"] == "NOT_FOUND"
    unpaged = graphql(devhub, token, "{ repository(owner: \"octo\", name: \"hello\") { pullRequest(number: 1) "
                                     "{ reviewThreads { totalCount } } } }")
    assert "must provide a `first`" in unpaged["errors"][0]["message"]
    unknown = graphql(devhub, token, "query { repository(owner: \"octo\", name: \"hello\") { stars } }")
    assert "data" not in unknown and "doesn't exist on type 'Repository'" in unknown["errors"][0]["message"]
    nonsense = graphql(devhub, token, "mutation { resolveReviewThread(input: {threadId: \"PRRT_x\"}) { thread { id } } }")
    assert nonsense["errors"][0]["type"] == "NOT_FOUND"
    anonymous = httpx.post(f"{devhub.url}/graphql", json={"query": "{ viewer { login } }"})
    assert anonymous.status_code == 401
    # The schema error was a query GitHub would reject: recorded, as a REST violation would be.
    assert [v for v in devhub.violations if "GraphQL" in v] == [
        "POST /graphql: GraphQL: Field 'stars' doesn't exist on type 'Repository'"]
    devhub.violations.clear()


# ---------------------------------------------------------------------------- forks, drafts


def test_fork_pull_request_is_read_through_the_base_without_touching_git(
    devhub: DevHub, host: GitHubKitHost,
) -> None:
    number = devhub.create_fork_pull(OWNER, REPO, fork_owner="mallory", branch="patch-1",
                                     files={"src/calc.py": CHANGE["src/calc.py"]}, title="Faster")
    pr = host.pull(OWNER, REPO, number)
    assert (pr.head_repo, pr.base_repo, pr.author, pr.head_ref) == ("mallory/hello", "octo/hello", "mallory", "patch-1")
    assert pr.is_fork
    assert "+v3 = 33" in host.pull_diff(OWNER, REPO, number)
    assert "+v3 = 33" in host.compare_diff(OWNER, REPO, pr.base_sha, pr.head_sha)
    assert host.read_file(OWNER, REPO, "src/calc.py", ref=pr.head_sha) == CHANGE["src/calc.py"]
    [commit] = host.pull_commits(OWNER, REPO, number)
    assert commit.author == "mallory"
    host.create_review(OWNER, REPO, number, commit_id=pr.head_sha, body="Thanks!", comments=[comment()])
    assert len(host.review_threads(OWNER, REPO, number)) == 1
    assert devhub.git_requests_for("mallory", REPO) == [] and devhub.git_requests_for(OWNER, REPO) == []
    assert devhub.wait_deliveries(10)
    [opened] = [d for d in devhub.deliveries if (d.event, d.action) == ("pull_request", "opened")]
    assert opened.payload["pull_request"]["head"]["repo"]["full_name"] == "mallory/hello"
    assert opened.payload["pull_request"]["head"]["repo"]["fork"] is True

    # A push to the fork moves the PR's head (and GitHub's copy of it in the base).
    sha = devhub.push_files("mallory", REPO, "patch-1", {"extra.txt": "x\n"}, actor="mallory")
    assert host.pull(OWNER, REPO, number).head_sha == sha
    assert host.read_file(OWNER, REPO, "extra.txt", ref=sha) == "x\n"


def test_git_requests_are_recorded_per_repository(devhub: DevHub, host: GitHubKitHost) -> None:
    auth = base64.b64encode(f"x-access-token:{host.token()}".encode()).decode()
    answer = httpx.get(f"{devhub.url}/{OWNER}/{REPO}.git/info/refs", params={"service": "git-upload-pack"},
                       headers={"Authorization": f"Basic {auth}"})
    assert answer.status_code == 200
    refused = httpx.get(f"{devhub.url}/{OWNER}/{REPO}.git/info/refs", params={"service": "git-upload-pack"})
    assert refused.status_code == 401
    assert [(r.service, r.actor, r.status) for r in devhub.git_requests_for(OWNER, REPO)] == [
        ("info/refs", "nightcrew[bot]", 200), ("info/refs", None, 401)]


def test_draft_marked_ready_is_announced(devhub: DevHub, host: GitHubKitHost) -> None:
    number = devhub.open_pull(OWNER, REPO, head="wip", title="WIP", files={"a.txt": "a\n"}, draft=True)
    assert host.pull(OWNER, REPO, number).draft
    devhub.mark_ready(OWNER, REPO, number)
    assert not host.pull(OWNER, REPO, number).draft
    assert devhub.wait_deliveries(10)
    assert [d.payload["number"] for d in devhub.deliveries
            if (d.event, d.action) == ("pull_request", "ready_for_review")] == [number]


def test_every_rest_request_here_was_one_github_describes(devhub: DevHub, host: GitHubKitHost, number: int) -> None:
    sha = host.pull(OWNER, REPO, number).head_sha
    review = host.create_review(OWNER, REPO, number, commit_id=sha, body="", comments=[comment()], event=None)
    host.delete_pending_review(OWNER, REPO, number, review.id)
    host.pull_commits(OWNER, REPO, number)
    host.compare_diff(OWNER, REPO, "main", "feature")
    routed = {r.operation_id for r in devhub.requests}
    assert {"pulls/get", "pulls/create-review", "pulls/delete-pending-review", "pulls/list-commits",
            "repos/compare-commits-with-basehead"} <= routed
    assert None not in routed and devhub.violations == []
