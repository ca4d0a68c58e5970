"""The GitHub adapter: githubkit with GitHub App auth, timeouts and bounded retries.

``GitHost`` is the seam the rest of nightcrew talks to; ``GitHubKitHost`` is the only code that
calls GitHub's REST API. Errors come out grouped by what the caller does: ``Retryable``
(back off, let the queue retry) or ``GitHubError`` (report and stop).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal, Protocol

from githubkit import AppAuthStrategy, AppInstallationAuthStrategy, GitHub
from githubkit.cache import MemCacheStrategy
from githubkit.exception import (
    GitHubException,
    RateLimitExceeded,
    RequestError,
    RequestFailed,
)
from githubkit.retry import RetryOption
from githubkit.utils import UNSET

from github_app.tasks import TaskKey

Reaction = Literal["+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes"]
TIMEOUT_S = 30.0  # githubkit's default is no timeout at all
MAX_RETRY_WAIT = timedelta(seconds=20)  # longer waits go back to the queue, not a sleeping worker


class GitHubError(Exception):
    """GitHub refused a request; retrying the same request will not help."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class Retryable(GitHubError):
    """GitHub is rate limiting or failing; retry later."""


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


class GitHost(Protocol):
    """What nightcrew needs from GitHub, for one installation."""

    def token(self) -> str: ...
    def repository(self, owner: str, repo: str) -> Repository: ...
    def issue(self, task: TaskKey) -> Issue: ...
    def permission(self, owner: str, repo: str, user: str) -> str: ...
    def create_comment(self, task: TaskKey, body: str) -> int: ...
    def update_comment(self, task: TaskKey, comment_id: int, body: str) -> None: ...
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


def _bounded_retry(exc: GitHubException, count: int) -> RetryOption:
    """Retry rate limits and 5xx briefly; a long wait is the queue's job, not a sleep here."""
    if count >= 2:
        return RetryOption(False)
    if isinstance(exc, RateLimitExceeded):
        wait = exc.retry_after
        return RetryOption(wait <= MAX_RETRY_WAIT, wait)
    if isinstance(exc, RequestFailed) and exc.response.status_code >= 500:
        return RetryOption(True, timedelta(seconds=count + 1))
    return RetryOption(False)


class GitHubApp:
    """The App itself (JWT auth): finds installations and mints installation clients."""

    def __init__(self, app_id: int, private_key: str, base_url: str) -> None:
        self._app_id = app_id
        self._private_key = private_key
        self._base_url = base_url
        # Per-App token cache: githubkit's default is process-global and leaks between apps.
        self._cache = MemCacheStrategy()
        self._gh = GitHub(
            AppAuthStrategy(app_id, private_key), base_url=base_url, timeout=TIMEOUT_S,
            cache_strategy=self._cache, http_cache=False, auto_retry=_bounded_retry,
        )

    def installation_for(self, owner: str, repo: str) -> int:
        """The installation id covering a repository."""
        with _errors(f"installation of {owner}/{repo}"):
            return self._gh.rest.apps.get_repo_installation(owner, repo).parsed_data.id

    def app_permissions(self, owner: str, repo: str) -> dict[str, str]:
        """What the installation covering a repository grants the App (``{"issues": "write"}``)."""
        with _errors(f"installation of {owner}/{repo}"):
            data = self._gh.rest.apps.get_repo_installation(owner, repo).parsed_data
        granted = data.permissions.model_dump(exclude_unset=True, exclude_none=True)
        return {name: str(level) for name, level in granted.items()}

    def host(self, installation_id: int) -> GitHubKitHost:
        """A client acting as the App's installation."""
        return GitHubKitHost(self, installation_id)

    def installation_client(self, installation_id: int) -> GitHub[AppInstallationAuthStrategy]:
        auth = AppInstallationAuthStrategy(self._app_id, self._private_key, installation_id)
        return GitHub(
            auth, base_url=self._base_url, timeout=TIMEOUT_S, cache_strategy=self._cache,
            http_cache=False, auto_retry=_bounded_retry,
        )

    def mint_token(self, installation_id: int) -> str:
        with _errors("installation token"):
            response = self._gh.rest.apps.create_installation_access_token(installation_id)
            return response.parsed_data.token


