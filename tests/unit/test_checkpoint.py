"""Checkpoint: a signed hidden block in the status comment; a bad block is reported, never used.

Only the status comment (found by ``status.MARKER`` and the App's bot author) is passed to
``read_block``; a block a user pastes into their own comment, fenced or not, is never read.
"""

from __future__ import annotations

import base64
import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest

from github_app.ingress.signatures import sign
from github_app.settings import SettingsError, load_settings
from github_app.tracker.checkpoint import (
    BLOCK_PREFIX,
    MAX_BLOCK_CHARS,
    BlockRead,
    Checkpoint,
    CheckpointError,
    checkpoint_key,
    read_block,
    render_block,
)
from github_app.tracker.status import MARKER, PlanStep, StatusView, render, split_block

KEY = checkpoint_key("s3cret")
TASK = "octo/widgets#7"


def make(**changes: Any) -> Checkpoint:
    values: dict[str, Any] = dict(
        task=TASK, state="running", step=4, branch="nightcrew/issue-7", head_sha="a" * 40,
        base_sha="b" * 40, plan=(("find the bug", True), ("fix it", False)),
        budget={"spent_tokens": 1200, "spent_usd": 0.25, "steps": 4, "elapsed_s": 31.5,
                "warned": False},
        approved=("dependency",), pr_number=None, writes=("comment:status", "push:abc"),
        updated_at="2025-01-02T03:04:05+00:00",
    )
    values.update(changes)
    return Checkpoint(**values)


def status_body(block: str) -> str:
    return render(StatusView("running", TASK, plan=(PlanStep("fix it"),), step=4,
                             checkpoint_block=block))


def parts(block: str) -> tuple[str, str]:
    """(payload, signature) of a rendered block."""
    match = re.fullmatch(r"<!-- nightcrew:state v1 (\S+)\.(\S+) -->", block)
    assert match is not None
    return match[1], match[2]


def flip(text: str, index: int) -> str:
    """Change one character, staying in the base64url and hex alphabets."""
    return text[:index] + ("b" if text[index] != "b" else "c") + text[index + 1:]


# -- the checkpoint value ------------------------------------------------------------------

def test_json_round_trip() -> None:
    cp = make(pr_number=12, head_sha=None, budget={"nested": {"a": [1, 2.5, "x", None]}})
    assert Checkpoint.from_json(cp.to_json()) == cp
    assert Checkpoint.from_json(cp.to_json().encode()) == cp
    assert cp.version == 1


def test_budget_is_a_private_copy() -> None:
    budget: dict[str, Any] = {"spent_usd": 0.5}
    cp = make(budget=budget)
    budget["spent_usd"] = 99.0
    assert cp.budget == {"spent_usd": 0.5}
    hash(cp)  # the dict is left out of the hash, so a checkpoint can still be a dict key


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.update(extra=1), "unknown fields: extra"),
    (lambda d: d.pop("writes"), "missing fields: writes"),
    (lambda d: d.update(step="4"), "step"),
    (lambda d: d.update(step=True), "step"),
    (lambda d: d.update(step=-1), "step"),
    (lambda d: d.update(version=2), "version"),
    (lambda d: d.update(plan=[["x", "yes"]]), "plan"),
    (lambda d: d.update(plan=[["x"]]), "plan"),
    (lambda d: d.update(plan="x"), "plan"),
    (lambda d: d.update(approved=[1]), "approved"),
    (lambda d: d.update(budget=[]), "budget"),
    (lambda d: d.update(pr_number=0), "pr_number"),
    (lambda d: d.update(task="not a task"), "task"),
    (lambda d: d.update(head_sha=7), "head_sha"),
    (lambda d: d.update(updated_at="2025-01-02T03:04:05"), "updated_at"),
    (lambda d: d.update(updated_at="2025-01-02T03:04:05+02:00"), "updated_at"),
    (lambda d: d.update(updated_at="yesterday"), "updated_at"),
])
def test_from_json_is_strict(mutate: Any, message: str) -> None:
    import json

    data = json.loads(make().to_json())
    mutate(data)
    with pytest.raises(CheckpointError, match=message):
        Checkpoint.from_json(json.dumps(data))


@pytest.mark.parametrize("text", ["", "[]", "{", '{"task": NaN}', '{"a": 1, "a": 2}', "[" * 100_000])
def test_from_json_refuses_garbage(text: str) -> None:
    with pytest.raises(CheckpointError):
        Checkpoint.from_json(text)


def test_budget_must_be_json_safe() -> None:
    with pytest.raises(CheckpointError, match="JSON-safe"):
        make(budget={"spent_usd": float("nan")})
    with pytest.raises(CheckpointError, match="JSON-safe"):
        make(budget={"when": object()})


# -- the block in the status comment -------------------------------------------------------

def test_block_round_trips_through_the_status_comment() -> None:
    cp = make()
    body = status_body(render_block(cp, KEY))
    assert body.startswith(MARKER)
    assert read_block(body, KEY, task=TASK) == BlockRead(cp, None)


