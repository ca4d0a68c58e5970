"""The replayable model script, and the token estimates both script players share.

A script is a JSON list of steps, one per model call::

    [{"text": "Let me look.", "tool_calls": [{"name": "read_file", "input": {"path": "a.py"}}]},
     {"text": "Fixed.", "usage": {"input_tokens": 1200, "output_tokens": 40}}]

A step without tool calls ends the model's turn. ``usage`` is optional (wire names, including
``cache_creation_input_tokens`` / ``cache_read_input_tokens``); without it, tokens are
estimated at four characters each so budgets and status comments see realistic numbers.
``stop_reason`` is optional too (e.g. ``"max_tokens"``, to exercise a truncated reply).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.context.tokens import estimate_tokens
from runner.model import Usage


@dataclass(frozen=True)
class ScriptedCall:
    """One tool call a scripted step makes."""

    name: str
    # A string is sent as the raw arguments text: a script can play a model whose JSON broke.
    input: dict[str, Any] | str = field(default_factory=dict)


@dataclass(frozen=True)
class ScriptStep:
    """One model reply: optional text, tool calls, and optionally the usage to report."""

    text: str = ""
    tool_calls: tuple[ScriptedCall, ...] = ()
    usage: Usage | None = None
    stop_reason: str | None = None

    @classmethod
    def from_json(cls, raw: Mapping[str, Any], index: int = 0) -> ScriptStep:
        """Parse one step; a misspelt field is an error naming it, not a silently empty step."""
        return _step_from_json(raw, index)

    def to_json(self) -> dict[str, Any]:
        """The JSON-safe form of this step, the inverse of ``from_json``."""
        return _step_to_json(self)

    @property
    def resolved_stop_reason(self) -> str:
        """The stop reason the reply carries: explicit, else from whether tools are called."""
        if self.stop_reason:
            return self.stop_reason
        return "tool_use" if self.tool_calls else "end_turn"


_STEP_FIELDS = {"text", "tool_calls", "usage", "stop_reason"}
_USAGE_FIELDS = {
    "input_tokens",
    "output_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
}


def _step_from_json(raw: Mapping[str, Any], index: int) -> ScriptStep:
    """Parse one step (see ``ScriptStep.from_json``)."""
    unknown = set(raw) - _STEP_FIELDS
    if unknown:
        raise ValueError(f"script step {index}: unknown field(s) {sorted(unknown)}")
    text, stop_reason = raw.get("text") or "", raw.get("stop_reason")
    if not isinstance(text, str) or not isinstance(stop_reason, str | None):
        raise ValueError(f"script step {index}: text and stop_reason must be strings")
    calls = tuple(_call_from_json(call, index) for call in raw.get("tool_calls") or [])
    usage = _usage_from_json(raw["usage"], index) if raw.get("usage") is not None else None
    return ScriptStep(text=text, tool_calls=calls, usage=usage, stop_reason=stop_reason)


def _call_from_json(raw: Mapping[str, Any], index: int) -> ScriptedCall:
    """Parse one scripted tool call."""
    if not isinstance(raw, dict) or set(raw) - {"name", "input"}:
        raise ValueError(f"script step {index}: a tool call has only a name and an input")
    if not isinstance(raw.get("name"), str) or not isinstance(raw.get("input", {}), dict | str):
        raise ValueError(f"script step {index}: a tool call needs a string name, an object input")
    given = raw.get("input", {})
    return ScriptedCall(name=raw["name"], input=given if isinstance(given, str) else dict(given))


def _usage_from_json(raw: Mapping[str, Any], index: int) -> Usage:
    """Parse a step's usage, written with the API's field names."""
    unknown = set(raw) - _USAGE_FIELDS
    if unknown:
        raise ValueError(f"script step {index}: unknown usage field(s) {sorted(unknown)}")
    return Usage(
        input_tokens=int(raw.get("input_tokens", 0)),
        output_tokens=int(raw.get("output_tokens", 0)),
        cache_write_tokens=int(raw.get("cache_creation_input_tokens", 0)),
        cache_read_tokens=int(raw.get("cache_read_input_tokens", 0)),
    )


def _step_to_json(step: ScriptStep) -> dict[str, Any]:
    """The JSON-safe form of a step (see ``ScriptStep.to_json``)."""
    out: dict[str, Any] = {}
    if step.text:
        out["text"] = step.text
    out["tool_calls"] = [{"name": c.name, "input": c.input} for c in step.tool_calls]
    if step.usage is not None:
        out["usage"] = usage_to_json(step.usage)
    if step.stop_reason:
        out["stop_reason"] = step.stop_reason
    return out


def usage_to_json(usage: Usage) -> dict[str, int]:
    """Usage with the API's field names."""
    return {
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "cache_creation_input_tokens": usage.cache_write_tokens,
        "cache_read_input_tokens": usage.cache_read_tokens,
    }


