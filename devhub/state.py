"""In-memory model of the GitHub stand-in, and the GitHub-shaped JSON of each resource.

Mutations happen under `HubState.lock` and return `HubEvent`s (the webhooks GitHub would send);
the server turns those into deliveries. Every resource is rendered by exactly one `*_json`
function so REST answers and webhook payloads agree on shape.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from devhub.git_http import CommitInfo

JSON = dict[str, Any]
PermissionLevel = Literal["admin", "maintain", "write", "triage", "read", "none"]
PERMISSION_LEVELS: tuple[PermissionLevel, ...] = (
    "none",
    "read",
    "triage",
    "write",
    "maintain",
    "admin",
)
REACTION_CONTENTS = ("+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes")
DEFAULT_LABEL_COLOR = "ededed"
DOCS = "https://docs.github.com/rest"


def utcnow() -> datetime:
    """Now, in UTC, without microseconds (GitHub timestamps have second precision)."""
    return datetime.now(UTC).replace(microsecond=0)


def iso(moment: datetime | None) -> str | None:
    """GitHub's timestamp format: `2024-01-31T12:00:00Z`."""
    return None if moment is None else moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def node_id(prefix: str, ident: int) -> str:
    """An opaque, stable GraphQL-style node id."""
    return f"{prefix}_kwDevHub{ident:08d}"


# ---------------------------------------------------------------------------------- model


@dataclass
class User:
    login: str
    id: int
    type: Literal["User", "Bot", "Organization"] = "User"


@dataclass
class Label:
    id: int
    name: str
    color: str = DEFAULT_LABEL_COLOR
    description: str | None = None


@dataclass
class Reaction:
    id: int
    user: User
    content: str
    created_at: datetime


@dataclass
class Comment:
    id: int
    issue_number: int
    user: User
    body: str
    created_at: datetime
    updated_at: datetime
    edits: int = 0
    reactions: list[Reaction] = field(default_factory=list)


@dataclass
class PullInfo:
    """The pull-request half of an issue; git-derived facts are refreshed on every push."""

    head: str
    base: str
    head_sha: str
    base_sha: str
    draft: bool = False
    maintainer_can_modify: bool = False
    merged: bool = False
    commits: int = 0
    additions: int = 0
    deletions: int = 0
    changed_files: int = 0
    fork: Repo | None = None  # the head's repository when it is not the base's (a fork)


@dataclass
class ReviewComment:
    id: int
    review_id: int
    user: User
    path: str
    body: str
    commit_id: str
    diff_hunk: str
    line: int | None
    side: str
    start_line: int | None
    start_side: str | None
    position: int
    created_at: datetime
    in_reply_to: int | None = None  # the thread's first comment, for a reply

    @property
    def thread_root(self) -> int:
        """The id of the first comment of this comment's thread (a thread is named after it)."""
        return self.in_reply_to if self.in_reply_to is not None else self.id


@dataclass
class Review:
    id: int
    pull_number: int
    user: User
    body: str
    state: str
    commit_id: str
    submitted_at: datetime | None
    comments: list[ReviewComment] = field(default_factory=list)


@dataclass
class Issue:
    number: int
    title: str
    body: str | None
    user: User
    created_at: datetime
    updated_at: datetime
    state: Literal["open", "closed"] = "open"
    state_reason: str | None = None
    closed_at: datetime | None = None
    locked: bool = False
    labels: list[str] = field(default_factory=list)
    assignees: list[User] = field(default_factory=list)
    comments: list[Comment] = field(default_factory=list)
    reactions: list[Reaction] = field(default_factory=list)
    pull: PullInfo | None = None
    reviews: list[Review] = field(default_factory=list)
    # Review threads (by the id of their first comment) someone resolved, and who did.
    resolved_threads: dict[int, User] = field(default_factory=dict)

    def review_comments(self, viewer: User | None = None) -> list[ReviewComment]:
        """Inline comments of submitted reviews (and of `viewer`'s own pending one), oldest first."""
        found = [c for r in self.reviews if r.state != "PENDING" or r.user == viewer for c in r.comments]
        return sorted(found, key=lambda c: c.id)


@dataclass
class Repo:
    id: int
    owner: User
    name: str
    default_branch: str
    created_at: datetime
    pushed_at: datetime
    description: str | None = None
    labels: dict[str, Label] = field(default_factory=dict)
    permissions: dict[str, PermissionLevel] = field(default_factory=dict)
    issues: dict[int, Issue] = field(default_factory=dict)
    branch_heads: dict[str, str] = field(default_factory=dict)
    parent: Repo | None = None  # the repository this one is a fork of

    @property
    def full_name(self) -> str:
        """`owner/name`."""
        return f"{self.owner.login}/{self.name}"

    def permission(self, login: str) -> PermissionLevel:
        """The user's role here; the owner is always admin."""
        if login == self.owner.login:
            return "admin"
        return self.permissions.get(login, "none")


