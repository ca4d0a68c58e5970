"""The GitHub adapter: githubkit with GitHub App auth, timeouts and bounded retries.

``GitHost`` is the seam the rest of nightcrew talks to; ``GitHubKitHost`` is the only code that
calls GitHub's REST API. Errors come out grouped by what the caller does: ``Retryable``
(back off, let the queue retry) or ``GitHubError`` (report and stop).

Retries are done here, not by githubkit (its ``auto_retry`` would repeat a POST that GitHub
applied before failing the answer). Every call goes through ``_call``:

- rate limits (403/429 with ``Retry-After`` or ``X-RateLimit-Remaining: 0``) and 5xx are waited
  out in-process when the wait is at most ``MAX_RETRY_WAIT``, up to ``MAX_ATTEMPTS`` tries; a
  longer wait, or too many failures, raises ``Retryable`` (with ``retry_after``) for the queue;
- an installation token GitHub rejects with 401 is dropped from githubkit's token cache, a new
  one minted and the call tried once more;
- a write that is not idempotent (creating a comment or a pull request) is never repeated
  blindly after a 5xx: the adapter first looks whether the failed attempt landed (the comment's
  hidden write marker, the pull request's head branch) and returns what it finds.

Comments are written once even across job retries when the caller passes a ``key``: the body
carries ``<!-- nightcrew:write KEY -->`` and ``create_comment`` returns the existing comment
instead of writing a second one.

``PullReviews`` is what a review round needs (``GitHubKitHost`` implements it): the pull request,
its diff and commits, reviews and inline comments (REST), and review threads, which only
GitHub's GraphQL API has (``isResolved``, ``isOutdated``, ``resolveReviewThread``). GraphQL
spells a bot's login without ``[bot]``; the adapter hands out REST logins only.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal, Protocol, TypeVar, cast

from githubkit import AppAuthStrategy, AppInstallationAuthStrategy, GitHub
from githubkit.auth.app import AppAuth
from githubkit.cache import MemCacheStrategy
from githubkit.exception import (
    GraphQLFailed,
    RateLimitExceeded,
    RequestError,
    RequestFailed,
)
from githubkit.utils import UNSET
from githubkit_schemas.v2026_03_10.models import Commit as _Commit
from githubkit_schemas.v2026_03_10.models import Installation as _Installation
from githubkit_schemas.v2026_03_10.models import Issue as _Issue
from githubkit_schemas.v2026_03_10.models import IssueComment as _IssueComment
from githubkit_schemas.v2026_03_10.models import PullRequestReview as _Review
from githubkit_schemas.v2026_03_10.models import PullRequestReviewComment as _ReviewComment

from github_app import errors
from github_app.tasks import TaskKey
from github_app.trust import NEEDED_APP_PERMISSIONS

Reaction = Literal["+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes"]
TIMEOUT_S = 30.0  # githubkit's default is no timeout at all
MAX_RETRY_WAIT = timedelta(seconds=20)  # longer waits go back to the queue, not a sleeping worker
MAX_ATTEMPTS = 4  # tries of one request in-process: the first and up to three retries
SERVER_ERROR_BACKOFF_S = (1.0, 2.0, 4.0)  # waits after the 1st, 2nd, 3rd 5xx without Retry-After
UNKNOWN_RATE_LIMIT_WAIT = timedelta(seconds=60)  # a 429 that says nothing about when
PAGE_SIZE = 100
THREAD_PAGE_SIZE = 50  # review threads per GraphQL page (each with up to 100 comments)
_WRITE_KEY = re.compile(r"[A-Za-z0-9._:/#@+=-]{1,200}")

sleep: Callable[[float], None] = time.sleep  # the adapter's only way to wait; tests replace it
T = TypeVar("T")


class GitHubError(errors.NightcrewError):
    """GitHub refused a request; retrying the same request will not help.

    ``detail`` is what GitHub said about it (its ``message`` and ``errors``, e.g. "Unprocessable
    Entity: Pull request review thread line must be part of the diff"), or "" if nothing.
    """

    def __init__(self, message: str, status: int | None = None, *, detail: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.detail = detail


class Retryable(GitHubError, errors.Retryable):
    """GitHub is rate limiting or failing; retry later (``retry_after`` at the earliest, if known)."""

    def __init__(self, message: str, status: int | None = None, *,
                 retry_after: timedelta | None = None) -> None:
        GitHubError.__init__(self, message, status)
        self.retry_after = retry_after


@dataclass(frozen=True)
class Issue:
    number: int
    title: str
    body: str
    state: str
    author: str
    labels: tuple[str, ...]


@dataclass(frozen=True)
class Repository:
    full_name: str
    clone_url: str
    default_branch: str


@dataclass(frozen=True)
class PullRequest:
    number: int
    html_url: str
    head: str
    state: str


@dataclass(frozen=True)
class Comment:
    """An issue comment; ``author`` is a login (the App's own is ``{slug}[bot]``)."""

    id: int
    body: str
    author: str


@dataclass(frozen=True)
class PullDetails:
    """A pull request as a review round reads it; ``head_repo`` is the full name of the head's
    repository (another one for a fork; None when the fork was deleted)."""

    number: int
    title: str
    body: str
    state: str
    draft: bool
    author: str
    head_ref: str
    head_sha: str
    base_ref: str
    base_sha: str
    head_repo: str | None
    html_url: str
    base_repo: str = ""

    @property
    def is_fork(self) -> bool:
        """Whether the head is not in the base repository (a fork's, or one that is gone)."""
        return self.head_repo is None or self.head_repo.lower() != self.base_repo.lower()


@dataclass(frozen=True)
class Review:
    """A pull request review; ``state`` as REST spells it (COMMENTED, PENDING, APPROVED...)."""

    id: int
    author: str
    body: str
    state: str
    commit_id: str


@dataclass(frozen=True)
class ReviewComment:
    """An inline review comment; ``in_reply_to`` is the thread's first comment, for a reply."""

    id: int
    review_id: int | None
    author: str
    body: str
    path: str
    line: int | None
    side: str  # RIGHT when GitHub leaves it out
    start_line: int | None
    start_side: str | None
    diff_hunk: str
    commit_id: str
    in_reply_to: int | None
    html_url: str


@dataclass(frozen=True)
class PullCommit:
    """A commit of a pull request; ``author`` is a login when GitHub knows one, else the name."""

    sha: str
    author: str
    message: str
    parents: int


@dataclass(frozen=True)
class ThreadComment:
    """A comment of a review thread (``id`` is the REST comment id)."""

    id: int
    author: str
    body: str


@dataclass(frozen=True)
class ReviewThread:
    """A review thread (GraphQL's ``PRRT_...`` id); authors are REST logins."""

    id: str
    is_resolved: bool
    is_outdated: bool
    path: str
    line: int | None
    comments: tuple[ThreadComment, ...]

    @property
    def root_author(self) -> str:
        """Who opened the thread."""
        return self.comments[0].author if self.comments else ""


def write_marker(key: str) -> str:
    """The hidden line that makes a comment findable by its write key."""
    if not _WRITE_KEY.fullmatch(key):
        raise ValueError(f"write key {key!r}: use 1-200 of letters, digits and ._:/#@+=-")
    return f"<!-- nightcrew:write {key} -->"


def with_marker(body: str, key: str) -> str:
    """``body`` with the write marker of ``key`` on its own last line (GitHub does not show it)."""
    return f"{body}\n\n{write_marker(key)}"


class GitHost(Protocol):
    """What nightcrew needs from GitHub, for one installation."""

    def token(self) -> str: ...
    def repository(self, owner: str, repo: str) -> Repository: ...
    def issue(self, task: TaskKey) -> Issue: ...
    def permission(self, owner: str, repo: str, user: str) -> str: ...
    def create_comment(self, task: TaskKey, body: str, key: str | None = None) -> int: ...
    def update_comment(
        self, task: TaskKey, comment_id: int, body: str, key: str | None = None
    ) -> None: ...
    def list_comments(self, task: TaskKey) -> list[Comment]: ...
    def find_comment(self, task: TaskKey, marker: str) -> int | None: ...
    def add_labels(self, task: TaskKey, labels: list[str]) -> None: ...
    def remove_label(self, task: TaskKey, label: str) -> None: ...
    def react(self, task: TaskKey, content: Reaction, comment_id: int | None = None) -> None: ...
    def find_pull(self, owner: str, repo: str, head: str) -> PullRequest | None: ...
    def create_pull(
        self, owner: str, repo: str, *, head: str, base: str, title: str, body: str,
        draft: bool = False,
    ) -> PullRequest: ...
    def read_file(self, owner: str, repo: str, path: str, ref: str | None = None) -> str | None: ...
    def app_permissions(self, owner: str, repo: str) -> dict[str, str]: ...


class PullReviews(Protocol):
    """What a review round needs from GitHub, for one installation."""

    def bot_login(self, owner: str, repo: str) -> str: ...
    def pull(self, owner: str, repo: str, number: int) -> PullDetails: ...
    def pull_diff(self, owner: str, repo: str, number: int) -> str: ...
    def compare_diff(self, owner: str, repo: str, base: str, head: str) -> str: ...
    def pull_commits(self, owner: str, repo: str, number: int) -> list[PullCommit]: ...
    def reviews(self, owner: str, repo: str, number: int) -> list[Review]: ...
    def create_review(
        self, owner: str, repo: str, number: int, *, commit_id: str, body: str,
        comments: Sequence[Mapping[str, Any]], event: Literal["COMMENT"] | None = "COMMENT",
        key: str | None = None,
    ) -> Review: ...
    def delete_pending_review(self, owner: str, repo: str, number: int, review_id: int) -> None: ...
    def review_comments(self, owner: str, repo: str, number: int) -> list[ReviewComment]: ...
    def reply_to_review_comment(
        self, owner: str, repo: str, number: int, comment_id: int, body: str,
    ) -> int: ...
    def review_threads(self, owner: str, repo: str, number: int) -> list[ReviewThread]: ...
    def resolve_review_thread(self, thread_id: str) -> None: ...
    def update_pull_body(self, owner: str, repo: str, number: int, body: str) -> None: ...


class ReviewHost(GitHost, PullReviews, Protocol):
    """GitHub as pull-request work uses it: the PR's review API and its conversation."""


def _call(
    what: str, request: Callable[[], T], *, write: bool = False,
    recover: Callable[[], T | None] | None = None, reauth: Callable[[], None] | None = None,
) -> T:
    """Make one GitHub request with bounded retries (see the module docstring).

    ``write=True`` marks a request that must not be repeated blindly: after a 5xx it is retried
    only when ``recover`` (which looks for what the failed attempt may have written) finds
    nothing; without ``recover`` a 5xx raises ``Retryable`` at once. A rate-limited request was
    not carried out, so it is retried either way. ``reauth`` drops the credential after a 401.
    """
    failures, reauthed = 0, False
    error: RequestFailed
    while True:
        try:
            return request()
        except RateLimitExceeded as exc:
            failures, error = failures + 1, exc
            status, wait, why = exc.response.status_code, exc.retry_after, "rate limited by GitHub"
        except RequestFailed as exc:
            error = exc
            status = exc.response.status_code
            if status == 401 and reauth is not None and not reauthed:
                reauthed = True
                reauth()
                continue
            if status < 500 and status != 429:
                detail = _error_detail(exc)
                message = f"{what}: GitHub answered {status}" + (f" ({detail})" if detail else "")
                raise GitHubError(message, status, detail=detail) from exc
            failures += 1
            if status == 429:  # without the headers that say how long: assume a while
                wait, why = _retry_after(exc) or UNKNOWN_RATE_LIMIT_WAIT, "rate limited by GitHub"
            else:
                backoff = SERVER_ERROR_BACKOFF_S[min(failures, len(SERVER_ERROR_BACKOFF_S)) - 1]
                wait = _retry_after(exc) or timedelta(seconds=backoff)
                why = f"GitHub answered {status}"
                if write and recover is None:
                    raise Retryable(f"{what}: {why} (the write may have landed)", status,
                                    retry_after=wait) from exc
        except RequestError as exc:
            raise Retryable(f"{what}: cannot reach GitHub ({type(exc).__name__})") from exc
        if failures >= MAX_ATTEMPTS or wait > MAX_RETRY_WAIT:
            raise Retryable(f"{what}: {why}", status, retry_after=wait) from error
        sleep(wait.total_seconds())
        if status >= 500 and recover is not None:
            found = recover()
            if found is not None:
                return found


def _all_pages(page_of: Callable[[int], list[T]]) -> list[T]:
    """Items of every page, fetched until a short page (GitHub's lists are paginated)."""
    items: list[T] = []
    page = 1
    while True:
        batch = page_of(page)
        items += batch
        if len(batch) < PAGE_SIZE:
            return items
        page += 1


def _error_detail(exc: RequestFailed) -> str:
    """GitHub's own words on a refusal: ``message: error; error`` (errors are strings or
    ``{resource, field, code, message}`` objects), cut short."""
    try:
        data = exc.response.json()
    except ValueError:
        return ""
    if not isinstance(data, dict):
        return ""
    said = [str(e.get("message") or f"{e.get('field', '')} {e.get('code', '')}".strip())
            if isinstance(e, dict) else str(e) for e in data.get("errors") or []]
    message = str(data.get("message") or "")
    return (f"{message}: {'; '.join(said)}" if said else message)[:500]


def _retry_after(exc: RequestFailed) -> timedelta | None:
    """GitHub's ``Retry-After`` in seconds, if it sent one."""
    value = exc.response.headers.get("retry-after", "")
    return timedelta(seconds=int(value)) if value.strip().isdigit() else None


class GitHubApp:
    """The App itself (JWT auth): finds installations and mints installation clients."""

    def __init__(self, app_id: int, private_key: str, base_url: str) -> None:
        self._app_id = app_id
        self._private_key = private_key
        self._base_url = base_url
        # Per-App token cache: githubkit's default is process-global and leaks between apps.
        self._cache = MemCacheStrategy()
        self._slug: str | None = None
        self._gh = GitHub(
            AppAuthStrategy(app_id, private_key), base_url=base_url, timeout=TIMEOUT_S,
            cache_strategy=self._cache, http_cache=False, auto_retry=False,
        )

    def installations(self) -> list[int]:
        """Every installation of the App (all pages)."""
        def page_of(page: int) -> list[int]:
            data = _call(f"installations of the App (page {page})", lambda: (
                self._gh.rest.apps.list_installations(per_page=PAGE_SIZE, page=page).parsed_data))
            return [inst.id for inst in data]

        return _all_pages(page_of)

    def installation_for(self, owner: str, repo: str) -> int:
        """The installation id covering a repository."""
        return self._installation(owner, repo).id

    def app_permissions(self, owner: str, repo: str) -> dict[str, str]:
        """What the installation covering a repository grants the App (``{"issues": "write"}``)."""
        data = self._installation(owner, repo)
        granted = data.permissions.model_dump(exclude_unset=True, exclude_none=True)
        return {name: str(level) for name, level in granted.items()}

    def bot_login(self, owner: str, repo: str) -> str:
        """The login the App writes as (``{slug}[bot]``), learnt from an installation once."""
        if self._slug is None:
            self._installation(owner, repo)
        return f"{self._slug}[bot]"

    def _installation(self, owner: str, repo: str) -> _Installation:
        data = _call(f"installation of {owner}/{repo}",
                     lambda: self._gh.rest.apps.get_repo_installation(owner, repo).parsed_data)
        if data.app_slug:
            self._slug = data.app_slug
        return data

    def host(self, installation_id: int) -> GitHubKitHost:
        """A client acting as the App's installation."""
        return GitHubKitHost(InstallationCredentials(self, installation_id))

    def installation_client(self, installation_id: int) -> GitHub[AppInstallationAuthStrategy]:
        auth = AppInstallationAuthStrategy(self._app_id, self._private_key, installation_id)
        return GitHub(
            auth, base_url=self._base_url, timeout=TIMEOUT_S, cache_strategy=self._cache,
            http_cache=False, auto_retry=False,
        )

    def forget_token(self, client: GitHub[AppInstallationAuthStrategy]) -> None:
        """Drop the client's cached installation token, so its next request mints a new one.

        githubkit keeps the token until shortly before ``expires_at`` and never re-mints on a
        401 by itself. Its cache cannot delete, so the entry is overwritten with an empty value
        (which its auth flow treats as missing) that also expires at once.
        """
        flow = client.auth.get_auth_flow(client)
        if isinstance(flow, AppAuth):
            key = flow._get_installation_cache_key()
            self._cache.get_cache_storage().set(key, "", timedelta(seconds=1))

    def mint_token(self, installation_id: int) -> str:
        # Minting is a POST, but a token minted twice is harmless: retried like a read.
        return str(_call("installation token", lambda: self._gh.rest.apps.create_installation_access_token(
            installation_id).parsed_data.token))


class Credentials(Protocol):
    """Who a ``GitHubKitHost`` acts as: an App installation, or a workflow run's token."""

    def client(self) -> GitHub[Any]: ...
    def token(self) -> str: ...
    def forget(self, client: GitHub[Any]) -> None: ...
    def app_permissions(self, owner: str, repo: str) -> dict[str, str]: ...
    def bot_login(self, owner: str, repo: str) -> str: ...


@dataclass(frozen=True)
class InstallationCredentials:
    """The App's installation: tokens minted with the App's JWT, re-minted after a 401."""

    app: GitHubApp
    installation_id: int

    def client(self) -> GitHub[Any]:
        return self.app.installation_client(self.installation_id)

    def token(self) -> str:
        """A fresh installation token, for git over HTTPS (never put into a URL)."""
        return self.app.mint_token(self.installation_id)

    def forget(self, client: GitHub[Any]) -> None:
        self.app.forget_token(client)

    def app_permissions(self, owner: str, repo: str) -> dict[str, str]:
        """The App's permissions on a repository (asked as the App, with its JWT)."""
        return self.app.app_permissions(owner, repo)

    def bot_login(self, owner: str, repo: str) -> str:
        return self.app.bot_login(owner, repo)


ACTIONS_LOGIN = "github-actions[bot]"  # who a workflow run's GITHUB_TOKEN writes as


@dataclass(frozen=True)
class WorkflowToken:
    """A token handed to a workflow job (``GITHUB_TOKEN``): fixed for the run, nothing to mint.

    What it may do is the workflow's ``permissions:`` block, which the API cannot be asked about
    (``/installation`` needs the App's JWT); ``permissions`` is what the job was given, and a
    request beyond them fails with GitHub's own 403.
    """

    value: str
    base_url: str
    login: str = ACTIONS_LOGIN
    # Unless said: what the example workflow grants its job (examples/workflows/nightcrew.yml),
    # which is what nightcrew needs and nothing more.
    permissions: Mapping[str, str] = field(default_factory=lambda: dict(NEEDED_APP_PERMISSIONS))

    def client(self) -> GitHub[Any]:
        return GitHub(self.value, base_url=self.base_url, timeout=TIMEOUT_S,
                      cache_strategy=MemCacheStrategy(), http_cache=False, auto_retry=False)

    def token(self) -> str:
        return self.value

    def forget(self, client: GitHub[Any]) -> None:
        """Nothing to re-mint: a 401 on a job's own token is final."""

    def app_permissions(self, owner: str, repo: str) -> dict[str, str]:
        return dict(self.permissions)

    def bot_login(self, owner: str, repo: str) -> str:
        return self.login


class GitHubKitHost:
    """``GitHost`` on githubkit, as one App installation or with a workflow run's token."""

    def __init__(self, credentials: Credentials) -> None:
        self._credentials = credentials
        self._gh = credentials.client()

    @property
    def installation_id(self) -> int | None:
        creds = self._credentials
        return creds.installation_id if isinstance(creds, InstallationCredentials) else None

    def _call(self, what: str, request: Callable[[], T], *, write: bool = False,
              recover: Callable[[], T | None] | None = None) -> T:
        return _call(what, request, write=write, recover=recover,
                     reauth=lambda: self._credentials.forget(self._gh))

    def app_permissions(self, owner: str, repo: str) -> dict[str, str]:
        """What nightcrew may do on a repository (the App's grant, or the job's)."""
        return self._credentials.app_permissions(owner, repo)

    def token(self) -> str:
        """A token for git over HTTPS (never put into a URL)."""
        return self._credentials.token()


    def repository(self, owner: str, repo: str) -> Repository:
        data = self._call(f"repository {owner}/{repo}",
                          lambda: self._gh.rest.repos.get(owner, repo).parsed_data)
        return Repository(data.full_name, data.clone_url, data.default_branch)

    def issue(self, task: TaskKey) -> Issue:
        data = self._call(f"issue {task}", lambda: self._gh.rest.issues.get(
            task.owner, task.repo, task.number).parsed_data)
        labels = tuple(
            label if isinstance(label, str) else str(label.name or "") for label in data.labels
        )
        author = data.user.login if data.user else ""
        return Issue(data.number, data.title, data.body or "", data.state, author, labels)

    def permission(self, owner: str, repo: str, user: str) -> str:
        rest = self._gh.rest.repos
        return self._call(f"permission of {user} on {owner}/{repo}", lambda: (
            rest.get_collaborator_permission_level(owner, repo, user).parsed_data.permission))

    def repositories(self) -> list[str]:
        """``owner/repo`` of every repository the installation covers (all pages)."""
        def page_of(page: int) -> list[str]:
            data = self._call(f"repositories of the installation (page {page})", lambda: (
                self._gh.rest.apps.list_repos_accessible_to_installation(
                    per_page=PAGE_SIZE, page=page).parsed_data))
            return [repo.full_name for repo in data.repositories]

        return _all_pages(page_of)

    def issues_with_label(self, owner: str, repo: str, label: str) -> list[int]:
        """Numbers of the open issues (not pull requests) carrying ``label`` (all pages)."""
        def page_of(page: int) -> list[int]:
            data = self._call(f"issues of {owner}/{repo} labeled {label} (page {page})", lambda: cast(
                list[_Issue], self._gh.rest.issues.list_for_repo(
                    owner, repo, labels=label, state="open", per_page=PAGE_SIZE, page=page,
                ).parsed_data))
            return [issue.number for issue in data if not issue.pull_request]

        return _all_pages(page_of)

    def list_comments(self, task: TaskKey) -> list[Comment]:
        """Every comment on the issue, oldest first (all pages)."""
        def page_of(page: int) -> list[Comment]:
            # githubkit's stubs spell the type `list[...]` inside a class with a `list` method,
            # which mypy cannot resolve; it is a list of IssueComment.
            data = cast(list[_IssueComment], self._gh.rest.issues.list_comments(
                task.owner, task.repo, task.number, per_page=PAGE_SIZE, page=page).parsed_data)
            return [Comment(c.id, c.body or "", c.user.login if c.user else "") for c in data]

        comments: list[Comment] = []
        page = 1
        while True:
            batch = self._call(f"comments on {task} (page {page})", functools.partial(page_of, page))
            comments += batch
            if len(batch) < PAGE_SIZE:
                return comments
            page += 1

    def find_comment(self, task: TaskKey, marker: str) -> int | None:
        """The App's own oldest comment on the issue whose body holds ``marker``, if any.

        Only the App's comments count: anyone can paste a marker into a comment of their own.
        """
        bot = self._credentials.bot_login(task.owner, task.repo)
        return next((c.id for c in self.list_comments(task) if c.author == bot and marker in c.body),
                    None)

    def create_comment(self, task: TaskKey, body: str, key: str | None = None) -> int:
        """Comment once, returning the comment's id.

        With a ``key`` the comment is written at most once per issue and key, across retries of
        the whole job: if the App already wrote a comment with that key, its id is returned and
        nothing is written. Without one, a random key still makes in-process retries safe.
        """
        if key is not None and (found := self.find_comment(task, write_marker(key))) is not None:
            return found
        key = key if key is not None else f"once-{secrets.token_hex(8)}"
        marker, text = write_marker(key), with_marker(body, key)
        rest = self._gh.rest.issues
        return self._call(
            f"comment on {task}",
            lambda: rest.create_comment(task.owner, task.repo, task.number, body=text).parsed_data.id,
            write=True, recover=lambda: self.find_comment(task, marker),
        )

    def update_comment(self, task: TaskKey, comment_id: int, body: str, key: str | None = None) -> None:
        """Replace a comment's body (idempotent); pass the comment's ``key`` to keep it findable."""
        text = body if key is None else with_marker(body, key)
        self._call(f"update comment {comment_id} on {task}", lambda: (
            self._gh.rest.issues.update_comment(task.owner, task.repo, comment_id, body=text)))

    def add_labels(self, task: TaskKey, labels: list[str]) -> None:
        self._call(f"labels on {task}", lambda: self._gh.rest.issues.add_labels(
            task.owner, task.repo, task.number, labels=labels))

    def remove_label(self, task: TaskKey, label: str) -> None:
        try:
            self._call(f"label {label!r} on {task}", lambda: self._gh.rest.issues.remove_label(
                task.owner, task.repo, task.number, label))
        except GitHubError as exc:
            if exc.status != 404:  # already gone (perhaps by a retried attempt) is what we wanted
                raise

    def react(self, task: TaskKey, content: Reaction, comment_id: int | None = None) -> None:
        """React (GitHub answers 200 for a reaction that is already there: idempotent)."""
        rest = self._gh.rest.reactions
        if comment_id is None:
            self._call(f"reaction on {task}", lambda: rest.create_for_issue(
                task.owner, task.repo, task.number, content=content))
        else:
            self._call(f"reaction on {task}", lambda: rest.create_for_issue_comment(
                task.owner, task.repo, comment_id, content=content))

    def find_pull(self, owner: str, repo: str, head: str) -> PullRequest | None:
        pulls = self._call(f"pull requests of {owner}/{repo}", lambda: self._gh.rest.pulls.list(
            owner, repo, head=f"{owner}:{head}", state="open").parsed_data)
        for pull in pulls:
            return PullRequest(pull.number, pull.html_url, pull.head.ref, pull.state)
        return None

    def create_pull(
        self, owner: str, repo: str, *, head: str, base: str, title: str, body: str,
        draft: bool = False,
    ) -> PullRequest:
        """Open a pull request from ``head``, or return the open one that already exists.

        After a 5xx the head branch is looked up before trying again, and GitHub's 422 "A pull
        request already exists" is answered with that pull request: one branch, one PR.
        """
        def create() -> PullRequest:
            data = self._gh.rest.pulls.create(
                owner, repo, head=head, base=base, title=title, body=body, draft=draft
            ).parsed_data
            return PullRequest(data.number, data.html_url, data.head.ref, data.state)

        try:
            return self._call(f"pull request on {owner}/{repo}", create, write=True,
                              recover=lambda: self.find_pull(owner, repo, head))
        except GitHubError as exc:
            if exc.status == 422 and (existing := self.find_pull(owner, repo, head)) is not None:
                return existing
            raise

    def read_file(self, owner: str, repo: str, path: str, ref: str | None = None) -> str | None:
        """A text file's content at ``ref`` (default branch if None); None if there is none."""
        what = f"file {path} in {owner}/{repo}"
        rest = self._gh.rest.repos
        try:
            data = self._call(what, lambda: rest.get_content(
                owner, repo, path, ref=ref or UNSET).parsed_data)
        except GitHubError as exc:
            if exc.status == 404:  # absent is an answer, not a failure
                return None
            raise
        if isinstance(data, list) or data.type != "file":
            raise GitHubError(f"{what}: not a file")
        # Files over 1 MB come back with encoding "none" and no content.
        if data.encoding != "base64":
            raise GitHubError(f"{what}: too large to read through the contents API")
        try:
            return base64.b64decode(data.content).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise GitHubError(f"{what}: not UTF-8 text") from exc

    # -- pull request reviews (PullReviews) ----------------------------------------------------

    def bot_login(self, owner: str, repo: str) -> str:
        """The login the App writes as (``{slug}[bot]``)."""
        return self._credentials.bot_login(owner, repo)

    def pull(self, owner: str, repo: str, number: int) -> PullDetails:
        data = self._call(f"pull request {owner}/{repo}#{number}", lambda: self._gh.rest.pulls.get(
            owner, repo, number).parsed_data)
        return PullDetails(
            number=data.number, title=data.title, body=data.body or "", state=data.state,
            draft=bool(data.draft), author=data.user.login, head_ref=data.head.ref,
            head_sha=data.head.sha, base_ref=data.base.ref, base_sha=data.base.sha,
            head_repo=data.head.repo.full_name if data.head.repo else None,
            html_url=data.html_url, base_repo=data.base.repo.full_name,
        )

    def pull_diff(self, owner: str, repo: str, number: int) -> str:
        """The pull request's diff (``git diff base...head``), as GitHub renders it."""
        return self._call(f"diff of {owner}/{repo}#{number}", lambda: self._gh.rest.pulls.get(
            owner, repo, number, headers={"Accept": DIFF_MEDIA}).text)

    def compare_diff(self, owner: str, repo: str, base: str, head: str) -> str:
        """The diff of ``base...head`` (branches or shas of the repository)."""
        return self._call(f"diff {base}...{head} of {owner}/{repo}", lambda: (
            self._gh.rest.repos.compare_commits(owner, repo, f"{base}...{head}",
                                                headers={"Accept": DIFF_MEDIA}).text))

    def pull_commits(self, owner: str, repo: str, number: int) -> list[PullCommit]:
        """The pull request's commits, oldest first (all pages; GitHub stops at 250)."""
        def page_of(page: int) -> list[PullCommit]:
            data = self._call(f"commits of {owner}/{repo}#{number} (page {page})", lambda: cast(
                list[_Commit], self._gh.rest.pulls.list_commits(
                    owner, repo, number, per_page=PAGE_SIZE, page=page).parsed_data))
            return [PullCommit(c.sha, _commit_author(c.author, c.commit.author),
                               c.commit.message, len(c.parents)) for c in data]

        return _all_pages(page_of)

    def reviews(self, owner: str, repo: str, number: int) -> list[Review]:
        """The pull request's reviews, oldest first (all pages; the App's own pending one too)."""
        def page_of(page: int) -> list[Review]:
            data = self._call(f"reviews of {owner}/{repo}#{number} (page {page})", lambda: cast(
                list[_Review], self._gh.rest.pulls.list_reviews(
                    owner, repo, number, per_page=PAGE_SIZE, page=page).parsed_data))
            return [_review(r) for r in data]

        return _all_pages(page_of)

    def create_review(
        self, owner: str, repo: str, number: int, *, commit_id: str, body: str,
        comments: Sequence[Mapping[str, Any]], event: Literal["COMMENT"] | None = "COMMENT",
        key: str | None = None,
    ) -> Review:
        """Post a review pinned to ``commit_id`` (without ``event``: the App's PENDING review).

        Never twice: with a ``key`` the body carries its write marker and a 5xx is followed by a
        look for the App's review with that marker (a submitted review without one gets a
        random key); a pending review is looked for as the App's pending one (GitHub allows one
        per person and pull request). GitHub's 422 (a comment off the diff...) is a
        `GitHubError` whose ``detail`` says why.
        """
        marker: str | None = None
        text = body
        if key is not None or event is not None:
            key = key if key is not None else f"once-{secrets.token_hex(8)}"
            marker, text = write_marker(key), with_marker(body, key)
        data: dict[str, Any] = {"commit_id": commit_id, "body": text,
                                "comments": [dict(c) for c in comments]}
        if event is not None:
            data["event"] = event
        bot = self.bot_login(owner, repo)

        def landed() -> Review | None:
            for review in self.reviews(owner, repo, number):
                if review.author != bot:
                    continue
                if marker is not None and marker in review.body:
                    return review
                if marker is None and review.state == "PENDING":
                    return review
            return None

        rest = self._gh.rest.pulls
        return self._call(f"review on {owner}/{repo}#{number}", lambda: _review(rest.create_review(
            owner, repo, number, data=cast(Any, data)).parsed_data), write=True, recover=landed)

    def delete_pending_review(self, owner: str, repo: str, number: int, review_id: int) -> None:
        """Delete the App's pending review (a review already gone is what was wanted)."""
        try:
            self._call(f"pending review {review_id} on {owner}/{repo}#{number}", lambda: (
                self._gh.rest.pulls.delete_pending_review(owner, repo, number, review_id)))
        except GitHubError as exc:
            if exc.status != 404:
                raise

    def review_comments(self, owner: str, repo: str, number: int) -> list[ReviewComment]:
        """Every inline comment of the pull request's submitted reviews, oldest first."""
        def page_of(page: int) -> list[ReviewComment]:
            data = self._call(f"review comments of {owner}/{repo}#{number} (page {page})", lambda: cast(
                list[_ReviewComment], self._gh.rest.pulls.list_review_comments(
                    owner, repo, number, per_page=PAGE_SIZE, page=page).parsed_data))
            return [_review_comment(c) for c in data]

        return _all_pages(page_of)

    def reply_to_review_comment(self, owner: str, repo: str, number: int, comment_id: int,
                                body: str, key: str | None = None) -> int:
        """Reply in a review comment's thread once; returns the reply's id (see ``create_comment``
        for ``key``: after a 5xx the thread is searched for the reply's marker)."""
        key = key if key is not None else f"once-{secrets.token_hex(8)}"
        marker, text = write_marker(key), with_marker(body, key)
        bot = self.bot_login(owner, repo)

        def landed() -> int | None:
            return next((c.id for c in self.review_comments(owner, repo, number)
                         if c.author == bot and marker in c.body
                         and comment_id in (c.in_reply_to, c.id)), None)

        rest = self._gh.rest.pulls
        return self._call(f"reply to review comment {comment_id} on {owner}/{repo}#{number}",
                          lambda: rest.create_reply_for_review_comment(
                              owner, repo, number, comment_id, body=text).parsed_data.id,
                          write=True, recover=landed)

    def review_threads(self, owner: str, repo: str, number: int) -> list[ReviewThread]:
        """Every review thread of the pull request (GraphQL, all pages), oldest first."""
        threads: list[ReviewThread] = []
        cursor: str | None = None
        while True:
            variables = {"owner": owner, "name": repo, "number": number,
                         "first": THREAD_PAGE_SIZE, "cursor": cursor}
            data = self._graphql(f"review threads of {owner}/{repo}#{number}", THREADS_QUERY, variables)
            pull = ((data.get("repository") or {}).get("pullRequest")) or {}
            page = pull.get("reviewThreads") or {}
            threads += [_thread(node) for node in page.get("nodes") or []]
            info = page.get("pageInfo") or {}
            if not info.get("hasNextPage"):
                return threads
            cursor = info.get("endCursor")

    def resolve_review_thread(self, thread_id: str) -> None:
        """Resolve a review thread (``PRRT_...``); resolving is idempotent, so retried like a read."""
        self._graphql(f"resolve review thread {thread_id}", RESOLVE_MUTATION, {"threadId": thread_id})

    def update_pull_body(self, owner: str, repo: str, number: int, body: str) -> None:
        """Replace the pull request's description (idempotent)."""
        self._call(f"body of {owner}/{repo}#{number}", lambda: self._gh.rest.pulls.update(
            owner, repo, number, body=body))

    def _graphql(self, what: str, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        """One GraphQL request through ``_call``; GraphQL's errors (answered with 200) are a
        `GitHubError` whose ``detail`` lists their messages."""
        def request() -> dict[str, Any]:
            try:
                return self._gh.graphql.request(query, variables)
            except GraphQLFailed as exc:
                detail = "; ".join(e.message for e in exc.response.errors or [])[:500]
                raise GitHubError(f"{what}: GitHub's GraphQL API refused it ({detail})",
                                  detail=detail) from exc

        return self._call(what, request)


DIFF_MEDIA = "application/vnd.github.diff"
THREADS_QUERY = """
query ReviewThreads($owner: String!, $name: String!, $number: Int!, $first: Int!, $cursor: String) {
  repository(owner: $owner, name: $name) {
    pullRequest(number: $number) {
      reviewThreads(first: $first, after: $cursor) {
        nodes {
          id isResolved isOutdated path line
          comments(first: 100) { nodes { databaseId author { login __typename } body } }
        }
        pageInfo { hasNextPage endCursor }
      }
    }
  }
}
"""
RESOLVE_MUTATION = """
mutation ResolveReviewThread($threadId: ID!) {
  resolveReviewThread(input: {threadId: $threadId}) { thread { id isResolved } }
}
"""


def _rest_login(author: Mapping[str, Any] | None) -> str:
    """A GraphQL author as its REST login: GraphQL spells a bot ``nightcrew``, REST ``nightcrew[bot]``."""
    if not author:
        return "ghost"  # GitHub's name for a deleted account
    login = str(author.get("login") or "")
    return f"{login}[bot]" if author.get("__typename") == "Bot" else login


def _thread(node: Mapping[str, Any]) -> ReviewThread:
    comments = tuple(ThreadComment(int(c["databaseId"]), _rest_login(c.get("author")), str(c.get("body") or ""))
                     for c in (node.get("comments") or {}).get("nodes") or [])
    return ReviewThread(str(node["id"]), bool(node.get("isResolved")), bool(node.get("isOutdated")),
                        str(node.get("path") or ""), node.get("line"), comments)


def _missing(value: Any) -> Any:
    """None for githubkit's UNSET (a field GitHub left out)."""
    return None if value is UNSET else value


def _review(data: _Review) -> Review:
    return Review(data.id, data.user.login if data.user else "ghost", data.body, data.state,
                  _missing(data.commit_id) or "")


def _review_comment(data: _ReviewComment) -> ReviewComment:
    return ReviewComment(
        id=data.id, review_id=data.pull_request_review_id,
        author=data.user.login if data.user else "ghost",
        body=data.body, path=data.path, line=_missing(data.line), side=_missing(data.side) or "RIGHT",
        start_line=_missing(data.start_line), start_side=_missing(data.start_side),
        diff_hunk=data.diff_hunk, commit_id=data.commit_id,
        in_reply_to=_missing(data.in_reply_to_id), html_url=data.html_url,
    )


def _commit_author(user: Any, git_author: Any) -> str:
    """The commit author's login if GitHub tied the commit to an account, else its git name."""
    login = getattr(user, "login", None)
    if isinstance(login, str) and login:
        return login
    return str(getattr(git_author, "name", "") or "")
