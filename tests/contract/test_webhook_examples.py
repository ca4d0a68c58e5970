"""Vendored webhook examples and schemas, and the helpers that serve them."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from devhub.webhook_schemas import (
    SPEC_DIR,
    webhook_errors,
    webhook_events,
    webhook_example,
)

ROOT = Path(__file__).resolve().parents[2]
EVENTS = [
    "installation",
    "installation_repositories",
    "issue_comment",
    "issues",
    "ping",
    "pull_request",
    "pull_request_review",
    "pull_request_review_comment",
    "push",
]
# Event/action pairs nightcrew reacts to; the research found a schema-valid example for each.
NEEDED = [
    ("issues", "opened"),
    ("issues", "labeled"),
    ("issues", "assigned"),
    ("issue_comment", "created"),
    ("issue_comment", "edited"),
    ("pull_request", "opened"),
    ("pull_request", "synchronize"),
    ("pull_request", "closed"),
    ("pull_request_review", "submitted"),
    ("pull_request_review_comment", "created"),
    ("installation", "created"),
    ("installation", "deleted"),
    ("installation_repositories", "added"),
    ("installation_repositories", "removed"),
    ("ping", None),
    ("push", None),
]


def vendored(name: str) -> Any:
    return json.loads((SPEC_DIR / name).read_text(encoding="utf-8"))


def vendor_script() -> ModuleType:
    """scripts/vendor_github_data.py, imported as a module."""
    spec = importlib.util.spec_from_file_location(
        "vendor_github_data", ROOT / "scripts/vendor_github_data.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_vendored_events() -> None:
    assert webhook_events() == EVENTS
    definitions = vendored("webhook-schemas.json")["definitions"]
    for event in EVENTS:
        assert f"{event}_event" in definitions or f"{event}$event" in definitions


def test_every_schema_ref_resolves() -> None:
    document = vendored("webhook-schemas.json")
    text = json.dumps(document)
    refs = {part.split('"')[0] for part in text.split('"$ref": "')[1:]}
    assert refs and all(r.startswith("#/definitions/") for r in refs)
    assert {r.removeprefix("#/definitions/") for r in refs} <= set(document["definitions"])


def test_vendored_files_are_fixed_points_of_the_script() -> None:
    # Re-trimming the trimmed data gives it back byte for byte: exact closure, stable output.
    script = vendor_script()
    schemas_text = (SPEC_DIR / "webhook-schemas.json").read_text(encoding="utf-8")
    schemas = json.loads(schemas_text)
    assert script.dump(script.trim_schemas(schemas)) == schemas_text
    examples_text = (SPEC_DIR / "webhook-examples.json").read_text(encoding="utf-8")
    index = [{"name": e, "examples": bodies} for e, bodies in json.loads(examples_text).items()]
    assert script.dump(script.trim_examples(index, schemas)) == examples_text


@pytest.mark.parametrize("event", EVENTS)
def test_example_for_each_event_is_schema_valid(event: str) -> None:
    body = webhook_example(event)
    assert webhook_errors(event, body) == []


@pytest.mark.parametrize(("event", "action"), NEEDED)
def test_example_for_each_needed_action_is_schema_valid(event: str, action: str | None) -> None:
    body = webhook_example(event, action)
    assert body.get("action") == action
    assert webhook_errors(event, body) == []


def test_app_events_carry_an_installation() -> None:
    for event, action in [
        ("pull_request", "opened"),
        ("issue_comment", "created"),
        ("installation", "created"),
    ]:
        assert "id" in webhook_example(event, action)["installation"]


def test_each_event_keeps_one_example_that_drifted_from_the_schema() -> None:
    # GitHub's examples lag the community schema (research: 52 of 329 fail); the vendoring
    # keeps the first such body per event so the preference for valid ones stays tested.
    for event, bodies in vendored("webhook-examples.json").items():
        failing = [b for b in bodies if webhook_errors(event, b)]
        assert len(failing) == 1, event
        assert webhook_example(event, failing[0].get("action")) is not failing[0]
        assert webhook_errors(event, webhook_example(event, failing[0].get("action"))) == []


def test_drifted_example_is_skipped() -> None:
    first_edited = next(
        b for b in vendored("webhook-examples.json")["issues"] if b["action"] == "edited"
    )
    assert "issue: 'active_lock_reason' is a required property" in webhook_errors(
        "issues", first_edited
    )
    assert webhook_example("issues", "edited") != first_edited


def test_tampered_body_fails() -> None:
    body = webhook_example("issues", "opened")
    del body["issue"]["number"]
    assert webhook_errors("issues", body) == ["issue: 'number' is a required property"]
    comment = webhook_example("issue_comment", "created")
    comment["comment"]["body"] = 5
    assert webhook_errors("issue_comment", comment) == ["comment/body: 5 is not of type 'string'"]


def test_examples_are_fresh_copies() -> None:
    body = webhook_example("push")
    body["ref"] = "refs/heads/mine"
    assert webhook_example("push")["ref"] != "refs/heads/mine"


def test_unknown_action_event_and_missing_example() -> None:
    body = webhook_example("issues", "opened")
    body["action"] = "bogus"
    assert webhook_errors("issues", body)[0].startswith("action: 'bogus' is not one of ['assigned'")
    assert webhook_errors("check_run", {}) == ["no schema for event 'check_run'"]
    with pytest.raises(LookupError):
        webhook_example("pull_request", "edited")  # needs `changes`; no example to borrow


def test_action_without_example_borrows_a_relabeled_one() -> None:
    body = webhook_example("issues", "closed")  # declared, but GitHub ships no example
    assert body["action"] == "closed" and webhook_errors("issues", body) == []
