"""Routing: webhook payloads → commands, or a reason to ignore them."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import Any

import pytest

from github_app.ingress.events import OtherEvent, parse_event
from github_app.ingress.routing import (
    SCAN_CHARS,
    SCAN_LINES,
    Command,
    Ignore,
    InstallationChange,
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


# --- issues.assigned, and labels on pull requests --------------------------------------------

def assigned(login: str = "nightcrew[bot]", sender: dict[str, Any] | None = None) -> dict[str, Any]:
    payload = labeled(sender=sender)
    del payload["label"]
    return {**payload, "action": "assigned", "assignee": {"login": login, "type": "Bot"}}


def test_assigning_the_app_starts_a_task() -> None:
    assert route("issues", assigned()) == Command("start", TaskKey("octo", "hello", 7), "alice", 99)


def test_assigning_someone_else_or_another_app_is_ignored() -> None:
    assert isinstance(route("issues", assigned("bob")), Ignore)
    decision = route("issues", assigned("nightcrew[bot]"), app_slug="acme-crew")
    assert isinstance(decision, Ignore) and "acme-crew[bot]" in decision.reason
    assert isinstance(route("issues", assigned("Acme-Crew[bot]"), app_slug="acme-crew"), Command)


def test_assignment_by_a_bot_is_ignored() -> None:
    decision = route("issues", assigned(sender={"login": "triage[bot]", "type": "Bot"}))
    assert isinstance(decision, Ignore) and "bot" in decision.reason


def test_trigger_label_on_a_pull_request_is_ignored_with_the_way_to_ask() -> None:
    # Decision: labels start work on issues only; on a PR a person comments /nightcrew fix.
    decision = route("issues", labeled(pull_request={"url": "https://x/pulls/7"}))
    assert isinstance(decision, Ignore) and "/nightcrew fix" in decision.reason


# --- comments: odd spelling, mentions, size ---------------------------------------------------

@pytest.mark.parametrize(
    ("body", "kind", "args"),
    [
        ("/NightCrew   fix", "start", ""),
        ("\u200b/nightcrew fix", "start", ""),
        ("/night\u200dcrew\u200b fix", "start", ""),
        ("\ufeff/nightcrew status", "status", ""),
        ("/nightcrew\tFIX\tkeep it small\r\nthanks", "start", "keep it small"),
        ("\u00a0 /nightcrew\u00a0cancel", "cancel", ""),
        ("/nightcrew budget $5", "budget", "$5"),
        ("/nightcrew budget +$5 ", "budget", "+$5"),
        ("/nightcrew fix: the parser", "start", ": the parser"),
    ],
)
def test_commands_survive_odd_whitespace_case_and_invisible_characters(
    body: str, kind: str, args: str
) -> None:
    decision = route("issue_comment", comment(body))
    assert isinstance(decision, Command) and (decision.kind, decision.args) == (kind, args)


@pytest.mark.parametrize(
    "body",
    [
        "/nightcrew-like tools are nice",
        "/nightcrewfix",
        "> /nightcrew fix",
        "```\n/nightcrew fix\n```",
        "~~~sh\n/nightcrew fix\n~~~",
    ],
)
def test_text_that_only_looks_like_a_command(body: str) -> None:
    assert isinstance(route("issue_comment", comment(body)), Ignore)


def test_the_verb_must_be_on_the_commands_line() -> None:
    assert route("issue_comment", comment("/nightcrew\ncancel")) == route(
        "issue_comment", comment("/nightcrew")
    )


@pytest.mark.parametrize(
    ("body", "args"),
    [
        ("@nightcrew please fix this", "please fix this"),
        ("Hey @NightCrew, can you take this?", "can you take this?"),
        ("@nightcrew[bot] fix the typo", "fix the typo"),
        ("(@nightcrew) go", "go"),
        ("thanks\n@nightcrew: the tests\nfail on 3.12", "the tests\nfail on 3.12"),
        ("@nightcrew\u200b fix", "fix"),
    ],
)
def test_a_mention_starts_a_task_with_the_rest_as_args(body: str, args: str) -> None:
    decision = route("issue_comment", comment(body))
    assert isinstance(decision, Command)
    assert (decision.kind, decision.args, decision.comment_id) == ("start", args, 555)


@pytest.mark.parametrize(
    "body",
    [
        "mail me@nightcrew.dev",
        "ask @nightcrew-staging",
        "ask @nightcrewbot",
        "@nightcrew.dev is down",
        "`@nightcrew` is the bot",
        "> @nightcrew fix this",
        "```\n@nightcrew fix\n```",
    ],
)
def test_not_a_mention(body: str) -> None:
    assert isinstance(route("issue_comment", comment(body)), Ignore)


def test_mention_follows_the_app_slug() -> None:
    assert isinstance(route("issue_comment", comment("@nightcrew fix"), app_slug="acme"), Ignore)
    assert isinstance(route("issue_comment", comment("@ACME fix"), app_slug="acme"), Command)


def test_a_slash_command_wins_over_a_mention() -> None:
    decision = route("issue_comment", comment("@nightcrew how far are you?\n/nightcrew status"))
    assert isinstance(decision, Command) and decision.kind == "status"


def test_mention_on_a_pull_request_is_marked() -> None:
    decision = route("issue_comment", comment("@nightcrew fix", pull_request={"url": "x"}))
    assert isinstance(decision, Command) and decision.is_pull_request


def test_a_command_past_the_scanned_top_is_not_read() -> None:
    late = "x" * SCAN_CHARS + "\n/nightcrew fix"
    many_lines = "ok\n" * SCAN_LINES + "/nightcrew fix"
    assert isinstance(route("issue_comment", comment(late)), Ignore)
    assert isinstance(route("issue_comment", comment(many_lines)), Ignore)


@pytest.mark.parametrize(
    "tail", ["x" * 2**20, "\n" * 2**20, " " * 2**20, "@" * 2**20, "\u200b" * 2**20, "log line\n" * 2**17]
)
def test_a_megabyte_comment_routes_in_well_under_a_millisecond(tail: str) -> None:
    command = route("issue_comment", comment("/nightcrew fix keep it small\n" + tail))
    assert isinstance(command, Command) and command.args == "keep it small"
    payload = comment("no command up here\n" + tail)
    assert _best_seconds(lambda: route("issue_comment", payload)) < 0.001


def _best_seconds(call: Callable[[], object], repeat: int = 5) -> float:
    timings = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        timings.append(time.perf_counter() - started)
    return min(timings)


@pytest.mark.parametrize(
    ("sender", "author"),
    [
        ({"login": "nightcrew[bot]", "type": "Bot"}, None),
        ({"login": "renovate[bot]", "type": "User"}, None),
        ({"login": "ci-helper", "type": "Bot"}, None),
        ({"login": "alice", "type": "User"}, {"login": "nightcrew[bot]", "type": "Bot"}),
    ],
)
def test_comments_by_bots_never_trigger(sender: dict[str, Any], author: dict[str, Any] | None) -> None:
    payload = comment("@nightcrew fix\n/nightcrew fix")
    payload["sender"] = sender
    if author is not None:
        payload["comment"]["user"] = author
    decision = route("issue_comment", payload)
    assert isinstance(decision, Ignore) and "bot" in decision.reason


@pytest.mark.parametrize("action", ["edited", "deleted"])
def test_edited_or_deleted_mentions_never_trigger(action: str) -> None:
    assert isinstance(route("issue_comment", comment("@nightcrew fix", action=action)), Ignore)


# --- pull requests nightcrew opened: review and revise ----------------------------------------

NIGHTCREW = {"login": "nightcrew[bot]", "type": "Bot"}
ALICE = {"login": "alice", "type": "User"}


def pull_request(action: str = "opened", author: dict[str, Any] = NIGHTCREW,
                 sender: dict[str, Any] = NIGHTCREW) -> dict[str, Any]:
    return {
        "action": action,
        "number": 12,
        "pull_request": {"number": 12, "user": author,
                         "head": {"ref": "nightcrew/issue-7", "repo": {"full_name": "octo/hello"}}},
        "repository": {"full_name": "octo/hello"},
        "sender": sender,
        "installation": {"id": 99},
    }


def review(state: str = "changes_requested", action: str = "submitted",
           author: dict[str, Any] = NIGHTCREW, sender: dict[str, Any] = ALICE) -> dict[str, Any]:
    payload = pull_request(author=author, sender=sender)
    del payload["number"]
    return {**payload, "action": action, "review": {"id": 3, "state": state, "user": sender}}


def review_comment(action: str = "created", author: dict[str, Any] = NIGHTCREW,
                   sender: dict[str, Any] = ALICE) -> dict[str, Any]:
    payload = pull_request(author=author, sender=sender)
    del payload["number"]
    return {**payload, "action": action, "comment": {"id": 4, "body": "rename this", "user": sender}}


PR_TASK = TaskKey("octo", "hello", 12)


@pytest.mark.parametrize("action", ["opened", "synchronize"])
def test_nightcrews_own_pull_request_asks_for_a_review(action: str) -> None:
    # Sent by nightcrew[bot] itself: the bot rule must not swallow the review trigger.
    decision = route("pull_request", pull_request(action))
    assert decision == Command("review", PR_TASK, "nightcrew[bot]", 99, is_pull_request=True)


def test_other_pull_requests_are_not_reviewed() -> None:
    decision = route("pull_request", pull_request(author=ALICE, sender=ALICE))
    assert isinstance(decision, Ignore) and "'alice'" in decision.reason
    assert isinstance(route("pull_request", pull_request("closed")), Ignore)
    assert isinstance(route("pull_request", pull_request(), app_slug="acme"), Ignore)


@pytest.mark.parametrize("state", ["changes_requested", "CHANGES_REQUESTED"])
def test_changes_requested_on_nightcrews_pr_asks_for_a_revision(state: str) -> None:
    decision = route("pull_request_review", review(state))
    assert decision == Command("revise", PR_TASK, "alice", 99, is_pull_request=True)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (review("approved"), "'approved' asks for no changes"),
        (review("commented"), "'commented' asks for no changes"),
        (review(author=ALICE), "is by 'alice'"),
        (review(sender={"login": "linter[bot]", "type": "Bot"}), "bot"),
        (review(sender=NIGHTCREW), "bot"),
        (review("dismissed", action="dismissed"), "not handled"),
    ],
)
def test_reviews_that_ask_nothing_of_nightcrew(payload: dict[str, Any], reason: str) -> None:
    decision = route("pull_request_review", payload)
    assert isinstance(decision, Ignore) and reason in decision.reason


def test_inline_comment_on_nightcrews_pr_asks_for_a_revision() -> None:
    decision = route("pull_request_review_comment", review_comment())
    assert decision == Command("revise", PR_TASK, "alice", 99, is_pull_request=True)


@pytest.mark.parametrize(
    "payload",
    [review_comment("edited"), review_comment("deleted"), review_comment(author=ALICE),
     review_comment(sender=NIGHTCREW)],
)
def test_inline_comments_that_ask_nothing(payload: dict[str, Any]) -> None:
    assert isinstance(route("pull_request_review_comment", payload), Ignore)


# --- installations -----------------------------------------------------------------------------

def installation(action: str, **extra: Any) -> dict[str, Any]:
    return {"action": action, "installation": {"id": 5, "account": {"login": "octo"}},
            "sender": {"login": "alice", "type": "User"}, **extra}


def test_installation_changes_are_not_tasks() -> None:
    repos = [{"full_name": "octo/a"}, {"full_name": "octo/b"}]
    assert route("installation", installation("created", repositories=repos)) == InstallationChange(
        "created", 5, "octo", repositories_added=("octo/a", "octo/b")
    )
    assert route("installation", installation("deleted", repositories=repos)) == InstallationChange(
        "deleted", 5, "octo", repositories_removed=("octo/a", "octo/b")
    )
    assert route("installation", installation("suspend")) == InstallationChange("suspend", 5, "octo")


def test_installation_repositories_added_and_removed() -> None:
    payload = installation("added", repositories_added=[{"full_name": "octo/c"}],
                           repositories_removed=[])
    change = route("installation_repositories", payload)
    assert change == InstallationChange("added", 5, "octo", repositories_added=("octo/c",))
    assert isinstance(change, InstallationChange) and change.kind == "installation"


def test_installation_events_from_a_bot_still_count() -> None:
    payload = installation("unsuspend", sender={"login": "github-enterprise[bot]", "type": "Bot"})
    assert isinstance(route("installation", payload), InstallationChange)


# --- malformed payloads and parsing -------------------------------------------------------------

@pytest.mark.parametrize(
    ("event", "payload", "where"),
    [
        ("issues", {**labeled(), "issue": {"number": "7"}}, "issue.number"),
        ("issues", {**labeled(), "issue": {"number": 0}}, "issue.number"),
        ("issues", {**labeled(), "repository": {"full_name": "hello"}}, "repository.full_name"),
        ("issues", {k: v for k, v in labeled().items() if k != "sender"}, "sender"),
        ("issue_comment", {**comment("x"), "comment": {"id": 1}}, "comment.body"),
        ("issue_comment", {**comment("x"), "comment": {"id": True, "body": "x"}}, "comment.id"),
        ("pull_request", {**pull_request(), "pull_request": {"number": 12}}, "pull_request.user"),
        ("pull_request_review", {**review(), "review": {"id": 3}}, "review.state"),
        ("installation", installation("created", installation={"id": "5"}), "installation.id"),
        ("installation_repositories", installation("added"), "repositories_added"),
    ],
)
def test_handled_events_without_their_fields_are_malformed(
    event: str, payload: dict[str, Any], where: str
) -> None:
    with pytest.raises(MalformedPayload, match=f"^{re.escape(where)}"):
        route(event, payload)


def test_unhandled_events_only_need_to_be_objects() -> None:
    assert route("star", {"action": 5}) == Ignore("event 'star' is not handled")
    assert route("push", {}) == Ignore("event 'push' is not handled")


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"\xff\xfe{}", "not UTF-8"),
        (b"{not json", "not JSON"),
        (b"", "not JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b"[1, 2]", "JSON object, not list"),
        (b"null", "JSON object, not NoneType"),
        (b"payload=%7B%7D", "not JSON"),
    ],
)
def test_bodies_that_are_not_json_objects(body: bytes, reason: str) -> None:
    with pytest.raises(MalformedPayload, match=re.escape(reason)):
        parse_event("ping", body)


def test_a_parsed_event_routes_like_its_payload() -> None:
    payload = comment("/nightcrew fix quickly")
    parsed = parse_event("issue_comment", json.dumps(payload).encode())
    assert route("issue_comment", parsed) == route("issue_comment", payload)
    assert parse_event("star", b'{"action": "created"}') == OtherEvent("star", "created")
