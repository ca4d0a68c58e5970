"""A local HTTP server speaking the Messages API subset the ``anthropic`` SDK uses, replaying a
script, checking each request like the real API, recording what it saw."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from runner.fakes.cache_sim import PromptCache, as_cache, cached_usage
from runner.fakes.script import ScriptStep, estimate_input, reply_blocks, usage_to_json
from runner.model import Usage
from runner.model.api_checks import request_violation

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
class _Hold:
    """A request held until ``event`` is set; ``drop``: then close it unanswered."""

    event: threading.Event = field(default_factory=threading.Event)
    drop: bool = False


@dataclass
class _Window:
    """An outage in force for ``seconds`` from ``start`` (``time.monotonic()``)."""

    start: float | None  # None: from the first request the window is asked about (anchored)
    seconds: float
    kind: str  # "error": answer ``status``; "drop": close the connection mid-answer; "refuse": 401
    status: int = 529
    retry_after_s: float | None = None

    def active(self, now: float) -> bool:
        if self.start is None:  # anchored: it starts with the first request it sees
            self.start = now
        return self.start <= now < self.start + self.seconds


@dataclass
class _Failure:
    """An injected failure waiting to be served."""

    status: int
    times: int
    retry_after_ms: int | None


class FakeMessagesServer:
    """A local Anthropic Messages API that replies from a script and checks every request.

    ``api_key``: when set, requests must carry exactly that key (``x-api-key`` or
    ``Authorization: Bearer``), else 401. ``cache``: True (default) bills the input of steps
    without scripted usage through this server's own ``PromptCache`` (cache writes and reads
    at the request's breakpoints, as the API would), False reports it all as plain input, a
    ``PromptCache`` uses that one (to inject a clock or a minimum). ``ScriptedModel`` does the
    same, so both players report the same usage for the same conversation.
    """

    def __init__(
        self,
        steps: Sequence[ScriptStep] = (),
        *,
        api_key: str | None = None,
        cache: bool | PromptCache = True,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.requests: list[RecordedRequest] = []
        self.violations: list[str] = []
        self._steps = list(steps)
        self._served = 0
        self._tool_calls = 0
        self._api_key = api_key
        self._cache = as_cache(cache)
        self._failures: list[_Failure] = []
        self._windows: list[_Window] = []
        self.dropped_mid_answer = 0  # responses cut off by a "drop" window
        self._lock = threading.Lock()
        self._address = (host, port)
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._arrivals = 0  # POST /v1/messages requests that came in, held ones included
        self._arrived = threading.Condition(self._lock)
        self._holds: dict[int, _Hold] = {}
        self.dropped: list[int] = []  # arrival indexes of held requests dropped unanswered

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

    def outage(self, seconds: float, kind: str = "error", *, status: int = 529,
               retry_after_s: float | None = None, start_in: float = 0.0,
               anchored: bool = False) -> None:
        """Misbehave for ``seconds`` (from ``start_in`` seconds from now, or with ``anchored``
        from the first request that comes: a slow machine then still meets the whole outage) on
        ``/v1/messages`` and ``count_tokens``: ``"error"`` answers ``status`` (with
        ``retry-after`` when given), ``"drop"`` sends the status line and half a body, then
        closes the connection, ``"refuse"`` answers 401 ``authentication_error`` to every key."""
        if kind not in ("error", "drop", "refuse"):
            raise ValueError(f"unknown outage kind: {kind!r}")
        start = None if anchored else time.monotonic() + start_in
        with self._lock:
            self._windows.append(_Window(start, seconds, kind, status, retry_after_s))

    def _window(self, kind: str) -> _Window | None:
        now = time.monotonic()
        return next((w for w in self._windows if w.kind == kind and w.active(now)), None)

    def hold(self, index: int) -> threading.Event:
        """Hold the ``index``-th (0-based, in arrival order) ``POST /v1/messages`` request.

        Its handler waits, before the script is consulted, until the returned event is set (or
        ``release(index)``); then it is answered as usual. ``release(index, drop=True)`` instead
        closes the connection without an answer and without playing a step, as if the request
        never reached the API (the client was killed meanwhile), so the step stays next.
        """
        with self._lock:
            held = self._holds.setdefault(index, _Hold())
        return held.event

    def release(self, index: int | None = None, *, drop: bool = False) -> None:
        """Let the held request ``index`` (None: every hold) go on; ``drop``: unanswered."""
        with self._lock:
            holds = list(self._holds.values()) if index is None else [self._holds[index]]
            for held in holds:
                held.drop = held.drop or drop
                held.event.set()

    def arrived(self, index: int, timeout: float | None = None) -> bool:
        """Wait until the ``index``-th ``POST /v1/messages`` request came in; False on timeout."""
        with self._arrived:
            return self._arrived.wait_for(lambda: self._arrivals > index, timeout)

    @property
    def arrivals(self) -> int:
        """``POST /v1/messages`` requests that came in so far, held and dropped ones included."""
        with self._lock:
            return self._arrivals

    @property
    def served(self) -> int:
        """Script steps played so far."""
        with self._lock:
            return self._served

    def _arrive(self, method: str, target: str) -> bool:
        """Count an arrival and wait out its hold, if any; False: drop it unanswered."""
        if method != "POST" or urlsplit(target).path != "/v1/messages":
            return True
        with self._arrived:
            index = self._arrivals
            self._arrivals += 1
            self._arrived.notify_all()
            held = self._holds.get(index)
        if held is None:
            return True
        held.event.wait()
        if held.drop:
            with self._lock:
                self.dropped.append(index)
            return False
        return True

    def _drop_now(self) -> bool:
        """Whether a "drop" window cuts this answer off (counted)."""
        with self._lock:
            if self._window("drop") is None:
                return False
            self.dropped_mid_answer += 1
            return True

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
        if self._window("refuse") is not None:
            auth_problem = "invalid x-api-key (key revoked: fake outage)"
        if auth_problem:
            return _error(401, auth_problem)
        window = self._window("error")
        if window is not None:
            extra = {} if window.retry_after_s is None else {"retry-after": f"{window.retry_after_s:g}"}
            return _error(window.status, "injected outage (fake server)", extra)
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
        usage = step.usage or cached_usage(body, blocks, self._cache)
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


def _wire_usage(usage: Usage) -> dict[str, Any]:
    """Usage as the API reports it."""
    return {
        **usage_to_json(usage),
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
        if not self.server.fake._arrive(self.command, self.path):
            self.close_connection = True
            return
        if self.server.fake._drop_now():
            # Mid-answer: the status line, the headers and the start of a body, then the
            # connection closes, as when a proxy or the API falls over while it answers. Decided
            # before the script is consulted, so no step is spent on an answer nobody got.
            data = b'{"id":"msg_dropped","type":"message","role":"assistant","content":[{"type":'
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data) * 4))
            self.end_headers()
            self.wfile.write(data)
            self.wfile.flush()
            self.close_connection = True
            return
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
