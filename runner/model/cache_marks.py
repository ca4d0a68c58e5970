"""Where the prompt-cache breakpoints go in a Messages API request (production code).

The adapter marks the stable prefix (the last tool, the system prompt) and the last block of
the conversation, within the API's limit of four markers; the fakes' cache simulation
(``runner.fakes.cache_sim``) bills by the same markers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from runner.model import Message, ToolSpec
from runner.model.api_checks import MAX_CACHE_BREAKPOINTS, cache_marker_count

EPHEMERAL: dict[str, str] = {"type": "ephemeral"}
# Blocks the API refuses a cache_control marker on.
_UNMARKABLE = frozenset({"thinking", "redacted_thinking"})



def cache_marked_request(
    system: str,
    messages: Sequence[Message],
    tools: Sequence[ToolSpec],
    *,
    cache_messages: bool = True,
) -> dict[str, Any]:
    """``system``, ``tools`` and ``messages`` request arguments with cache breakpoints placed.

    Marks the last tool and the system prompt (the stable prefix) and, with ``cache_messages``,
    the last markable block of the last message (the growing conversation). Everything is
    copied: callers reuse their lists across turns and must never see a marker. Markers the
    caller placed on messages are kept, oldest dropped first, within the API's limit of four.
    """
    kwargs: dict[str, Any] = {}
    if tools:
        marked_tools = [dict(t) for t in tools]
        marked_tools[-1]["cache_control"] = dict(EPHEMERAL)
        kwargs["tools"] = marked_tools
    if system:  # the API rejects an empty text block
        kwargs["system"] = [{"type": "text", "text": system, "cache_control": dict(EPHEMERAL)}]
    copied = [_copy_message(m) for m in messages]
    if cache_messages and copied and isinstance(copied[-1], dict):
        _mark_last_block(copied[-1])
    stable = sum(cache_marker_count(kwargs.get(part)) for part in ("tools", "system"))
    _drop_oldest_markers(copied, max(MAX_CACHE_BREAKPOINTS - stable, 0))
    kwargs["messages"] = copied
    return kwargs


def _copy_message(message: Message) -> Message:
    """A message whose content list and blocks may be changed without touching the original."""
    if not isinstance(message, dict):  # malformed: left for the API (or its checks) to reject
        return message
    content = message.get("content")
    if not isinstance(content, list):
        return dict(message)
    return {**message, "content": [dict(b) if isinstance(b, dict) else b for b in content]}


def _mark_last_block(message: Message) -> None:
    """Put a breakpoint on the last block that may carry one (a string becomes a text block)."""
    content = message.get("content")
    if isinstance(content, str):
        if content:  # an empty final assistant turn (a prefill) has nothing to mark
            message["content"] = [{"type": "text", "text": content, "cache_control": dict(EPHEMERAL)}]
        return
    if not isinstance(content, list):
        return
    for block in reversed(content):
        if isinstance(block, dict) and block.get("type") not in _UNMARKABLE:
            block.setdefault("cache_control", dict(EPHEMERAL))
            return


def _drop_oldest_markers(messages: list[Message], allowed: int) -> None:
    """Remove message breakpoints, earliest first, until at most ``allowed`` remain."""
    marked = [
        block
        for m in messages
        if isinstance(m, dict) and isinstance(m.get("content"), list)
        for block in m["content"]
        if isinstance(block, dict) and block.get("cache_control")
    ]
    for block in marked[: max(len(marked) - allowed, 0)]:
        del block["cache_control"]