def load_script(path: str | Path) -> list[ScriptStep]:
    """Read a script written by ``dump_script`` (or by hand)."""
    raw = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(raw, list):
        raise ValueError(f"{path}: a script is a JSON list of steps")
    return [ScriptStep.from_json(step, i) for i, step in enumerate(raw)]


def dump_script(steps: Sequence[ScriptStep], path: str | Path) -> None:
    """Write ``steps`` as JSON so another process can load them.

    Atomically (a temporary file beside ``path``, then a rename): ``RecordingModel`` rewrites
    the file after every call, and a run killed mid-write must leave the previous script, not
    half of the new one.
    """
    target = Path(path)
    text = json.dumps([s.to_json() for s in steps], indent=2, ensure_ascii=False) + "\n"
    fd, temp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


# ---------------------------------------------------------------------------------------------
# Token estimates, shared so both players report the same usage for the same request


def system_text(system: object) -> str:
    """The system prompt as one string, whether sent as a string or as text blocks."""
    if isinstance(system, str):
        return system
    if isinstance(system, list):
        return "\n".join(str(b.get("text", "")) for b in system if isinstance(b, dict))
    return ""


# Cache markers steer billing, not the count; tool ids differ between the two players.
_NOT_COUNTED = frozenset({"cache_control", "id", "tool_use_id"})


def without_cache_control(items: object) -> list[Any]:
    """Blocks (tools, system) with their cache markers removed."""
    return _dropping(items, frozenset({"cache_control"}))


def _dropping(items: object, keys: frozenset[str]) -> list[Any]:
    """A list of blocks with ``keys`` left out of each; anything but a list counts as empty."""
    if not isinstance(items, list):
        return []
    return [
        {k: v for k, v in item.items() if k not in keys} if isinstance(item, dict) else item
        for item in items
    ]


def _canonical_messages(messages: object) -> list[Any]:
    """Messages as the estimates count them (see ``_NOT_COUNTED``)."""
    if not isinstance(messages, list):
        return []
    return [
        {**m, "content": _dropping(m["content"], _NOT_COUNTED)}
        if isinstance(m, dict) and isinstance(m.get("content"), list)
        else m
        for m in messages
    ]


def estimate_input(body: Mapping[str, Any]) -> tuple[int, int]:
    """Estimated input tokens of a request, as (tools + system, messages)."""
    prefix = estimate_tokens(without_cache_control(body.get("tools"))) + estimate_tokens(
        system_text(body.get("system"))
    )
    return prefix, estimate_tokens(_canonical_messages(body.get("messages")))


def reply_blocks(step: ScriptStep, tool_ids: Sequence[str]) -> list[dict[str, Any]]:
    """A step's reply as Messages API content blocks."""
    blocks: list[dict[str, Any]] = []
    if step.text:
        blocks.append({"type": "text", "text": step.text})
    for call, call_id in zip(step.tool_calls, tool_ids, strict=True):
        blocks.append({"type": "tool_use", "id": call_id, "name": call.name, "input": call.input})
    return blocks


def estimate_output(blocks: Sequence[Mapping[str, Any]]) -> int:
    """Estimated output tokens of a reply, ids left out: each player picks its own."""
    return estimate_tokens([{k: v for k, v in b.items() if k != "id"} for b in blocks])


def estimated_usage(body: Mapping[str, Any], blocks: Sequence[Mapping[str, Any]]) -> Usage:
    """Usage for a reply without scripted usage: no caching, four characters a token."""
    prefix, rest = estimate_input(body)
    return Usage(input_tokens=max(prefix + rest, 1), output_tokens=max(estimate_output(blocks), 1))
