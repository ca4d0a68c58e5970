"""The GitHub stand-in: a FastAPI app speaking GitHub's REST subset and git smart-HTTP.

Every REST request is routed and checked by GitHub's OpenAPI description (`OpenAPISpec`);
what GitHub would reject is rejected here too and recorded in `DevHub.violations`, as is any
answer of the stand-in that does not fit the spec. GraphQL (`POST /graphql`, review threads
only) is answered by `devhub.graphql`, its shape checked there. `DevHub` is also the Python "UI"
through which tests and the demo act as people (open issues and pull requests, label, comment,
review, reply, open a PR from a fork).
"""

from __future__ import annotations

import base64
import json
import logging
import re
import secrets
import socket
import string
import threading
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import unquote

import jwt
import uvicorn
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from devhub.deliveries import Deliverer, Delivery, build_payload
from devhub.git_http import (
    CommitInfo,
    DiffFile,
    GitStore,
    TreeEntry,
    cgi_environment,
    pushed_refs,
    serve_git,
    split_git_path,
)
from devhub.graphql import ThreadGraph, execute, thread_node_id, thread_root_of, threads_of
from devhub.manifests import ManifestApps
from devhub.manifests import router as manifest_pages
from devhub.openapi import OpenAPISpec
from devhub.state import (
    DOCS,
    JSON,
    PERMISSION_LEVELS,
    Comment,
    HubEvent,
    HubState,
    Issue,
    PermissionLevel,
    PullInfo,
    Repo,
    Review,
    ReviewComment,
    Token,
    User,
    comment_json,
    commit_json,
    installation_json,
    iso,
    issue_json,
    label_json,
    node_id,
    noreply_email,
    permission_json,
    pull_json,
    reaction_json,
    repo_json,
    review_comment_json,
    review_json,
    user_json,
    utcnow,
)
from devhub.webhook_schemas import webhook_errors

log = logging.getLogger(__name__)

DEFAULT_APP_PERMISSIONS = {
    "checks": "write",
    "contents": "write",
    "issues": "write",
    "metadata": "read",
    "pull_requests": "write",
}
# Operations GitHub authenticates with the App's JWT rather than an installation token.
APP_OPERATIONS = frozenset({"apps/create-installation-access-token", "apps/get-repo-installation",
                            "apps/list-installations"})
# Operations GitHub answers without credentials (the manifest code is the credential).
UNAUTHENTICATED_OPERATIONS = frozenset({"apps/create-from-manifest"})
ENTERPRISE_API_PREFIX = "/api/v3"  # GitHub Enterprise serves REST here; the stand-in takes both
GRAPHQL_PATH = "/graphql"
ACTIONS_BOT = "github-actions[bot]"  # who a workflow's GITHUB_TOKEN acts as
SIDES = ("LEFT", "RIGHT")
JWT_MAX_LIFETIME_S = 600
CLOCK_DRIFT_S = 60
JSON_MEDIA = "application/json; charset=utf-8"


# ------------------------------------------------------------------------- request plumbing


@dataclass(frozen=True)
class RecordedRequest:
    """One REST request as the stand-in saw it.

    ``applied`` says whether the operation itself ran and succeeded (for a write: it landed),
    whatever was answered; ``fault`` names the injected fault that answered, if one did.
    """

    method: str
    path: str
    status: int
    operation_id: str | None
    actor: str | None
    applied: bool = False
    fault: str | None = None


@dataclass(frozen=True)
class GitRequest:
    """One git smart-HTTP request: which repository, which service, as whom, how answered.

    ``service`` is ``info/refs``, ``git-upload-pack`` (a clone or fetch reading objects) or
    ``git-receive-pack`` (a push); ``actor`` is None when the credentials were refused.
    """

    method: str
    owner: str
    repo: str
    service: str
    actor: str | None
    status: int


# ------------------------------------------------------------------------------ fault injection

FAULT_STATUSES = frozenset({401, 403, 429, 500, 502, 503, 504})
RATE_LIMIT_DOCS = ("https://docs.github.com/rest/using-the-rest-api/rate-limits-for-the-rest-api"
                   "#about-secondary-rate-limits")
PRIMARY_RATE_LIMIT_DOCS = ("https://docs.github.com/rest/using-the-rest-api/rate-limits-for-the-rest-api"
                           "#about-the-primary-rate-limit")


