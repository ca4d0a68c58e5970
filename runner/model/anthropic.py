"""The production ``ModelClient``: Anthropic's Messages API through the ``anthropic`` SDK.

Every call carries ``cache_control`` markers on the stable prefix (tool definitions, then the
system prompt) and on the last message block (see ``cache_sim.cache_marked_request``), so an
agent loop pays full price for its conversation once and, within the cache's five minutes,
a tenth of the input price for everything earlier turns already sent.

Retries belong to the SDK (408, 409, 429, 5xx, 529 and connection errors, honouring
``retry-after``); what still fails afterwards becomes a ``ModelAPIError`` whose ``retryable``
tells the caller whether a later attempt (an RQ retry) may succeed.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import anthropic
from anthropic.types import Message as SDKMessage

from runner.model import Message, ModelClient, ModelError, ModelReply, ToolSpec, Usage, tool_call
from runner.model.cache_sim import cache_marked_request
from runner.model.prices import cost_usd

# Statuses the SDK retries itself; reaching us means its retries ran out, not that the
# request is wrong, so a later attempt may well succeed.
_TRANSIENT_STATUSES = frozenset({408, 409, 429})


class ModelAPIError(ModelError):
    """A model call that failed at the API; ``retryable`` says whether trying later may help."""

    def __init__(self, message: str, *, retryable: bool, status_code: int | None = None) -> None:
        super().__init__(message, retryable=retryable)
        self.status_code = status_code


class AnthropicModel:
    """``ModelClient`` on the Messages API, with prompt caching on tools, system and messages.

    ``cache_messages=False`` leaves the conversation unmarked (only tools and system cached):
    the behaviour before incremental caching, kept for comparisons in tests and benchmarks.
    """

    def __init__(
        self,
        model: str,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        max_retries: int = 4,
        timeout: float = 120.0,
        cache_messages: bool = True,
    ) -> None:
        # None lets the SDK read ANTHROPIC_API_KEY / ANTHROPIC_BASE_URL: that is how the demo
        # points this adapter at the fake server without a code path of its own.
        self.model = model
        self._max_retries = max_retries
        self._cache_messages = cache_messages
        self._client = _sdk_client(api_key, base_url, max_retries, timeout)

    def complete(
        self,
        *,
        system: str,
        messages: Sequence[Message],
        tools: Sequence[ToolSpec],
        max_tokens: int = 4096,
    ) -> ModelReply:
        """One Messages API call; errors left after the SDK's retries become ModelAPIError."""
        try:
            response = self._client.messages.create(
                model=self.model,
                max_tokens=max_tokens,
                **self._request(system, messages, tools),
            )
        except anthropic.APIError as err:
            raise self._model_error(err) from err
        return to_reply(response)

    def count_tokens(
        self, *, system: str, messages: Sequence[Message], tools: Sequence[ToolSpec]
    ) -> int:
        """Input tokens the API would bill for this request, without running the model."""
        try:
            counted = self._client.messages.count_tokens(
                model=self.model,
                **self._request(system, messages, tools),
            )
        except anthropic.APIError as err:
            raise self._model_error(err) from err
        return counted.input_tokens

    def _request(
        self, system: str, messages: Sequence[Message], tools: Sequence[ToolSpec]
    ) -> dict[str, Any]:
        """``system``, ``tools`` and ``messages`` arguments, copied, with cache breakpoints."""
        # Plain dicts in the SDK's TypedDict shapes (MessageParam, TextBlockParam, ToolParam).
        return cache_marked_request(system, messages, tools, cache_messages=self._cache_messages)

    def _model_error(self, err: anthropic.APIError) -> ModelAPIError:
        """A ModelAPIError that says what failed and whether to retry, never the key."""
        if isinstance(err, anthropic.APIStatusError):
            error = _status_error(err, self._max_retries)
        elif isinstance(err, anthropic.APIConnectionError):
            host = self._client.base_url.host
            error = ModelAPIError(
                f"could not reach the Anthropic API at {host} after {self._max_retries} "
                f"retries: {err.message}",
                retryable=True,
            )
        else:
            error = ModelAPIError(
                f"unusable answer from the Anthropic API: {err.message}", retryable=False
            )
        return _redacted(error, self._client.api_key, self._client.auth_token)


def models_by_id(*, api_key: str | None = None) -> Callable[[str], ModelClient]:
    """Model id → its adapter, made once: the roles of a run often share one model."""
    @functools.cache
    def model(model_id: str) -> ModelClient:
        return AnthropicModel(model_id, api_key=api_key)

    return model


def _sdk_client(
    api_key: str | None, base_url: str | None, max_retries: int, timeout: float
) -> anthropic.Anthropic:
    """The SDK client, or a ModelAPIError now rather than a TypeError at the first call."""
    missing = "no Anthropic credentials: pass api_key or set ANTHROPIC_API_KEY"
    try:
        client = anthropic.Anthropic(
            api_key=api_key, base_url=base_url, max_retries=max_retries, timeout=timeout
        )
    except anthropic.CredentialsError as err:  # a profile was selected but is unreadable
        raise ModelAPIError(f"{missing} ({err})", retryable=False) from err
    if not (client.api_key or client.auth_token or client.credentials):
        raise ModelAPIError(missing, retryable=False)
    return client


def _status_error(err: anthropic.APIStatusError, max_retries: int) -> ModelAPIError:
    """The error for an HTTP error answer, retryable when the SDK's retries ran out."""
    status = err.status_code
    retryable = status in _TRANSIENT_STATUSES or status >= 500
    kind = err.type or "error"
    detail = err.api_message or "no error message"
    after = f" after {max_retries} retries" if retryable else ""
    request = f" (request-id {err.request_id})" if err.request_id else ""
    return ModelAPIError(
        f"Anthropic API answered {status} {kind}{after}: {detail}{request}",
        retryable=retryable,
        status_code=status,
    )


def _redacted(error: ModelAPIError, *secrets: str | None) -> ModelAPIError:
    """The same error with any credential cut out of its message."""
    message = str(error)
    for secret in secrets:
        if secret and secret in message:
            message = message.replace(secret, "[redacted]")
    if message == str(error):
        return error
    return ModelAPIError(message, retryable=error.retryable, status_code=error.status_code)


def to_reply(message: SDKMessage) -> ModelReply:
    """A ``ModelReply`` from the SDK's Message: text, tool calls, usage and cost."""
    texts = [block.text for block in message.content if block.type == "text"]
    calls = [
        tool_call(block.id, block.name, block.input)
        for block in message.content
        if block.type == "tool_use"
    ]
    usage = Usage(
        input_tokens=message.usage.input_tokens,
        output_tokens=message.usage.output_tokens,
        # None on responses from before caching existed and from some proxies: count as 0.
        cache_write_tokens=message.usage.cache_creation_input_tokens or 0,
        cache_read_tokens=message.usage.cache_read_input_tokens or 0,
    )
    return ModelReply(
        model=message.model,
        text="\n".join(texts),
        tool_calls=calls,
        usage=usage,
        stop_reason=message.stop_reason or "end_turn",
        cost_usd=cost_usd(message.model, usage),
    )
