"""The model seam: one call to a language model with tools, and what it cost.

Messages use Anthropic's wire shape (role + content blocks: text, tool_use, tool_result), the
only provider nightcrew speaks; adapters (``anthropic.AnthropicModel``, ``scripted.ScriptedModel``)
sit behind ``ModelClient``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from github_app import errors

Message = dict[str, Any]
ToolSpec = dict[str, Any]


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    input: dict[str, Any]
    malformed: str | None = None  # why the model's arguments were unusable (then input is {})


def tool_call(call_id: str, name: str, raw_input: object) -> ToolCall:
    """A tool call from the wire; arguments that are not a JSON object are kept as a reason.

    The API normally sends an object, but a reply cut at max_tokens or a streamed call can
    carry half-written JSON text; the loop answers that with an error, it does not crash.
    """
    if isinstance(raw_input, dict):
        return ToolCall(call_id, name, dict(raw_input))
    if isinstance(raw_input, str):
        try:
            parsed = json.loads(raw_input)
        except ValueError as exc:
            return ToolCall(call_id, name, {}, malformed=f"the arguments are not valid JSON ({exc})")
        if isinstance(parsed, dict):
            return ToolCall(call_id, name, parsed)
        raw_input = parsed
    kind = type(raw_input).__name__
    return ToolCall(call_id, name, {}, malformed=f"the arguments must be a JSON object, not {kind}")


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cache_write_tokens: int = 0
    cache_read_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return (
            self.input_tokens
            + self.output_tokens
            + self.cache_write_tokens
            + self.cache_read_tokens
        )

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cache_write_tokens + other.cache_write_tokens,
            self.cache_read_tokens + other.cache_read_tokens,
        )


@dataclass(frozen=True)
class ModelReply:
    model: str
    text: str
    tool_calls: list[ToolCall] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    stop_reason: str = "end_turn"
    cost_usd: float = 0.0


class ModelError(errors.NightcrewError):
    """The model could not answer usefully (bad request, exhausted retries, nonsense).

    ``retryable`` says whether the same request may succeed later; ``reason`` says why in a
    word a person reads ("overloaded", "rate limited", "server error", "unreachable",
    "key refused"); ``retry_after_s`` is the API's own hint, when it gave one.
    """

    def __init__(self, message: str, *, retryable: bool = False, reason: str = "error",
                 retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.reason = reason
        self.retry_after_s = retry_after_s


class ModelKeyRefused(ModelError, errors.NeedsHuman):
    """Every configured API key was refused (401/403): no call can succeed until one works.

    A ``NeedsHuman``: the task pauses; the fleet holds task work until a key works again.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False, reason="key refused")


class ModelClient(Protocol):
    def complete(
        self,
        *,
        system: str,
        messages: Sequence[Message],
        tools: Sequence[ToolSpec],
        max_tokens: int = 4096,
    ) -> ModelReply: ...