@dataclass
class Installation:
    id: int
    account: User
    repos: list[str] | None  # None = every repository of the account, now and later
    created_at: datetime
    permissions: dict[str, str]

    def covers(self, repo: Repo) -> bool:
        """Whether this installation may act on `repo`."""
        if repo.owner.login != self.account.login:
            return False
        return self.repos is None or repo.name in self.repos


@dataclass
class Token:
    """An installation token (`ghs_`) or a user's personal token (`ghp_`)."""

    value: str
    expires_at: datetime | None
    installation_id: int | None = None
    user: User | None = None
    repos: list[str] | None = None  # narrowed at mint time, else the installation's

    def alive(self, moment: datetime) -> bool:
        """Not expired at `moment`."""
        return self.expires_at is None or moment < self.expires_at


@dataclass
class HubEvent:
    """A webhook GitHub would send: event name, action and the rendered objects."""

    name: str
    action: str | None
    repo: Repo | None
    sender: User
    objects: JSON


# ---------------------------------------------------------------------------------- state


class HubState:
    """Every object the stand-in knows, guarded by one re-entrant lock."""

    def __init__(self, base_url: str = "") -> None:
        self.lock = threading.RLock()
        self.base_url = base_url
        self.users: dict[str, User] = {}
        self.repos: dict[str, Repo] = {}
        self.installations: dict[int, Installation] = {}
        self.tokens: dict[str, Token] = {}
        self.on_event: Callable[[HubEvent], None] | None = None
        self._next_id = 1000

    def next_id(self) -> int:
        """A fresh id, unique across all kinds of object."""
        with self.lock:
            self._next_id += 1
            return self._next_id

    def user(self, login: str, kind: Literal["User", "Bot", "Organization"] = "User") -> User:
        """The user named `login`, created on first mention."""
        with self.lock:
            if login not in self.users:
                self.users[login] = User(login=login, id=self.next_id(), type=kind)
            return self.users[login]

    def repo(self, owner: str, name: str) -> Repo | None:
        """The repository `owner/name`, if it exists (GitHub matches names case-insensitively)."""
        return self.repos.get(f"{owner}/{name}".lower())

    def add_repo(self, owner: str, name: str, default_branch: str) -> Repo:
        """Register a new repository owned by `owner`."""
        with self.lock:
            moment = utcnow()
            repo = Repo(
                id=self.next_id(),
                owner=self.user(owner),
                name=name,
                default_branch=default_branch,
                created_at=moment,
                pushed_at=moment,
            )
            self.repos[repo.full_name.lower()] = repo
            return repo

    def installation_for(self, repo: Repo) -> Installation | None:
        """The App installation that covers `repo`, if any."""
        for inst in self.installations.values():
            if inst.covers(repo):
                return inst
        return None

    def installation_of(self, account: str) -> Installation | None:
        """The App installation on `account`, if any."""
        for inst in self.installations.values():
            if inst.account.login == account:
                return inst
        return None

    def token_covers(self, token: Token, repo: Repo) -> bool:
        """Whether `token` may act on `repo`."""
        if token.user is not None:
            return repo.permission(token.user.login) != "none"
        inst = self.installations.get(token.installation_id or -1)
        if inst is None or not inst.covers(repo):
            return False
        return token.repos is None or repo.name in token.repos

    def live_token(self, value: str) -> Token | None:
        """The token with this value if it exists and has not expired."""
        token = self.tokens.get(value)
        if token is None or not token.alive(utcnow()):
            return None
        return token

    def issue(self, repo: Repo, number: int) -> Issue | None:
        """Issue or pull request `number` of `repo`."""
        return repo.issues.get(number)

    def comment(self, repo: Repo, comment_id: int) -> tuple[Issue, Comment] | None:
        """The issue comment with this id in `repo`, with its issue."""
        for issue in repo.issues.values():
            for comment in issue.comments:
                if comment.id == comment_id:
                    return issue, comment
        return None

    def ensure_label(self, repo: Repo, name: str) -> Label:
        """The repo's label called `name`; GitHub creates unknown labels when they are applied."""
        with self.lock:
            for label in repo.labels.values():
                if label.name.lower() == name.lower():
                    return label
            label = Label(id=self.next_id(), name=name)
            repo.labels[name] = label
            return label

    # ------------------------------------------------------------------ mutations

    def emit(self, name: str, action: str | None, repo: Repo | None, sender: User, **objects: Any) -> None:
        """Announce a change; `on_event` turns it into a webhook delivery while the lock is held."""
        if self.on_event is not None:
            self.on_event(HubEvent(name, action, repo, sender, objects))

    def _issue_event(self, repo: Repo, issue: Issue, action: str, sender: User, **extra: Any) -> None:
        """Issue-level changes on a pull request are `pull_request` events, as on GitHub."""
        if issue.pull is not None:
            objects = {"number": issue.number, "pull_request": pull_json(self.base_url, repo, issue)}
            self.emit("pull_request", action, repo, sender, **objects, **extra)
        else:
            self.emit("issues", action, repo, sender, issue=issue_json(self.base_url, repo, issue), **extra)

    def open_issue(self, repo: Repo, title: str, body: str | None, user: User,
                   pull: PullInfo | None = None) -> Issue:
        """Open an issue (or, with `pull`, a pull request) under the next number."""
        with self.lock:
            moment = utcnow()
            issue = Issue(
                number=max(repo.issues, default=0) + 1,
                title=title,
                body=body,
                user=user,
                created_at=moment,
                updated_at=moment,
                pull=pull,
            )
            repo.issues[issue.number] = issue
            self._issue_event(repo, issue, "opened", user)
            return issue

    def add_labels(self, repo: Repo, issue: Issue, names: list[str], actor: User) -> None:
        """Apply labels, creating unknown ones; one `labeled` event per label newly applied."""
        with self.lock:
            for name in names:
                label = self.ensure_label(repo, name)
                if label.name in issue.labels:
                    continue
                issue.labels.append(label.name)
                issue.updated_at = utcnow()
                self._issue_event(repo, issue, "labeled", actor, label=label_json(self.base_url, repo, label))

    def remove_label(self, repo: Repo, issue: Issue, name: str, actor: User) -> bool:
        """Remove a label from the issue; False if it did not carry it."""
        with self.lock:
            match = next((n for n in issue.labels if n.lower() == name.lower()), None)
            if match is None:
                return False
            issue.labels.remove(match)
            issue.updated_at = utcnow()
            label = label_json(self.base_url, repo, repo.labels[match])
            self._issue_event(repo, issue, "unlabeled", actor, label=label)
            return True

    def set_labels(self, repo: Repo, issue: Issue, names: list[str], actor: User) -> None:
        """Replace the issue's labels, announcing each removal and addition."""
        with self.lock:
            wanted = {n.lower() for n in names}
            for current in list(issue.labels):
                if current.lower() not in wanted:
                    self.remove_label(repo, issue, current, actor)
            self.add_labels(repo, issue, names, actor)

    def assign(self, repo: Repo, issue: Issue, logins: list[str], actor: User) -> None:
        """Replace the assignees, announcing each change."""
        with self.lock:
            wanted = [self.user(login) for login in logins]
            for gone in [u for u in issue.assignees if u not in wanted]:
                issue.assignees.remove(gone)
                self._issue_event(repo, issue, "unassigned", actor, assignee=user_json(self.base_url, gone))
            for new in [u for u in wanted if u not in issue.assignees]:
                issue.assignees.append(new)
                self._issue_event(repo, issue, "assigned", actor, assignee=user_json(self.base_url, new))

    def edit_issue(self, repo: Repo, issue: Issue, actor: User, *, title: str | None = None,
                   body: str | None = None) -> None:
        """Change title and/or body; one `edited` event with the old values."""
        with self.lock:
            changes: JSON = {}
            if title is not None and title != issue.title:
                changes["title"] = {"from": issue.title}
                issue.title = title
            if body is not None and body != issue.body:
                changes["body"] = {"from": issue.body or ""}
                issue.body = body
            if changes:
                issue.updated_at = utcnow()
                self._issue_event(repo, issue, "edited", actor, changes=changes)

    def set_state(self, repo: Repo, issue: Issue, state: str, actor: User,
                  reason: str | None = None) -> None:
        """Close or reopen."""
        with self.lock:
            if state == issue.state:
                return
            moment = utcnow()
            issue.state = "closed" if state == "closed" else "open"
            issue.closed_at = moment if issue.state == "closed" else None
            issue.state_reason = (reason or "completed") if issue.state == "closed" else "reopened"
            issue.updated_at = moment
            self._issue_event(repo, issue, "closed" if issue.state == "closed" else "reopened", actor)

    def add_comment(self, repo: Repo, issue: Issue, body: str, actor: User) -> Comment:
        """Comment on an issue or pull request."""
        with self.lock:
            moment = utcnow()
            comment = Comment(self.next_id(), issue.number, actor, body, moment, moment)
            issue.comments.append(comment)
            issue.updated_at = moment
            self._comment_event(repo, issue, comment, "created", actor)
            return comment

    def edit_comment(self, repo: Repo, issue: Issue, comment: Comment, body: str, actor: User) -> None:
        """Replace a comment's body; `edited` carries the old body."""
        with self.lock:
            old = comment.body
            comment.body = body
            comment.edits += 1
            comment.updated_at = utcnow()
            self._comment_event(repo, issue, comment, "edited", actor, changes={"body": {"from": old}})

    def _comment_event(self, repo: Repo, issue: Issue, comment: Comment, action: str, actor: User,
                       **extra: Any) -> None:
        self.emit(
            "issue_comment",
            action,
            repo,
            actor,
            issue=issue_json(self.base_url, repo, issue),
            comment=comment_json(self.base_url, repo, issue, comment),
            **extra,
        )

    def react(self, reactions: list[Reaction], user: User, content: str) -> tuple[Reaction, bool]:
        """Add a reaction unless this user already gave it; (reaction, newly created)."""
        with self.lock:
            for existing in reactions:
                if existing.user == user and existing.content == content:
                    return existing, False
            reaction = Reaction(self.next_id(), user, content, utcnow())
            reactions.append(reaction)
            return reaction, True

    def update_pull_refs(self, repo: Repo, issue: Issue, pull: PullInfo, pusher: User) -> None:
        """Take new git facts for a PR; a moved head is a `synchronize`."""
        with self.lock:
            assert issue.pull is not None
            before = issue.pull.head_sha
            issue.pull = pull
            if pull.head_sha != before:
                issue.updated_at = utcnow()
                self._issue_event(repo, issue, "synchronize", pusher, before=before, after=pull.head_sha)

    def mark_ready(self, repo: Repo, issue: Issue, actor: User) -> None:
        """Take a draft pull request out of draft (`ready_for_review`)."""
        with self.lock:
            assert issue.pull is not None
            if not issue.pull.draft:
                return
            issue.pull.draft = False
            issue.updated_at = utcnow()
            self._issue_event(repo, issue, "ready_for_review", actor)

    def submit_review(self, repo: Repo, issue: Issue, review: Review) -> None:
        """Record a review; a non-pending one is announced with its inline comments."""
        with self.lock:
            issue.reviews.append(review)
            if review.submitted_at is None:
                return
            base, pull = self.base_url, pull_json(self.base_url, repo, issue)
            # Webhooks spell review states in lower case ("commented"), REST in upper case.
            hooked = {**review_json(base, repo, issue, review), "state": review.state.lower()}
            self.emit("pull_request_review", "submitted", repo, review.user,
                      review=hooked, pull_request=pull)
            for comment in review.comments:
                self.emit("pull_request_review_comment", "created", repo, review.user,
                          comment=review_comment_json(base, repo, issue, comment), pull_request=pull)

    def install(self, account: User, repos: list[str] | None, permissions: dict[str, str],
                app_id: int, app_slug: str) -> Installation:
        """Install the App on `account` (all repos, or the named ones)."""
        with self.lock:
            existing = self.installation_of(account.login)
            if existing is not None:
                existing.repos = repos
                return existing
            inst = Installation(self.next_id(), account, repos, utcnow(), dict(permissions))
            self.installations[inst.id] = inst
            covered = [r for r in self.repos.values() if inst.covers(r)]
            minimal = [
                {"id": r.id, "node_id": node_id("R", r.id), "name": r.name,
                 "full_name": r.full_name, "private": True}
                for r in covered
            ]
            self.emit("installation", "created", None, account,
                      installation=installation_json(self.base_url, inst, app_id, app_slug),
                      repositories=minimal, requester=user_json(self.base_url, account))
            return inst