def test_block_is_the_last_line_and_split_block_separates_it() -> None:
    block = render_block(make(), KEY)
    body = status_body(block)
    assert body.endswith("\n\n" + block)
    visible, found = split_block(body)
    assert found == block and visible == status_body("")
    assert split_block(status_body("")) == (status_body(""), "")
    crlf_visible, crlf_block = split_block(body.replace("\n", "\r\n"))
    assert crlf_block == block and not crlf_visible.endswith("\r")


def test_no_checkpoint_text_outside_an_html_comment() -> None:
    block = render_block(make(plan=(("secret-looking plan item", False),)), KEY)
    payload, signature = parts(block)
    body = status_body(block)
    outside = re.sub(r"<!--.*?-->", "", body, flags=re.DOTALL)
    for text in ("nightcrew:state", payload[:20], signature, "-->"):
        assert text not in outside
    # CommonMark (as GitHub's renderer) reads the line as an HTML block, which GitHub drops.
    markdown_it = pytest.importorskip("markdown_it")
    tokens = markdown_it.MarkdownIt("commonmark").parse(body)
    holders = [t for t in tokens if t.content and "nightcrew:state" in t.content]
    assert [t.type for t in holders] == ["html_block"]
    assert holders[0].content.strip() == block


def test_render_refuses_a_block_that_would_show() -> None:
    with pytest.raises(ValueError, match="checkpoint_block"):
        status_body("visible text")
    with pytest.raises(ValueError, match="checkpoint_block"):
        status_body(render_block(make(), KEY) + "\nvisible")


def test_no_block_is_not_a_problem() -> None:
    assert read_block(status_body(""), KEY, task=TASK) == BlockRead(None, None)
    assert read_block("", KEY, task=TASK) == BlockRead(None, None)


