"""What crosses the queue: the intake job's and the task job's argument, as typed records.

Ingress builds an ``IntakeJob`` from a routed webhook; intake and the reconciler build a
``TaskJob`` for the fair scheduler, which hands it to RQ; the worker reads it back. These two
classes are the only way either package builds or reads a job argument: on the wire it is the
record's canonical JSON text (``to_json``), versioned, and ``from_json`` refuses an unknown
version or a bad field with a ``PayloadError`` that says which — a job written by a newer
nightcrew is never half-understood by an older worker.

An argument written before payloads were versioned (a dict without ``version``, from a worker
of the previous release still in the queue during an upgrade) has the version-1 shape and is
read as version 1.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, fields
from typing import Any, TypeVar

from github_app.tasks import TaskKey

PAYLOAD_VERSION = 1
P = TypeVar("P", bound="_Payload")


class PayloadError(ValueError):
    """A job argument this nightcrew cannot read: the message names the field or the version."""


@dataclass(frozen=True, kw_only=True)
class _Payload:
    version: int = PAYLOAD_VERSION

    def to_json(self) -> str:
        """Canonical JSON (sorted keys, no spaces): the job's one argument."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["task"] = str(data["task"])
        return json.dumps(data, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls: type[P], raw: str | bytes | Mapping[str, Any]) -> P:
        """Read a job argument strictly; ``PayloadError`` says what is wrong."""
        data = _object(raw)
        version = data.pop("version", PAYLOAD_VERSION)
        if version != PAYLOAD_VERSION or isinstance(version, bool):
            raise PayloadError(f"{cls.__name__}: version {version!r} is not one this nightcrew "
                               f"reads (it reads {PAYLOAD_VERSION}); upgrade the worker")
        known = {f.name for f in fields(cls)} - {"version"}
        if unknown := sorted(set(data) - known):
            raise PayloadError(f"{cls.__name__}: unknown fields: {', '.join(unknown)}")
        if missing := sorted(f.name for f in fields(cls) if f.name not in data and f.name != "version"
                             and f.default is MISSING and f.default_factory is MISSING):
            raise PayloadError(f"{cls.__name__}: missing fields: {', '.join(missing)}")
        try:
            data["task"] = TaskKey.parse(str(data["task"]))
            payload = cls(**data)
        except (KeyError, TypeError, ValueError) as exc:
            raise PayloadError(f"{cls.__name__}: {exc}") from None
        payload._check()
        return payload

    def _check(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            expected = _TYPES.get(f.name)
            if expected is not None and not _is(value, expected):
                raise PayloadError(f"{type(self).__name__}: {f.name} must be {_said(expected)}, "
                                   f"not {value!r}")


@dataclass(frozen=True, kw_only=True)
class TaskJob(_Payload):
    """``runner.worker.jobs.run_task``'s argument: which task, for whom, from where.

    ``resume``: a person's resume/retry (any stopped checkpoint continues, not only a crashed
    one); ``fresh``: ``retry fresh`` (ignore the checkpoint and the branch).
    """

    task: TaskKey
    installation_id: int
    status_comment: int | None
    actor: str
    resume: bool = False
    fresh: bool = False
    revise_pr: int | None = None  # a revision of this nightcrew PR (review findings, human review)

    def _check(self) -> None:
        super()._check()
        if not _is(self.installation_id, "int"):
            raise PayloadError(f"TaskJob: installation_id must be int, not {self.installation_id!r}")


@dataclass(frozen=True, kw_only=True)
class IntakeJob(_Payload):
    """``github_app.queue.intake.intake``'s argument: one routed webhook delivery.

    ``kind`` is the routed command (``start``, ``cancel``, …, ``review``) or ``unknown``
    (``args`` then holds the verb nobody knows); ``label`` is the label of a labeled event.
    """

    task: TaskKey
    kind: str
    actor: str
    installation_id: int | None
    comment_id: int | None = None
    delivery: str = ""
    label: str | None = None
    args: str = ""
    is_pull_request: bool = False
    trigger: str = ""  # what asked without a person typing, e.g. "pull_request.opened"


@dataclass(frozen=True, kw_only=True)
class ReviewJob(_Payload):
    """``runner.worker.jobs.review_pull``'s argument: review one pull request, one round.

    ``task`` is the pull request (its number); ``trigger`` says who asked: ``command`` (a
    person's ``/nightcrew review``), ``opened``/``ready_for_review`` (nightcrew's own or, when
    configured, anyone's PR), ``after_fix`` (the fix loop pushed a revision).
    """

    task: TaskKey
    installation_id: int
    actor: str
    trigger: str = "command"
    delivery: str = ""

    def _check(self) -> None:
        super()._check()
        if not _is(self.installation_id, "int"):
            raise PayloadError(f"ReviewJob: installation_id must be int, not {self.installation_id!r}")


_TYPES: dict[str, str] = {
    "installation_id": "int?", "status_comment": "int?", "comment_id": "int?", "actor": "str",
    "kind": "str", "delivery": "str", "label": "str?", "args": "str", "resume": "bool",
    "fresh": "bool", "is_pull_request": "bool", "trigger": "str", "revise_pr": "int?",
}


def _is(value: Any, expected: str) -> bool:
    if expected.endswith("?"):
        return value is None or _is(value, expected[:-1])
    if expected == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, {"str": str, "bool": bool}[expected])


def _object(raw: str | bytes | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(raw, Mapping):
        return dict(raw)
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise PayloadError(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise PayloadError("not a JSON object")
    return data


def _said(expected: str) -> str:
    """A field type as the error message says it (``int?`` is "int or null")."""
    return expected[:-1] + " or null" if expected.endswith("?") else expected
