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
    """An issue_comment payload; ``pull_request=…`` makes the issue a pull request."""
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
    assert decision == Command("review", TaskKey("octo", "hello", 7), "alice", 99,
                               comment_id=555, is_pull_request=True)


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


# --- comments on pull requests: fix means revise this PR ---------------------------------------

ON_PR = {"url": "https://api.github.com/repos/octo/hello/pulls/7"}


@pytest.mark.parametrize(
    ("body", "args"),
    [
        ("/nightcrew fix rename the helper", "rename the helper"),
        ("/nightcrew", ""),
        ("/nightcrew start", ""),
        ("@nightcrew please handle the review", "please handle the review"),
        ("Thanks!\n@nightcrew[bot]: the tests\nfail on 3.12", "the tests\nfail on 3.12"),
    ],
)
def test_fix_or_a_mention_on_a_pull_request_asks_for_a_revision(body: str, args: str) -> None:
    # Any PR: intake checks it is nightcrew's and replies otherwise; routing cannot know config.
    decision = route("issue_comment", comment(body, pull_request=ON_PR))
    assert decision == Command("revise", TaskKey("octo", "hello", 7), "alice", 99, args=args,
                               comment_id=555, is_pull_request=True)


def test_fix_on_a_pull_request_says_whether_the_pr_is_nightcrews() -> None:
    ours = route("issue_comment", comment("/nightcrew fix", pull_request=ON_PR, user=NIGHTCREW))
    theirs = route("issue_comment", comment("/nightcrew fix", pull_request=ON_PR, user=ALICE))
    assert isinstance(ours, Command) and ours.kind == "revise" and ours.own_pull_request
    assert isinstance(theirs, Command) and theirs.kind == "revise" and not theirs.own_pull_request
    other_app = route("issue_comment", comment("/acme fix", pull_request=ON_PR, user=NIGHTCREW),
                      app_slug="acme")
    assert isinstance(other_app, Ignore)  # the slash verb is /nightcrew; acme reads @acme only
    mention = route("issue_comment", comment("@acme fix", pull_request=ON_PR, user=NIGHTCREW),
                    app_slug="acme")
    assert isinstance(mention, Command) and not mention.own_pull_request


def test_fix_on_a_plain_issue_still_starts() -> None:
    decision = route("issue_comment", comment("/nightcrew fix it", user=ALICE))
    assert decision == Command("start", TaskKey("octo", "hello", 7), "alice", 99, args="it",
                               comment_id=555)


@pytest.mark.parametrize("verb", ["cancel", "pause", "resume", "retry", "status", "help",
                                  "approve", "budget"])
def test_steering_verbs_on_a_pull_request_keep_their_kind(verb: str) -> None:
    decision = route("issue_comment", comment(f"/nightcrew {verb}", pull_request=ON_PR))
    assert isinstance(decision, Command)
    assert (decision.kind, decision.is_pull_request, decision.trigger) == (verb, True, "")


@pytest.mark.parametrize(
    "body",
    ["> /nightcrew fix", "```\n/nightcrew fix\n```", "`@nightcrew` fix", "> @nightcrew fix it"],
)
def test_quoted_or_fenced_fix_on_a_pull_request_is_inert(body: str) -> None:
    assert isinstance(route("issue_comment", comment(body, pull_request=ON_PR)), Ignore)


def test_a_bot_commenting_fix_on_a_pull_request_is_ignored() -> None:
    payload = comment("/nightcrew fix", pull_request=ON_PR, user=NIGHTCREW)
    payload["sender"] = NIGHTCREW
    decision = route("issue_comment", payload)
    assert isinstance(decision, Ignore) and "bot" in decision.reason


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
                 sender: dict[str, Any] = NIGHTCREW, **pr: Any) -> dict[str, Any]:
    return {
        "action": action,
        "number": 12,
        "pull_request": {"number": 12, "user": author, "state": "open", "draft": False,
                         "head": {"ref": "nightcrew/issue-7", "repo": {"full_name": "octo/hello"}},
                         **pr},
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
                   sender: dict[str, Any] = ALICE, body: str = "@nightcrew rename this"
                   ) -> dict[str, Any]:
    payload = pull_request(author=author, sender=sender)
    del payload["number"]
    return {**payload, "action": action, "comment": {"id": 4, "body": body, "user": sender}}


