"""Routing: webhook payloads → commands, or a reason to ignore them."""

from __future__ import annotations

from typing import Any

import pytest

from github_app.routing import (
    Command,
    Ignore,
    MalformedPayload,
    UnknownCommand,
    parse_slash_command,
    route,
)
from github_app.tasks import TaskKey


def labeled(label: str = "nightcrew", sender: dict[str, Any] | None = None, **issue: Any) -> dict[str, Any]:
    return {
        "action": "labeled",
        "label": {"name": label},
        "issue": {"number": 7, "state": "open", **issue},
        "repository": {"full_name": "octo/hello"},
        "sender": sender or {"login": "alice", "type": "User"},
        "installation": {"id": 99},
    }


def comment(body: str, action: str = "created", **extra: Any) -> dict[str, Any]:
    return {
        "action": action,
        "comment": {"id": 555, "body": body},
        "issue": {"number": 7, "state": "open", **extra},
        "repository": {"full_name": "octo/hello"},
        "sender": {"login": "alice", "type": "User"},
        "installation": {"id": 99},
    }


def test_trigger_label_starts_a_task() -> None:
    decision = route("issues", labeled())
    assert decision == Command("start", TaskKey("octo", "hello", 7), "alice", 99)


def test_other_label_is_ignored_with_reason() -> None:
    decision = route("issues", labeled("bug"))
    assert isinstance(decision, Ignore) and "'bug'" in decision.reason


def test_per_repo_trigger_label() -> None:
    assert isinstance(route("issues", labeled("robot"), trigger_label="robot"), Command)
    assert isinstance(route("issues", labeled("nightcrew"), trigger_label="robot"), Ignore)


def test_bots_never_trigger_work_including_nightcrew_itself() -> None:
    for sender in ({"login": "nightcrew[bot]", "type": "Bot"}, {"login": "x[bot]", "type": "User"}):
        decision = route("issues", labeled(sender=sender))
        assert isinstance(decision, Ignore) and "bot" in decision.reason


def test_closed_issue_is_ignored() -> None:
    assert isinstance(route("issues", labeled(state="closed")), Ignore)


@pytest.mark.parametrize(
    ("body", "kind", "args"),
    [
        ("/nightcrew fix please also add a test", "start", "please also add a test"),
        ("/nightcrew", "start", ""),
        ("Thanks!\n/nightcrew cancel\nbye", "cancel", ""),
        ("/nightcrew budget +$5", "budget", "+$5"),
        ("/nightcrew APPROVE dependencies", "approve", "dependencies"),
    ],
)
def test_slash_commands(body: str, kind: str, args: str) -> None:
    decision = route("issue_comment", comment(body))
    assert isinstance(decision, Command)
    assert (decision.kind, decision.args, decision.comment_id) == (kind, args, 555)


def test_unknown_slash_command_is_answered_not_ignored() -> None:
    decision = route("issue_comment", comment("/nightcrew frobnicate"))
    assert isinstance(decision, UnknownCommand) and decision.verb == "frobnicate"


def test_edited_comments_never_retrigger() -> None:
    assert isinstance(route("issue_comment", comment("/nightcrew fix", action="edited")), Ignore)


def test_comment_without_command_is_ignored() -> None:
    assert isinstance(route("issue_comment", comment("nightcrew is great, /nightcrew-like")), Ignore)


def test_command_on_a_pull_request_is_marked() -> None:
    decision = route("issue_comment", comment("/nightcrew review", pull_request={"url": "x"}))
    assert isinstance(decision, Command) and decision.is_pull_request


def test_unhandled_event_is_ignored() -> None:
    assert isinstance(route("star", {"action": "created", "sender": {"login": "a"}}), Ignore)


def test_payload_without_repository_is_malformed() -> None:
    payload = labeled()
    del payload["repository"]
    with pytest.raises(MalformedPayload):
        route("issues", payload)


def test_slash_command_must_start_a_line() -> None:
    assert parse_slash_command("please run /nightcrew fix") is None
    assert parse_slash_command("  /nightcrew status") is not None
