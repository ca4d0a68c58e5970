"""GitHub webhook bodies: schema checks and real example payloads (vendored from octokit)."""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jsonschema import Draft7Validator

from .openapi import errors_of

SPEC_DIR = Path(__file__).with_name("spec")


@functools.cache
def _schema() -> dict[str, Any]:
    """The vendored draft-07 document ({"$schema", "definitions"})."""
    loaded: dict[str, Any] = json.loads((SPEC_DIR / "webhook-schemas.json").read_text("utf-8"))
    return loaded


@functools.cache
def _examples() -> dict[str, list[dict[str, Any]]]:
    """The vendored {event: [example bodies]}."""
    loaded: dict[str, list[dict[str, Any]]] = json.loads(
        (SPEC_DIR / "webhook-examples.json").read_text("utf-8")
    )
    return loaded


@functools.cache
def _validator(definition: str) -> Draft7Validator:
    """A validator for one definition; `#/definitions/...` refs resolve in the same document."""
    return Draft7Validator({**_schema(), "$ref": f"#/definitions/{definition}"})


def webhook_events() -> list[str]:
    """The events whose examples and schemas are vendored."""
    return sorted(_examples())


def definition_for(event: str, action: str | None) -> str | None:
    """The schema definition for an event and action, or None if there is none."""
    definitions = _schema()["definitions"]
    names = [f"{event}${action}"] if action is not None else []
    names += [f"{event}$event", f"{event}_event"]
    return next((n for n in names if n in definitions), None)


def _actions(event: str) -> list[str]:
    """Actions the schema declares for an event (empty for ping, push)."""
    prefix = f"{event}$"
    names = [n[len(prefix) :] for n in _schema()["definitions"] if n.startswith(prefix)]
    return sorted(n for n in names if n != "event")


def webhook_errors(event: str, payload: Mapping[str, Any]) -> list[str]:
    """Why payload is not a valid body for an `X-GitHub-Event: event` delivery ([] if it is)."""
    action = payload.get("action")
    actions = _actions(event)
    if actions and action not in actions:
        # The `<event>_event` oneOf would only say "not valid under any"; name the cause.
        return [f"action: {action!r} is not one of {actions}"]
    definition = definition_for(event, action if isinstance(action, str) else None)
    if definition is None:
        return [f"no schema for event {event!r}"]
    return errors_of(_validator(definition), payload, root="<payload>")


@functools.cache
def _example_for(event: str, action: str | None) -> dict[str, Any]:
    """The first schema-valid example for event/action, else the first fitting one at all.

    Some actions (e.g. issues.closed) have a schema but no example; then the first example of
    the event that passes that action's schema once relabeled stands in for it.
    """
    bodies = _examples().get(event, [])
    fitting = [b for b in bodies if action is None or b.get("action") == action]
    valid = (b for b in fitting if not webhook_errors(event, b))
    relabeled = ({**b, "action": action} for b in bodies if action is not None)
    found = next(valid, None) or next((b for b in relabeled if not webhook_errors(event, b)), None)
    if found is None and not fitting:
        raise LookupError(f"no vendored example for {event}" + (f".{action}" if action else ""))
    return found or fitting[0]


def webhook_example(event: str, action: str | None = None) -> dict[str, Any]:
    """A fresh copy of GitHub's example body for event/action (any action when None)."""
    return copy.deepcopy(_example_for(event, action))