# ------------------------------------------------------------------------------ renderers


def _association(repo: Repo, user: User) -> str:
    if user.login == repo.owner.login:
        return "OWNER"
    if user.type != "Bot" and repo.permission(user.login) != "none":
        return "COLLABORATOR"
    return "NONE"


def user_json(base: str, user: User) -> JSON:
    """A `simple-user`."""
    api = f"{base}/users/{user.login}"
    html = f"{base}/apps/{user.login.removesuffix('[bot]')}" if user.type == "Bot" else f"{base}/{user.login}"
    return {
        "login": user.login,
        "id": user.id,
        "node_id": node_id("U" if user.type != "Bot" else "BOT", user.id),
        "avatar_url": f"{base}/avatars/{user.login}",
        "gravatar_id": "",
        "url": api,
        "html_url": html,
        "followers_url": f"{api}/followers",
        "following_url": f"{api}/following{{/other_user}}",
        "gists_url": f"{api}/gists{{/gist_id}}",
        "starred_url": f"{api}/starred{{/owner}}{{/repo}}",
        "subscriptions_url": f"{api}/subscriptions",
        "organizations_url": f"{api}/orgs",
        "repos_url": f"{api}/repos",
        "events_url": f"{api}/events{{/privacy}}",
        "received_events_url": f"{api}/received_events",
        "type": user.type,
        "user_view_type": "public",
        "site_admin": False,
    }


