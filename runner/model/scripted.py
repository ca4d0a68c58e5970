"""A model that plays a script: for tests, the demo and benchmarks, with no network.

A script is a JSON list of steps, one per model call::

    [{"text": "Let me look.", "tool_calls": [{"name": "read_file", "input": {"path": "a.py"}}]},
     {"text": "Fixed.", "usage": {"input_tokens": 1200, "output_tokens": 40}}]

A step without tool calls ends the model's turn. ``usage`` is optional (wire names, including
``cache_creation_input_tokens`` / ``cache_read_input_tokens``); without it, tokens are
estimated at four characters each so budgets and status comments see realistic numbers.
``stop_reason`` is optional too (e.g. ``"max_tokens"``, to exercise a truncated reply).

Two players share the script and the request checks: ``ScriptedModel`` answers in-process;
``FakeMessagesServer`` answers over HTTP, speaking the Messages API subset the ``anthropic``
SDK uses, so the production adapter runs unchanged against it.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from runner.model import Message, ModelError, ModelReply, ToolCall, ToolSpec, Usage
from runner.model.prices import cost_usd

# ---------------------------------------------------------------------------------------------
# The script


@dataclass(frozen=True)
class ScriptedCall:
    """One tool call a scripted step makes."""

    name: str
    input: dict[str, Any] = field(default_factory=dict)


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
    if not isinstance(raw.get("name"), str) or not isinstance(raw.get("input", {}), dict):
        raise ValueError(f"script step {index}: a tool call needs a string name, an object input")
    return ScriptedCall(name=raw["name"], input=dict(raw.get("input", {})))


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
        out["usage"] = _usage_to_json(step.usage)
    if step.stop_reason:
        out["stop_reason"] = step.stop_reason
    return out


def _usage_to_json(usage: Usage) -> dict[str, int]:
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
    """Write ``steps`` as JSON so another process can load them."""
    text = json.dumps([s.to_json() for s in steps], indent=2, ensure_ascii=False)
    Path(path).write_text(text + "\n", encoding="utf-8")


# ---------------------------------------------------------------------------------------------
# Token estimates, shared so both players report the same usage for the same request


def estimate_tokens(value: object) -> int:
    """About four characters of JSON per token; nothing costs nothing."""
    if not value:
        return 0
    return math.ceil(len(json.dumps(value, sort_keys=True, ensure_ascii=False)) / 4)


def system_text(system: object) -> str:
    """The system prompt as one string, whether sent as a string or as text blocks."""
    if isinstance(system, str):
        return system
    if isinstance(system, list):
        return "\n".join(str(b.get("text", "")) for b in system if isinstance(b, dict))
    return ""


# Cache markers steer billing, not the count; tool ids differ between the two players.
_NOT_COUNTED = frozenset({"cache_control", "id", "tool_use_id"})


def _without_cache_control(items: object) -> list[Any]:
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
    prefix = estimate_tokens(_without_cache_control(body.get("tools"))) + estimate_tokens(
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


# ---------------------------------------------------------------------------------------------
# Request checks: what the real API would reject with a 400

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
    count = sum(_marked(body.get(part)) for part in ("tools", "system"))
    for message in body.get("messages") or []:
        if isinstance(message, dict):
            count += _marked(message.get("content"))
    if count > MAX_CACHE_BREAKPOINTS:
        return (
            f"A maximum of {MAX_CACHE_BREAKPOINTS} blocks with cache_control may be provided. "
            f"Found {count}."
        )
    return None


def _marked(blocks: object) -> int:
    """How many blocks in a list carry a cache_control marker."""
    if not isinstance(blocks, list):
        return 0
    return sum(1 for b in blocks if isinstance(b, dict) and b.get("cache_control"))


# ---------------------------------------------------------------------------------------------
# Player 1: in-process


class ScriptedModel:
    """A ``ModelClient`` that answers each call with the script's next step."""

    def __init__(self, steps: Sequence[ScriptStep], *, model: str = "scripted") -> None:
        self.model = model
        self.requests: list[dict[str, Any]] = []
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
        body = _request_body(self.model, system, messages, tools, max_tokens)
        self.requests.append(body)
        problem = request_violation(body)
        if problem:
            raise ModelError(f"model API answered 400 invalid_request_error: {problem}")
        step = self._next_step()
        ids = self._next_tool_ids(len(step.tool_calls))
        blocks = reply_blocks(step, ids)
        usage = step.usage or estimated_usage(body, blocks)
        return ModelReply(
            model=self.model,
            text=step.text,
            tool_calls=[ToolCall(i, c.name, dict(c.input)) for i, c in zip(ids, step.tool_calls)],
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


# ---------------------------------------------------------------------------------------------
# Player 2: a local HTTP server speaking the Messages API

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}
_CREDENTIAL_HEADERS = ("authorization", "x-api-key", "proxy-authorization")


