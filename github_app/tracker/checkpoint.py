"""A task's checkpoint, kept as a signed hidden block at the end of its status comment.

The issue tracker is the task store, so the state a worker needs to resume a task (branch, last
pushed commit, plan, spend, approvals, GitHub writes already made) lives in the one status comment
as an HTML comment, which GitHub does not display::

    <!-- nightcrew:state v1 {base64url(json)}.{hex hmac-sha256} -->

Anyone with write access to the repository can edit that comment, so the block is signed with a
key only the App holds, and the signature covers the task key: a block edited by hand reads as
``"tampered"`` and a block copied from another issue reads as ``"foreign"``; neither is used.

Only the status comment is read: the caller finds it by ``status.MARKER`` *and* the App's own bot
author, and passes its body to ``read_block``. Blocks in other comments (a user quoting one, or
pasting one inside a fenced code block) are never looked at, so they cannot steer a run.

The signature proves the App wrote the block for this task, not that it is the newest one: a
maintainer could paste back an older block of the same task from the comment's edit history.
Callers that care (``writes``, ``head_sha``) should cross-check against GitHub.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from github_app.tasks import TaskKey
from github_app.tracker.lifecycle import STATES, State

CHECKPOINT_VERSION = 1
BLOCK_PREFIX = "<!-- nightcrew:state"  # how a block starts; status.split_block looks for it too
_BLOCK_SUFFIX = "-->"
_VERSION_TAG = f"v{CHECKPOINT_VERSION}"
# GitHub refuses comment bodies over 65,536 characters and the visible status text shares that
# room, so a block is capped well below it, when writing (never write what we would refuse to
# read) and when reading (never decode an unbounded hostile string).
MAX_BLOCK_CHARS = 32 * 1024
_KEY_INFO = b"nightcrew checkpoint v1"
_HEX_SHA256 = re.compile(r"[0-9a-f]{64}")
_BASE64URL = re.compile(r"[A-Za-z0-9_-]+")
# The shape of a block we write; anything else is "malformed", a bad signature on this shape is
# "tampered" (so an edit inside the alphabets reads as tampering, junk as malformed).
_INNER = re.compile(r"\s+(v[0-9]{1,6})\s+([A-Za-z0-9_-]+)\.([0-9a-f]{64})\s+")

Problem = Literal["tampered", "foreign", "malformed", "ambiguous"]


_OPTIONAL = frozenset({"summary"})  # fields added after v1 blocks were written
MAX_SUMMARY_CHARS = 4_000


class CheckpointError(ValueError):
    """A checkpoint is invalid: a bad field, bad JSON, or too big to store."""


@dataclass(frozen=True, kw_only=True)
class Checkpoint:
    """What a worker needs to resume a task; JSON-safe, validated on construction.

    Keyword-only so that ``version`` can default while the fields after it cannot.
    """

    task: str  # "owner/repo#N"
    version: int = CHECKPOINT_VERSION
    state: State  # a lifecycle state; one this nightcrew does not know reads as malformed
    step: int
    branch: str
    head_sha: str | None  # last commit pushed to ``branch``
    base_sha: str | None
    plan: tuple[tuple[str, bool], ...]  # (item, done)
    budget: dict[str, Any] = field(hash=False)  # a RunBudget snapshot; not hashable, so not hashed
    approved: tuple[str, ...]  # change kinds a human approved
    pr_number: int | None
    writes: tuple[str, ...]  # idempotency keys of GitHub writes already made
    updated_at: str  # ISO 8601, UTC
    summary: str = ""  # the agent's summary once it finished: a resumed run publishes, not redoes

    def __post_init__(self) -> None:
        """Refuse a bad field here, so neither ``to_json`` nor ``from_json`` can produce one."""
        _validate(self)
        # A private JSON copy: the frozen checkpoint cannot change under a caller still holding
        # the dict, and what round-trips equals what was stored.
        object.__setattr__(self, "budget", json.loads(_dumps(self.budget)))

    def to_json(self) -> str:
        """Canonical JSON (sorted keys, no spaces, ASCII), so equal checkpoints sign equal."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["plan"] = [[item, done] for item, done in self.plan]
        return _dumps(data)

    @classmethod
    def from_json(cls, text: str | bytes) -> Checkpoint:
        """Parse strictly: unknown, missing or mistyped fields raise ``CheckpointError``."""
        try:
            data = json.loads(text, object_pairs_hook=_no_duplicate_keys, parse_constant=_no_constant)
        except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError too
            raise CheckpointError(f"not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise CheckpointError("not a JSON object")
        names = {f.name for f in fields(cls)}
        if unknown := sorted(set(data) - names):
            raise CheckpointError(f"unknown fields: {', '.join(unknown)}")
        if missing := sorted(names - set(data) - _OPTIONAL):
            raise CheckpointError(f"missing fields: {', '.join(missing)}")
        for name in ("plan", "approved", "writes"):
            data[name] = _tuple(name, data[name])
        data["plan"] = tuple(_tuple("plan item", item) for item in data["plan"])
        return cls(**data)


@dataclass(frozen=True)
class BlockRead:
    """What ``read_block`` found: a verified checkpoint, or why there is none.

    ``(None, None)`` means the comment has no block (a task that never checkpointed).
    """

    checkpoint: Checkpoint | None
    problem: Problem | None


def utc_now() -> str:
    """The current time for ``updated_at``: ISO 8601 in UTC, to the second."""
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def checkpoint_key(secret: str) -> bytes:
    """The block-signing key: HMAC-SHA256(secret, b"nightcrew checkpoint v1").

    Derived rather than used raw, so that when the checkpoint key comes from the webhook secret
    the two keys still differ, and a signature made for one purpose never verifies for the other.
    """
    if not secret:
        raise ValueError("the checkpoint secret is empty")
    return hmac.new(secret.encode("utf-8"), _KEY_INFO, hashlib.sha256).digest()


def render_block(cp: Checkpoint, key: bytes) -> str:
    """The hidden, signed block for ``cp``, to put at the end of the status comment."""
    _require_key(key)
    payload = base64.urlsafe_b64encode(cp.to_json().encode("ascii")).rstrip(b"=").decode("ascii")
    block = f"{BLOCK_PREFIX} {_VERSION_TAG} {payload}.{_mac(key, cp.task, payload)} {_BLOCK_SUFFIX}"
    if len(block) > MAX_BLOCK_CHARS:
        raise CheckpointError(f"checkpoint block is {len(block)} characters; the cap is {MAX_BLOCK_CHARS}")
    return block


def read_block(comment_body: str, key: bytes, *, task: str) -> BlockRead:
    """The checkpoint in the status comment's body, if it is there, intact and this task's.

    Never raises on the body, whatever it holds: a broken block is reported, not used.
    More than one block is ``"ambiguous"`` and none is used: text that got into the visible part
    of the comment (say, a plan item) must not be able to substitute an older block.
    """
    _require_key(key)
    count = comment_body.count(BLOCK_PREFIX)
    if count == 0:
        return BlockRead(None, None)
    if count > 1:
        return BlockRead(None, "ambiguous")
    start = comment_body.index(BLOCK_PREFIX)
    end = comment_body.find(_BLOCK_SUFFIX, start, start + MAX_BLOCK_CHARS)
    if end == -1:  # unterminated, or longer than any block we write
        return BlockRead(None, "malformed")
    match = _INNER.fullmatch(comment_body, start + len(BLOCK_PREFIX), end)
    if match is None or match[1] != _VERSION_TAG:
        return BlockRead(None, "malformed")
    return _verified(match[2], match[3], key, task)


def _verified(payload: str, signature: str, key: bytes, task: str) -> BlockRead:
    """Check the signature before decoding anything, then the checkpoint inside."""
    if not _signature_ok(signature, key, task, payload):
        claimed = _claimed_task(payload)
        if claimed is not None and not _same_task(claimed, task) and _signature_ok(
            signature, key, claimed, payload
        ):
            return BlockRead(None, "foreign")
        return BlockRead(None, "tampered")
    try:
        cp = Checkpoint.from_json(_decode(payload))
    except CheckpointError:  # signed by us but unreadable: a bug or a version skew, not an attack
        return BlockRead(None, "malformed")
    if not _same_task(cp.task, task):  # render_block binds cp.task, so only a bug gets here
        return BlockRead(None, "foreign")
    return BlockRead(cp, None)


def sign(key: bytes, scope: str, payload: str) -> str:
    """The HMAC a signed block of ``scope`` carries (the review ledger signs with it too)."""
    _require_key(key)
    return _mac(key, scope, payload)


def signed_by(signature: str, key: bytes, scope: str, payload: str) -> bool:
    """Whether ``signature`` is ours over ``payload`` for ``scope`` (constant time)."""
    _require_key(key)
    return _signature_ok(signature, key, scope, payload)


def decode_payload(payload: str) -> bytes:
    """A block's base64url payload as bytes; ``CheckpointError`` if it is not base64url."""
    return _decode(payload)


def _mac(key: bytes, task: str, payload: str) -> str:
    """Hex HMAC-SHA256 over the version, the task and the exact payload text.

    The task is length-prefixed so no (task, payload) pair can be re-split into another, and
    lower-cased because GitHub owner and repository names are case-insensitive.
    """
    task_bytes = task.lower().encode("utf-8", "surrogatepass")
    message = b"%s\n%d:%s\n%s" % (
        _VERSION_TAG.encode("ascii"), len(task_bytes), task_bytes,
        payload.encode("utf-8", "surrogatepass"),
    )
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def _signature_ok(signature: str, key: bytes, task: str, payload: str) -> bool:
    """Constant-time compare; a signature that is not 64 lower-case hex digits is simply wrong."""
    if _HEX_SHA256.fullmatch(signature) is None:
        return False
    return hmac.compare_digest(signature.encode("ascii"), _mac(key, task, payload).encode("ascii"))


def _claimed_task(payload: str) -> str | None:
    """The task an unverified payload names, only to tell "foreign" from "tampered"."""
    try:
        data = json.loads(_decode(payload))
    except (CheckpointError, ValueError, RecursionError):
        return None
    task = data.get("task") if isinstance(data, dict) else None
    return task if isinstance(task, str) else None


def _decode(payload: str) -> bytes:
    """base64url without padding; ``urlsafe_b64decode`` skips stray characters, so check first."""
    if _BASE64URL.fullmatch(payload) is None:
        raise CheckpointError("payload is not base64url")
    try:
        return base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    except (binascii.Error, ValueError) as exc:
        raise CheckpointError(f"payload is not base64url: {exc}") from None


def _same_task(a: str, b: str) -> bool:
    return a.lower() == b.lower()


def _require_key(key: bytes) -> None:
    """An empty key signs nothing: refuse it rather than write blocks anyone could forge."""
    if not isinstance(key, bytes) or not key:
        raise ValueError("the checkpoint key must be non-empty bytes")


def _dumps(value: Any) -> str:
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                          allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:  # NaN, objects, absurd nesting
        raise CheckpointError(f"not JSON-safe: {exc}") from None


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise CheckpointError("duplicate JSON keys")
    return dict(pairs)


def _no_constant(name: str) -> Any:
    raise CheckpointError(f"{name} is not JSON")


def _tuple(name: str, value: Any) -> tuple[Any, ...]:
    if not isinstance(value, list):
        raise CheckpointError(f"{name}: expected a list")
    return tuple(value)


def _validate(cp: Checkpoint) -> None:
    """Type and range checks for every field; ``bool`` is not accepted where an int is meant."""
    _check_str("task", cp.task)
    try:
        TaskKey.parse(cp.task)
    except ValueError:
        raise CheckpointError(f"task: not owner/repo#N: {cp.task!r}") from None
    if _int_or_none(cp.version) != CHECKPOINT_VERSION:
        raise CheckpointError(f"version: expected {CHECKPOINT_VERSION}, got {cp.version!r}")
    if cp.state not in STATES:
        raise CheckpointError(f"state: not a task state: {cp.state!r}")
    if not isinstance(cp.summary, str) or len(cp.summary) > MAX_SUMMARY_CHARS:
        raise CheckpointError(f"summary must be text of at most {MAX_SUMMARY_CHARS} characters")
    step = _int_or_none(cp.step)
    if step is None or step < 0:
        raise CheckpointError(f"step: expected a non-negative int, got {cp.step!r}")
    _check_str("branch", cp.branch)
    for name in ("head_sha", "base_sha"):
        value = getattr(cp, name)
        if value is not None:
            _check_str(name, value)
    if not isinstance(cp.plan, tuple) or not all(
        isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)
        and isinstance(item[1], bool) for item in cp.plan
    ):
        raise CheckpointError("plan: expected a tuple of (str, bool) pairs")
    if not isinstance(cp.budget, dict) or not all(isinstance(k, str) for k in cp.budget):
        raise CheckpointError("budget: expected a dict with str keys")
    for name in ("approved", "writes"):
        value = getattr(cp, name)
        if not isinstance(value, tuple) or not all(isinstance(v, str) for v in value):
            raise CheckpointError(f"{name}: expected a tuple of str")
    if cp.pr_number is not None and (_int_or_none(cp.pr_number) or 0) < 1:
        raise CheckpointError(f"pr_number: expected a positive int or None, got {cp.pr_number!r}")
    _check_utc("updated_at", cp.updated_at)


def _check_str(name: str, value: Any) -> None:
    if not isinstance(value, str) or not value:
        raise CheckpointError(f"{name}: expected a non-empty str, got {value!r}")


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _check_utc(name: str, value: Any) -> None:
    _check_str(name, value)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise CheckpointError(f"{name}: not an ISO 8601 time: {value!r}") from None
    if parsed.utcoffset() != timedelta(0):  # None (naive) is not UTC either
        raise CheckpointError(f"{name}: not in UTC: {value!r}")
