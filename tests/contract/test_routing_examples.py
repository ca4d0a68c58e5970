"""Every vendored GitHub example body of a subscribed event goes through parse + route.

The examples are octokit's (GitHub-docs style) payloads, vendored from the npm package
``@octokit/webhooks-examples`` (devhub/spec, see its NOTICE.md). As shipped, the only ones that
ask nightcrew for work are a person opening (or marking ready) a pull request, which routes to
a review intake may decline (the repo's ``review.on_open``); patched the way the real
deliveries differ (a trigger label, a command, a PR by nightcrew[bot]), the triggering ones
must become the expected commands.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest
from githubkit import webhooks
from pydantic import ValidationError

from devhub.webhook_schemas import SPEC_DIR
from github_app.ingress.events import parse_event
from github_app.ingress.routing import Command, CommandKind, Ignore, InstallationChange, Route, route
from github_app.tasks import TaskKey

EXAMPLES: dict[str, list[dict[str, Any]]] = json.loads(
    (SPEC_DIR / "webhook-examples.json").read_text("utf-8")
)
SUBSCRIBED = [
    "issues", "issue_comment", "pull_request", "pull_request_review",
    "pull_request_review_comment", "installation", "installation_repositories", "ping", "push",
]
BOT = {"login": "nightcrew[bot]", "type": "Bot"}
INSTALLATION = "an InstallationChange built from the body"
REVIEW = "a review Command of a person's PR, triggered by the action"
_ISSUE_ACTIONS_IGNORED = (
    "edited", "deleted", "demilestoned", "locked", "milestoned", "opened", "pinned", "reopened",
    "transferred", "unassigned", "unlabeled", "unlocked", "unpinned",
)
_PR_ACTIONS_IGNORED = (
    "assigned", "closed", "converted_to_draft", "labeled", "locked", "reopened",
    "review_request_removed", "review_requested", "unassigned", "unlabeled", "unlocked",
)
# (event, action) → what an unpatched example routes to: a fragment of the Ignore reason.
EXPECTED: dict[tuple[str, str | None], str] = {
    **{("installation", a): INSTALLATION
       for a in ("created", "deleted", "new_permissions_accepted", "suspend", "unsuspend")},
    ("installation_repositories", "added"): INSTALLATION,
    ("installation_repositories", "removed"): INSTALLATION,
    ("issue_comment", "created"): "has no /nightcrew command and no @nightcrew mention",
    ("issue_comment", "edited"): "does not trigger work",
    ("issue_comment", "deleted"): "does not trigger work",
    ("issues", "labeled"): "label 'bug' is not the trigger label 'nightcrew'",
    ("issues", "assigned"): "assigned to 'Codertocat', not 'nightcrew[bot]'",
    **{("issues", a): f"issues.{a} is not handled" for a in _ISSUE_ACTIONS_IGNORED},
    ("ping", None): "ping",
    ("push", None): "event 'push' is not handled",
    ("pull_request", "opened"): REVIEW,
    ("pull_request", "ready_for_review"): REVIEW,
    ("pull_request", "synchronize"): "pushes are not reviewed",
    **{("pull_request", a): f"pull_request.{a} is not handled" for a in _PR_ACTIONS_IGNORED},
    ("pull_request_review", "submitted"): "is by 'Codertocat', not by 'nightcrew[bot]'",
    ("pull_request_review", "dismissed"): "pull_request_review.dismissed is not handled",
    ("pull_request_review_comment", "created"): "is by 'Codertocat', not by 'nightcrew[bot]'",
    ("pull_request_review_comment", "edited"): "does not trigger work",
    ("pull_request_review_comment", "deleted"): "does not trigger work",
}
CASES = [
    pytest.param(event, body, id=f"{event}.{body.get('action')}#{index}")
    for event in SUBSCRIBED
    for index, body in enumerate(EXAMPLES[event])
]


def routed(event: str, body: dict[str, Any]) -> Route:
    """What ingress decides for this body: the bytes GitHub would send, parsed, routed."""
    return route(event, parse_event(event, json.dumps(body).encode()))


def examples(event: str, *actions: str) -> Iterator[dict[str, Any]]:
    """Fresh copies of every vendored example of event with one of the actions."""
    return (copy.deepcopy(b) for b in EXAMPLES[event] if b.get("action") in actions)


def task_of(body: dict[str, Any], number: int) -> TaskKey:
    owner, repo = body["repository"]["full_name"].split("/")
    return TaskKey(owner, repo, number)


def installation_id(body: dict[str, Any]) -> int | None:
    value = body.get("installation", {}).get("id")
    return value if isinstance(value, int) else None


def test_the_table_covers_every_vendored_example() -> None:
    present = {(e, b.get("action")) for e in SUBSCRIBED for b in EXAMPLES[e]}
    assert present == set(EXPECTED)


@pytest.mark.parametrize(("event", "body"), CASES)
def test_every_example_parses_and_routes_as_expected(event: str, body: dict[str, Any]) -> None:
    decision = routed(event, body)
    expected = EXPECTED[event, body.get("action")]
    if expected is INSTALLATION:
        assert decision == expected_installation_change(event, body)
    elif expected is REVIEW:
        assert decision == Command(
            "review", task_of(body, body["number"]), body["sender"]["login"],
            installation_id(body), is_pull_request=True,
            trigger=f"pull_request.{body['action']}", own_pull_request=False,
        )
    else:
        assert isinstance(decision, Ignore) and expected in decision.reason, decision


def expected_installation_change(event: str, body: dict[str, Any]) -> InstallationChange:
    listed = body.get("repositories") or []
    added = body.get("repositories_added", listed if body["action"] == "created" else [])
    removed = body.get("repositories_removed", listed if body["action"] == "deleted" else [])
    return InstallationChange(
        action=body["action"],
        installation_id=body["installation"]["id"],
        account=body["installation"]["account"]["login"],
        repositories_added=tuple(r["full_name"] for r in added),
        repositories_removed=tuple(r["full_name"] for r in removed),
    )


def test_trigger_label_on_real_labeled_issues_starts() -> None:
    for body in examples("issues", "labeled"):
        body["label"]["name"] = "nightcrew"
        assert routed("issues", body) == Command(
            "start", task_of(body, body["issue"]["number"]), body["sender"]["login"],
            installation_id(body),
        )


def test_assigning_nightcrew_on_real_assigned_issues_starts() -> None:
    for body in examples("issues", "assigned"):
        body["assignee"] = {**body["assignee"], **BOT}
        decision = routed("issues", body)
        assert isinstance(decision, Command) and decision.kind == "start"


def test_real_issues_payloads_can_be_pull_requests_and_labels_there_do_nothing() -> None:
    # GitHub's own milestone examples are "issues" events whose issue is a pull request.
    prs = [b for b in examples("issues", *_ISSUE_ACTIONS_IGNORED) if "pull_request" in b["issue"]]
    assert prs
    for body in prs:
        body.update(action="labeled", label={"name": "nightcrew"})
        decision = routed("issues", body)
        assert isinstance(decision, Ignore) and "issues only" in decision.reason


@pytest.mark.parametrize(
    ("text", "kind", "args"),
    [
        ("Could you take this?\n/nightcrew fix keep it small", "start", "keep it small"),
        ("\u200b/NightCrew   budget +$5", "budget", "+$5"),
        ("@nightcrew please fix this", "start", "please fix this"),
    ],
)
def test_commands_in_real_comments(text: str, kind: CommandKind, args: str) -> None:
    for body in examples("issue_comment", "created"):
        body["comment"]["body"] = text
        assert routed("issue_comment", body) == Command(
            kind, task_of(body, body["issue"]["number"]), body["sender"]["login"],
            installation_id(body), args=args, comment_id=body["comment"]["id"],
        )


def on_a_pull_request(body: dict[str, Any], author: dict[str, Any] | None = None) -> None:
    """Make a real issue_comment body's issue a pull request (as GitHub sends it), by author."""
    number = body["issue"]["number"]
    repo = body["repository"]["full_name"]
    body["issue"]["pull_request"] = {
        "url": f"https://api.github.com/repos/{repo}/pulls/{number}",
        "html_url": f"https://github.com/{repo}/pull/{number}",
        "diff_url": f"https://github.com/{repo}/pull/{number}.diff",
        "patch_url": f"https://github.com/{repo}/pull/{number}.patch",
        "merged_at": None,
    }
    if author is not None:
        body["issue"]["user"] = {**body["issue"]["user"], **author}