@dataclass
class Fault:
    """A misbehaviour GitHub really shows, answered to matching REST requests.

    - ``status`` 500/502/503/504: a server error. With ``applied=True`` the request is carried
      out first and only the answer fails, as GitHub sometimes does; a blind retry of such a
      POST writes twice.
    - 429, or 403: a rate limit. By default the *secondary* limit (``Retry-After`` header and
      GitHub's "You have exceeded a secondary rate limit" message); with ``primary=True`` the
      primary one (``X-RateLimit-Remaining: 0`` and ``X-RateLimit-Reset`` ``retry_after``
      seconds from now, no ``Retry-After``).
    - 401: "Bad credentials" for an installation token; the token presented is revoked, as an
      expired one would be, so only a newly minted token gets through. Matches only requests
      that carry a ``ghs_`` installation token.

    ``method`` ("*" for any) and ``path`` (a regex matched in full against the request path,
    query excluded) select requests; of those, every ``every``-th is answered, at most ``count``
    times (None: without end). ``retry_after`` (seconds) goes into ``Retry-After`` of rate
    limits (default 1) and, if set, of a 503. ``answered`` counts the answers given so far.

    ``git=True`` makes it a fault of the git smart-HTTP front instead of the REST API (``path``
    e.g. ``r"/o/r\\.git/git-receive-pack"`` for pushes, ``.../info/refs`` for every clone, fetch
    and push): a server error only, answered as plain text. With ``applied=True`` a push is
    carried out whole (the refs move) and only its answer fails. A REST fault never matches a
    git request, nor a git fault a REST one, whatever their paths.
    """

    status: int
    method: str = "*"
    path: str = ".*"
    count: int | None = 1
    every: int = 1
    applied: bool = False
    retry_after: int | None = None
    primary: bool = False
    git: bool = False
    seen: int = field(default=0, init=False)
    answered: int = field(default=0, init=False)
    _pattern: re.Pattern[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.status not in FAULT_STATUSES:
            raise ValueError(f"status {self.status} is not a fault devhub knows how GitHub answers")
        if self.applied and self.status < 500:
            raise ValueError("only a server error can come after the write was applied")
        if self.every < 1:
            raise ValueError("every must be at least 1")
        if self.git and self.status < 500:
            raise ValueError("a git fault is a server error (GitHub's git front has no rate-limit answer)")
        self._pattern = re.compile(self.path)

    @property
    def name(self) -> str:
        """How the fault shows up in `RecordedRequest.fault`."""
        if self.status in (403, 429):
            kind = "primary-rate-limit" if self.primary else "secondary-rate-limit"
        elif self.status == 401:
            kind = "bad-credentials"
        else:
            kind = "applied" if self.applied else "not-applied"
        return f"{self.status} {kind}"

    def matches(self, method: str, path: str, credential: str | None, *, git: bool = False) -> bool:
        """Whether this request is one the fault is about (not yet whether it answers).

        ``git``: the request is a git smart-HTTP one (only git faults match those).
        """
        if self.git != git:
            return False
        if self.method != "*" and self.method.upper() != method.upper():
            return False
        if self.status == 401 and not (credential or "").startswith("ghs_"):
            return False
        return self._pattern.fullmatch(path) is not None

    def take(self) -> bool:
        """Count a matching request; True if the fault answers this one."""
        if self.count is not None and self.answered >= self.count:
            return False
        self.seen += 1
        if self.seen % self.every:
            return False
        self.answered += 1
        return True

    def reply(self) -> Reply:
        """The error answer, in GitHub's shape and with GitHub's headers."""
        headers: dict[str, str] = {}
        wait = 1 if self.retry_after is None else self.retry_after
        if self.status == 401:
            message, docs = "Bad credentials", "https://docs.github.com/rest"
        elif self.status in (403, 429) and self.primary:
            message = "API rate limit exceeded for installation."
            docs = PRIMARY_RATE_LIMIT_DOCS
            headers = {"X-RateLimit-Remaining": "0", "X-RateLimit-Used": "5000",
                       "X-RateLimit-Reset": str(int(time.time()) + wait)}
        elif self.status in (403, 429):
            message = ("You have exceeded a secondary rate limit. Please wait a few minutes before "
                       "you try again. If you reach out to GitHub Support for help, please include "
                       "the request ID.")
            docs = RATE_LIMIT_DOCS
            headers = {"Retry-After": str(wait)}
        else:
            message = {500: "Server Error", 502: "Server Error", 503: "Service Unavailable",
                       504: "We couldn't respond to your request in time."}[self.status]
            docs = DOCS
            if self.retry_after is not None and self.status == 503:
                headers = {"Retry-After": str(self.retry_after)}
        return Reply(self.status, {"message": message, "documentation_url": docs}, headers)


@dataclass
class OrphanReview:
    """GitHub's orphan review: a create-review answered 422 that still left a review behind.

    The next `pulls/create-review` that submits a review with inline comments (its request path
    fully matching the regex ``path``; at most ``count`` of them, None: without end) records a
    body-only submitted review, its inline comments dropped, and is answered 422 as GitHub
    answers it (the validation error of its comments if they have one, else ``message``). So a
    poster that retries a 422 blindly leaves two reviews. Put in force with `DevHub.inject`,
    like a `Fault`; ``answered`` counts the orphans left.
    """

    path: str = ".*"
    count: int | None = 1
    message: str = "Pull request review thread line must be part of the diff"
    answered: int = field(default=0, init=False)
    _pattern: re.Pattern[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._pattern = re.compile(self.path)

    name = "422 orphan-review"

    def take(self, path: str) -> bool:
        """Whether this create-review request leaves an orphan (counted if so)."""
        if (self.count is not None and self.answered >= self.count) or not self._pattern.fullmatch(path):
            return False
        self.answered += 1
        return True


@dataclass
class Hold:
    """Matching requests wait before they are answered: a slow GitHub, or one to die during.

    ``method`` ("*" for any) and ``path`` (a regex matched in full against the path, query
    excluded) select REST requests and git smart-HTTP ones (e.g.
    ``r"/o/r\\.git/git-receive-pack"``); at most ``count`` (None: without end) are held. Each
    waits until ``release()`` (or ``delay`` seconds, when set), then is carried out and answered
    as usual; with ``release(apply=False)`` it is answered 502 without being carried out, as if
    it never reached GitHub. ``arrived`` is set when the first one comes in; ``held`` counts them.

    ``refs`` (a regex matched in full) narrows a hold to git pushes that update a matching ref
    (say, the task branch but not a hidden ref pushed beside it); ``when`` to requests that
    arrive while it returns True (asked as each otherwise matching request comes in, outside
    the hub's locks, so it may look at the hub).
    """

    method: str = "*"
    path: str = ".*"
    count: int | None = 1
    delay: float | None = None
    refs: str | None = None
    when: Callable[[], bool] | None = field(default=None, repr=False)
    held: int = field(default=0, init=False)
    arrived: threading.Event = field(default_factory=threading.Event, init=False, repr=False)
    _released: threading.Event = field(default_factory=threading.Event, init=False, repr=False)
    _apply: bool = field(default=True, init=False, repr=False)
    _pattern: re.Pattern[str] = field(init=False, repr=False)
    _refs: re.Pattern[str] | None = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._pattern = re.compile(self.path)
        self._refs = None if self.refs is None else re.compile(self.refs)

    def matches(self, method: str, path: str, refs: tuple[str, ...] | None = None) -> bool:
        """Whether the request is one this hold is about (``when`` aside, the count aside)."""
        if self.method != "*" and self.method.upper() != method.upper():
            return False
        if self._pattern.fullmatch(path) is None:
            return False
        if self._refs is not None:
            pattern = self._refs
            return refs is not None and any(pattern.fullmatch(ref) for ref in refs)
        return True

    @property
    def spent(self) -> bool:
        """Whether it held as many requests as it may."""
        return self.count is not None and self.held >= self.count

    def take(self, method: str, path: str, refs: tuple[str, ...] | None = None) -> bool:
        """Whether this request is held (counted as held if so); call under the hub's lock."""
        if self.spent or not self.matches(method, path, refs):
            return False
        self.held += 1
        self.arrived.set()
        return True

    def release(self, *, apply: bool = True) -> None:
        """Let the held requests (and any later matching ones) go on; ``apply=False``: fail them."""
        self._apply = self._apply and apply
        self._released.set()

    def wait(self) -> bool:
        """Block until released (or the delay passed); True if the request is to be carried out."""
        self._released.wait(self.delay)
        return self._apply


class Injection:
    """Faults in force on a `DevHub`; leaving the `with` block (or `remove()`) withdraws them."""

    def __init__(self, hub: DevHub, faults: list[Fault | OrphanReview]) -> None:
        self._hub = hub
        self.faults = faults

    def remove(self) -> None:
        """Withdraw these faults."""
        self._hub.remove_faults(self.faults)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.remove()


@dataclass
class Reply:
    """A REST answer: status, JSON body (or raw text) and extra headers."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None
    fault: str | None = None  # a knob of the handler's own that shaped this answer


class ApiError(Exception):
    """An error answer in GitHub's shape."""

    def __init__(self, status: int, message: str, *, errors: list[Any] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors
        self.headers = headers or {}

    def reply(self) -> Reply:
        """The error as a reply."""
        body: JSON = {"message": self.message, "documentation_url": DOCS}
        if self.errors is not None:
            body["errors"] = self.errors
        return Reply(self.status, body, dict(self.headers), None)


def not_found(message: str = "Not Found") -> ApiError:
    """GitHub's 404, also used to hide what a caller may not see."""
    return ApiError(404, message)


def validation_failed(resource: str, code: str, *, field_name: str | None = None,
                      message: str | None = None) -> ApiError:
    """GitHub's 422 `Validation Failed` with one structured error."""
    error: JSON = {"resource": resource, "code": code}
    if field_name is not None:
        error["field"] = field_name
    if message is not None:
        error["message"] = message
    return ApiError(422, "Validation Failed", errors=[error])


def unprocessable(message: str) -> ApiError:
    """GitHub's 422 with plain-string errors (`validation-error-simple`)."""
    return ApiError(422, "Unprocessable Entity", errors=[message])


@dataclass
class Call:
    """One authenticated REST call, routed to its operation."""

    method: str
    path: str
    operation_id: str
    params: dict[str, str]
    query: dict[str, str]
    headers: Mapping[str, str]
    body: Any
    actor: User | None = None
    token: Token | None = None
    repo: Repo | None = None

    @property
    def the_repo(self) -> Repo:
        """The repository of a repo-scoped call (set by authorization)."""
        assert self.repo is not None, f"{self.operation_id} is not repo-scoped"
        return self.repo

    @property
    def the_actor(self) -> User:
        """The authenticated user or bot."""
        assert self.actor is not None, f"{self.operation_id} has no actor"
        return self.actor

    def number(self, name: str) -> int:
        """An integer path parameter; a non-number cannot name anything, so 404."""
        try:
            return int(self.params[name])
        except (KeyError, ValueError):
            raise not_found() from None

    def arg(self, name: str, default: Any = None) -> Any:
        """A field of the JSON body."""
        return self.body.get(name, default) if isinstance(self.body, dict) else default


Handler = Callable[["DevHub", Call], Reply]
HANDLERS: dict[str, Handler] = {}


def operation(operation_id: str) -> Callable[[Handler], Handler]:
    """Register the handler of one OpenAPI operation."""

    def register(handler: Handler) -> Handler:
        HANDLERS[operation_id] = handler
        return handler

    return register


def paginate(call: Call, items: list[Any]) -> list[Any]:
    """The `page`/`per_page` slice of a list (GitHub's default page size is 30)."""
    per_page = max(1, min(100, int(call.query.get("per_page", "30") or 30)))
    page = max(1, int(call.query.get("page", "1") or 1))
    return items[(page - 1) * per_page : page * per_page]


# ------------------------------------------------------------------------------ handlers


@operation("apps/create-installation-access-token")
def create_access_token(hub: DevHub, call: Call) -> Reply:
    """Mint an installation token, optionally narrowed to some repositories."""
    inst = hub.state.installations.get(call.number("installation_id"))
    if inst is None:
        raise not_found()
    names: list[str] | None = call.arg("repositories")
    if names is not None:
        for name in names:
            repo = hub.state.repo(inst.account.login, name)
            if repo is None or not inst.covers(repo):
                raise validation_failed(
                    "Installation", "invalid", field_name="repositories",
                    message="There is at least one repository that does not exist or is not "
                    "accessible to the parent installation.",
                )
    token = hub.mint_installation_token(inst.id, names)
    body: JSON = {
        "token": token.value,
        "expires_at": iso(token.expires_at),
        "permissions": call.arg("permissions") or dict(inst.permissions),
        "repository_selection": "selected" if names is not None or inst.repos is not None else "all",
    }
    if names is not None:
        repos = [hub.state.repo(inst.account.login, n) for n in names]
        body["repositories"] = [repo_json(hub.url, r) for r in repos if r is not None]
    return Reply(201, body)


@operation("apps/create-from-manifest")
def create_from_manifest(hub: DevHub, call: Call) -> Reply:
    """Trade a manifest code for the App it registered (see `devhub.manifests`)."""
    status, body = hub.manifests.convert(hub.url, call.params["code"])
    return Reply(status, body)


@operation("apps/get-repo-installation")
def get_repo_installation(hub: DevHub, call: Call) -> Reply:
    """The installation that covers a repository."""
    repo = hub.state.repo(call.params["owner"], call.params["repo"])
    inst = hub.state.installation_for(repo) if repo is not None else None
    if inst is None:
        raise not_found()
    return Reply(200, installation_json(hub.url, inst, hub.app_id, hub.app_slug))


@operation("apps/list-installations")
def list_installations(hub: DevHub, call: Call) -> Reply:
    """Every installation of the App, oldest first."""
    installations = sorted(hub.state.installations.values(), key=lambda i: i.id)
    listed = []
    for inst in paginate(call, installations):
        data = installation_json(hub.url, inst, hub.app_id, hub.app_slug)
        # @octokit/openapi describes this list's `account` as simple-user *and* enterprise
        # (allOf); the enterprise fields are added so every answer matches the description.
        account = data["account"]
        account.setdefault("name", account["login"])
        account.setdefault("slug", account["login"].lower())
        account.setdefault("created_at", data["created_at"])
        account.setdefault("updated_at", data["updated_at"])
        listed.append(data)
    return Reply(200, listed)


@operation("apps/list-repos-accessible-to-installation")
def list_installation_repos(hub: DevHub, call: Call) -> Reply:
    """The repositories the calling installation token may reach."""
    token = call.token
    inst = hub.state.installations.get(token.installation_id) if token and token.installation_id else None
    if token is None or inst is None:
        raise ApiError(403, "This endpoint requires an installation access token")
    repos = sorted((r for r in hub.state.repos.values()
                    if inst.covers(r) and hub.state.token_covers(token, r)), key=lambda r: r.full_name)
    return Reply(200, {"total_count": len(repos),
                       "repositories": [repo_json(hub.url, r) for r in paginate(call, repos)]})


@operation("issues/list-for-repo")
def list_issues(hub: DevHub, call: Call) -> Reply:
    """Issues (and pull requests, as GitHub lists them) by state and labels, newest first."""
    repo = call.the_repo
    state = call.query.get("state", "open")
    wanted = [name for name in call.query.get("labels", "").split(",") if name]
    found = [i for i in repo.issues.values()
             if (state == "all" or i.state == state) and all(w in i.labels for w in wanted)]
    found.sort(key=lambda i: i.number, reverse=call.query.get("direction", "desc") == "desc")
    return Reply(200, [issue_json(hub.url, repo, i) for i in paginate(call, found)])


@operation("repos/get")
def get_repo(hub: DevHub, call: Call) -> Reply:
    """A repository."""
    return Reply(200, repo_json(hub.url, call.the_repo))


@operation("repos/get-collaborator-permission-level")
def get_permission(hub: DevHub, call: Call) -> Reply:
    """A user's role on a repository; unknown users are 404 as on GitHub."""
    user = hub.state.users.get(call.params["username"])
    if user is None:
        raise not_found()
    return Reply(200, permission_json(hub.url, call.the_repo, user))


@operation("issues/create")
def create_issue(hub: DevHub, call: Call) -> Reply:
    """Open an issue."""
    repo, actor = call.the_repo, call.the_actor
    issue = hub.state.open_issue(repo, str(call.arg("title")), call.arg("body"), actor)
    if call.arg("labels"):
        hub.state.add_labels(repo, issue, _label_names(call.arg("labels")), actor)
    if call.arg("assignees"):
        hub.state.assign(repo, issue, list(call.arg("assignees")), actor)
    return Reply(201, issue_json(hub.url, repo, issue))


def _label_names(items: list[Any]) -> list[str]:
    """Label names from a list of names or `{"name": ...}` objects."""
    return [str(item["name"]) if isinstance(item, dict) else str(item) for item in items]


def _issue(hub: DevHub, call: Call) -> Issue:
    issue = hub.state.issue(call.the_repo, call.number("issue_number"))
    if issue is None:
        raise not_found()
    return issue


@operation("issues/get")
def get_issue(hub: DevHub, call: Call) -> Reply:
    """An issue (pull requests are issues too)."""
    return Reply(200, issue_json(hub.url, call.the_repo, _issue(hub, call)))


@operation("issues/update")
def update_issue(hub: DevHub, call: Call) -> Reply:
    """Edit title/body, close or reopen, replace labels or assignees."""
    repo, actor = call.the_repo, call.the_actor
    issue = _issue(hub, call)
    title = call.arg("title")
    hub.state.edit_issue(repo, issue, actor, title=None if title is None else str(title),
                         body=call.arg("body"))
    if call.arg("labels") is not None:
        hub.state.set_labels(repo, issue, _label_names(call.arg("labels")), actor)
    if call.arg("assignees") is not None:
        hub.state.assign(repo, issue, list(call.arg("assignees")), actor)
    if call.arg("state") is not None:
        hub.state.set_state(repo, issue, call.arg("state"), actor, call.arg("state_reason"))
    return Reply(200, issue_json(hub.url, repo, issue))


@operation("issues/list-comments")
def list_comments(hub: DevHub, call: Call) -> Reply:
    """An issue's comments, oldest first, optionally only those updated since a time."""
    repo, issue = call.the_repo, _issue(hub, call)
    since = call.query.get("since")
    comments = [c for c in issue.comments if since is None or (iso(c.updated_at) or "") >= since]
    return Reply(200, [comment_json(hub.url, repo, issue, c) for c in paginate(call, comments)])


@operation("issues/create-comment")
def create_comment(hub: DevHub, call: Call) -> Reply:
    """Comment on an issue or pull request."""
    repo = call.the_repo
    issue = _issue(hub, call)
    comment = hub.state.add_comment(repo, issue, str(call.arg("body")), call.the_actor)
    return Reply(201, comment_json(hub.url, repo, issue, comment))


def _comment(hub: DevHub, call: Call) -> tuple[Issue, Comment]:
    found = hub.state.comment(call.the_repo, call.number("comment_id"))
    if found is None:
        raise not_found()
    return found


@operation("issues/get-comment")
def get_comment(hub: DevHub, call: Call) -> Reply:
    """One issue comment."""
    issue, comment = _comment(hub, call)
    return Reply(200, comment_json(hub.url, call.the_repo, issue, comment))


@operation("issues/update-comment")
def update_comment(hub: DevHub, call: Call) -> Reply:
    """Edit an issue comment."""
    repo = call.the_repo
    issue, comment = _comment(hub, call)
    hub.state.edit_comment(repo, issue, comment, str(call.arg("body")), call.the_actor)
    return Reply(200, comment_json(hub.url, repo, issue, comment))


def _issue_labels(hub: DevHub, repo: Repo, issue: Issue) -> list[JSON]:
    return [label_json(hub.url, repo, repo.labels[name]) for name in issue.labels]


@operation("issues/list-labels-on-issue")
def list_labels(hub: DevHub, call: Call) -> Reply:
    """An issue's labels."""
    issue = _issue(hub, call)
    return Reply(200, paginate(call, _issue_labels(hub, call.the_repo, issue)))


@operation("issues/add-labels")
def add_labels(hub: DevHub, call: Call) -> Reply:
    """Add labels; the answer lists all the issue's labels."""
    repo = call.the_repo
    raw = call.body if isinstance(call.body, list) else call.arg("labels", [])
    issue = _issue(hub, call)
    hub.state.add_labels(repo, issue, _label_names(raw), call.the_actor)
    return Reply(200, _issue_labels(hub, repo, issue))


@operation("issues/remove-label")
def remove_label(hub: DevHub, call: Call) -> Reply:
    """Remove one label; 404 if the issue does not carry it."""
    repo = call.the_repo
    issue = _issue(hub, call)
    if not hub.state.remove_label(repo, issue, call.params["name"], call.the_actor):
        raise not_found("Label does not exist")
    return Reply(200, _issue_labels(hub, repo, issue))


@operation("issues/create-label")
def create_label(hub: DevHub, call: Call) -> Reply:
    """Create a repository label."""
    repo, name = call.the_repo, str(call.arg("name"))
    if any(existing.lower() == name.lower() for existing in repo.labels):
        raise validation_failed("Label", "already_exists", field_name="name")
    label = hub.state.ensure_label(repo, name)
    label.color = str(call.arg("color") or label.color).lstrip("#")
    label.description = call.arg("description")
    return Reply(201, label_json(hub.url, repo, label))


@operation("reactions/create-for-issue")
def react_to_issue(hub: DevHub, call: Call) -> Reply:
    """React to an issue: 201 when new, 200 when this user already reacted so."""
    issue = _issue(hub, call)
    reaction, created = hub.state.react(issue.reactions, call.the_actor, str(call.arg("content")))
    return Reply(201 if created else 200, reaction_json(hub.url, reaction))


@operation("reactions/create-for-issue-comment")
def react_to_comment(hub: DevHub, call: Call) -> Reply:
    """React to an issue comment."""
    _, comment = _comment(hub, call)
    reaction, created = hub.state.react(comment.reactions, call.the_actor, str(call.arg("content")))
    return Reply(201 if created else 200, reaction_json(hub.url, reaction))


def _pull(hub: DevHub, call: Call) -> Issue:
    issue = hub.state.issue(call.the_repo, call.number("pull_number"))
    if issue is None or issue.pull is None:
        raise not_found()
    return issue


@operation("pulls/list")
def list_pulls(hub: DevHub, call: Call) -> Reply:
    """Pull requests filtered by state, `owner:branch` head and base; newest first."""
    repo = call.the_repo
    state = call.query.get("state", "open")
    head = call.query.get("head")
    base = call.query.get("base")
    pulls = []
    for issue in repo.issues.values():
        pull = issue.pull
        if pull is None or (state != "all" and issue.state != state):
            continue
        if head is not None and head not in (f"{repo.owner.login}:{pull.head}", pull.head):
            continue
        if base is not None and pull.base != base:
            continue
        pulls.append(issue)
    pulls.sort(key=lambda i: i.number, reverse=call.query.get("direction", "desc") == "desc")
    return Reply(200, [pull_json(hub.url, repo, i) for i in paginate(call, pulls)])


@operation("pulls/create")
def create_pull(hub: DevHub, call: Call) -> Reply:
    """Open a pull request from a branch of the same repository."""
    repo = call.the_repo
    head, base = _head_branch(repo, str(call.arg("head"))), str(call.arg("base"))
    head_sha = hub.git.resolve(repo.owner.login, repo.name, f"refs/heads/{head}")
    if head_sha is None:
        raise validation_failed("PullRequest", "invalid", field_name="head")
    if hub.git.resolve(repo.owner.login, repo.name, f"refs/heads/{base}") is None:
        raise validation_failed("PullRequest", "invalid", field_name="base")
    if _open_pull_for(repo, head) is not None:
        raise validation_failed("PullRequest", "custom",
                                message=f"A pull request already exists for {repo.owner.login}:{head}.")
    info = hub.pull_info(repo, head, base, draft=bool(call.arg("draft", False)))
    if info.commits == 0:
        raise validation_failed("PullRequest", "custom", message=f"No commits between {base} and {head}")
    if call.arg("title") is None:
        raise validation_failed("PullRequest", "missing_field", field_name="title")
    info.maintainer_can_modify = bool(call.arg("maintainer_can_modify", False))
    issue = hub.state.open_issue(repo, str(call.arg("title")), call.arg("body"), call.the_actor, info)
    return Reply(201, pull_json(hub.url, repo, issue))


def _head_branch(repo: Repo, head: str) -> str:
    """The branch of `head`, which may be `owner:branch`; forks are not modelled."""
    owner, sep, branch = head.partition(":")
    if not sep:
        return head
    if owner.lower() != repo.owner.login.lower():
        raise validation_failed("PullRequest", "invalid", field_name="head")
    return branch


def _open_pull_for(repo: Repo, head: str) -> Issue | None:
    return next((i for i in repo.issues.values()
                 if i.pull is not None and i.state == "open" and i.pull.head == head), None)


@operation("pulls/get")
def get_pull(hub: DevHub, call: Call) -> Reply:
    """A pull request, or its diff with `Accept: application/vnd.github.diff`."""
    repo, issue = call.the_repo, _pull(hub, call)
    accept = call.headers.get("accept", "")
    if "diff" in accept or "patch" in accept:
        assert issue.pull is not None
        text = hub.git.git(repo.owner.login, repo.name, "diff", "-M",
                           f"{issue.pull.base_sha}...{issue.pull.head_sha}")
        return Reply(200, raw=text, headers={"Content-Type": "application/vnd.github.diff; charset=utf-8"})
    return Reply(200, pull_json(hub.url, repo, issue))


@operation("pulls/update")
def update_pull(hub: DevHub, call: Call) -> Reply:
    """Edit a pull request's title, body, base or state."""
    repo, actor = call.the_repo, call.the_actor
    issue = _pull(hub, call)
    assert issue.pull is not None
    title = call.arg("title")
    hub.state.edit_issue(repo, issue, actor, title=None if title is None else str(title),
                         body=call.arg("body"))
    if call.arg("base") is not None and call.arg("base") != issue.pull.base:
        if hub.git.resolve(repo.owner.login, repo.name, f"refs/heads/{call.arg('base')}") is None:
            raise validation_failed("PullRequest", "invalid", field_name="base")
        issue.pull = hub.pull_info(repo, issue.pull.head, str(call.arg("base")), draft=issue.pull.draft)
    if call.arg("state") is not None:
        hub.state.set_state(repo, issue, str(call.arg("state")), actor)
    return Reply(200, pull_json(hub.url, repo, issue))


@operation("pulls/list-files")
def list_pull_files(hub: DevHub, call: Call) -> Reply:
    """The files a pull request changes, from `git diff base...head`."""
    repo, issue = call.the_repo, _pull(hub, call)
    assert issue.pull is not None
    files = hub.git.diff(repo.owner.login, repo.name, issue.pull.base_sha, issue.pull.head_sha)
    return Reply(200, [_diff_entry(hub.url, repo, issue.pull.head_sha, f) for f in paginate(call, files)])


def _diff_entry(base: str, repo: Repo, head_sha: str, diff: DiffFile) -> JSON:
    entry: JSON = {
        "sha": diff.sha or "0" * 40,
        "filename": diff.filename,
        "status": diff.status,
        "additions": diff.additions,
        "deletions": diff.deletions,
        "changes": diff.changes,
        "blob_url": f"{base}/{repo.full_name}/blob/{head_sha}/{diff.filename}",
        "raw_url": f"{base}/{repo.full_name}/raw/{head_sha}/{diff.filename}",
        "contents_url": f"{base}/repos/{repo.full_name}/contents/{diff.filename}?ref={head_sha}",
    }
    if diff.patch is not None:
        entry["patch"] = diff.patch
    if diff.previous_filename is not None:
        entry["previous_filename"] = diff.previous_filename
    return entry


@operation("pulls/list-reviews")
def list_reviews(hub: DevHub, call: Call) -> Reply:
    """A pull request's reviews, oldest first; a pending one only to its author."""
    repo, issue = call.the_repo, _pull(hub, call)
    seen = [r for r in issue.reviews if r.state != "PENDING" or r.user == call.actor]
    return Reply(200, [review_json(hub.url, repo, issue, r) for r in paginate(call, seen)])


@operation("pulls/list-review-comments")
def list_review_comments(hub: DevHub, call: Call) -> Reply:
    """The inline comments of a pull request's submitted reviews, oldest first."""
    repo, issue = call.the_repo, _pull(hub, call)
    comments = issue.review_comments()
    return Reply(200, [review_comment_json(hub.url, repo, issue, c) for c in paginate(call, comments)])


def _review(call: Call, issue: Issue) -> Review:
    """The review named in the path; someone else's pending review is not there (404)."""
    wanted = call.number("review_id")
    review = next((r for r in issue.reviews if r.id == wanted), None)
    if review is None or (review.state == "PENDING" and review.user != call.actor):
        raise not_found()
    return review


@operation("pulls/get-review")
def get_review(hub: DevHub, call: Call) -> Reply:
    """One review."""
    repo, issue = call.the_repo, _pull(hub, call)
    return Reply(200, review_json(hub.url, repo, issue, _review(call, issue)))


@operation("pulls/delete-pending-review")
def delete_pending_review(hub: DevHub, call: Call) -> Reply:
    """Delete one's own pending review with its comments; a submitted one cannot be (422)."""
    repo, issue = call.the_repo, _pull(hub, call)
    review = _review(call, issue)
    if review.state != "PENDING":
        raise unprocessable("Can not delete a non-pending pull request review")
    issue.reviews.remove(review)
    return Reply(200, review_json(hub.url, repo, issue, review))


@operation("pulls/list-comments-for-review")
def list_comments_for_review(hub: DevHub, call: Call) -> Reply:
    """The inline comments of one review (of one's own pending review too)."""
    repo, issue = call.the_repo, _pull(hub, call)
    review = _review(call, issue)
    return Reply(200, [review_comment_json(hub.url, repo, issue, c)
                       for c in paginate(call, review.comments)])


@operation("pulls/create-reply-for-review-comment")
def create_reply(hub: DevHub, call: Call) -> Reply:
    """Reply in the thread of a review comment (a reply to a reply joins the same thread)."""
    repo, issue = call.the_repo, _pull(hub, call)
    reply = hub.reply_in_thread(repo, issue, call.number("comment_id"), str(call.arg("body")),
                                call.the_actor)
    return Reply(201, review_comment_json(hub.url, repo, issue, reply))


@operation("pulls/list-commits")
def list_pull_commits(hub: DevHub, call: Call) -> Reply:
    """A pull request's commits, oldest first."""
    repo, issue = call.the_repo, _pull(hub, call)
    assert issue.pull is not None
    commits = hub.git.commits(repo.owner.login, repo.name, issue.pull.base_sha, issue.pull.head_sha)
    return Reply(200, [commit_json(hub.url, repo, c, hub.state.users) for c in paginate(call, commits)])


@operation("repos/compare-commits-with-basehead")
def compare_commits(hub: DevHub, call: Call) -> Reply:
    """`BASE...HEAD`: commits, files and status, or the diff with `Accept: ...diff`."""
    repo = call.the_repo
    owner, name = repo.owner.login, repo.name
    base_ref, sep, head_ref = call.params["basehead"].partition("...")
    base, head = _compare_sha(hub, repo, base_ref), _compare_sha(hub, repo, head_ref)
    if not sep or base is None or head is None:
        raise not_found()
    if "diff" in call.headers.get("accept", ""):
        text = hub.git.git(owner, name, "diff", "-M", f"{base}...{head}")
        return Reply(200, raw=text, headers={"Content-Type": "application/vnd.github.diff; charset=utf-8"})
    merge_base = hub.git.merge_base(owner, name, base, head) or base
    ahead, behind = hub.git.count_commits(owner, name, base, head), hub.git.count_commits(owner, name, head, base)
    status = ("identical" if not ahead and not behind else "ahead" if not behind
              else "behind" if not ahead else "diverged")
    commits = hub.git.commits(owner, name, base, head)
    api, html = f"{hub.url}/repos/{repo.full_name}", f"{hub.url}/{repo.full_name}"
    spec = call.params["basehead"]

    def rendered(info: CommitInfo) -> JSON:
        return commit_json(hub.url, repo, info, hub.state.users)

    return Reply(200, {
        "url": f"{api}/compare/{spec}",
        "html_url": f"{html}/compare/{spec}",
        "permalink_url": f"{html}/compare/{base}...{head}",
        "diff_url": f"{html}/compare/{spec}.diff",
        "patch_url": f"{html}/compare/{spec}.patch",
        "base_commit": rendered(hub.git.commit(owner, name, base)),
        "merge_base_commit": rendered(hub.git.commit(owner, name, merge_base)),
        "status": status,
        "ahead_by": ahead,
        "behind_by": behind,
        "total_commits": len(commits),
        "commits": [rendered(c) for c in paginate(call, commits)],
        "files": [_diff_entry(hub.url, repo, head, f) for f in hub.git.diff(owner, name, base, head)],
    })


def _compare_sha(hub: DevHub, repo: Repo, ref: str) -> str | None:
    """The commit of one side of a comparison: a branch or sha of `repo`, or `OWNER:ref` of
    its fork network (whose commits must be in `repo` already, as a fork PR's head is)."""
    owner, sep, rest = ref.partition(":")
    source = repo
    if sep:
        found = hub.state.repo(owner, repo.name)
        if found is None or (found is not repo and found.parent is not repo):
            return None
        source, ref = found, rest
    sha = hub.git.resolve(source.owner.login, source.name, ref)
    if sha is None or hub.git.resolve(repo.owner.login, repo.name, sha) is None:
        return None
    return sha


_REVIEW_STATES = {"APPROVE": "APPROVED", "REQUEST_CHANGES": "CHANGES_REQUESTED", "COMMENT": "COMMENTED"}


@operation("pulls/create-review")
def create_review(hub: DevHub, call: Call) -> Reply:
    """Submit a review (or leave it pending without `event`) with inline comments.

    All or nothing: one bad comment fails the whole review. An `OrphanReview` in force makes
    the 422 leave a body-only review behind, as GitHub sometimes does.
    """
    repo, actor = call.the_repo, call.the_actor
    issue = _pull(hub, call)
    event, body, comments = call.arg("event"), call.arg("body") or "", call.arg("comments") or []
    orphan = hub.take_orphan(call.path) if event is not None and comments else None
    try:
        review = hub.build_review(repo, issue, actor, event, body, call.arg("commit_id"), comments)
    except ApiError as error:
        if orphan is None:
            raise
        failure = error
    else:
        if orphan is None:
            hub.state.submit_review(repo, issue, review)
            return Reply(200, review_json(hub.url, repo, issue, review))
        failure = unprocessable(orphan.message)
    assert issue.pull is not None
    leftover = Review(hub.state.next_id(), issue.number, actor, body, _REVIEW_STATES[event],
                      call.arg("commit_id") or issue.pull.head_sha, utcnow(), [])
    hub.state.submit_review(repo, issue, leftover)
    reply = failure.reply()
    reply.fault = orphan.name
    return reply


@operation("repos/get-content")
def get_content(hub: DevHub, call: Call) -> Reply:
    """A file (base64) or a directory listing at a ref (default branch by default)."""
    repo = call.the_repo
    ref = call.query.get("ref") or repo.default_branch
    owner, name = repo.owner.login, repo.name
    commit = hub.git.resolve(owner, name, ref)
    path = call.params["path"].strip("/")
    entry = hub.git.entry(owner, name, commit, path) if commit else None
    if commit is None or entry is None:
        raise not_found()
    if entry.kind == "tree":
        listing = hub.git.listdir(owner, name, commit, path)
        return Reply(200, [_content_json(hub.url, repo, ref, e, None) for e in listing])
    data = hub.git.read_blob(owner, name, entry.sha)
    if "raw" in call.headers.get("accept", ""):
        return Reply(200, raw=data, headers={"Content-Type": "application/vnd.github.raw"})
    return Reply(200, _content_json(hub.url, repo, ref, entry, data))


def _content_json(base: str, repo: Repo, ref: str, entry: TreeEntry, data: bytes | None) -> JSON:
    api = f"{base}/repos/{repo.full_name}/contents/{entry.path}?ref={ref}"
    html = f"{base}/{repo.full_name}/{'tree' if entry.kind == 'tree' else 'blob'}/{ref}/{entry.path}"
    git = f"{base}/repos/{repo.full_name}/git/{'trees' if entry.kind == 'tree' else 'blobs'}/{entry.sha}"
    kind = {"tree": "dir", "commit": "submodule"}.get(entry.kind, "file")
    body: JSON = {
        "type": kind,
        "size": entry.size,
        "name": entry.path.rsplit("/", 1)[-1],
        "path": entry.path,
        "sha": entry.sha,
        "url": api,
        "git_url": git,
        "html_url": html,
        "download_url": f"{base}/{repo.full_name}/raw/{ref}/{entry.path}" if kind == "file" else None,
        "_links": {"self": api, "git": git, "html": html},
    }
    if data is not None:
        encoded = base64.b64encode(data).decode()
        # GitHub wraps base64 content at 60 columns.
        body["content"] = "\n".join(encoded[i : i + 60] for i in range(0, len(encoded), 60)) + "\n"
        body["encoding"] = "base64"
    return body


@operation("git/get-ref")
def get_ref(hub: DevHub, call: Call) -> Reply:
    """A fully-qualified ref (`heads/x`, `tags/y`)."""
    repo = call.the_repo
    ref = f"refs/{call.params['ref'].strip('/')}"
    sha = hub.git.resolve(repo.owner.login, repo.name, ref)
    if sha is None or not ref.startswith(("refs/heads/", "refs/tags/")):
        raise not_found()
    api = f"{hub.url}/repos/{repo.full_name}/git/{ref}"
    return Reply(200, {
        "ref": ref,
        "node_id": node_id("REF", zlib.crc32(f"{repo.full_name}:{ref}".encode()) % 10**8),
        "url": api,
        "object": {"type": "commit", "sha": sha,
                   "url": f"{hub.url}/repos/{repo.full_name}/git/commits/{sha}"},
    })


# --------------------------------------------------------------------------- authentication


@dataclass(frozen=True)
class Principal:
    """Who is calling: the App itself (JWT), a token holder, or nobody."""

    kind: str  # "app" | "token" | "anonymous"
    token: Token | None = None


def verify_app_jwt(raw: str, public_pem: str, app_id: int, now: float) -> str | None:
    """Why GitHub would refuse this App JWT, or None if it is acceptable."""
    try:
        claims = jwt.decode(raw, public_pem, algorithms=["RS256"],
                            options={"verify_exp": False, "verify_iat": False,
                                     "require": ["iat", "exp", "iss"]})
    except jwt.InvalidTokenError:
        return "A JSON web token could not be decoded"
    if str(claims["iss"]) != str(app_id):
        return "'Issuer' claim ('iss') must be an Integer"
    if not isinstance(claims["exp"], int | float) or claims["exp"] <= now:
        return ("'Expiration time' claim ('exp') must be a numeric value representing the "
                "future time at which the assertion expires")
    if not isinstance(claims["iat"], int | float) or claims["iat"] > now + CLOCK_DRIFT_S:
        return "'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued"
    if claims["exp"] - now > JWT_MAX_LIFETIME_S + CLOCK_DRIFT_S:
        return "'Expiration time' claim ('exp') is too far in the future"
    return None


def _random_alnum(length: int) -> str:
    """Random letters and digits, the alphabet of GitHub's token bodies (secret scanners rely on it)."""
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(length))


def _credentials(headers: Mapping[str, str]) -> str | None:
    """The credential of `Authorization: token X` / `Bearer X`."""
    value = headers.get("authorization", "")
    scheme, _, credential = value.partition(" ")
    if scheme.lower() in ("token", "bearer") and credential.strip():
        return credential.strip()
    return None


# --------------------------------------------------------------------------------- DevHub


class DevHub:
    """A local GitHub: REST subset, git smart-HTTP and signed webhooks, all in one process."""

    def __init__(self, root: Path, *, app_id: int, app_public_key_pem: str, webhook_secret: str,
                 webhook_url: str | None = None, app_slug: str = "nightcrew",
                 host: str = "127.0.0.1", port: int = 0,
                 token_ttl: timedelta = timedelta(hours=1),
                 app_permissions: dict[str, str] | None = None) -> None:
        self.root = Path(root)
        self.app_id = app_id
        self.app_slug = app_slug
        self.webhook_secret = webhook_secret
        self.token_ttl = token_ttl
        self.app_permissions = dict(app_permissions or DEFAULT_APP_PERMISSIONS)
        self.violations: list[str] = []
        self.requests: list[RecordedRequest] = []
        self.state = HubState()
        self.state.on_event = self._publish
        self.git = GitStore(self.root / "git")
        self.spec = OpenAPISpec.load()
        self._public_pem = app_public_key_pem
        self._host, self._port = host, port
        self._deliverer = Deliverer(webhook_secret, webhook_url, app_id=app_id)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._record_lock = threading.Lock()
        self._faults: list[Fault | OrphanReview] = []
        self.git_requests: list[GitRequest] = []
        self._diff_cache: dict[tuple[str, str, str], dict[str, DiffFile]] = {}
        self._holds: list[Hold] = []
        self.bot = self.state.user(f"{app_slug}[bot]", "Bot")
        self.manifests = ManifestApps(self.state, self.generate_app_keypair)
        self.app = create_app(self)

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The base URL, e.g. `http://127.0.0.1:53817` (REST at `/`, git at `/{o}/{r}.git`)."""
        return self.state.base_url or f"http://{self._host}:{self._port}"

    @property
    def webhook_url(self) -> str | None:
        """Where webhooks go; may be changed at any time (from the next event on)."""
        return self._deliverer.url

    @webhook_url.setter
    def webhook_url(self, value: str | None) -> None:
        self._deliverer.url = value

    @property
    def deliveries(self) -> list[Delivery]:
        """Every delivery attempt so far, in order."""
        return list(self._deliverer.records)

    def start(self) -> str:
        """Serve in a daemon thread; return the base URL (port 0 picks a free port)."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self._host, self._port))
        self._port = sock.getsockname()[1]
        self.state.base_url = f"http://{self._host}:{self._port}"
        config = uvicorn.Config(self.app, log_config=None, access_log=False, lifespan="off",
                                timeout_keep_alive=30)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]},
                                        name="devhub-http", daemon=True)
        self._thread.start()
        self._deliverer.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("devhub did not start")
            time.sleep(0.01)
        return self.url

    def stop(self) -> None:
        """Stop serving and delivering."""
        self.release_holds()
        self._deliverer.stop()
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(10)
        self._server = self._thread = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    @staticmethod
    def generate_app_keypair() -> tuple[str, str]:
        """A fresh RSA-2048 App key: (private PEM in GitHub's PKCS#1 form, public PEM)."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        private = key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.TraditionalOpenSSL,
                                    serialization.NoEncryption()).decode()
        public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo).decode()
        return private, public

    # -- the people's UI -----------------------------------------------------------------------

    def install(self, owner: str, repos: list[str] | None = None) -> int:
        """Install the App on `owner` (all repos, or the named ones); return the installation id."""
        inst = self.state.install(self.state.user(owner), repos, self.app_permissions,
                                  self.app_id, self.app_slug)
        return inst.id

    def create_repo(self, owner: str, name: str, files: Mapping[str, str | bytes], *,
                    default_branch: str = "main") -> JSON:
        """Create a private repository with one commit holding `files`."""
        with self.state.lock:
            if self.state.repo(owner, name) is not None:
                raise ValueError(f"repository {owner}/{name} exists")
            self.git.create(owner, name, files, default_branch)
            repo = self.state.add_repo(owner, name, default_branch)
            # octocat is the stand-in's resident human; it may do anything anywhere.
            repo.permissions.setdefault("octocat", "admin")
            repo.branch_heads = self.git.branches(owner, name)
            return repo_json(self.url, repo)

    def set_permission(self, owner: str, repo: str, user: str, level: PermissionLevel) -> None:
        """Give `user` a role on the repository ("none" removes it)."""
        if level not in PERMISSION_LEVELS:
            raise ValueError(f"unknown permission level {level!r}")
        self.state.user(user)
        self._repo(owner, repo).permissions[user] = level

    def create_issue(self, owner: str, repo: str, title: str, body: str = "", *,
                     user: str = "octocat", labels: list[str] | None = None) -> int:
        """Open an issue as `user`; return its number."""
        the_repo, actor = self._repo(owner, repo), self.state.user(user)
        with self.state.lock:
            issue = self.state.open_issue(the_repo, title, body, actor)
            if labels:
                self.state.add_labels(the_repo, issue, labels, actor)
            return issue.number

    def add_label(self, owner: str, repo: str, number: int, label: str, *, actor: str = "octocat") -> None:
        """Label an issue or pull request as `actor`."""
        the_repo = self._repo(owner, repo)
        self.state.add_labels(the_repo, self._issue(the_repo, number), [label], self.state.user(actor))

    def remove_label(self, owner: str, repo: str, number: int, label: str, *, actor: str = "octocat") -> None:
        """Remove a label as `actor`."""
        the_repo = self._repo(owner, repo)
        self.state.remove_label(the_repo, self._issue(the_repo, number), label, self.state.user(actor))

    def add_comment(self, owner: str, repo: str, number: int, body: str, *, actor: str = "octocat") -> int:
        """Comment as `actor`; return the comment id."""
        the_repo = self._repo(owner, repo)
        issue = self._issue(the_repo, number)
        return self.state.add_comment(the_repo, issue, body, self.state.user(actor)).id

    def edit_comment(self, owner: str, repo: str, comment_id: int, body: str, *, actor: str = "octocat") -> None:
        """Edit a comment as `actor`."""
        the_repo = self._repo(owner, repo)
        found = self.state.comment(the_repo, comment_id)
        if found is None:
            raise KeyError(f"no comment {comment_id} in {owner}/{repo}")
        self.state.edit_comment(the_repo, found[0], found[1], body, self.state.user(actor))

    def close_issue(self, owner: str, repo: str, number: int, *, actor: str = "octocat") -> None:
        """Close an issue or pull request as `actor`."""
        the_repo = self._repo(owner, repo)
        self.state.set_state(the_repo, self._issue(the_repo, number), "closed", self.state.user(actor))

    def push_files(self, owner: str, repo: str, branch: str, files: Mapping[str, str], *,
                   message: str = "Update files", actor: str = "octocat") -> str:
        """Commit `files` on `branch` (made from the default branch if new) as `actor`, as a
        push would; an open pull request whose head moved gets its `synchronize`. Returns the sha."""
        the_repo, user = self._repo(owner, repo), self.state.user(actor)
        with self.state.lock:
            parent = (self.git.resolve(owner, repo, f"refs/heads/{branch}")
                      or self.git.resolve(owner, repo, f"refs/heads/{the_repo.default_branch}"))
            sha = self.git.commit_files(owner, repo, branch, files, message, parent=parent,
                                        author=(actor, noreply_email(user)))
        self.after_push(owner, repo, user)
        return sha

    def open_pull(self, owner: str, repo: str, *, head: str, title: str, body: str = "",
                  base: str | None = None, files: Mapping[str, str] | None = None,
                  actor: str = "octocat", draft: bool = False) -> int:
        """Open a pull request from branch `head` as `actor` (first committing `files` on it,
        if given); returns its number."""
        if files:
            self.push_files(owner, repo, head, files, message=title, actor=actor)
        the_repo, user = self._repo(owner, repo), self.state.user(actor)
        with self.state.lock:
            info = self.pull_info(the_repo, head, base or the_repo.default_branch, draft=draft)
            if not info.head_sha or info.commits == 0:
                raise ValueError(f"no commits on {head} to open a pull request with")
            return self.state.open_issue(the_repo, title, body, user, info).number

    def create_fork_pull(self, owner: str, repo: str, *, fork_owner: str, branch: str,
                         files: Mapping[str, str], title: str, body: str = "",
                         actor: str | None = None) -> int:
        """Fork `owner/repo` to `fork_owner/repo`, commit `files` on `branch` there, and open a
        pull request from it into the default branch, as `actor` (default: the fork's owner).

        As on GitHub, the head commit is also kept in the base repository (`refs/pull/N/head`),
        so the diff and contents at the head sha are served by the base repository; the fork
        itself is a repository of `fork_owner` the App is not installed on. Returns the number.
        """
        base_repo = self._repo(owner, repo)
        user = self.state.user(actor or fork_owner)
        with self.state.lock:
            fork = self.state.repo(fork_owner, repo)
            if fork is None:
                self.git.fork(owner, repo, fork_owner)
                fork = self.state.add_repo(fork_owner, repo, base_repo.default_branch)
                fork.parent = base_repo
            start = (self.git.resolve(fork_owner, repo, f"refs/heads/{branch}")
                     or self.git.resolve(fork_owner, repo, f"refs/heads/{base_repo.default_branch}"))
            self.git.commit_files(fork_owner, repo, branch, files, title, parent=start,
                                  author=(user.login, noreply_email(user)))
            fork.branch_heads = self.git.branches(fork_owner, repo)
            number = max(base_repo.issues, default=0) + 1
            self.git.fetch_ref(owner, repo, self.git.path(fork_owner, repo), f"refs/heads/{branch}",
                               f"refs/pull/{number}/head")
            info = self.pull_info(base_repo, branch, base_repo.default_branch, draft=False, fork=fork)
            issue = self.state.open_issue(base_repo, title, body, user, info)
            assert issue.number == number
            return number

    def submit_review(self, owner: str, repo: str, number: int, *, actor: str, event: str,
                      body: str = "", comments: Sequence[Mapping[str, Any]] = ()) -> int:
        """Review a pull request as `actor` (event APPROVE, REQUEST_CHANGES or COMMENT), with
        inline comments checked as GitHub checks them (ValueError with GitHub's message if one
        fails); announced as GitHub does. Returns the review id."""
        the_repo, user = self._repo(owner, repo), self.state.user(actor)
        with self.state.lock:
            issue = self._issue(the_repo, number)
            try:
                review = self.build_review(the_repo, issue, user, event, body, None,
                                           [dict(c) for c in comments])
            except ApiError as error:
                raise ValueError(f"{error.message}: {error.errors}") from None
            self.state.submit_review(the_repo, issue, review)
            return review.id

    def reply_to_review_comment(self, owner: str, repo: str, number: int, comment_id: int,
                                body: str, *, actor: str) -> int:
        """Reply in a review comment's thread as `actor`; returns the reply's id."""
        the_repo, user = self._repo(owner, repo), self.state.user(actor)
        with self.state.lock:
            issue = self._issue(the_repo, number)
            try:
                return self.reply_in_thread(the_repo, issue, comment_id, body, user).id
            except ApiError:
                raise KeyError(f"no review comment {comment_id} on #{number}") from None

    def review_threads(self, owner: str, repo: str, number: int) -> list[JSON]:
        """A plain view of a pull request's review threads: id (`PRRT_...`), resolved and by
        whom (a REST login), outdated, path, line, and the comments (id, author, body)."""
        the_repo = self._repo(owner, repo)
        with self.state.lock:
            issue = self._issue(the_repo, number)
            views = []
            for thread in threads_of(issue):
                root = thread[0]
                resolver = issue.resolved_threads.get(root.id)
                views.append({
                    "id": thread_node_id(root.id), "resolved": resolver is not None,
                    "resolved_by": None if resolver is None else resolver.login,
                    "outdated": self.graph_outdated(the_repo, issue, root),
                    "path": root.path, "line": root.line,
                    "comments": [{"id": c.id, "author": c.user.login, "body": c.body} for c in thread],
                })
            return views

    def mark_ready(self, owner: str, repo: str, number: int, *, actor: str = "octocat") -> None:
        """Mark a draft pull request ready for review as `actor` (`ready_for_review`)."""
        the_repo = self._repo(owner, repo)
        with self.state.lock:
            self.state.mark_ready(the_repo, self._issue(the_repo, number), self.state.user(actor))

    def user_token(self, login: str) -> str:
        """A personal access token (`ghp_`) acting as `login` over REST and git."""
        token = Token("ghp_" + _random_alnum(36), None, user=self.state.user(login))
        with self.state.lock:
            self.state.tokens[token.value] = token
        return token.value

    def workflow_token(self, owner: str, repo: str) -> str:
        """The `GITHUB_TOKEN` of a workflow run in `owner/repo`: a `ghs_` token acting as
        `github-actions[bot]` (write on that repository only), over REST and git."""
        the_repo = self._repo(owner, repo)
        with self.state.lock:
            bot = self.state.user(ACTIONS_BOT, "Bot")
            the_repo.permissions[bot.login] = "write"
            token = Token("ghs_" + _random_alnum(36), utcnow() + timedelta(hours=24), user=bot)
            self.state.tokens[token.value] = token
        return token.value

    def expire_tokens(self) -> None:
        """Expire every installation token now (to test what happens when one runs out)."""
        with self.state.lock:
            for token in self.state.tokens.values():
                if token.installation_id is not None:
                    token.expires_at = utcnow() - timedelta(seconds=1)

    # -- readers -----------------------------------------------------------------------------

    def issue(self, owner: str, repo: str, number: int) -> JSON:
        """A plain view of an issue: labels by name, comments with edits and reactions."""
        the_repo = self._repo(owner, repo)
        with self.state.lock:
            issue = self._issue(the_repo, number)
            return {
                "number": issue.number,
                "title": issue.title,
                "body": issue.body,
                "state": issue.state,
                "user": issue.user.login,
                "labels": list(issue.labels),
                "assignees": [u.login for u in issue.assignees],
                "is_pull": issue.pull is not None,
                "reactions": [r.content for r in issue.reactions],
                "comments": [
                    {"id": c.id, "body": c.body, "user": c.user.login, "edits": c.edits,
                     "reactions": [r.content for r in c.reactions]}
                    for c in issue.comments
                ],
            }

    def pulls(self, owner: str, repo: str) -> list[JSON]:
        """A plain view of every pull request, with reviews and inline comments."""
        the_repo = self._repo(owner, repo)
        with self.state.lock:
            return [self._pull_view(i) for i in the_repo.issues.values() if i.pull is not None]

    def _pull_view(self, issue: Issue) -> JSON:
        pull = issue.pull
        assert pull is not None
        return {
            "number": issue.number, "title": issue.title, "body": issue.body, "state": issue.state,
            "user": issue.user.login, "head": pull.head, "base": pull.base, "head_sha": pull.head_sha,
            "base_sha": pull.base_sha, "draft": pull.draft, "merged": pull.merged,
            "labels": list(issue.labels),
            "reviews": [
                {"id": r.id, "user": r.user.login, "state": r.state, "body": r.body,
                 "commit_id": r.commit_id,
                 "comments": [{"path": c.path, "line": c.line, "side": c.side, "body": c.body}
                              for c in r.comments]}
                for r in issue.reviews
            ],
        }

    def branches(self, owner: str, repo: str) -> dict[str, str]:
        """Branch → head sha, read from the bare repository."""
        self._repo(owner, repo)
        return self.git.branches(owner, repo)

    def file_at(self, owner: str, repo: str, ref: str, path: str) -> str:
        """The text of `path` at `ref`."""
        self._repo(owner, repo)
        return self.git.git(owner, repo, "show", f"{ref}:{path.lstrip('/')}").decode()

    def wait_deliveries(self, timeout: float = 10) -> bool:
        """Wait until every queued webhook was attempted; False on timeout."""
        return self._deliverer.wait(timeout)

    def redeliver(self, delivery_id: str) -> None:
        """Send a past delivery again (same id and body), as GitHub's "Redeliver" does."""
        self._deliverer.redeliver(delivery_id)

    # -- used by handlers ----------------------------------------------------------------------

    def _repo(self, owner: str, name: str) -> Repo:
        repo = self.state.repo(owner, name)
        if repo is None:
            raise KeyError(f"no repository {owner}/{name}")
        return repo

    def _issue(self, repo: Repo, number: int) -> Issue:
        issue = self.state.issue(repo, number)
        if issue is None:
            raise KeyError(f"no issue #{number} in {repo.full_name}")
        return issue

    def mint_installation_token(self, installation_id: int, repos: list[str] | None) -> Token:
        """A new `ghs_` token for the installation."""
        token = Token("ghs_" + _random_alnum(36), utcnow() + self.token_ttl,
                      installation_id=installation_id, repos=repos)
        with self.state.lock:
            self.state.tokens[token.value] = token
        return token

    def pull_info(self, repo: Repo, head: str, base: str, *, draft: bool,
                  fork: Repo | None = None) -> PullInfo:
        """Git facts of a head/base pair: tips, commit count, diff size.

        A fork's head is read from the fork; its commits must be in `repo` already (GitHub
        keeps them there as `refs/pull/N/head`), so the diff is `repo`'s own.
        """
        owner, name = repo.owner.login, repo.name
        source = fork or repo
        head_sha = self.git.resolve(source.owner.login, source.name, f"refs/heads/{head}") or ""
        base_sha = self.git.resolve(owner, name, f"refs/heads/{base}") or ""
        files = self.git.diff(owner, name, base_sha, head_sha)
        return PullInfo(
            head=head, base=base, head_sha=head_sha, base_sha=base_sha, draft=draft,
            commits=self.git.count_commits(owner, name, base_sha, head_sha),
            additions=sum(f.additions for f in files), deletions=sum(f.deletions for f in files),
            changed_files=len(files), fork=fork,
        )

    def reply_in_thread(self, repo: Repo, issue: Issue, comment_id: int, body: str,
                        actor: User) -> ReviewComment:
        """Reply in the thread of a review comment; like GitHub, the reply is a review of its own."""
        known = {c.id: c for c in issue.review_comments(viewer=actor)}
        if comment_id not in known:
            raise not_found()
        root = known[known[comment_id].thread_root]
        review = Review(self.state.next_id(), issue.number, actor, "", "COMMENTED", root.commit_id,
                        utcnow())
        reply = ReviewComment(
            id=self.state.next_id(), review_id=review.id, user=actor, path=root.path, body=body,
            commit_id=root.commit_id, diff_hunk=root.diff_hunk, line=root.line, side=root.side,
            start_line=root.start_line, start_side=root.start_side, position=root.position,
            created_at=utcnow(), in_reply_to=root.id,
        )
        review.comments.append(reply)
        self.state.submit_review(repo, issue, review)
        return reply

    def take_orphan(self, path: str) -> OrphanReview | None:
        """The `OrphanReview` in force that this create-review request falls under, if any."""
        with self._record_lock:
            for knob in self._faults:
                if isinstance(knob, OrphanReview) and knob.take(path):
                    return knob
        return None

    # -- GraphQL's view (see devhub.graphql.ThreadBackend) --------------------------------------

    def graph_repo(self, token: Token, owner: str, name: str) -> Repo | None:
        """The repository if the token may see it."""
        repo = self.state.repo(owner, name)
        return repo if repo is not None and self.state.token_covers(token, repo) else None

    def graph_can_write(self, token: Token, repo: Repo) -> bool:
        """Whether the token may resolve threads (pull requests: write) on the repository."""
        if token.user is not None:
            return repo.permission(token.user.login) in ("write", "maintain", "admin")
        inst = self.state.installations.get(token.installation_id or -1)
        return inst is not None and inst.permissions.get("pull_requests") == "write"

    def graph_outdated(self, repo: Repo, issue: Issue, root: ReviewComment) -> bool:
        """A thread is outdated once the head moved and its line's hunk is no longer the same."""
        pull = issue.pull
        if pull is None or root.commit_id == pull.head_sha or root.line is None:
            return False
        key = (repo.full_name, pull.base_sha, pull.head_sha)
        files = self._diff_cache.get(key)
        if files is None:
            files = {f.filename: f for f in self.git.diff(repo.owner.login, repo.name,
                                                          pull.base_sha, pull.head_sha)}
            self._diff_cache = {key: files}
        now = files.get(root.path)
        return now is None or now.hunk_until(root.line, root.side) != root.diff_hunk

    def graph_thread(self, token: Token, thread_id: str) -> tuple[Repo, Issue, int] | None:
        """(repository, pull request, first comment id) of a thread node id the token may see."""
        root = thread_root_of(thread_id)
        if root is None:
            return None
        for repo in self.state.repos.values():
            if not self.state.token_covers(token, repo):
                continue
            for issue in repo.issues.values():
                if any(c.id == root and c.in_reply_to is None for c in issue.review_comments()):
                    return repo, issue, root
        return None

    def build_review(self, repo: Repo, issue: Issue, actor: User, event: str | None, body: str,
                     commit_id: str | None, comments: list[JSON]) -> Review:
        """A review, checked the way GitHub checks one (own PR, body, diff lines)."""
        pull = issue.pull
        assert pull is not None
        if event in ("APPROVE", "REQUEST_CHANGES") and actor == issue.user:
            verb = "approve" if event == "APPROVE" else "request changes on"
            raise unprocessable(f"Can not {verb} your own pull request")
        if event in ("REQUEST_CHANGES", "COMMENT") and not body and not comments:
            raise unprocessable(f"Review body is required for event {event}")
        if any(r.state == "PENDING" and r.user == actor for r in issue.reviews):
            raise unprocessable("User can only have one pending review per pull request")
        sha = commit_id or pull.head_sha
        if commit_id and self.git.resolve(repo.owner.login, repo.name, commit_id) is None:
            raise unprocessable("Commit not found")
        review_id = self.state.next_id()
        files = {f.filename: f for f in self.git.diff(repo.owner.login, repo.name, pull.base_sha, sha)}
        inline = [self._review_comment(review_id, actor, sha, files, c) for c in comments]
        submitted = None if event is None else utcnow()
        state = _REVIEW_STATES.get(event or "", "PENDING")
        return Review(review_id, issue.number, actor, body, state, sha, submitted, inline)

    def _review_comment(self, review_id: int, actor: User, sha: str, files: dict[str, DiffFile],
                        raw: JSON) -> ReviewComment:
        """One inline comment, checked against the diff with GitHub's messages for each failure."""
        diff = files.get(str(raw.get("path")))
        if diff is None:
            raise unprocessable("Path could not be resolved")
        side = str(raw.get("side") or "RIGHT")
        if side not in SIDES:
            raise unprocessable("Pull request review thread side is not included in the list")
        line: int | None = raw.get("line")
        if line is None and raw.get("position") is not None:
            line = diff.line_at(int(raw["position"]), side)
        # A line only deleted exists on LEFT alone: sent with RIGHT it is "not part of the diff".
        position = None if line is None else diff.position_of(line, side)
        if line is None or position is None:
            raise unprocessable("Pull request review thread line must be part of the diff")
        start: int | None = raw.get("start_line")
        start_side = str(raw.get("start_side") or side)
        if start_side not in SIDES:
            raise unprocessable("Pull request review thread start side is not included in the list")
        if start is not None:
            start_position = diff.position_of(start, start_side)
            if start_position is None:
                raise unprocessable("Pull request review thread start line must be part of the diff")
            if diff.hunk_of(start, start_side) != diff.hunk_of(line, side):
                raise unprocessable(
                    "Pull request review thread start line must be part of the same hunk as the line.")
            if start_position >= position:
                raise unprocessable("Pull request review thread start line must precede the end line")
        return ReviewComment(
            id=self.state.next_id(), review_id=review_id, user=actor, path=diff.filename,
            body=str(raw.get("body", "")), commit_id=sha, diff_hunk=diff.hunk_until(line, side),
            line=line, side=side, start_line=start,
            start_side=start_side if start is not None else None, position=position,
            created_at=utcnow(),
        )

    def after_push(self, owner: str, name: str, pusher: User) -> None:
        """Refresh branch state after a receive-pack; a moved PR head is a `synchronize`."""
        with self.state.lock:
            repo = self._repo(owner, name)
            heads = self.git.branches(owner, name)
            repo.branch_heads, repo.pushed_at = heads, utcnow()
            for target in self.state.repos.values():  # pulls into this repo, or from it as a fork
                for issue in target.issues.values():
                    pull = issue.pull
                    if (pull is not None and issue.state == "open"
                            and (target is repo or pull.fork is repo)):
                        self._refresh_pull(target, issue, pusher)

    def _refresh_pull(self, repo: Repo, issue: Issue, pusher: User) -> None:
        """Take a pull request's new tips, if either moved (a moved head is a `synchronize`)."""
        pull = issue.pull
        assert pull is not None
        source = pull.fork or repo
        head = self.git.resolve(source.owner.login, source.name, f"refs/heads/{pull.head}")
        base = self.git.resolve(repo.owner.login, repo.name, f"refs/heads/{pull.base}") or pull.base_sha
        if head is None or (head == pull.head_sha and base == pull.base_sha):
            return
        if pull.fork is not None:  # GitHub copies a fork's head into the base as refs/pull/N/head
            self.git.fetch_ref(repo.owner.login, repo.name, self.git.path(source.owner.login, source.name),
                               f"refs/heads/{pull.head}", f"refs/pull/{issue.number}/head")
        fresh = self.pull_info(repo, pull.head, pull.base, draft=pull.draft, fork=pull.fork)
        fresh.maintainer_can_modify = pull.maintainer_can_modify
        self.state.update_pull_refs(repo, issue, fresh, pusher)

    # -- webhooks ------------------------------------------------------------------------------

    def _publish(self, event: HubEvent) -> None:
        """Queue the webhook for a change (called under the state lock, so order is kept)."""
        objects = dict(event.objects)
        if event.repo is not None:
            inst = self.state.installation_for(event.repo)
            if inst is None:
                return  # GitHub only tells an App about repositories it is installed on
            objects["repository"] = repo_json(self.url, event.repo)
            objects["installation"] = {"id": inst.id, "node_id": node_id("MDIz", inst.id)}
        objects["sender"] = user_json(self.url, event.sender)
        payload = build_payload(event.name, event.action, objects)
        for problem in webhook_errors(event.name, payload):
            self._violation("WEBHOOK", f"{event.name}.{event.action}", problem)
        self._deliverer.enqueue(event.name, event.action, payload)

    # -- REST entry point ------------------------------------------------------------------------

    def handle(self, method: str, path: str, query: dict[str, str], headers: Mapping[str, str],
               raw_body: bytes) -> Reply:
        """Answer one REST request like GitHub, recording the request and any violation."""
        if not self._wait_hold(method, path):
            self._record(RecordedRequest(method, path, 502, self._operation_of(method, path),
                                         None, applied=False, fault="held-not-applied"))
            return ApiError(502, "Server Error").reply()
        fault = self._fault_for(method, path, headers)
        if fault is not None and not fault.applied:
            reply = fault.reply()
            self._record(RecordedRequest(method, path, reply.status, self._operation_of(method, path),
                                         None, applied=False, fault=fault.name))
            return reply
        answer = self._answer_graphql if path == GRAPHQL_PATH else self._answer
        reply, operation_id, actor = answer(method, path, query, headers, raw_body)
        applied = reply.status < 400 and reply.fault is None
        fault_name = fault.name if fault else reply.fault
        if fault is not None:  # the work is done; only the answer fails
            reply = fault.reply()
        self._record(RecordedRequest(method, path, reply.status, operation_id, actor,
                                     applied=applied, fault=fault_name))
        return reply

    def _operation_of(self, method: str, path: str) -> str | None:
        """The operation a request is for (``"graphql"`` for the GraphQL endpoint), if any."""
        if path == GRAPHQL_PATH:
            return "graphql"
        route = self.spec.match(method, path)
        return route.operation_id if route else None

    def _answer_graphql(self, method: str, path: str, query: dict[str, str],
                        headers: Mapping[str, str], raw_body: bytes) -> tuple[Reply, str | None, str | None]:
        """One GraphQL request: authenticated like REST, answered 200 with `data`/`errors`.

        Not in the REST description, so its shape is checked here: a JSON object with a string
        `query` (and optional `variables` object and `operationName`).
        """
        try:
            if method != "POST":
                raise not_found()
            principal = self._principal(headers)
            if principal.kind == "app":
                raise ApiError(403, "Resource not accessible by integration")
            if principal.token is None:
                raise ApiError(401, "This endpoint requires you to be authenticated.")
            try:
                body = json.loads(raw_body or b"null")
            except ValueError:
                raise ApiError(400, "Problems parsing JSON") from None
            if not isinstance(body, dict):
                raise ApiError(400, "Problems parsing JSON")
            token = principal.token
            actor = token.user or self.bot
            graph = ThreadGraph(self, token, actor)
            with self.state.lock:
                answer = execute(graph, body.get("query"), body.get("variables"), body.get("operationName"))
            for error in answer.get("errors", []):
                if "type" not in error:  # parse and schema errors: a query GitHub would reject
                    self._violation(method, path, f"GraphQL: {error['message']}")
            return Reply(200, answer), "graphql", actor.login
        except ApiError as error:
            return error.reply(), "graphql", None

    def _answer(self, method: str, path: str, query: dict[str, str], headers: Mapping[str, str],
                raw_body: bytes) -> tuple[Reply, str | None, str | None]:
        """Route, authorize, validate and run one request: (reply, operation id, actor)."""
        route = self.spec.match(method, path)
        operation_id = route.operation_id if route else None
        call: Call | None = None
        try:
            if route is None or route.operation_id not in HANDLERS:
                why = "no such operation in GitHub's API" if route is None else "not implemented by devhub"
                self._violation(method, path, why)
                raise not_found()
            call = Call(method, path, route.operation_id, dict(route.params), query, headers,
                        self._parse_body(method, path, raw_body))
            self._authorize(call)
            check = self.spec.check_request(method, path, call.body, query)
            if check.errors:
                self._violation(method, path, "; ".join(check.errors))
                raise ApiError(422, "Validation Failed",
                               errors=[{"resource": "Request", "code": "invalid", "message": e}
                                       for e in check.errors])
            with self.state.lock:  # handlers read and render shared state; git work is quick
                reply = HANDLERS[route.operation_id](self, call)
        except ApiError as error:
            reply = error.reply()
        except Exception as error:  # the server boundary: a stand-in bug must be seen, not retried
            log.debug("devhub bug on %s %s", method, path, exc_info=True)
            self._violation(method, path, f"devhub bug: {type(error).__name__}: {error}")
            reply = ApiError(500, "Server Error").reply()
        self._check_reply(method, path, reply)
        actor = call.actor.login if call is not None and call.actor is not None else None
        return reply, operation_id, actor

    def _record(self, request: RecordedRequest) -> None:
        with self._record_lock:
            self.requests.append(request)

    def _record_git(self, request: GitRequest) -> None:
        with self._record_lock:
            self.git_requests.append(request)

    def git_requests_for(self, owner: str, repo: str) -> list[GitRequest]:
        """The git smart-HTTP requests one repository received, in order."""
        with self._record_lock:
            return [r for r in self.git_requests
                    if (r.owner.lower(), r.repo.lower()) == (owner.lower(), repo.lower())]

    def _fault_for(self, method: str, path: str, headers: Mapping[str, str], *,
                   git: bool = False) -> Fault | None:
        """The injected fault that answers this request, if any (the first in force that does).

        Fault answers are not checked against the OpenAPI description: GitHub's description
        leaves out 429, 502, 503 and 401 on most operations although GitHub documents and sends
        them (rate limits: "403 or 429 ... retry-after"; 5xx on any endpoint; 401 for a bad or
        expired token). Each answer has GitHub's `{message, documentation_url}` shape.
        """
        credential = _credentials(headers)
        with self._record_lock:
            for fault in self._faults:
                if (isinstance(fault, Fault) and fault.matches(method, path, credential, git=git)
                        and fault.take()):
                    break
            else:
                return None
        if fault.status == 401 and credential is not None:
            with self.state.lock:  # the token is dead from now on, as an expired one would be
                token = self.state.tokens.get(credential)
                if token is not None:
                    token.expires_at = utcnow() - timedelta(seconds=1)
        return fault

    # -- fault injection -------------------------------------------------------------------------

    def inject(self, *faults: Fault | OrphanReview) -> Injection:
        """Put faults in force (checked in order, before any earlier ones still in force).

        Use as ``with hub.inject(Fault(502, "POST", r"/repos/.*/comments", applied=True)):`` or
        keep the returned `Injection` and call ``remove()``; ``clear_faults()`` drops them all.
        An `OrphanReview` is a fault of create-review's own (it answers 422 after writing).
        """
        with self._record_lock:
            self._faults[:0] = faults
        return Injection(self, list(faults))

    def remove_faults(self, faults: list[Fault | OrphanReview]) -> None:
        """Withdraw the given faults."""
        with self._record_lock:
            self._faults = [f for f in self._faults if all(f is not g for g in faults)]

    def clear_faults(self) -> None:
        """Withdraw every fault."""
        with self._record_lock:
            self._faults = []

    def hold(self, *holds: Hold) -> Hold:
        """Put holds in force (checked before faults); returns the first. See `Hold`."""
        with self._record_lock:
            self._holds.extend(holds)
        return holds[0]

    def release_holds(self, *, apply: bool = True) -> None:
        """Release every hold and withdraw it (`stop()` does this, so no handler stays blocked)."""
        with self._record_lock:
            holds, self._holds = self._holds, []
        for held in holds:
            held.release(apply=apply)

    def _wait_hold(self, method: str, path: str, refs: tuple[str, ...] | None = None) -> bool:
        """Wait out the hold this request falls under, if any; False: answer without applying.

        ``refs``: the refs a git push updates (None for any other request).
        """
        with self._record_lock:
            candidates = [h for h in self._holds if not h.spent and h.matches(method, path, refs)]
        # `when` may look at the hub (its state lock), so it is asked outside the record lock.
        for hold in candidates:
            if hold.when is not None and not hold.when():
                continue
            with self._record_lock:
                if hold.take(method, path, refs):
                    return hold.wait()
        return True

    def holds_pushes_by_ref(self) -> bool:
        """Whether a hold in force needs to know which refs a push updates."""
        with self._record_lock:
            return any(h.refs is not None and not h.spent for h in self._holds)

    def requests_for(self, operation_id: str) -> list[RecordedRequest]:
        """The recorded requests of one operation, in order (e.g. ``"issues/create-comment"``)."""
        with self._record_lock:
            return [r for r in self.requests if r.operation_id == operation_id]

    def _parse_body(self, method: str, path: str, raw: bytes) -> Any:
        if not raw.strip():
            return None
        try:
            return json.loads(raw)
        except ValueError:
            self._violation(method, path, "body is not JSON")
            raise ApiError(400, "Problems parsing JSON") from None

    def _authorize(self, call: Call) -> None:
        """Set the caller and repository of `call`, or raise GitHub's 401/403/404."""
        if call.operation_id in UNAUTHENTICATED_OPERATIONS:
            return
        principal = self._principal(call.headers)
        if call.operation_id in APP_OPERATIONS:
            if principal.kind != "app":
                raise ApiError(401, "A JSON web token could not be decoded")
            return
        if principal.kind == "app":
            raise ApiError(403, "Resource not accessible by integration")
        if principal.token is None:
            if call.method == "GET":
                raise not_found()
            raise ApiError(401, "Requires authentication")
        token = principal.token
        call.token = token
        call.actor = token.user or self.bot
        if "owner" in call.params and "repo" in call.params:
            repo = self.state.repo(call.params["owner"], call.params["repo"])
            if repo is None or not self.state.token_covers(token, repo):
                raise not_found()
            call.repo = repo

    def _principal(self, headers: Mapping[str, str]) -> Principal:
        credential = _credentials(headers)
        if credential is None:
            return Principal("anonymous")
        if credential.count(".") == 2 and not credential.startswith(("ghs_", "ghp_")):
            problem = verify_app_jwt(credential, self._public_pem, self.app_id, time.time())
            if problem is not None:
                raise ApiError(401, problem)
            return Principal("app")
        token = self.state.live_token(credential)
        if token is None:
            raise ApiError(401, "Bad credentials")
        return Principal("token", token)

    def _check_reply(self, method: str, path: str, reply: Reply) -> None:
        """Record where the stand-in's own answer does not fit GitHub's description."""
        if reply.raw is not None or reply.status in (400, 401, 500) or self.spec.match(method, path) is None:
            return  # raw media types, and errors raised before routing/auth, have no schema here
        for problem in self.spec.check_response(method, path, reply.status, reply.body):
            # GitHub's description omits many error statuses GitHub really returns (e.g. 404 on
            # list-reviews); only a *successful* answer outside the description is a stand-in bug.
            if reply.status >= 400 and "is not a declared response" in problem:
                continue
            self._violation(method, path, f"response {reply.status}: {problem}")

    def _violation(self, method: str, path: str, problem: str) -> None:
        log.debug("devhub violation: %s %s: %s", method, path, problem)
        with self._record_lock:
            self.violations.append(f"{method} {path}: {problem}")

    # -- git smart-HTTP ------------------------------------------------------------------------

    def git_user(self, owner: str, name: str, authorization: str) -> User | None:
        """The user a git request acts as (Basic auth, token as password), or None."""
        scheme, _, encoded = authorization.partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            _, _, password = base64.b64decode(encoded).decode().partition(":")
        except ValueError:
            return None
        token = self.state.live_token(unquote(password))
        repo = self.state.repo(owner, name)
        if token is None or repo is None or not self.state.token_covers(token, repo):
            return None
        return token.user or self.bot


def create_app(hub: DevHub) -> FastAPI:
    """The ASGI app: git smart-HTTP under `/{owner}/{repo}.git/`, REST everywhere else."""
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    app.include_router(manifest_pages(hub.manifests))  # the manifest flow's web pages

    @app.api_route("/{full_path:path}", methods=["GET", "POST", "PATCH", "PUT", "DELETE"])
    async def dispatch(request: Request, full_path: str) -> Response:
        raw_path = request.scope.get("raw_path", b"").decode("latin-1") or request.url.path
        git_target = split_git_path(request.url.path)
        if git_target is not None:
            return await _git(hub, request, *git_target)
        body = await request.body()
        headers = {k.lower(): v for k, v in request.headers.items()}
        path = raw_path.split("?", 1)[0]
        if path.startswith(ENTERPRISE_API_PREFIX + "/"):
            path = path.removeprefix(ENTERPRISE_API_PREFIX)
        reply = await run_in_threadpool(hub.handle, request.method, path,
                                        dict(request.query_params), headers, body)
        return _to_response(reply)

    return app


def _to_response(reply: Reply) -> Response:
    headers = {
        "X-GitHub-Media-Type": "github.v3; format=json",
        "X-RateLimit-Limit": "5000",
        "X-RateLimit-Remaining": "4999",
        "X-RateLimit-Used": "1",
        "X-RateLimit-Resource": "core",
        "X-RateLimit-Reset": str(int(time.time()) + 3600),
        **reply.headers,
    }
    if reply.raw is not None:
        return Response(reply.raw, status_code=reply.status, headers=headers)
    content = b"" if reply.body is None else json.dumps(reply.body).encode()
    return Response(content, status_code=reply.status, headers=headers, media_type=JSON_MEDIA)


async def _git(hub: DevHub, request: Request, owner: str, name: str, service: str) -> Response:
    """One smart-HTTP request; private repos need a token as the Basic-auth password."""
    user = hub.git_user(owner, name, request.headers.get("authorization", ""))
    if user is None:
        hub._record_git(GitRequest(request.method, owner, name, service, None, 401))
        return Response("Authentication failed\n", status_code=401,
                        headers={"WWW-Authenticate": 'Basic realm="GitHub"'})
    refs = None
    if service == "git-receive-pack" and request.method == "POST" and hub.holds_pushes_by_ref():
        # Read whole (only while such a hold is in force): the body is replayed to git after.
        refs = pushed_refs(await request.body(), request.headers.get("content-encoding"))
    if not await run_in_threadpool(hub._wait_hold, request.method, request.url.path, refs):
        return Response("held and not applied\n", status_code=502)
    fault = hub._fault_for(request.method, request.url.path, request.headers, git=True)
    if fault is not None and not fault.applied:
        hub._record_git(GitRequest(request.method, owner, name, service, user.login, fault.status))
        return _git_fault_answer(hub, request, fault, user.login, applied=False)
    env = cgi_environment(request, hub.git, owner, name, service, user.login)
    writes = service == "git-receive-pack" and request.method == "POST"

    async def refresh() -> None:
        await run_in_threadpool(hub.after_push, owner, name, user)

    response = await serve_git(request, env, refresh if writes else None)
    hub._record_git(GitRequest(request.method, owner, name, service, user.login,
                               response.status_code if fault is None else fault.status))
    if fault is None:
        return response
    async for _chunk in response.body_iterator:  # carried out whole; only the answer fails
        pass
    return _git_fault_answer(hub, request, fault, user.login, applied=True)


def _git_fault_answer(hub: DevHub, request: Request, fault: Fault, actor: str, *,
                      applied: bool) -> Response:
    """A git fault's answer (plain text, as a proxy in front of git gives), recorded."""
    reply = fault.reply()
    hub._record(RecordedRequest(request.method, request.url.path, reply.status, None, actor,
                                applied=applied, fault=fault.name))
    return Response(f"{reply.body['message']}\n", status_code=reply.status, headers=reply.headers,
                    media_type="text/plain")
