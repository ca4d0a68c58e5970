"""Routing: a webhook event → a command for nightcrew, an installation change, or a reason to ignore.

Pure: the input is a decoded payload (or the typed event ``events.parse_event`` made of it);
nothing here talks to the network.

What starts or steers work:
- ``issues.labeled`` with the trigger label, ``issues.assigned`` to ``{app_slug}[bot]`` → start.
  Only on issues: a payload whose issue is a pull request is ignored (GitHub sends PR labels as
  ``pull_request.labeled``, which nightcrew does not act on); on a PR, comment ``/nightcrew fix``.
- ``issue_comment.created`` with a ``/nightcrew VERB`` line or an ``@{app_slug}`` mention. On a
  pull request, ``/nightcrew fix …`` (or a bare ``/nightcrew``, or a mention) → revise, the text
  in ``args``: intake checks the PR is nightcrew's and replies otherwise. On an issue it is start.
  Every other verb (review, cancel, status, …) means the same on both.
- ``pull_request.opened``/``ready_for_review`` → review, ``trigger`` naming the action, for any
  PR whose sender is a person or nightcrew itself (``own_pull_request`` says whether nightcrew
  wrote it; whether a person's PR is reviewed is the repo config's ``review.on_open``, which
  intake reads: routing cannot). Drafts are reviewed once marked ready. ``synchronize`` is
  ignored: reviewing every push floods people and costs money; ``/nightcrew review`` asks.
- ``pull_request_review.submitted`` with changes requested by a person, on a PR nightcrew
  authored → revise; the task is the PR, ``review_id`` the review.
- ``pull_request_review_comment.created`` on a PR nightcrew authored → revise only if it
  mentions ``@{app_slug}`` or has a ``/nightcrew fix`` line (its text in ``args``, its id in
  ``review_comment_id``). A plain review comment belongs to a review whose ``submitted`` event
  routes already; acting on each comment would start one revision per comment.
- ``installation``/``installation_repositories`` → an ``InstallationChange``, not a task.

``trigger`` is the webhook event and action (``pull_request_review.submitted``) of a command
from a pull_request, pull_request_review or pull_request_review_comment event, and empty for
one from an issue or an issue comment.

No loops: whatever a bot sends (nightcrew included) never starts or steers work, except
nightcrew opening (or marking ready) a PR, which is what asks for a review of its own PR.
Installation changes count whoever sends them: they are bookkeeping, not work.

Hostile text stays inert the same way in issue and review comments: only the scanned top is
read, invisible characters are dropped, quoted (``>``) and fenced lines are not commands.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from github_app.ingress.events import (
    Account,
    InstallationEvent,
    InstallationRepositoriesEvent,
    IssueCommentEvent,
    IssuesEvent,
    OtherEvent,
    PullRequest,
    PullRequestEvent,
    PullRequestReviewCommentEvent,
    PullRequestReviewEvent,
    Repository,
    WebhookEvent,
    event_from_payload,
)
from github_app.ingress.events import MalformedPayload as MalformedPayload  # re-exported for ingress
from github_app.tasks import TaskKey

CommandKind = Literal[
    "start", "review", "cancel", "pause", "resume", "retry", "budget", "approve", "status", "help",
    "revise",
]
# The verbs a person may type after /nightcrew; "revise" is fix on a pull request, or a review.
COMMANDS: tuple[CommandKind, ...] = (
    "start", "review", "cancel", "pause", "resume", "retry", "budget", "approve", "status", "help",
)
_VERBS: dict[str, CommandKind] = {**{kind: kind for kind in COMMANDS}, "fix": "start"}
# Per line, so the patterns never run across lines (a body of newlines stays linear).
_SLASH = re.compile(
    r"\s*/nightcrew(?![\w-])(?:\s+(?P<verb>[A-Za-z][\w-]*))?(?P<args>.*)", re.IGNORECASE
)
# Commands belong at the top of a comment: a pasted 1 MB log is not read to its end.
SCAN_CHARS = 16 * 1024
SCAN_LINES = 200
# Invisible characters that survive copy-paste and would hide a command from the patterns.
_INVISIBLE_CHARS = "\u200b\u200c\u200d\u2060\ufeff\u00ad"
_INVISIBLE = re.compile(f"[{_INVISIBLE_CHARS}]+")
# Punctuation that joins a mention to its request: "@nightcrew, please…", "(@nightcrew) go".
_AFTER_MENTION = " \t,:;!?.)]\u2013\u2014-"


@dataclass(frozen=True)
class Command:
    """Something a person (or, for reviews of its own PRs, nightcrew) asked about one task."""

    kind: CommandKind
    task: TaskKey
    actor: str
    installation_id: int | None
    args: str = ""
    comment_id: int | None = None  # the issue comment that asked (intake reacts to it)
    is_pull_request: bool = False
    trigger: str = ""  # "pull_request.opened", …: the event that asked; "" for issues, comments
    own_pull_request: bool = False  # the pull request is nightcrew's (its author is the App)
    review_id: int | None = None  # the review that requested changes
    review_comment_id: int | None = None  # the inline review comment that asked


@dataclass(frozen=True)
class Ignore:
    """Why an event needs no work; logged, and answered with 202."""

    reason: str


@dataclass(frozen=True)
class UnknownCommand:
    """A ``/nightcrew`` line with a verb we do not know: reply with the valid ones."""

    verb: str
    task: TaskKey
    actor: str
    installation_id: int | None
    comment_id: int | None


@dataclass(frozen=True)
class InstallationChange:
    """The App was installed, removed, suspended, or its repositories changed: no task."""

    action: str
    installation_id: int
    account: str | None
    repositories_added: tuple[str, ...] = ()
    repositories_removed: tuple[str, ...] = ()
    kind: Literal["installation"] = "installation"


Route = Command | Ignore | UnknownCommand | InstallationChange


@dataclass(frozen=True)
class SlashCommand:
    """A request read from a comment; an ``@nightcrew`` mention reads as ``fix``."""

    verb: str
    args: str


def parse_slash_command(body: str) -> SlashCommand | None:
    """The first ``/nightcrew VERB ARGS`` line of a comment; a bare ``/nightcrew`` means fix."""
    for line in _live_lines(body):
        slash = _slash_in(line)
        if slash is not None:
            return slash
    return None


def parse_request(body: str, app_slug: str) -> SlashCommand | None:
    """A slash command anywhere in the scanned top, else the text after the first mention."""
    mention: SlashCommand | None = None
    lines = list(_live_lines(body))
    for index, line in enumerate(lines):
        slash = _slash_in(line)
        if slash is not None:
            return slash
        if mention is None and "@" in line and (found := _mention_pattern(app_slug).search(line)):
            rest = "\n".join([line[found.end():], *lines[index + 1:]])
            mention = SlashCommand("fix", rest.lstrip(_AFTER_MENTION).strip())
    return mention


def route(
    event: str,
    payload: Mapping[str, Any] | WebhookEvent,
    *,
    trigger_label: str = "nightcrew",
    app_slug: str = "nightcrew",
    bot_login: str | None = None,
) -> Route:
    """Decide what a delivery asks of nightcrew; MalformedPayload if it lacks needed fields.

    ``bot_login``: who nightcrew writes as, ``{app_slug}[bot]`` unless said (in a workflow run
    with its ``GITHUB_TOKEN``, ``github-actions[bot]``); people mention it as ``@{app_slug}``.
    """
    parsed = event_from_payload(event, payload) if isinstance(payload, Mapping) else payload
    bot_login = bot_login or f"{app_slug}[bot]"
    if isinstance(parsed, IssuesEvent):
        return _route_issue(parsed, trigger_label, bot_login)
    if isinstance(parsed, IssueCommentEvent):
        return _route_comment(parsed, app_slug, bot_login)
    if isinstance(parsed, PullRequestEvent):
        return _route_pull_request(parsed, bot_login)
    if isinstance(parsed, PullRequestReviewEvent):
        return _route_review(parsed, bot_login)
    if isinstance(parsed, PullRequestReviewCommentEvent):
        return _route_review_comment(parsed, app_slug, bot_login)
    if isinstance(parsed, InstallationEvent | InstallationRepositoriesEvent):
        return _installation_change(parsed)
    return _route_other(parsed)


def _route_issue(event: IssuesEvent, trigger_label: str, bot_login: str) -> Route:
    if event.action not in ("labeled", "assigned"):
        return Ignore(f"issues.{event.action} is not handled")
    if (from_bot := _from_bot(event.sender)) is not None:
        return from_bot
    if event.action == "labeled":
        label = event.label.name if event.label is not None else None
        if label != trigger_label:
            return Ignore(f"label {label!r} is not the trigger label {trigger_label!r}")
    else:
        assignee = event.assignee.login if event.assignee is not None else None
        if not _same_login(assignee, bot_login):
            return Ignore(f"assigned to {assignee!r}, not {bot_login!r}")
    if event.issue.pull_request is not None:
        return Ignore("labels and assignments start work on issues only; "
                      "on a pull request, comment /nightcrew fix")
    if event.issue.state == "closed":
        return Ignore("the issue is closed")
    return Command(
        kind="start",
        task=_task(event.repository, event.issue.number),
        actor=event.sender.login,
        installation_id=_installation_id(event),
    )


def _route_comment(event: IssueCommentEvent, app_slug: str, bot_login: str) -> Route:
    if event.action != "created":
        return Ignore(f"issue_comment.{event.action} does not trigger work (edits never re-trigger)")
    if (from_bot := _from_bot(event.sender, event.comment.user)) is not None:
        return from_bot
    request = parse_request(event.comment.body, app_slug)
    if request is None:
        return Ignore(f"the comment has no /nightcrew command and no @{app_slug} mention")
    task = _task(event.repository, event.issue.number)
    kind = _VERBS.get(request.verb)
    if kind is None:
        return UnknownCommand(
            request.verb, task, event.sender.login, _installation_id(event), event.comment.id
        )
    on_pull_request = event.issue.pull_request is not None
    if on_pull_request and kind == "start":
        kind = "revise"  # on a PR, fix means: revise this PR (intake checks it is nightcrew's)
    author = event.issue.user.login if event.issue.user is not None else None
    return Command(
        kind=kind,
        task=task,
        actor=event.sender.login,
        installation_id=_installation_id(event),
        args=request.args,
        comment_id=event.comment.id,
        is_pull_request=on_pull_request,
        own_pull_request=on_pull_request and _same_login(author, bot_login),
    )


def _route_pull_request(event: PullRequestEvent, bot_login: str) -> Route:
    if event.action == "synchronize":
        return Ignore("pull_request.synchronize: pushes are not reviewed (each push would be a "
                      "paid review and a round of comments); comment /nightcrew review to ask")
    if event.action not in ("opened", "ready_for_review"):
        return Ignore(f"pull_request.{event.action} is not handled")
    # nightcrew[bot] opening its own PR is the main review trigger: only other bots are ignored.
    if not _same_login(event.sender.login, bot_login):
        if (from_bot := _from_bot(event.sender)) is not None:
            return from_bot
    if event.pull_request.draft is True:
        return Ignore(f"pull request #{event.number} is a draft; drafts are reviewed when "
                      "marked ready")
    if event.pull_request.state != "open":
        return Ignore(f"pull request #{event.number} is {event.pull_request.state}")
    return _pr_command("review", event, event.number, bot_login)


def _route_review(event: PullRequestReviewEvent, bot_login: str) -> Route:
    if event.action != "submitted":
        return Ignore(f"pull_request_review.{event.action} is not handled")
    if (skip := _review_skip(event, bot_login)) is not None:
        return skip
    state = event.review.state.lower()
    if state != "changes_requested":
        return Ignore(f"a review in state {state!r} asks for no changes")
    command = _pr_command("revise", event, event.pull_request.number, bot_login)
    return dataclasses.replace(command, review_id=event.review.id)


def _route_review_comment(
    event: PullRequestReviewCommentEvent, app_slug: str, bot_login: str,
) -> Route:
    if event.action != "created":
        return Ignore(f"pull_request_review_comment.{event.action} does not trigger work")
    if (skip := _review_skip(event, bot_login, event.comment.user)) is not None:
        return skip
    request = parse_request(event.comment.body, app_slug)
    if request is None:
        return Ignore(f"a review comment without @{app_slug} or /nightcrew fix is part of a "
                      "review, which its pull_request_review.submitted event routes")
    if request.verb != "fix":
        return Ignore(f"/nightcrew {request.verb} is not read in a review comment (only fix "
                      "and mentions are); comment on the pull request's conversation")
    command = _pr_command("revise", event, event.pull_request.number, bot_login)
    return dataclasses.replace(command, args=request.args, review_comment_id=event.comment.id)


def _installation_change(
    event: InstallationEvent | InstallationRepositoriesEvent,
) -> InstallationChange:
    if isinstance(event, InstallationRepositoriesEvent):
        added, removed = event.repositories_added, event.repositories_removed
    else:
        # installation.created lists what it grants, installation.deleted what it took away.
        listed = event.repositories or []
        added = listed if event.action == "created" else []
        removed = listed if event.action == "deleted" else []
    account = event.installation.account
    return InstallationChange(
        action=event.action,
        installation_id=event.installation.id,
        account=account.login if account is not None else None,
        repositories_added=tuple(r.full_name for r in added),
        repositories_removed=tuple(r.full_name for r in removed),
    )


def _route_other(event: OtherEvent) -> Ignore:
    if event.name == "ping":
        return Ignore("ping")
    return Ignore(f"event {event.name!r} is not handled")


def _review_skip(
    event: PullRequestReviewEvent | PullRequestReviewCommentEvent,
    bot_login: str,
    author: Account | None = None,
) -> Ignore | None:
    """Why a review (comment) does not ask nightcrew to revise, or None if it does."""
    from_bot = _from_bot(event.sender, author)
    return from_bot if from_bot is not None else _not_nightcrew_pr(event.pull_request, bot_login)


def _pr_command(
    kind: CommandKind,
    event: PullRequestEvent | PullRequestReviewEvent | PullRequestReviewCommentEvent,
    number: int,
    bot_login: str,
) -> Command:
    return Command(
        kind=kind,
        task=_task(event.repository, number),
        actor=event.sender.login,
        installation_id=_installation_id(event),
        is_pull_request=True,
        trigger=f"{_EVENT_NAMES[type(event)]}.{event.action}",
        own_pull_request=_same_login(event.pull_request.user.login, bot_login),
    )


_EVENT_NAMES: dict[type, str] = {
    PullRequestEvent: "pull_request",
    PullRequestReviewEvent: "pull_request_review",
    PullRequestReviewCommentEvent: "pull_request_review_comment",
}


def _from_bot(*accounts: Account | None) -> Ignore | None:
    for account in accounts:
        if account is not None and account.is_bot:
            return Ignore(f"sent by a bot ({account.login}); bots never trigger work, "
                          "nightcrew itself included")
    return None


def _not_nightcrew_pr(pull_request: PullRequest, bot_login: str) -> Ignore | None:
    author = pull_request.user.login
    if _same_login(author, bot_login):
        return None
    return Ignore(f"pull request #{pull_request.number} is by {author!r}, not by {bot_login!r}")


def _same_login(login: str | None, other: str) -> bool:
    # GitHub logins are case-insensitive.
    return login is not None and login.lower() == other.lower()


def _task(repository: Repository, number: int) -> TaskKey:
    owner, _, repo = repository.full_name.partition("/")
    return TaskKey(owner, repo, number)


def _installation_id(event: IssuesEvent | IssueCommentEvent | PullRequestEvent
                     | PullRequestReviewEvent | PullRequestReviewCommentEvent) -> int | None:
    return event.installation.id if event.installation is not None else None


def _live_lines(body: str) -> Iterator[str]:
    """The top of a comment as typed prose: no quoted (``>``) lines, nothing inside fences."""
    text = body[:SCAN_CHARS]
    if any(char in text for char in _INVISIBLE_CHARS):
        text = _INVISIBLE.sub("", text)
    in_fence = False
    for line in text.split("\n", SCAN_LINES)[:SCAN_LINES]:
        stripped = line.lstrip()
        if stripped.startswith(("```", "~~~")):
            in_fence = not in_fence
        elif not in_fence and not stripped.startswith(">"):
            yield line.rstrip("\r")


def _slash_in(line: str) -> SlashCommand | None:
    match = _SLASH.fullmatch(line)
    if match is None:
        return None
    return SlashCommand(verb=(match["verb"] or "fix").lower(), args=match["args"].strip())


@functools.lru_cache(maxsize=8)
def _mention_pattern(app_slug: str) -> re.Pattern[str]:
    # Not inside a longer word, login, e-mail address or inline code (me@nightcrew.dev,
    # @nightcrew-staging, `@nightcrew`).
    # The look-behind comes after the literal so a search skips ahead fast (a line of "@@@…").
    slug = re.escape(app_slug)
    return re.compile(
        rf"@{slug}(?<![\w.@/`-]@{slug})(?:\[bot\])?(?![\w-]|\.\w)", re.IGNORECASE
    )


def help_text(unknown_verb: str | None) -> str:
    """The reply to `/nightcrew help` or to a command nightcrew does not know."""
    verbs = ", ".join(f"`{verb}`" for verb in ("fix", *COMMANDS[1:]))
    lead = f"I don't know `/nightcrew {unknown_verb}`. " if unknown_verb else ""
    return f"{lead}Commands: {verbs} — e.g. `/nightcrew fix keep the change small`."


# The verbs that steer a task already asked for (intake and the Action's intake act on them).
STEERING: frozenset[str] = frozenset({"cancel", "pause", "resume", "retry", "budget", "approve", "status"})
_BUDGET = re.compile(r"^\s*(\+)?\s*\$?\s*(\d+(?:\.\d{1,2})?)\s*$")


@dataclass(frozen=True)
class Grant:
    """What ``/nightcrew budget`` or ``/nightcrew approve`` gives a task."""

    usd: float = 0.0
    kinds: tuple[str, ...] = ()


def read_grant(kind: str, args: str, approvable: tuple[str, ...]) -> Grant | str:
    """The grant of a ``budget`` or ``approve`` command (``approvable``: the change kinds that
    wait for approval in the repository), or the reply to a request that cannot be read."""
    if kind == "budget":
        match = _BUDGET.match(args)
        if match is None:
            return ("Say `/nightcrew budget +$5` (add five dollars) or `/nightcrew budget $5` "
                    "(the same: budgets only grow).")
        return Grant(usd=float(match.group(2)))
    if kind != "approve":
        return Grant()
    wanted = [w for w in re.split(r"[\s,]+", args.strip()) if w] or list(approvable)
    unknown = [w for w in wanted if w not in approvable]
    if unknown:
        kinds = ", ".join(f"`{k}`" for k in approvable)
        return (f"Nothing to approve called {', '.join(unknown)}; the kinds that wait for "
                f"approval here are {kinds}.")
    return Grant(kinds=tuple(wanted))