def repo_json(base: str, repo: Repo) -> JSON:
    """A `full-repository` (also valid as `repository` and `minimal-repository`)."""
    api = f"{base}/repos/{repo.full_name}"
    host = base.split("://", 1)[-1]
    open_issues = sum(1 for i in repo.issues.values() if i.state == "open")
    return {
        "id": repo.id,
        "node_id": node_id("R", repo.id),
        "name": repo.name,
        "full_name": repo.full_name,
        "owner": user_json(base, repo.owner),
        "private": True,
        "visibility": "private",
        "html_url": f"{base}/{repo.full_name}",
        "description": repo.description,
        "fork": repo.parent is not None,
        "url": api,
        **_repo_link_urls(api),
        "git_url": f"git://{host}/{repo.full_name}.git",
        "ssh_url": f"git@{host}:{repo.full_name}.git",
        "clone_url": f"{base}/{repo.full_name}.git",
        "svn_url": f"{base}/{repo.full_name}",
        "mirror_url": None,
        "homepage": None,
        "language": None,
        "license": None,
        "topics": [],
        "is_template": False,
        "forks": 0,
        "forks_count": 0,
        "stargazers_count": 0,
        "watchers": 0,
        "watchers_count": 0,
        "subscribers_count": 1,
        "network_count": 0,
        "size": 1,
        "default_branch": repo.default_branch,
        "open_issues": open_issues,
        "open_issues_count": open_issues,
        "has_issues": True,
        "has_projects": False,
        "has_wiki": False,
        "has_pages": False,
        "has_downloads": True,
        "has_discussions": False,
        "archived": False,
        "disabled": False,
        "allow_forking": False,
        "web_commit_signoff_required": False,
        "pushed_at": iso(repo.pushed_at),
        "created_at": iso(repo.created_at),
        "updated_at": iso(repo.pushed_at),
    }


