"""The findings ledger: one summary comment per pull request, edited in place every round.

The comment lists every finding by state (open, resolved, irrelevant, outdated) and ends in a
hidden, signed block that holds each finding's fingerprint and state::

    <!-- nightcrew:review v1 {base64url(json)}.{hex hmac-sha256} -->

It is the review's memory across rounds — Redis may be lost, the PR conversation is not — so a
finding once posted is never posted again, and an open one is re-checked at every new head.
Signed like the task checkpoint (same key, a scope of its own), so an edited comment or one
pasted from another PR is not read: the round then starts from an empty ledger, which at worst
repeats findings, never hides them.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal, get_args

from github_app.repo_config import Severity
from github_app.tracker.checkpoint import CheckpointError, decode_payload, sign, signed_by
from runner.review.findings import SEVERITIES, Side

MARKER = "<!-- nightcrew:review -->"
BLOCK_PREFIX = "<!-- nightcrew:review v1 "
_BLOCK = re.compile(r"<!-- nightcrew:review v1 ([A-Za-z0-9_-]+)\.([0-9a-f]{64}) -->")
MAX_BLOCK_CHARS = 40 * 1024  # GitHub's comment limit is 65,536; the visible list shares it
MAX_ENTRIES = 150  # past this the oldest settled findings are forgotten first
FindingState = Literal["open", "resolved", "irrelevant", "outdated"]
FINDING_STATES: tuple[FindingState, ...] = get_args(FindingState)
_TITLE_CHARS = 140


@dataclass(frozen=True)
class Entry:
    """One finding the ledger remembers."""

    fingerprint: str
    finding: str  # the finding's id in the round that found it
    path: str
    line: int
    severity: Severity
    title: str
    state: FindingState = "open"
    side: Side = "RIGHT"
    category: str | None = None
    round: int = 1
    inline: bool = False  # posted as an inline comment (else listed in the summary only)
    comment_id: int | None = None  # the inline comment, the root of its thread
    settled_in: str | None = None  # the head SHA at which it stopped being open
    note: str = ""

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"


@dataclass(frozen=True)
class Ledger:
    """Every finding on one pull request, and how far review got."""

    pull: str  # "owner/repo#N"
    reviewed_sha: str | None = None
    rounds: int = 0
    fix_rounds: int = 0
    cost_usd: float = 0.0
    handed_over: bool = False  # the fix loop stopped; people take it from here
    entries: tuple[Entry, ...] = field(default_factory=tuple)

    def known(self, fingerprint: str) -> Entry | None:
        return next((e for e in self.entries if e.fingerprint == fingerprint), None)

    def in_state(self, state: FindingState) -> list[Entry]:
        return [e for e in self.entries if e.state == state]

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"), allow_nan=False)

    @classmethod
    def from_json(cls, text: str | bytes) -> Ledger:
        """The ledger in a block's JSON; ``ValueError`` names what is wrong."""
        data = json.loads(text)
        if not isinstance(data, dict) or not isinstance(data.get("pull"), str):
            raise ValueError("not a review ledger")
        entries = tuple(_entry(raw) for raw in data.pop("entries", []) or [])
        known = {"pull", "reviewed_sha", "rounds", "fix_rounds", "cost_usd", "handed_over"}
        if unknown := set(data) - known:
            raise ValueError(f"unknown ledger fields: {sorted(unknown)}")
        return cls(entries=entries, **data)


def _entry(raw: Any) -> Entry:
    if not isinstance(raw, dict):
        raise ValueError("a ledger entry must be an object")
    entry = Entry(**raw)
    if entry.state not in FINDING_STATES or entry.severity not in SEVERITIES:
        raise ValueError(f"ledger entry {entry.finding!r}: bad state or severity")
    if not isinstance(entry.line, int) or not isinstance(entry.fingerprint, str):
        raise ValueError(f"ledger entry {entry.finding!r}: bad line or fingerprint")
    return entry


def scope(pull: str) -> str:
    """What the signature binds: this PR, and not a task checkpoint's scope."""
    return f"review:{pull}"


