"""What the Messages API would reject with a 400, checked by both script players."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

MAX_CACHE_BREAKPOINTS = 4
_EMPTY_CONTENT = (
    "messages.{i}: all messages must have non-empty content except for the optional final "
    "assistant message"
)


def request_violation(body: object, *, needs_max_tokens: bool = True) -> str | None:
    """Why the Messages API would reject ``body`` with a 400, or ``None`` when it looks valid."""
    if not isinstance(body, dict):
        return "request body must be a JSON object"
    checks = [_model_violation, _system_violation, _tools_violation, _messages_violation]
    if needs_max_tokens:  # count_tokens takes no max_tokens
        checks.insert(1, _max_tokens_violation)
    for check in [*checks, _cache_breakpoints_violation]:
        problem = check(body)
        if problem:
            return problem
    return None


def _model_violation(body: Mapping[str, Any]) -> str | None:
    """The model must be named."""
    model = body.get("model")
    return None if isinstance(model, str) and model else "model: Field required"


def _max_tokens_violation(body: Mapping[str, Any]) -> str | None:
    """max_tokens must be a positive integer."""
    value = body.get("max_tokens")
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        return "max_tokens: Input should be a positive integer"
    return None


def _system_violation(body: Mapping[str, Any]) -> str | None:
    """system is a string or a list of non-empty text blocks."""
    system = body.get("system")
    if system is None or isinstance(system, str):
        return None
    if not isinstance(system, list):
        return "system: Input should be a valid string or list of text blocks"
    for i, block in enumerate(system):
        if not isinstance(block, dict) or block.get("type") != "text":
            return f"system.{i}: Input should be a text block"
        if not block.get("text"):
            return f"system.{i}: text content blocks must be non-empty"
    return None


def _tools_violation(body: Mapping[str, Any]) -> str | None:
    """Tools have unique names; custom tools have an input schema."""
    tools = body.get("tools")
    if tools is None:
        return None
    if not isinstance(tools, list):
        return "tools: Input should be a valid list"
    seen: set[str] = set()
    for i, tool in enumerate(tools):
        name = tool.get("name") if isinstance(tool, dict) else None
        if not isinstance(name, str) or not name:
            return f"tools.{i}.name: Field required"
        if name in seen:
            return f"tools: Tool names must be unique. Duplicate: {name!r}"
        seen.add(name)
        is_custom = tool.get("type", "custom") == "custom"
        if is_custom and not isinstance(tool.get("input_schema"), dict):
            return f"tools.{i}.input_schema: Field required"
    return None


def _messages_violation(body: Mapping[str, Any]) -> str | None:
    """Messages alternate user/assistant from a user turn, and tool results answer tool uses."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages: at least one message is required"
    for i, message in enumerate(messages):
        is_last = i == len(messages) - 1
        previous = messages[i - 1] if i else None
        problem = _message_violation(i, message, previous, is_last)
        if problem:
            return problem
    return None


def _message_violation(i: int, message: object, previous: object, is_last: bool) -> str | None:
    """The problems one message can have, given the message before it."""
    if not isinstance(message, dict):
        return f"messages.{i}: Input should be an object"
    expected = "user" if i % 2 == 0 else "assistant"
    if message.get("role") != expected:
        return (
            f"messages.{i}.role: expected {expected!r}, got {message.get('role')!r}; roles must "
            "alternate between 'user' and 'assistant', starting with 'user'"
        )
    content = message.get("content")
    if isinstance(content, str):
        if not content and not (is_last and expected == "assistant"):
            return _EMPTY_CONTENT.format(i=i)
        return None
    if not isinstance(content, list):
        return f"messages.{i}.content: Input should be a valid string or list of blocks"
    return _blocks_violation(i, expected, content, previous, is_last)


def _blocks_violation(
    i: int, role: str, blocks: list[Any], previous: object, is_last: bool
) -> str | None:
    """Content blocks are typed, non-empty, and tool blocks sit in the right turn."""
    if not blocks and not (is_last and role == "assistant"):
        return _EMPTY_CONTENT.format(i=i)
    for j, block in enumerate(blocks):
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            return f"messages.{i}.content.{j}: Input should be a content block with a type"
        if block["type"] == "text" and not block.get("text"):
            return f"messages.{i}.content.{j}: text content blocks must be non-empty"
        if block["type"] == "tool_use" and role != "assistant":
            return f"messages.{i}.content.{j}: tool_use blocks belong in assistant messages"
        if block["type"] == "tool_result" and role != "user":
            return f"messages.{i}.content.{j}: tool_result blocks belong in user messages"
    return _tool_ids_violation(i, role, blocks, previous)


def _tool_use_ids(message: object) -> list[str]:
    """The ids of the tool_use blocks in a message."""
    if not isinstance(message, dict) or not isinstance(message.get("content"), list):
        return []
    return [
        str(b.get("id"))
        for b in message["content"]
        if isinstance(b, dict) and b.get("type") == "tool_use"
    ]


def _tool_ids_violation(i: int, role: str, blocks: list[Any], previous: object) -> str | None:
    """Each tool_use of the previous assistant turn gets exactly its tool_result here."""
    if role != "user" or i == 0:
        return None
    asked = _tool_use_ids(previous)
    answered = [str(b.get("tool_use_id")) for b in blocks if b.get("type") == "tool_result"]
    stray = [a for a in answered if a not in asked]
    if stray:
        return (
            f"messages.{i}.content: unexpected `tool_use_id` found in `tool_result` blocks: "
            f"{', '.join(stray)}. Each `tool_result` block must have a corresponding `tool_use` "
            "block in the previous message."
        )
    missing = [a for a in asked if a not in answered]
    if missing:
        return (
            f"messages.{i}: `tool_use` ids were found without `tool_result` blocks immediately "
            f"after: {', '.join(missing)}. Each `tool_use` block must have a corresponding "
            "`tool_result` block in the next message."
        )
    return None


def _cache_breakpoints_violation(body: Mapping[str, Any]) -> str | None:
    """The API allows at most four cache_control markers per request."""
    count = sum(cache_marker_count(body.get(part)) for part in ("tools", "system"))
    for message in body.get("messages") or []:
        if isinstance(message, dict):
            count += cache_marker_count(message.get("content"))
    if count > MAX_CACHE_BREAKPOINTS:
        return (
            f"A maximum of {MAX_CACHE_BREAKPOINTS} blocks with cache_control may be provided. "
            f"Found {count}."
        )
    return None


def cache_marker_count(blocks: object) -> int:
    """How many blocks in a list carry a cache_control marker."""
    if not isinstance(blocks, list):
        return 0
    return sum(1 for b in blocks if isinstance(b, dict) and b.get("cache_control"))