@pytest.mark.parametrize("where", ["payload-start", "payload-middle", "payload-end", "signature"])
def test_one_changed_character_in_the_alphabet_is_tampering(where: str) -> None:
    block = render_block(make(), KEY)
    payload, signature = parts(block)
    if where == "signature":
        signature = flip(signature, 10)
    else:
        index = {"payload-start": 0, "payload-middle": len(payload) // 2, "payload-end": -2}[where]
        payload = flip(payload, index % len(payload))
    forged = f"{BLOCK_PREFIX} v1 {payload}.{signature} -->"
    assert read_block(status_body(forged), KEY, task=TASK) == BlockRead(None, "tampered")


def test_an_edited_checkpoint_re_encoded_without_the_key_is_tampering() -> None:
    block = render_block(make(), KEY)
    _, signature = parts(block)
    edited = make(approved=("dependency", "workflow"), writes=())
    payload = base64.urlsafe_b64encode(edited.to_json().encode()).rstrip(b"=").decode()
    forged = f"{BLOCK_PREFIX} v1 {payload}.{signature} -->"
    assert read_block(status_body(forged), KEY, task=TASK).problem == "tampered"


@pytest.mark.parametrize("signature", ["", "zz", "A" * 64, "a" * 63, "a" * 65, "é" * 64, "\ud800" * 64])
def test_a_signature_of_the_wrong_shape_is_malformed(signature: str) -> None:
    payload, _ = parts(render_block(make(), KEY))
    forged = f"{BLOCK_PREFIX} v1 {payload}.{signature} -->"
    assert read_block(forged, KEY, task=TASK) == BlockRead(None, "malformed")


def test_a_block_signed_with_another_key_is_tampering() -> None:
    block = render_block(make(), checkpoint_key("someone else"))
    assert read_block(status_body(block), KEY, task=TASK) == BlockRead(None, "tampered")


def test_a_block_from_another_task_is_foreign() -> None:
    block = render_block(make(task="octo/widgets#8"), KEY)
    assert read_block(status_body(block), KEY, task=TASK) == BlockRead(None, "foreign")
    other_repo = render_block(make(task="octo/gadgets#7"), KEY)
    assert read_block(status_body(other_repo), KEY, task=TASK).problem == "foreign"


def test_the_task_is_matched_case_insensitively_like_github_names() -> None:
    cp = make(task="Octo/Widgets#7")
    assert read_block(render_block(cp, KEY), KEY, task=TASK) == BlockRead(cp, None)


def test_a_foreign_payload_relabelled_as_this_task_is_still_tampering() -> None:
    block = render_block(make(task="octo/widgets#8"), KEY)
    _, signature = parts(block)
    payload = base64.urlsafe_b64encode(make().to_json().encode()).rstrip(b"=").decode()
    forged = f"{BLOCK_PREFIX} v1 {payload}.{signature} -->"
    assert read_block(forged, KEY, task=TASK).problem == "tampered"


def test_two_blocks_are_ambiguous_and_neither_is_used() -> None:
    old = render_block(make(step=1), KEY)
    new = render_block(make(step=9), KEY)
    # e.g. an older, validly signed block smuggled into the visible text via a plan item
    body = render(StatusView("running", TASK, plan=(PlanStep(old),), checkpoint_block=new))
    assert read_block(body, KEY, task=TASK) == BlockRead(None, "ambiguous")
    assert read_block(new + "\n" + new, KEY, task=TASK).problem == "ambiguous"


def _garbage() -> list[str]:
    block = render_block(make(), KEY)
    payload, signature = parts(block)
    return [
        block[: len(block) // 2],  # truncated: no end
        block[:-4],  # the end lost
        f"{BLOCK_PREFIX} -->",
        f"{BLOCK_PREFIX} v1 -->",
        f"{BLOCK_PREFIX} v1 {payload} -->",  # no signature
        f"{BLOCK_PREFIX} v2 {payload}.{signature} -->",  # a version this code does not read
        f"{BLOCK_PREFIX} v1 {payload}.{signature}-->",
        f"{BLOCK_PREFIX}v1 {payload}.{signature} -->",
        f"{BLOCK_PREFIX} v1 {payload}.{signature} extra -->",
        f"{BLOCK_PREFIX} v1 {'A' * (MAX_BLOCK_CHARS * 3)}.{signature} -->",  # huge
        f"{BLOCK_PREFIX} v1 {'A' * (MAX_BLOCK_CHARS * 3)}",  # huge and unterminated
        f"{BLOCK_PREFIX} v1 \x00\x00.\x00 -->",
    ]


@pytest.mark.parametrize("text", _garbage())
def test_broken_blocks_are_malformed_without_exceptions(text: str) -> None:
    assert read_block(status_body("") + "\n\n" + text, KEY, task=TASK) == BlockRead(None, "malformed")


def _signed(payload: str, task: str = TASK) -> str:
    """A block with a valid signature over a payload render_block would never produce."""
    from github_app.tracker.checkpoint import _mac

    return f"{BLOCK_PREFIX} v1 {payload}.{_mac(KEY, task, payload)} -->"


@pytest.mark.parametrize("raw", [b"not json", b"[]", b'{"task": "octo/widgets#7"}', b"[" * 20_000,
                                 b"\xff\xfe"])
def test_signed_but_unreadable_payload_is_malformed(raw: bytes) -> None:
    payload = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    assert read_block(_signed(payload), KEY, task=TASK) == BlockRead(None, "malformed")


@pytest.mark.parametrize("payload", ["A", "AAAAA", "not*base64", "é"])
def test_signed_but_undecodable_payload_is_malformed(payload: str) -> None:
    assert read_block(_signed(payload), KEY, task=TASK) == BlockRead(None, "malformed")


@pytest.mark.parametrize("text", [
    "\ud800" * 10, BLOCK_PREFIX * 3, "<!-- nightcrew:state v1 " + "é" * 1000 + ".x -->",
    "-->" * 10_000 + BLOCK_PREFIX, BLOCK_PREFIX + " v1 " + "." * 70_000 + " -->",
])
def test_hostile_bodies_never_raise(text: str) -> None:
    result = read_block(text, KEY, task=TASK)
    assert result.checkpoint is None


def test_render_refuses_a_checkpoint_too_big_to_store() -> None:
    cp = make(writes=tuple(f"comment:{i:06d}" for i in range(3000)))
    with pytest.raises(CheckpointError, match="cap"):
        render_block(cp, KEY)


def test_an_empty_key_is_refused() -> None:
    with pytest.raises(ValueError):
        render_block(make(), b"")
    with pytest.raises(ValueError):
        read_block("", b"", task=TASK)
    with pytest.raises(ValueError):
        checkpoint_key("")


def test_checkpoint_fields_are_keyword_only_and_frozen() -> None:
    cp = make()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cp.step = 5  # type: ignore[misc]
    assert dataclasses.replace(cp, step=5).step == 5


# -- the key -------------------------------------------------------------------------------

def test_checkpoint_key_differs_from_the_webhook_key_for_the_same_secret() -> None:
    secret = "shared"
    key = checkpoint_key(secret)
    assert len(key) == 32 and key != secret.encode()
    # The webhook signature of the derivation label is the only collision, and GitHub sends JSON.
    assert key.hex() == sign(secret, b"nightcrew checkpoint v1").removeprefix("sha256=")
    assert checkpoint_key("other") != key


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no stray .env
    for name in ("NIGHTCREW_CHECKPOINT_SECRET", "NIGHTCREW_WEBHOOK_SECRET"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.usefixtures("clean_env")
def test_settings_prefer_the_checkpoint_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NIGHTCREW_WEBHOOK_SECRET", "new, old")
    assert load_settings().checkpoint_key() == checkpoint_key("new")
    monkeypatch.setenv("NIGHTCREW_CHECKPOINT_SECRET", "dedicated")
    assert load_settings().checkpoint_key() == checkpoint_key("dedicated")
    monkeypatch.setenv("NIGHTCREW_CHECKPOINT_SECRET", "")  # empty counts as unset
    assert load_settings().checkpoint_key() == checkpoint_key("new")


@pytest.mark.usefixtures("clean_env")
def test_settings_without_any_secret_name_the_variable() -> None:
    with pytest.raises(SettingsError, match="NIGHTCREW_CHECKPOINT_SECRET"):
        load_settings().checkpoint_key()