def _repo_link_urls(api: str) -> JSON:
    """The hypermedia URL templates every repository object carries."""
    names = {
        "archive_url": "/{archive_format}{/ref}",
        "assignees_url": "/assignees{/user}",
        "blobs_url": "/git/blobs{/sha}",
        "branches_url": "/branches{/branch}",
        "collaborators_url": "/collaborators{/collaborator}",
        "comments_url": "/comments{/number}",
        "commits_url": "/commits{/sha}",
        "compare_url": "/compare/{base}...{head}",
        "contents_url": "/contents/{+path}",
        "contributors_url": "/contributors",
        "deployments_url": "/deployments",
        "downloads_url": "/downloads",
        "events_url": "/events",
        "forks_url": "/forks",
        "git_commits_url": "/git/commits{/sha}",
        "git_refs_url": "/git/refs{/sha}",
        "git_tags_url": "/git/tags{/sha}",
        "hooks_url": "/hooks",
        "issue_comment_url": "/issues/comments{/number}",
        "issue_events_url": "/issues/events{/number}",
        "issues_url": "/issues{/number}",
        "keys_url": "/keys{/key_id}",
        "labels_url": "/labels{/name}",
        "languages_url": "/languages",
        "merges_url": "/merges",
        "milestones_url": "/milestones{/number}",
        "notifications_url": "/notifications{?since,all,participating}",
        "pulls_url": "/pulls{/number}",
        "releases_url": "/releases{/id}",
        "stargazers_url": "/stargazers",
        "statuses_url": "/statuses/{sha}",
        "subscribers_url": "/subscribers",
        "subscription_url": "/subscription",
        "tags_url": "/tags",
        "teams_url": "/teams",
        "trees_url": "/git/trees{/sha}",
    }
    return {key: api + suffix for key, suffix in names.items()}


def label_json(base: str, repo: Repo, label: Label) -> JSON:
    """A `label`."""
    return {
        "id": label.id,
        "node_id": node_id("LA", label.id),
        "url": f"{base}/repos/{repo.full_name}/labels/{label.name}",
        "name": label.name,
        "description": label.description,
        "color": label.color,
        "default": False,
        "archived_at": None,
        "archived_by": None,
    }


def reaction_json(base: str, reaction: Reaction) -> JSON:
    """A `reaction`."""
    return {
        "id": reaction.id,
        "node_id": node_id("REA", reaction.id),
        "user": user_json(base, reaction.user),
        "content": reaction.content,
        "created_at": iso(reaction.created_at),
    }