@dataclass(frozen=True)
class RecordedRequest:
    """A request the fake server received, with credentials left out."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    auth_header: str | None
    status: int


@dataclass(frozen=True)
class _Answer:
    """What the server sends back."""

    status: int
    payload: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class _Failure:
    """An injected failure waiting to be served."""

    status: int
    times: int
    retry_after_ms: int | None


class FakeMessagesServer:
    """A local Anthropic Messages API that replies from a script and checks every request.

    ``api_key``: when set, requests must carry exactly that key (``x-api-key`` or
    ``Authorization: Bearer``), else 401. ``simulate_cache``: the first request with a
    cache-marked tools/system prefix reports it as cache writes, identical later ones as cache
    reads, as the API would; off by default so usage matches ``ScriptedModel``'s.
    """

    def __init__(
        self,
        steps: Sequence[ScriptStep] = (),
        *,
        api_key: str | None = None,
        simulate_cache: bool = False,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.requests: list[RecordedRequest] = []
        self.violations: list[str] = []
        self._steps = list(steps)
        self._served = 0
        self._tool_calls = 0
        self._api_key = api_key
        self._simulate_cache = simulate_cache
        self._cached_prefixes: set[str] = set()
        self._failures: list[_Failure] = []
        self._lock = threading.Lock()
        self._address = (host, port)
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> str:
        """Serve in a daemon thread; returns the base URL, e.g. ``http://127.0.0.1:41234``."""
        if self._httpd is None:
            self._httpd = _HTTPServer(self._address, self)
            self._thread = threading.Thread(
                target=self._httpd.serve_forever,
                # stop() waits up to one poll interval; the default 0.5 s adds up over a suite.
                kwargs={"poll_interval": 0.05},
                name="fake-messages-server",
                daemon=True,
            )
            self._thread.start()
        return self.base_url

    def stop(self) -> None:
        """Stop serving and release the port."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    @property
    def base_url(self) -> str:
        """Where the server listens; only valid after ``start()``."""
        if self._httpd is None:
            raise RuntimeError("FakeMessagesServer is not started")
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> FakeMessagesServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- scripting ------------------------------------------------------------------------

    def add_steps(self, steps: Sequence[ScriptStep]) -> None:
        """Append steps to the script, e.g. between turns of a test."""
        with self._lock:
            self._steps.extend(steps)

    def fail_next(
        self, status: int = 529, times: int = 1, *, retry_after_ms: int | None = 10
    ) -> None:
        """Answer the next ``times`` requests with an API error of ``status``.

        ``retry_after_ms`` is sent as the ``retry-after-ms`` header, which the SDK obeys
        instead of its 0.5 s+ backoff, so retry tests stay fast.
        """
        with self._lock:
            self._failures.append(_Failure(status, times, retry_after_ms))

    @property
    def remaining(self) -> int:
        """Steps not yet played."""
        return len(self._steps) - self._served

    # -- answering ------------------------------------------------------------------------

    def answer(self, method: str, target: str, headers: Mapping[str, str], raw: bytes) -> _Answer:
        """Decide the response to one request and record both."""
        path = urlsplit(target).path
        lowered = {k.lower(): v for k, v in headers.items()}
        body = _parse_json(raw)
        with self._lock:
            answer = self._answer_locked(method, path, lowered, body)
            self.requests.append(
                RecordedRequest(
                    method=method,
                    path=path,
                    headers={k: v for k, v in lowered.items() if k not in _CREDENTIAL_HEADERS},
                    body=body,
                    auth_header=_credential_header(lowered)[0],
                    status=answer.status,
                )
            )
        return answer

    def _answer_locked(
        self, method: str, path: str, headers: Mapping[str, str], body: Any
    ) -> _Answer:
        """The response, in the order the real API checks: auth, capacity, route, shape."""
        auth_problem = self._auth_problem(headers)
        if auth_problem:
            return _error(401, auth_problem)
        failure = self._take_failure()
        if failure is not None:
            return failure
        if method != "POST" or path not in ("/v1/messages", "/v1/messages/count_tokens"):
            return _error(404, f"{method} {path}: not found")
        if body is None:
            return self._reject(path, "request body is not valid JSON")
        problem = request_violation(body, needs_max_tokens=path == "/v1/messages")
        if problem:
            return self._reject(path, problem)
        if path == "/v1/messages/count_tokens":
            return _Answer(200, {"input_tokens": sum(estimate_input(body))})
        return self._message(body)

    def _auth_problem(self, headers: Mapping[str, str]) -> str | None:
        """Why the credential is refused, or None. Never echoes the credential itself."""
        _name, credential = _credential_header(headers)
        if credential is None:
            return "x-api-key header is required"
        if self._api_key is not None and credential != self._api_key:
            return "invalid x-api-key"
        return None

    def _take_failure(self) -> _Answer | None:
        """The next injected failure, if one is pending."""
        if not self._failures:
            return None
        failure = self._failures[0]
        failure.times -= 1
        if failure.times <= 0:
            self._failures.pop(0)
        extra = {"retry-after-ms": str(failure.retry_after_ms)} if failure.retry_after_ms else {}
        return _error(failure.status, "injected failure (fake server)", extra)

    def _reject(self, path: str, problem: str) -> _Answer:
        """A 400 for a malformed request, remembered in ``violations``."""
        self.violations.append(f"{path}: {problem}")
        return _error(400, problem)

    def _message(self, body: Mapping[str, Any]) -> _Answer:
        """The next script step as a Message object."""
        if self._served >= len(self._steps):
            return _error(400, f"fake server: script exhausted after {len(self._steps)} steps")
        self._served += 1
        step = self._steps[self._served - 1]
        ids = [f"toolu_fake_{self._tool_calls + n}" for n in range(1, len(step.tool_calls) + 1)]
        self._tool_calls += len(step.tool_calls)
        blocks = reply_blocks(step, ids)
        usage = step.usage or self._usage(body, blocks)
        return _Answer(
            200,
            {
                "id": f"msg_fake_{self._served}",
                "type": "message",
                "role": "assistant",
                "model": body["model"],
                "content": blocks,
                "stop_reason": step.resolved_stop_reason,
                "stop_sequence": None,
                "usage": _wire_usage(usage),
            },
            {"request-id": f"req_fake_{len(self.requests) + 1}"},
        )

    def _usage(self, body: Mapping[str, Any], blocks: Sequence[Mapping[str, Any]]) -> Usage:
        """Estimated usage, with the cache-marked prefix billed as a cache write or read."""
        usage = estimated_usage(body, blocks)
        if not self._simulate_cache:
            return usage
        prefix_key, prefix_tokens = _cached_prefix(body)
        if prefix_key is None or prefix_tokens == 0:
            return usage
        uncached = max(usage.input_tokens - prefix_tokens, 1)
        if prefix_key in self._cached_prefixes:
            return Usage(uncached, usage.output_tokens, cache_read_tokens=prefix_tokens)
        self._cached_prefixes.add(prefix_key)
        return Usage(uncached, usage.output_tokens, cache_write_tokens=prefix_tokens)


def _cached_prefix(body: Mapping[str, Any]) -> tuple[str | None, int]:
    """The cache key and size of the marked tools/system prefix (cache order: tools, system)."""
    tools = _without_cache_control(body.get("tools"))
    system = system_text(body.get("system"))
    if _marked(body.get("system")):
        parts: list[Any] = [tools, system]
    elif _marked(body.get("tools")):
        parts = [tools]
    else:
        return None, 0
    tokens = estimate_tokens(parts[0]) + (estimate_tokens(parts[1]) if len(parts) > 1 else 0)
    digest = hashlib.sha256(json.dumps([body.get("model"), parts], sort_keys=True).encode())
    return digest.hexdigest(), tokens


def _wire_usage(usage: Usage) -> dict[str, Any]:
    """Usage as the API reports it."""
    return {
        **_usage_to_json(usage),
        "cache_creation": {
            "ephemeral_5m_input_tokens": usage.cache_write_tokens,
            "ephemeral_1h_input_tokens": 0,
        },
        "service_tier": "standard",
    }


def _credential_header(headers: Mapping[str, str]) -> tuple[str | None, str | None]:
    """Which header carried a credential, and the credential."""
    bearer = headers.get("authorization", "")
    if bearer.lower().startswith("bearer "):
        return "authorization", bearer[len("bearer ") :]
    if headers.get("x-api-key"):
        return "x-api-key", headers["x-api-key"]
    return None, None


def _error(status: int, message: str, headers: Mapping[str, str] | None = None) -> _Answer:
    """An Anthropic-style error response."""
    kind = _ERROR_TYPES.get(status, "api_error")
    payload = {"type": "error", "error": {"type": kind, "message": message}}
    return _Answer(status, payload, dict(headers or {}))


def _parse_json(raw: bytes) -> Any:
    """The request body as JSON, or None when it is not JSON."""
    try:
        return json.loads(raw or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None


class _HTTPServer(ThreadingHTTPServer):
    """The stdlib server, holding the fake it answers for."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], fake: FakeMessagesServer) -> None:
        self.fake = fake
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    """Turns HTTP into ``FakeMessagesServer.answer`` calls."""

    server: _HTTPServer

    def do_POST(self) -> None:
        self._handle()

    def do_GET(self) -> None:
        self._handle()

    def _handle(self) -> None:
        """Read the body, ask the fake, write the answer."""
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length)
        answer = self.server.fake.answer(self.command, self.path, dict(self.headers.items()), raw)
        data = json.dumps(answer.payload).encode()
        self.send_response(answer.status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read ``requests``, not stderr."""
