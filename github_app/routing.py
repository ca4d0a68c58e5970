"""Routing: a webhook event → a command for nightcrew, or the reason it is ignored.

Pure: the payload is a plain mapping (GitHub's JSON), nothing here talks to the network.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from github_app.tasks import TaskKey

CommandKind = Literal[
    "start", "review", "cancel", "pause", "resume", "retry", "budget", "approve", "status", "help"
]
COMMANDS: tuple[CommandKind, ...] = (
    "start", "review", "cancel", "pause", "resume", "retry", "budget", "approve", "status", "help",
)
_VERBS: dict[str, CommandKind] = {**{kind: kind for kind in COMMANDS}, "fix": "start"}
_SLASH = re.compile(r"^\s*/nightcrew(?:\s+(?P<verb>[A-Za-z-]+))?(?P<args>[^\n]*)$", re.MULTILINE)


@dataclass(frozen=True)
class Command:
    """Something a person asked nightcrew to do about one task."""

    kind: CommandKind
    task: TaskKey
    actor: str
    installation_id: int | None
    args: str = ""
    comment_id: int | None = None
    is_pull_request: bool = False


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


Route = Command | Ignore | UnknownCommand


@dataclass(frozen=True)
class SlashCommand:
    verb: str
    args: str


def parse_slash_command(body: str) -> SlashCommand | None:
    """The first ``/nightcrew VERB ARGS`` line of a comment; a bare ``/nightcrew`` means fix."""
    match = _SLASH.search(body)
    if match is None:
        return None
    verb = (match["verb"] or "fix").lower()
    return SlashCommand(verb=verb, args=match["args"].strip())


def route(event: str, payload: Mapping[str, Any], *, trigger_label: str = "nightcrew") -> Route:
    """Decide what a delivery asks of nightcrew."""
    sender = _mapping(payload.get("sender"))
    if sender.get("type") == "Bot" or str(sender.get("login", "")).endswith("[bot]"):
        return Ignore("sent by a bot (nightcrew never reacts to bots, itself included)")
    action = payload.get("action")
    if event == "issues":
        return _route_issue(action, payload, trigger_label)
    if event == "issue_comment":
        return _route_comment(action, payload)
    if event == "ping":
        return Ignore("ping")
    return Ignore(f"event {event!r} is not handled")


def _route_issue(action: Any, payload: Mapping[str, Any], trigger_label: str) -> Route:
    if action != "labeled":
        return Ignore(f"issues.{action} is not handled")
    label = _mapping(payload.get("label")).get("name")
    if label != trigger_label:
        return Ignore(f"label {label!r} is not the trigger label {trigger_label!r}")
    issue = _mapping(payload.get("issue"))
    if issue.get("state") == "closed":
        return Ignore("the issue is closed")
    return Command(
        kind="start",
        task=_task_key(payload, issue),
        actor=_login(payload),
        installation_id=_installation_id(payload),
        is_pull_request="pull_request" in issue,
    )


def _route_comment(action: Any, payload: Mapping[str, Any]) -> Route:
    if action != "created":
        return Ignore(f"issue_comment.{action} does not trigger work (edits never re-trigger)")
    comment = _mapping(payload.get("comment"))
    slash = parse_slash_command(str(comment.get("body") or ""))
    if slash is None:
        return Ignore("the comment has no /nightcrew command")
    issue = _mapping(payload.get("issue"))
    task = _task_key(payload, issue)
    comment_id = comment.get("id")
    comment_id = comment_id if isinstance(comment_id, int) else None
    kind = _VERBS.get(slash.verb)
    if kind is None:
        return UnknownCommand(slash.verb, task, _login(payload), _installation_id(payload), comment_id)
    return Command(
        kind=kind,
        task=task,
        actor=_login(payload),
        installation_id=_installation_id(payload),
        args=slash.args,
        comment_id=comment_id,
        is_pull_request="pull_request" in issue,
    )


def _task_key(payload: Mapping[str, Any], issue: Mapping[str, Any]) -> TaskKey:
    full_name = str(_mapping(payload.get("repository")).get("full_name", ""))
    owner, _, repo = full_name.partition("/")
    number = issue.get("number")
    if not owner or not repo or not isinstance(number, int):
        raise MalformedPayload("repository.full_name and issue.number are required")
    return TaskKey(owner, repo, number)


def _login(payload: Mapping[str, Any]) -> str:
    return str(_mapping(payload.get("sender")).get("login", ""))


def _installation_id(payload: Mapping[str, Any]) -> int | None:
    value = _mapping(payload.get("installation")).get("id")
    return value if isinstance(value, int) else None


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


class MalformedPayload(ValueError):
    """The payload lacks a field every delivery of its event carries."""