def render_block(ledger: Ledger, key: bytes) -> str:
    """The hidden signed block; the oldest settled entries go first when it would not fit."""
    kept = _trimmed(ledger)
    while True:
        payload = base64.urlsafe_b64encode(kept.to_json().encode()).rstrip(b"=").decode("ascii")
        block = f"{BLOCK_PREFIX}{payload}.{sign(key, scope(ledger.pull), payload)} -->"
        if len(block) <= MAX_BLOCK_CHARS or not kept.entries:
            return block
        kept = replace(kept, entries=_drop_one(kept.entries))


def read_ledger(body: str, key: bytes, pull: str) -> Ledger | None:
    """The ledger in a summary comment's body, if its block is there, intact and this PR's."""
    blocks = _BLOCK.findall(body[: MAX_BLOCK_CHARS * 3])
    if len(blocks) != 1:  # none, or text pasted into the visible part: use none
        return None
    payload, signature = blocks[0]
    if not signed_by(signature, key, scope(pull), payload):
        return None
    try:
        ledger = Ledger.from_json(decode_payload(payload))
    except (CheckpointError, ValueError, TypeError):
        return None
    return ledger if ledger.pull.lower() == pull.lower() else None


def _trimmed(ledger: Ledger) -> Ledger:
    entries = ledger.entries
    while len(entries) > MAX_ENTRIES:
        entries = _drop_one(entries)
    return replace(ledger, entries=entries)


def _drop_one(entries: tuple[Entry, ...]) -> tuple[Entry, ...]:
    """Without the oldest settled entry (or, with none settled, the oldest)."""
    settled = next((i for i, e in enumerate(entries) if e.state != "open"), 0)
    return entries[:settled] + entries[settled + 1:]


def title_of(body: str) -> str:
    """A finding's first line, short: how the summary lists it."""
    first = next((line.strip() for line in body.splitlines() if line.strip()), "")
    return first if len(first) <= _TITLE_CHARS else first[: _TITLE_CHARS - 1] + "…"


_HEADINGS: dict[FindingState, str] = {
    "open": "Open", "resolved": "Resolved", "irrelevant": "Dismissed as irrelevant",
    "outdated": "Outdated (the code is gone)",
}


def render_comment(ledger: Ledger, key: bytes, *, status: str = "") -> str:
    """The summary comment: the head reviewed, findings by state, the signed block."""
    sha = ledger.reviewed_sha[:10] if ledger.reviewed_sha else "nothing yet"
    lines = [MARKER, f"### nightcrew review · reviewed up to `{sha}`", ""]
    counts = ", ".join(f"{len(ledger.in_state(s))} {s}" for s in FINDING_STATES if ledger.in_state(s))
    lines.append(f"Round {ledger.rounds} · {counts or 'no findings'} · "
                 f"fix rounds {ledger.fix_rounds} · review cost ${ledger.cost_usd:.4f}")
    if status:  # the model's summary is in it: text, never markup of ours
        lines += ["", escape_comment(status)]
    for state in FINDING_STATES:
        entries = ledger.in_state(state)
        if not entries:
            continue
        lines += ["", f"**{_HEADINGS[state]}** ({len(entries)})"]
        for entry in entries:
            how = "" if entry.inline else " · _not inline_"
            settled = f" · in `{entry.settled_in[:10]}`" if entry.settled_in else ""
            note = f" — {escape_comment(entry.note)}" if entry.note else ""
            lines.append(f"- `{entry.where}` **{entry.severity}**{how}{settled}: "
                         f"{escape_comment(entry.title)}{note}")
    lines += ["", "<sub>Say `/nightcrew review` to review again, `/nightcrew fix …` to ask for "
                  "changes.</sub>", "", render_block(ledger, key)]
    return "\n".join(lines)


def escape_comment(text: str) -> str:
    """Text on one line that cannot open an HTML comment (so no block or write key of ours)."""
    return text.replace("<!--", "&lt;!--").replace("\n", " ")