PR_TASK = TaskKey("octo", "hello", 12)


@pytest.mark.parametrize("action", ["opened", "ready_for_review"])
def test_nightcrews_own_pull_request_asks_for_a_review(action: str) -> None:
    # Sent by nightcrew[bot] itself: the bot rule must not swallow the review trigger.
    decision = route("pull_request", pull_request(action))
    assert decision == Command("review", PR_TASK, "nightcrew[bot]", 99, is_pull_request=True,
                               trigger=f"pull_request.{action}", own_pull_request=True)


@pytest.mark.parametrize("action", ["opened", "ready_for_review"])
def test_a_persons_pull_request_asks_for_a_review_that_intake_may_decline(action: str) -> None:
    # Whether it is reviewed is the repo config's review.on_open, which intake reads.
    decision = route("pull_request", pull_request(action, author=ALICE, sender=ALICE))
    assert decision == Command("review", PR_TASK, "alice", 99, is_pull_request=True,
                               trigger=f"pull_request.{action}", own_pull_request=False)


def test_own_pull_request_follows_the_app_slug() -> None:
    ours = route("pull_request", pull_request(author={"login": "Acme[bot]", "type": "Bot"},
                                              sender={"login": "acme[bot]", "type": "Bot"}),
                 app_slug="acme")
    assert isinstance(ours, Command) and ours.own_pull_request and ours.actor == "acme[bot]"


@pytest.mark.parametrize(
    "sender",
    [{"login": "dependabot[bot]", "type": "Bot"}, {"login": "renovate[bot]", "type": "User"},
     {"login": "ci-helper", "type": "Bot"}],
)
def test_pull_requests_other_bots_open_are_not_reviewed(sender: dict[str, Any]) -> None:
    for action in ("opened", "ready_for_review"):
        decision = route("pull_request", pull_request(action, author=sender, sender=sender))
        assert isinstance(decision, Ignore) and "bot" in decision.reason
    # nightcrew under another slug is just another bot
    decision = route("pull_request", pull_request(), app_slug="acme")
    assert isinstance(decision, Ignore) and "bot" in decision.reason


@pytest.mark.parametrize(("author", "sender"), [(NIGHTCREW, NIGHTCREW), (ALICE, ALICE)])
def test_draft_pull_requests_wait_until_marked_ready(
    author: dict[str, Any], sender: dict[str, Any]
) -> None:
    decision = route("pull_request", pull_request(author=author, sender=sender, draft=True))
    assert decision == Ignore("pull request #12 is a draft; drafts are reviewed when marked ready")
    ready = route("pull_request", pull_request("ready_for_review", author=author, sender=sender))
    assert isinstance(ready, Command) and ready.trigger == "pull_request.ready_for_review"


def test_a_missing_or_null_draft_is_not_a_draft() -> None:
    payload = pull_request(draft=None)
    assert isinstance(route("pull_request", payload), Command)
    del payload["pull_request"]["draft"]
    assert isinstance(route("pull_request", payload), Command)


@pytest.mark.parametrize(("author", "sender"), [(NIGHTCREW, NIGHTCREW), (ALICE, ALICE)])
def test_pushes_are_not_reviewed(author: dict[str, Any], sender: dict[str, Any]) -> None:
    decision = route("pull_request", pull_request("synchronize", author=author, sender=sender))
    assert isinstance(decision, Ignore)
    assert "pushes are not reviewed" in decision.reason and "/nightcrew review" in decision.reason


@pytest.mark.parametrize("action", ["closed", "reopened", "edited", "converted_to_draft",
                                    "labeled", "review_requested"])
def test_other_pull_request_actions_are_not_handled(action: str) -> None:
    decision = route("pull_request", pull_request(action))
    assert decision == Ignore(f"pull_request.{action} is not handled")