def reaction_rollup(url: str, reactions: list[Reaction]) -> JSON:
    """The `reactions` summary embedded in issues and comments."""
    counts: JSON = {"url": f"{url}/reactions", "total_count": len(reactions)}
    for content in REACTION_CONTENTS:
        counts[content] = sum(1 for r in reactions if r.content == content)
    return counts


def issue_json(base: str, repo: Repo, issue: Issue) -> JSON:
    """An `issue`; pull requests carry the `pull_request` link block."""
    api = f"{base}/repos/{repo.full_name}/issues/{issue.number}"
    kind = "pull" if issue.pull else "issues"
    body: JSON = {
        "id": _issue_id(repo, issue),
        "node_id": node_id("I", _issue_id(repo, issue)),
        "url": api,
        "repository_url": f"{base}/repos/{repo.full_name}",
        "labels_url": f"{api}/labels{{/name}}",
        "comments_url": f"{api}/comments",
        "events_url": f"{api}/events",
        "html_url": f"{base}/{repo.full_name}/{kind}/{issue.number}",
        "timeline_url": f"{api}/timeline",
        "number": issue.number,
        "state": issue.state,
        "state_reason": issue.state_reason,
        "title": issue.title,
        "body": issue.body,
        "user": user_json(base, issue.user),
        "labels": [label_json(base, repo, repo.labels[name]) for name in issue.labels],
        "assignee": user_json(base, issue.assignees[0]) if issue.assignees else None,
        "assignees": [user_json(base, u) for u in issue.assignees],
        "milestone": None,
        "locked": issue.locked,
        "active_lock_reason": None,
        "comments": len(issue.comments),
        "created_at": iso(issue.created_at),
        "updated_at": iso(issue.updated_at),
        "closed_at": iso(issue.closed_at),
        "closed_by": None,
        "author_association": _association(repo, issue.user),
        "performed_via_github_app": None,
        "reactions": reaction_rollup(api, issue.reactions),
    }
    if issue.pull:
        body["draft"] = issue.pull.draft
        body["pull_request"] = _pull_links_for_issue(base, repo, issue)
    return body


def _issue_id(repo: Repo, issue: Issue) -> int:
    """A stable global id for an issue, derived so it never collides with counter ids."""
    return repo.id * 100_000 + issue.number


def _pull_links_for_issue(base: str, repo: Repo, issue: Issue) -> JSON:
    html = f"{base}/{repo.full_name}/pull/{issue.number}"
    merged_at = iso(issue.closed_at) if issue.pull and issue.pull.merged else None
    return {
        "url": f"{base}/repos/{repo.full_name}/pulls/{issue.number}",
        "html_url": html,
        "diff_url": f"{html}.diff",
        "patch_url": f"{html}.patch",
        "merged_at": merged_at,
    }


def comment_json(base: str, repo: Repo, issue: Issue, comment: Comment) -> JSON:
    """An `issue-comment`."""
    api = f"{base}/repos/{repo.full_name}/issues/comments/{comment.id}"
    kind = "pull" if issue.pull else "issues"
    return {
        "id": comment.id,
        "node_id": node_id("IC", comment.id),
        "url": api,
        "html_url": f"{base}/{repo.full_name}/{kind}/{issue.number}#issuecomment-{comment.id}",
        "issue_url": f"{base}/repos/{repo.full_name}/issues/{issue.number}",
        "body": comment.body,
        "user": user_json(base, comment.user),
        "created_at": iso(comment.created_at),
        "updated_at": iso(comment.updated_at),
        "author_association": _association(repo, comment.user),
        "performed_via_github_app": None,
        "reactions": reaction_rollup(api, comment.reactions),
    }