def test_real_comment_on_a_pull_request_is_marked() -> None:
    for body in examples("issue_comment", "created"):
        body["comment"]["body"] = "/nightcrew review"
        on_a_pull_request(body)
        assert routed("issue_comment", body) == Command(
            "review", task_of(body, body["issue"]["number"]), body["sender"]["login"],
            installation_id(body), comment_id=body["comment"]["id"], is_pull_request=True,
        )


@pytest.mark.parametrize(
    ("text", "args"),
    [
        ("/nightcrew fix keep the old name as an alias", "keep the old name as an alias"),
        ("Thanks. @nightcrew please add a test", "please add a test"),
    ],
)
def test_fix_in_real_comments_on_a_pull_request_asks_for_a_revision(text: str, args: str) -> None:
    for author, own in ((BOT, True), (None, False)):
        for body in examples("issue_comment", "created"):
            body["comment"]["body"] = text
            on_a_pull_request(body, author)
            assert routed("issue_comment", body) == Command(
                "revise", task_of(body, body["issue"]["number"]), body["sender"]["login"],
                installation_id(body), args=args, comment_id=body["comment"]["id"],
                is_pull_request=True, own_pull_request=own,
            )


def test_steering_in_real_comments_on_a_pull_request_keeps_its_kind() -> None:
    for body in examples("issue_comment", "created"):
        body["comment"]["body"] = "/nightcrew cancel"
        on_a_pull_request(body, BOT)
        decision = routed("issue_comment", body)
        assert isinstance(decision, Command) and decision.kind == "cancel"