def test_a_pull_request_draft_must_be_a_boolean() -> None:
    with pytest.raises(MalformedPayload, match="^pull_request.draft"):
        route("pull_request", pull_request(draft="yes"))


@pytest.mark.parametrize("state", ["changes_requested", "CHANGES_REQUESTED"])
def test_changes_requested_on_nightcrews_pr_asks_for_a_revision(state: str) -> None:
    decision = route("pull_request_review", review(state))
    assert decision == Command("revise", PR_TASK, "alice", 99, is_pull_request=True,
                               trigger="pull_request_review.submitted", own_pull_request=True,
                               review_id=3)
    assert isinstance(decision, Command) and decision.args == "" and decision.comment_id is None


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


@pytest.mark.parametrize(
    ("body", "args"),
    [
        ("@nightcrew rename this", "rename this"),
        ("Looks off. @NightCrew[bot], use a dict here", "use a dict here"),
        ("/nightcrew fix use a dict here", "use a dict here"),
        ("nit\n/nightcrew fix", ""),
        ("\u200b/nightcrew fix drop the cast", "drop the cast"),
        ("@night\u200dcrew drop the cast", "drop the cast"),
    ],
)
def test_an_inline_comment_that_asks_nightcrew_asks_for_a_revision(body: str, args: str) -> None:
    decision = route("pull_request_review_comment", review_comment(body=body))
    assert decision == Command("revise", PR_TASK, "alice", 99, args=args, is_pull_request=True,
                               trigger="pull_request_review_comment.created",
                               own_pull_request=True, review_comment_id=4)
    # Not an issue comment: intake must not react to it through the issue-comment API.
    assert isinstance(decision, Command) and decision.comment_id is None


def test_a_plain_inline_comment_is_left_to_its_review() -> None:
    decision = route("pull_request_review_comment", review_comment(body="rename this"))
    assert isinstance(decision, Ignore)
    assert "part of a review" in decision.reason and "submitted" in decision.reason


@pytest.mark.parametrize(
    "body",
    [
        "> @nightcrew rename this",
        "> /nightcrew fix",
        "```suggestion\n@nightcrew fix\n```",
        "~~~\n/nightcrew fix\n~~~",
        "`@nightcrew` is the bot",
        "ask @nightcrew-staging",
        "mail me@nightcrew.dev",
        "please run /nightcrew fix",
        "x" * SCAN_CHARS + "\n@nightcrew fix",
    ],
)
def test_hostile_or_quoted_text_in_an_inline_comment_is_inert(body: str) -> None:
    decision = route("pull_request_review_comment", review_comment(body=body))
    assert isinstance(decision, Ignore) and "part of a review" in decision.reason


@pytest.mark.parametrize("body", ["/nightcrew status", "/nightcrew review", "/nightcrew frob"])
def test_other_verbs_in_an_inline_comment_are_not_read(body: str) -> None:
    decision = route("pull_request_review_comment", review_comment(body=body))
    assert isinstance(decision, Ignore) and "not read in a review comment" in decision.reason


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (review_comment("edited"), "does not trigger work"),
        (review_comment("deleted"), "does not trigger work"),
        (review_comment(author=ALICE), "is by 'alice'"),
        (review_comment(sender=NIGHTCREW), "bot"),  # nightcrew's own thread replies
        (review_comment(sender={"login": "linter[bot]", "type": "Bot"}), "bot"),
    ],
)
def test_inline_comments_that_ask_nothing(payload: dict[str, Any], reason: str) -> None:
    decision = route("pull_request_review_comment", payload)
    assert isinstance(decision, Ignore) and reason in decision.reason


def test_an_inline_reply_authored_by_nightcrew_is_ignored_whoever_sends_it() -> None:
    payload = review_comment()
    payload["comment"]["user"] = NIGHTCREW
    decision = route("pull_request_review_comment", payload)
    assert isinstance(decision, Ignore) and "bot" in decision.reason


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