def pull_json(base: str, repo: Repo, issue: Issue) -> JSON:
    """A `pull-request` (a superset of `pull-request-simple`)."""
    pull = issue.pull
    assert pull is not None, "pull_json needs a pull request"
    api = f"{base}/repos/{repo.full_name}/pulls/{issue.number}"
    html = f"{base}/{repo.full_name}/pull/{issue.number}"
    issue_api = f"{base}/repos/{repo.full_name}/issues/{issue.number}"
    statuses = f"{base}/repos/{repo.full_name}/statuses/{pull.head_sha}"
    merged_at = iso(issue.closed_at) if pull.merged else None
    return {
        "url": api,
        "id": _issue_id(repo, issue) + 50_000,
        "node_id": node_id("PR", _issue_id(repo, issue)),
        "html_url": html,
        "diff_url": f"{html}.diff",
        "patch_url": f"{html}.patch",
        "issue_url": issue_api,
        "commits_url": f"{api}/commits",
        "review_comments_url": f"{api}/comments",
        "review_comment_url": f"{base}/repos/{repo.full_name}/pulls/comments{{/number}}",
        "comments_url": f"{issue_api}/comments",
        "statuses_url": statuses,
        "number": issue.number,
        "state": issue.state,
        "locked": issue.locked,
        "title": issue.title,
        "user": user_json(base, issue.user),
        "body": issue.body,
        # GitHub's description (the pinned one) has a pull's label description as a string,
        # never null, unlike a label's own: "" for a label without one.
        "labels": [{**label_json(base, repo, repo.labels[name]),
                    "description": repo.labels[name].description or ""} for name in issue.labels],
        "milestone": None,
        "active_lock_reason": None,
        "created_at": iso(issue.created_at),
        "updated_at": iso(issue.updated_at),
        "closed_at": iso(issue.closed_at),
        "merged_at": merged_at,
        "merge_commit_sha": None,
        "assignee": user_json(base, issue.assignees[0]) if issue.assignees else None,
        "assignees": [user_json(base, u) for u in issue.assignees],
        "requested_reviewers": [],
        "requested_teams": [],
        "head": _branch_json(base, pull.fork or repo, pull.head, pull.head_sha),
        "base": _branch_json(base, repo, pull.base, pull.base_sha),
        "_links": {
            "self": {"href": api},
            "html": {"href": html},
            "issue": {"href": issue_api},
            "comments": {"href": f"{issue_api}/comments"},
            "review_comments": {"href": f"{api}/comments"},
            "review_comment": {"href": f"{base}/repos/{repo.full_name}/pulls/comments{{/number}}"},
            "commits": {"href": f"{api}/commits"},
            "statuses": {"href": statuses},
        },
        "author_association": _association(repo, issue.user),
        "auto_merge": None,
        "draft": pull.draft,
        "merged": pull.merged,
        "mergeable": None if pull.merged else True,
        "rebaseable": None if pull.merged else True,
        "mergeable_state": "clean" if issue.state == "open" else "unknown",
        "merged_by": None,
        "comments": len(issue.comments),
        "review_comments": len(issue.review_comments()),
        "maintainer_can_modify": pull.maintainer_can_modify,
        "commits": pull.commits,
        "additions": pull.additions,
        "deletions": pull.deletions,
        "changed_files": pull.changed_files,
    }


def _branch_json(base: str, repo: Repo, ref: str, sha: str) -> JSON:
    return {
        "label": f"{repo.owner.login}:{ref}",
        "ref": ref,
        "sha": sha,
        "user": user_json(base, repo.owner),
        "repo": repo_json(base, repo),
    }


def review_json(base: str, repo: Repo, issue: Issue, review: Review) -> JSON:
    """A `pull-request-review`."""
    html = f"{base}/{repo.full_name}/pull/{issue.number}#pullrequestreview-{review.id}"
    pr_api = f"{base}/repos/{repo.full_name}/pulls/{issue.number}"
    body: JSON = {
        "id": review.id,
        "node_id": node_id("PRR", review.id),
        "user": user_json(base, review.user),
        "body": review.body,
        "state": review.state,
        "html_url": html,
        "pull_request_url": pr_api,
        "_links": {"html": {"href": html}, "pull_request": {"href": pr_api}},
        "commit_id": review.commit_id,
        "author_association": _association(repo, review.user),
    }
    if review.submitted_at is not None:
        body["submitted_at"] = iso(review.submitted_at)
    return body


def review_comment_json(base: str, repo: Repo, issue: Issue, comment: ReviewComment) -> JSON:
    """A `pull-request-review-comment`."""
    api = f"{base}/repos/{repo.full_name}/pulls/comments/{comment.id}"
    html = f"{base}/{repo.full_name}/pull/{issue.number}#discussion_r{comment.id}"
    pr_api = f"{base}/repos/{repo.full_name}/pulls/{issue.number}"
    body: JSON = {
        "url": api,
        "pull_request_review_id": comment.review_id,
        "id": comment.id,
        "node_id": node_id("PRRC", comment.id),
        "diff_hunk": comment.diff_hunk,
        "path": comment.path,
        "position": comment.position,
        "original_position": comment.position,
        "commit_id": comment.commit_id,
        "original_commit_id": comment.commit_id,
        "user": user_json(base, comment.user),
        "body": comment.body,
        "created_at": iso(comment.created_at),
        "updated_at": iso(comment.created_at),
        "html_url": html,
        "pull_request_url": pr_api,
        "author_association": _association(repo, comment.user),
        "_links": {"self": {"href": api}, "html": {"href": html}, "pull_request": {"href": pr_api}},
        "start_line": comment.start_line,
        "original_start_line": comment.start_line,
        "start_side": comment.start_side,
        "line": comment.line,
        "original_line": comment.line,
        "side": comment.side,
        "subject_type": "line",
        "reactions": reaction_rollup(api, []),
    }
    if comment.in_reply_to is not None:
        body["in_reply_to_id"] = comment.in_reply_to
    return body