def test_real_comments_by_nightcrew_or_edited_never_trigger() -> None:
    for body in examples("issue_comment", "created", "edited"):
        body["comment"]["body"] = "/nightcrew fix"
        if body["action"] == "created":
            body["sender"] = {**body["sender"], **BOT}
        assert isinstance(routed("issue_comment", body), Ignore)


def nightcrews(body: dict[str, Any], *, sent_by_nightcrew: bool = True) -> dict[str, Any]:
    """A real pull_request* body patched so nightcrew[bot] authored (and sent) it."""
    body["pull_request"]["user"] = {**body["pull_request"]["user"], **BOT}
    if sent_by_nightcrew:
        body["sender"] = {**body["sender"], **BOT}
    return body


def test_nightcrews_real_pull_requests_ask_for_review() -> None:
    bodies = list(examples("pull_request", "opened", "ready_for_review"))
    assert {b["action"] for b in bodies} == {"opened", "ready_for_review"}
    for body in map(nightcrews, bodies):
        assert routed("pull_request", body) == Command(
            "review", task_of(body, body["number"]), "nightcrew[bot]", installation_id(body),
            is_pull_request=True, trigger=f"pull_request.{body['action']}",
            own_pull_request=True,
        )


def test_real_draft_pull_requests_are_reviewed_once_ready() -> None:
    for body in map(nightcrews, examples("pull_request", "opened")):
        body["pull_request"]["draft"] = True
        decision = routed("pull_request", body)
        assert isinstance(decision, Ignore) and "drafts are reviewed when marked" in decision.reason


def test_pushes_to_nightcrews_real_pull_requests_are_not_reviewed() -> None:
    bodies = list(map(nightcrews, examples("pull_request", "synchronize")))
    assert bodies
    for body in bodies:
        decision = routed("pull_request", body)
        assert isinstance(decision, Ignore) and "/nightcrew review" in decision.reason


