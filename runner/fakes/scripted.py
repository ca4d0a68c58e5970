"""A model that plays a script in-process: for tests, demos and benchmarks, with no network.

``FakeMessagesServer`` (``runner.fakes.messages_server``) plays the same script over HTTP, so the
production Anthropic adapter runs unchanged against it. This player stands in for adapter and
API together: it places the adapter's cache breakpoints and, for steps without scripted usage,
bills the input through a simulated prompt cache (``runner.fakes.cache_sim``), so both players
report the same usage for the same conversation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from runner.fakes.cache_sim import PromptCache, as_cache, cached_usage
from runner.fakes.script import ScriptStep, reply_blocks
from runner.model import Message, ModelError, ModelReply, ToolSpec, tool_call
from runner.model.api_checks import request_violation
from runner.model.cache_marks import cache_marked_request
from runner.model.prices import cost_usd


class ScriptedModel:
    """A ``ModelClient`` that answers each call with the script's next step.

    ``cache``: True (default) bills unscripted usage through a fresh ``PromptCache`` of this
    instance, False reports it all as plain input, a ``PromptCache`` uses that one (to inject
    a clock or a minimum). ``cache_messages`` mirrors ``AnthropicModel``'s flag of that name.
    ``requests`` records each request as the caller gave it, without cache markers.
    """

    def __init__(
        self,
        steps: Sequence[ScriptStep],
        *,
        model: str = "scripted",
        cache: bool | PromptCache = True,
        cache_messages: bool = True,
    ) -> None:
        self.model = model
        self.requests: list[dict[str, Any]] = []
        self._cache = as_cache(cache)
        self._cache_messages = cache_messages
        self._steps = list(steps)
        self._served = 0
        self._tool_calls = 0

    @property
    def remaining(self) -> int:
        """Steps not yet played."""
        return len(self._steps) - self._served

    def complete(
        self,
        *,
        system: str,
        messages: Sequence[Message],
        tools: Sequence[ToolSpec],
        max_tokens: int = 4096,
    ) -> ModelReply:
        """Check the request like the API would, then reply with the next step."""
        self.requests.append(_request_body(self.model, system, messages, tools, max_tokens))
        marked = cache_marked_request(
            system, messages, tools, cache_messages=self._cache_messages
        )
        body = {"model": self.model, "max_tokens": max_tokens, **marked}
        problem = request_violation(body)
        if problem:
            raise ModelError(f"model API answered 400 invalid_request_error: {problem}")
        step = self._next_step()
        ids = self._next_tool_ids(len(step.tool_calls))
        blocks = reply_blocks(step, ids)
        usage = step.usage or cached_usage(body, blocks, self._cache)
        calls = [tool_call(i, c.name, c.input) for i, c in zip(ids, step.tool_calls, strict=True)]
        return ModelReply(
            model=self.model,
            text=step.text,
            tool_calls=calls,
            usage=usage,
            stop_reason=step.resolved_stop_reason,
            cost_usd=cost_usd(self.model, usage),
        )

    def _next_step(self) -> ScriptStep:
        """The next step, or a ModelError once the script has run out."""
        if self._served >= len(self._steps):
            raise ModelError(f"script exhausted after {len(self._steps)} steps")
        self._served += 1
        return self._steps[self._served - 1]

    def _next_tool_ids(self, count: int) -> list[str]:
        """Fresh, predictable tool_use ids."""
        start = self._tool_calls + 1
        self._tool_calls += count
        return [f"toolu_scripted_{n}" for n in range(start, start + count)]


def _request_body(
    model: str, system: str, messages: Sequence[Message], tools: Sequence[ToolSpec], max_tokens: int
) -> dict[str, Any]:
    """The request the adapter would send, minus cache markers: what the checks look at."""
    body: dict[str, Any] = {"model": model, "max_tokens": max_tokens, "messages": list(messages)}
    if system:
        body["system"] = system
    if tools:
        body["tools"] = list(tools)
    return body
