"""Trust: who may make nightcrew work, decided from facts fetched elsewhere (pure).

Three small validators, each answering ``None`` (fine) or a ``Refusal`` with the reason the
person will read on the issue; ``refusal`` asks GitHub for the two facts a command needs (the
actor's permission, what nightcrew was granted) and applies the repository's policy to them,
and ``pull_request_ask`` does the same for a review or revision asked of a pull request.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from github_app.github import GitHost, ReviewHost
    from github_app.repo_config import RepoConfig
    from github_app.tasks import TaskKey

# GitHub's collaborator permission levels, weakest first.
LEVELS = ("none", "read", "triage", "write", "maintain", "admin")
# What the App must be granted on a repository to do a task end to end.
NEEDED_APP_PERMISSIONS: Mapping[str, str] = {
    "issues": "write", "pull_requests": "write", "contents": "write", "metadata": "read",
}


@dataclass(frozen=True)
class Refusal:
    reason: str


def check_actor(
    actor: str, permission: str, *, min_permission: str = "write",
    allow_users: Collection[str] = (), deny_users: Collection[str] = (),
) -> Refusal | None:
    """The actor needs ``min_permission`` or a place on the allow-list; the deny-list wins."""
    if actor.lower() in {u.lower() for u in deny_users}:
        return Refusal(f"@{actor} is not allowed to start nightcrew on this repository.")
    if actor.lower() in {u.lower() for u in allow_users}:
        return None
    if _rank(permission) >= _rank(min_permission):
        return None
    return Refusal(
        f"@{actor} nightcrew only starts work for people with {min_permission} access or more "
        f"to this repository (yours: {permission})."
    )


def check_app_permissions(granted: Mapping[str, str], needed: Mapping[str, str] = NEEDED_APP_PERMISSIONS) -> Refusal | None:
    """The installation must grant every permission a task needs (write implies read)."""
    missing = [
        f"{name}: {level}" for name, level in sorted(needed.items())
        if _rank_access(granted.get(name)) < _rank_access(level)
    ]
    if not missing:
        return None
    return Refusal(
        "The nightcrew App is missing permissions on this repository ("
        + ", ".join(missing) + "). An organization owner can grant them in the App's "
        "installation settings."
    )


def check_same_repository(base: str, head: str | None) -> Refusal | None:
    """Work happens only on branches of the base repository, never on a fork's."""
    if head is not None and head.lower() == base.lower():
        return None
    where = f"the fork {head}" if head else "a deleted fork"
    return Refusal(f"This pull request comes from {where}; nightcrew only pushes to branches "
                   f"of {base}.")


def _rank(level: str) -> int:
    return LEVELS.index(level) if level in LEVELS else 0


def _rank_access(level: str | None) -> int:
    return {"read": 1, "write": 2, "admin": 3}.get(level or "", 0)


def refusal(task: TaskKey, host: GitHost, actor: str, config: RepoConfig) -> Refusal | None:
    """The actor's permission (per the repo's ``allowed:`` policy), then nightcrew's own."""
    policy = config.allowed
    refused = check_actor(
        actor, host.permission(task.owner, task.repo, actor), min_permission=policy.min_permission,
        allow_users=policy.users, deny_users=policy.deny_users,
    )
    return refused or check_app_permissions(host.app_permissions(task.owner, task.repo))


@dataclass(frozen=True)
class PullRequestAsk:
    """A review or revision asked of a pull request, judged: whether it is done, and who is told."""

    own: bool  # nightcrew opened the pull request
    head_ref: str
    off: bool = False  # an automatic review the repository's ``review:`` config turns off
    refusal: Refusal | None = None  # the asker may not
    answer: bool = False  # a person asked: a refusal is said in the thread


def pull_request_ask(task: TaskKey, host: ReviewHost, kind: str, trigger: str, actor: str,
                     config: RepoConfig) -> PullRequestAsk:
    """Opened or marked ready (``trigger`` ``pull_request.*``): nobody typed, so the review is
    the repository's ``review.self_review`` for nightcrew's own pull request and
    ``review.on_open`` for anyone else's. Anything a person asked (a command, a review asking
    for changes) is checked like any command."""
    pr = host.pull(task.owner, task.repo, task.number)
    own = pr.author.lower() == host.bot_login(task.owner, task.repo).lower()
    automatic = kind == "review" and trigger.startswith("pull_request.")
    if automatic and not (config.review.self_review if own else config.review.on_open):
        return PullRequestAsk(own, pr.head_ref, off=True)
    refused = None if automatic and own else refusal(task, host, actor, config)
    return PullRequestAsk(own, pr.head_ref, refusal=refused, answer=not automatic)