def test_real_pull_requests_other_bots_open_are_not_reviewed() -> None:
    for body in examples("pull_request", "opened", "ready_for_review"):
        dependabot = {"login": "dependabot[bot]", "type": "Bot"}
        body["pull_request"]["user"] = {**body["pull_request"]["user"], **dependabot}
        body["sender"] = {**body["sender"], **dependabot}
        decision = routed("pull_request", body)
        assert isinstance(decision, Ignore) and "bot" in decision.reason


def test_other_actions_on_nightcrews_real_pull_requests_do_nothing() -> None:
    for body in examples("pull_request", *_PR_ACTIONS_IGNORED):
        body["pull_request"]["user"] = {**body["pull_request"]["user"], **BOT}
        assert isinstance(routed("pull_request", body), Ignore)


def test_changes_requested_on_nightcrews_real_pull_request_asks_for_a_revision() -> None:
    for body in examples("pull_request_review", "submitted"):
        assert body["review"]["state"] == "commented"  # no real changes_requested example
        body["pull_request"]["user"] = {**body["pull_request"]["user"], **BOT}
        assert routed("pull_request_review", body) == Ignore(
            "a review in state 'commented' asks for no changes"
        )
        body["review"]["state"] = "changes_requested"
        assert routed("pull_request_review", body) == Command(
            "revise", task_of(body, body["pull_request"]["number"]), body["sender"]["login"],
            installation_id(body), is_pull_request=True,
            trigger="pull_request_review.submitted", own_pull_request=True,
            review_id=body["review"]["id"],
        )


def test_a_plain_real_inline_comment_is_left_to_its_review() -> None:
    bodies = [nightcrews(b, sent_by_nightcrew=False)
              for b in examples("pull_request_review_comment", "created")]
    assert bodies
    for body in bodies:
        decision = routed("pull_request_review_comment", body)
        assert isinstance(decision, Ignore) and "part of a review" in decision.reason


@pytest.mark.parametrize(
    ("text", "args"),
    [
        ("@nightcrew use more emoji here", "use more emoji here"),
        ("Maybe.\n/nightcrew fix use more emoji here", "use more emoji here"),
        ("\u200b@nightcrew\u200d use more emoji here", "use more emoji here"),
    ],
)
def test_inline_comments_asking_nightcrew_on_its_real_pull_request_ask_for_a_revision(
    text: str, args: str
) -> None:
    for body in examples("pull_request_review_comment", "created"):
        nightcrews(body, sent_by_nightcrew=False)
        body["comment"]["body"] = text
        assert routed("pull_request_review_comment", body) == Command(
            "revise", task_of(body, body["pull_request"]["number"]), body["sender"]["login"],
            installation_id(body), args=args, is_pull_request=True,
            trigger="pull_request_review_comment.created", own_pull_request=True,
            review_comment_id=body["comment"]["id"],
        )
        body["sender"] = {**body["sender"], **BOT}  # nightcrew's own thread reply: no loop
        body["comment"]["user"] = {**body["comment"]["user"], **BOT}
        assert isinstance(routed("pull_request_review_comment", body), Ignore)


@pytest.mark.parametrize(
    "text", ["> @nightcrew use more emoji", "```suggestion\n@nightcrew fix\n```",
             "`@nightcrew` could do this"],
)
def test_quoted_or_fenced_asks_in_real_inline_comments_are_inert(text: str) -> None:
    for body in examples("pull_request_review_comment", "created"):
        nightcrews(body, sent_by_nightcrew=False)
        body["comment"]["body"] = text
        assert isinstance(routed("pull_request_review_comment", body), Ignore)


@pytest.mark.parametrize(
    ("event", "action"),
    [("issues", "labeled"), ("pull_request", "opened"), ("installation", "created")],
)
def test_githubkit_rejects_real_examples_that_routing_accepts(event: str, action: str) -> None:
    # Why events.py has its own lenient models: githubkit's strict ones fail on GitHub's own
    # examples. If this starts failing, githubkit caught up and could be reconsidered.
    body = next(examples(event, action))
    with pytest.raises(ValidationError):
        webhooks.parse_obj(event, body)
    routed(event, body)