class GitHubKitHost:
    """``GitHost`` on githubkit, as one installation."""

    def __init__(self, app: GitHubApp, installation_id: int) -> None:
        self._app = app
        self.installation_id = installation_id
        self._gh = app.installation_client(installation_id)

    def app_permissions(self, owner: str, repo: str) -> dict[str, str]:
        """The App's permissions on a repository (asked as the App, with its JWT)."""
        return self._app.app_permissions(owner, repo)

    def token(self) -> str:
        """A fresh installation token, for git over HTTPS (never put into a URL)."""
        return self._app.mint_token(self.installation_id)

    def repository(self, owner: str, repo: str) -> Repository:
        with _errors(f"repository {owner}/{repo}"):
            data = self._gh.rest.repos.get(owner, repo).parsed_data
        return Repository(data.full_name, data.clone_url, data.default_branch)

    def issue(self, task: TaskKey) -> Issue:
        with _errors(f"issue {task}"):
            data = self._gh.rest.issues.get(task.owner, task.repo, task.number).parsed_data
        labels = tuple(
            label if isinstance(label, str) else str(label.name or "") for label in data.labels
        )
        author = data.user.login if data.user else ""
        return Issue(data.number, data.title, data.body or "", data.state, author, labels)

    def permission(self, owner: str, repo: str, user: str) -> str:
        with _errors(f"permission of {user} on {owner}/{repo}"):
            rest = self._gh.rest.repos
            return rest.get_collaborator_permission_level(owner, repo, user).parsed_data.permission

    def create_comment(self, task: TaskKey, body: str) -> int:
        with _errors(f"comment on {task}"):
            rest = self._gh.rest.issues
            return rest.create_comment(task.owner, task.repo, task.number, body=body).parsed_data.id

    def update_comment(self, task: TaskKey, comment_id: int, body: str) -> None:
        with _errors(f"update comment {comment_id} on {task}"):
            self._gh.rest.issues.update_comment(task.owner, task.repo, comment_id, body=body)

    def add_labels(self, task: TaskKey, labels: list[str]) -> None:
        with _errors(f"labels on {task}"):
            self._gh.rest.issues.add_labels(task.owner, task.repo, task.number, labels=labels)

    def remove_label(self, task: TaskKey, label: str) -> None:
        try:
            with _errors(f"label {label!r} on {task}"):
                self._gh.rest.issues.remove_label(task.owner, task.repo, task.number, label)
        except GitHubError as exc:
            if exc.status != 404:  # already gone is what we wanted
                raise

    def react(self, task: TaskKey, content: Reaction, comment_id: int | None = None) -> None:
        with _errors(f"reaction on {task}"):
            rest = self._gh.rest.reactions
            if comment_id is None:
                rest.create_for_issue(task.owner, task.repo, task.number, content=content)
            else:
                rest.create_for_issue_comment(task.owner, task.repo, comment_id, content=content)

    def find_pull(self, owner: str, repo: str, head: str) -> PullRequest | None:
        with _errors(f"pull requests of {owner}/{repo}"):
            pulls = self._gh.rest.pulls.list(
                owner, repo, head=f"{owner}:{head}", state="open"
            ).parsed_data
        for pull in pulls:
            return PullRequest(pull.number, pull.html_url, pull.head.ref, pull.state)
        return None

    def create_pull(
        self, owner: str, repo: str, *, head: str, base: str, title: str, body: str,
        draft: bool = False,
    ) -> PullRequest:
        with _errors(f"pull request on {owner}/{repo}"):
            data = self._gh.rest.pulls.create(
                owner, repo, head=head, base=base, title=title, body=body, draft=draft
            ).parsed_data
        return PullRequest(data.number, data.html_url, data.head.ref, data.state)

    def read_file(self, owner: str, repo: str, path: str, ref: str | None = None) -> str | None:
        """A text file's content at ``ref`` (default branch if None); None if there is none."""
        what = f"file {path} in {owner}/{repo}"
        try:
            with _errors(what):
                rest = self._gh.rest.repos
                data = rest.get_content(owner, repo, path, ref=ref or UNSET).parsed_data
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


class _errors:
    """Translate githubkit's exceptions into ``Retryable`` / ``GitHubError``."""

    def __init__(self, what: str) -> None:
        self._what = what

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        if exc is None:
            return
        if isinstance(exc, RateLimitExceeded):
            raise Retryable(f"{self._what}: rate limited by GitHub", 429) from exc
        if isinstance(exc, RequestFailed):
            status = exc.response.status_code
            message = f"{self._what}: GitHub answered {status}"
            raise (Retryable if status >= 500 else GitHubError)(message, status) from exc
        if isinstance(exc, RequestError):
            raise Retryable(f"{self._what}: cannot reach GitHub ({type(exc).__name__})") from exc
