"""The production ``ModelClient``: Anthropic's Messages API through the ``anthropic`` SDK.

Every call carries ``cache_control`` markers on the stable prefix (tool definitions, then the
system prompt) and on the last message block (see ``cache_marks.cache_marked_request``), so an
agent loop pays full price for its conversation once and, within the cache's five minutes,
a tenth of the input price for everything earlier turns already sent.

Retries belong to the SDK (408, 409, 429, 5xx, 529 and connection errors, honouring
``retry-after``); what still fails afterwards becomes a ``ModelAPIError`` whose ``retryable``
tells the caller whether a later attempt may succeed (``patience.PatientModel`` waits for it).
A key the API refuses (401/403) is recorded in the ``KeyRing`` and the call is made again with
the next key at once; when none is left, ``ModelKeyRefused``.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import anthropic
from anthropic.types import Message as SDKMessage

from github_app import logs
from runner.model import (
    Message,
    ModelClient,
    ModelError,
    ModelKeyRefused,
    ModelReply,
    ToolSpec,
    Usage,
    tool_call,
)
from runner.model.cache_marks import cache_marked_request
from runner.model.keys import KeyRing, fingerprint, split_keys
from runner.model.prices import cost_usd

log = logs.get("nightcrew.model")
T = TypeVar("T")

# Statuses the SDK retries itself; reaching us means its retries ran out, not that the
# request is wrong, so a later attempt may well succeed.
_TRANSIENT_STATUSES = frozenset({408, 409, 429})
_REASONS = {408: "timed out", 409: "conflict", 429: "rate limited", 529: "overloaded"}
_KEY_REFUSED = (anthropic.AuthenticationError, anthropic.PermissionDeniedError)


class ModelAPIError(ModelError):
    """A model call that failed at the API; ``retryable`` says whether trying later may help."""

    def __init__(self, message: str, *, retryable: bool, status_code: int | None = None,
                 reason: str = "error", retry_after_s: float | None = None) -> None:
        super().__init__(message, retryable=retryable, reason=reason, retry_after_s=retry_after_s)
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
        keys: KeyRing | None = None,
        base_url: str | None = None,
        max_retries: int = 4,
        timeout: float = 120.0,
        cache_messages: bool = True,
    ) -> None:
        # No key given: ANTHROPIC_API_KEY (possibly a comma-separated list) as the SDK would
        # read it, and ANTHROPIC_BASE_URL: that is how the demo points this adapter at the fake
        # server without a code path of its own.
        self.model = model
        self._max_retries = max_retries
        self._cache_messages = cache_messages
        self._keys = keys or KeyRing(split_keys(api_key if api_key is not None
                                                else os.environ.get("ANTHROPIC_API_KEY")))
        self._clients: dict[str | None, anthropic.Anthropic] = {}
        self._options = (base_url, max_retries, timeout)
        self._client_for(self._keys.current() if self._keys.keys else None)  # fail early

    def complete(
        self,
        *,
        system: str,
        messages: Sequence[Message],
        tools: Sequence[ToolSpec],
        max_tokens: int = 4096,
    ) -> ModelReply:
        """One Messages API call; errors left after the SDK's retries become ModelAPIError."""
        request = self._request(system, messages, tools)
        response = self._with_a_key(lambda client: client.messages.create(
            model=self.model, max_tokens=max_tokens, **request))
        return to_reply(response)

    def count_tokens(
        self, *, system: str, messages: Sequence[Message], tools: Sequence[ToolSpec]
    ) -> int:
        """Input tokens the API would bill for this request, without running the model."""
        request = self._request(system, messages, tools)
        counted = self._with_a_key(lambda client: client.messages.count_tokens(
            model=self.model, **request))
        return counted.input_tokens

    def _with_a_key(self, call: Callable[[anthropic.Anthropic], T]) -> T:
        """``call`` with the first usable key; a refused key is recorded and the next one tried."""
        for _ in range(len(self._keys.keys) + 1):
            key = self._keys.current() if self._keys.keys else None
            if key is None and self._keys.keys:
                break
            client = self._client_for(key)
            try:
                return call(client)
            except _KEY_REFUSED as err:
                if key is None:  # a credential we did not choose (a token): nothing to rotate
                    raise self._model_error(err) from err
                self._refused(key, err)
            except anthropic.APIError as err:
                raise self._model_error(err) from err
        raise ModelKeyRefused(
            "the Anthropic API refused every configured key ("
            + ", ".join(self._keys.fingerprints()) + "); set a working ANTHROPIC_API_KEY")

    def _refused(self, key: str, err: anthropic.APIStatusError) -> None:
        why = f"{err.status_code} {err.type or 'error'}"
        if self._keys.refuse(key, why):  # one line per refusal, fleet-wide when in Redis
            log.error("model.key_refused", key=fingerprint(key), status=err.status_code,
                      error_type=err.type, left=len(self._keys.usable()))

    def _client_for(self, key: str | None) -> anthropic.Anthropic:
        client = self._clients.get(key)
        if client is None:
            client = self._clients[key] = _sdk_client(key, *self._options)
        return client

    def _request(
        self, system: str, messages: Sequence[Message], tools: Sequence[ToolSpec]
    ) -> dict[str, Any]:
        """``system``, ``tools`` and ``messages`` arguments, copied, with cache breakpoints."""
        # Plain dicts in the SDK's TypedDict shapes (MessageParam, TextBlockParam, ToolParam).
        return cache_marked_request(system, messages, tools, cache_messages=self._cache_messages)

    def _model_error(self, err: anthropic.APIError) -> ModelAPIError:
        """A ModelAPIError that says what failed and whether to retry, never the key."""
        client = next(iter(self._clients.values()))
        if isinstance(err, anthropic.APIStatusError):
            error = _status_error(err, self._max_retries)
        elif isinstance(err, anthropic.APIConnectionError):
            host = client.base_url.host
            timed_out = isinstance(err, anthropic.APITimeoutError)
            error = ModelAPIError(
                f"could not reach the Anthropic API at {host} after {self._max_retries} "
                f"retries: {err.message}",
                retryable=True, reason="timed out" if timed_out else "unreachable",
            )
        else:
            error = ModelAPIError(
                f"unusable answer from the Anthropic API: {err.message}", retryable=False
            )
        secrets = [c.api_key for c in self._clients.values()] + [c.auth_token for c in self._clients.values()]
        return _redacted(error, *secrets)


def models_by_id(*, api_key: str | None = None, keys: KeyRing | None = None,
                 ) -> Callable[[str], ModelClient]:
    """Model id → its adapter, made once: the roles of a run often share one model."""
    @functools.cache
    def model(model_id: str) -> ModelClient:
        return AnthropicModel(model_id, api_key=api_key, keys=keys)

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
        reason=_REASONS.get(status, "server error" if status >= 500 else kind),
        retry_after_s=_retry_after(err),
    )


def _retry_after(err: anthropic.APIStatusError) -> float | None:
    """The wait the API asked for (``retry-after-ms`` or ``retry-after`` seconds), if any."""
    headers = err.response.headers
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        try:
            value = float(headers.get(name, ""))
        except ValueError:
            continue
        if value >= 0:
            return value * scale
    return None


def _redacted(error: ModelAPIError, *secrets: str | None) -> ModelAPIError:
    """The same error with any credential cut out of its message."""
    message = str(error)
    for secret in secrets:
        if secret and secret in message:
            message = message.replace(secret, "[redacted]")
    if message == str(error):
        return error
    return ModelAPIError(message, retryable=error.retryable, status_code=error.status_code,
                         reason=error.reason, retry_after_s=error.retry_after_s)


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