def commit_json(base: str, repo: Repo, commit: CommitInfo, users: Mapping[str, User]) -> JSON:
    """A `commit`; its `author`/`committer` are the users GitHub ties the emails to, if any."""
    api = f"{base}/repos/{repo.full_name}/commits/{commit.sha}"

    def person(name: str, email: str, date: str) -> JSON:
        return {"name": name, "email": email, "date": _utc(date)}

    return {
        "url": api,
        "sha": commit.sha,
        "node_id": node_id("C", int(commit.sha[:7], 16)),
        "html_url": f"{base}/{repo.full_name}/commit/{commit.sha}",
        "comments_url": f"{api}/comments",
        "commit": {
            "url": f"{base}/repos/{repo.full_name}/git/commits/{commit.sha}",
            "author": person(commit.author_name, commit.author_email, commit.author_date),
            "committer": person(commit.committer_name, commit.committer_email, commit.committer_date),
            "message": commit.message,
            "comment_count": 0,
            "tree": {"sha": commit.tree, "url": f"{base}/repos/{repo.full_name}/git/trees/{commit.tree}"},
            "verification": {"verified": False, "reason": "unsigned", "payload": None,
                             "signature": None, "verified_at": None},
        },
        "author": _email_user(base, commit.author_email, users),
        "committer": _email_user(base, commit.committer_email, users),
        "parents": [{"sha": p, "url": f"{base}/repos/{repo.full_name}/commits/{p}",
                     "html_url": f"{base}/{repo.full_name}/commit/{p}"} for p in commit.parents],
    }


def noreply_email(user: User) -> str:
    """The `{id}+{login}@users.noreply.github.com` address GitHub ties to `user`."""
    return f"{user.id}+{user.login}@users.noreply.github.com"


def _email_user(base: str, email: str, users: Mapping[str, User]) -> JSON | None:
    """The user a commit email belongs to (GitHub knows only its noreply form here), or None."""
    local, _, domain = email.partition("@")
    if domain != "users.noreply.github.com":
        return None
    login = local.partition("+")[2] or local
    user = users.get(login)
    return None if user is None else user_json(base, user)


def _utc(stamp: str) -> str:
    """A git ISO-8601 date (`2024-01-31T12:00:00+01:00`) as GitHub's UTC `...Z` form."""
    return iso(datetime.fromisoformat(stamp).astimezone(UTC)) or stamp


def installation_json(base: str, inst: Installation, app_id: int, app_slug: str) -> JSON:
    """An `installation`."""
    return {
        "id": inst.id,
        "account": user_json(base, inst.account),
        "repository_selection": "all" if inst.repos is None else "selected",
        "access_tokens_url": f"{base}/app/installations/{inst.id}/access_tokens",
        "repositories_url": f"{base}/installation/repositories",
        "html_url": f"{base}/settings/installations/{inst.id}",
        "app_id": app_id,
        "app_slug": app_slug,
        "client_id": f"Iv1.devhub{app_id}",
        "target_id": inst.account.id,
        "target_type": inst.account.type,
        "permissions": dict(inst.permissions),
        "events": ["issues", "issue_comment", "pull_request", "pull_request_review", "push"],
        "created_at": iso(inst.created_at),
        "updated_at": iso(inst.created_at),
        "single_file_name": None,
        "has_multiple_single_files": False,
        "single_file_paths": [],
        "suspended_by": None,
        "suspended_at": None,
    }


def permission_json(base: str, repo: Repo, user: User) -> JSON:
    """A `repository-collaborator-permission`."""
    role = repo.permission(user.login)
    # The legacy `permission` field folds the newer roles into admin/write/read/none.
    legacy = {"maintain": "write", "triage": "read"}.get(role, role)
    rank = PERMISSION_LEVELS.index(role)
    flags = {
        "admin": rank >= PERMISSION_LEVELS.index("admin"),
        "maintain": rank >= PERMISSION_LEVELS.index("maintain"),
        "push": rank >= PERMISSION_LEVELS.index("write"),
        "triage": rank >= PERMISSION_LEVELS.index("triage"),
        "pull": rank >= PERMISSION_LEVELS.index("read"),
    }
    collaborator = {**user_json(base, user), "permissions": flags, "role_name": role}
    return {"permission": legacy, "role_name": role, "user": collaborator}
