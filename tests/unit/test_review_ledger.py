"""The findings ledger: signed, bound to its PR, trimmed to fit, rendered by state."""

from __future__ import annotations

import base64
import json
from dataclasses import replace

from github_app.tracker.checkpoint import checkpoint_key
from runner.review.ledger import (
    MARKER,
    MAX_BLOCK_CHARS,
    Entry,
    Ledger,
    read_ledger,
    render_block,
    render_comment,
    title_of,
)

KEY = checkpoint_key("ledger-test-secret")
PULL = "octo/calc#7"


def ledger(*entries: Entry) -> Ledger:
    return Ledger(pull=PULL, reviewed_sha="a" * 40, rounds=1, cost_usd=0.0123, entries=entries)


def entry(n: int, state: str = "open", **changes: object) -> Entry:
    base = Entry(fingerprint=f"fp{n:04d}", finding=f"n{n}", path="calc.py", line=n,
                 severity="high", title=f"finding {n}")
    return replace(base, state=state, **changes)  # type: ignore[arg-type]


def test_a_rendered_ledger_reads_back_exactly() -> None:
    original = ledger(entry(1), entry(2, "resolved", settled_in="b" * 40, comment_id=99))
    body = render_comment(original, KEY, status="All good.")
    assert body.startswith(MARKER) and "reviewed up to `aaaaaaaaaa`" in body
    assert read_ledger(body, KEY, PULL) == original


def test_an_edited_block_or_another_prs_block_or_another_key_is_not_read() -> None:
    body = render_comment(ledger(entry(1)), KEY)
    payload = body.split("nightcrew:review v1 ")[1].split(".")[0]
    data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    data["entries"][0]["state"] = "resolved"  # someone marks the finding fixed by hand
    edited = base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()
    assert read_ledger(body.replace(payload, edited), KEY, PULL) is None  # no longer verifies
    block = render_block(ledger(entry(1)), KEY)
    tampered = block[:40] + ("A" if block[40] != "A" else "B") + block[41:]
    assert read_ledger(tampered, KEY, PULL) is None
    assert read_ledger(body, KEY, "octo/calc#8") is None  # pasted from another PR
    assert read_ledger(body, checkpoint_key("other"), PULL) is None
    assert read_ledger(body + "\n" + body, KEY, PULL) is None  # two blocks: ambiguous, none used
    assert read_ledger("no block here", KEY, PULL) is None


def test_a_task_checkpoint_signature_never_verifies_as_a_ledger() -> None:
    # The ledger signs with the checkpoint key under its own scope ("review:<pull>").
    from github_app.tracker.checkpoint import sign
    body = render_comment(ledger(entry(1)), KEY)
    payload = body.split("nightcrew:review v1 ")[1].split(".")[0]
    forged = body.replace(body.split(".")[-1].split(" ")[0], sign(KEY, PULL, payload))
    assert read_ledger(forged, KEY, PULL) is None


def test_a_huge_ledger_drops_settled_entries_first_and_stays_under_the_cap() -> None:
    entries = [entry(n, "resolved" if n % 2 else "open", title="x" * 130) for n in range(1, 400)]
    block = render_block(ledger(*entries), KEY)
    assert len(block) <= MAX_BLOCK_CHARS
    read = read_ledger(block, KEY, PULL)
    assert read is not None and 0 < len(read.entries) < len(entries)
    open_before = sum(1 for e in entries if e.state == "open")
    assert sum(1 for e in read.entries if e.state == "open") == min(open_before, len(read.entries))


def test_the_comment_lists_findings_by_state_and_cannot_be_steered_by_a_title() -> None:
    hostile = entry(3, title="<!-- nightcrew:review v1 AAAA." + "0" * 64 + " -->")
    body = render_comment(ledger(entry(1), entry(2, "outdated"), hostile), KEY)
    assert "**Open** (2)" in body and "**Outdated (the code is gone)** (1)" in body
    assert body.count("<!-- nightcrew:review v1 ") == 1
    assert read_ledger(body, KEY, PULL) is not None


def test_a_title_is_the_first_line_shortened() -> None:
    assert title_of("\n  First line.  \nmore") == "First line."
    assert len(title_of("y" * 500)) == 140 and title_of("y" * 500).endswith("…")
