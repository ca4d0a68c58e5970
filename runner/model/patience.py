"""Waiting out a model API outage instead of failing the task.

The SDK retries a failed call a few times within seconds. An outage (529 overloaded for
minutes, a rate limit, 5xx, the API unreachable) outlasts that. ``PatientModel`` wraps a
``ModelClient``: a retryable ``ModelError`` makes it wait (the API's ``retry-after`` when it
gave one, else backing off) and ask *the same request* again, so nothing the model already
answered is asked twice and the conversation, the budget and the work tree stay as they are. The
task's heartbeat keeps beating meanwhile (it is a thread of the job), and ``on_wait`` tells the
status comment "waiting for the model API (overloaded), next try in N s".

An outage longer than ``WaitPolicy.max_total_s`` (30 min by default) ends the wait with
``ModelUnavailable``, a ``NeedsHuman``: the task pauses, resumable, with its checkpoint — never
failed. A person's cancel or pause during a wait ends it at once (``stop``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from github_app.errors import NeedsHuman
from runner.model import Message, ModelClient, ModelError, ModelReply, ToolSpec


@dataclass(frozen=True)
class WaitPolicy:
    """How long to wait for the model API, in seconds."""

    max_total_s: float = 30 * 60.0  # one outage, from its first failure; then the task pauses
    first_s: float = 15.0  # the first wait when the API gave no retry-after; doubles
    longest_s: float = 5 * 60.0  # no single wait is longer (nor shorter than ``shortest_s``)
    shortest_s: float = 1.0
    poll_s: float = 1.0  # how often a wait looks for a cancel or pause


@dataclass(frozen=True)
class ModelWait:
    """One wait, as the status comment shows it."""

    reason: str  # "overloaded", "rate limited", "server error", "unreachable", …
    next_try_s: float
    waited_s: float  # of this outage so far
    attempt: int

    def describe(self) -> str:
        return (f"Waiting for the model API ({self.reason}), next try in {self.next_try_s:.0f} s "
                f"(waited {_duration(self.waited_s)} so far).")


class ModelUnavailable(NeedsHuman):
    """The model API stayed unavailable longer than the policy waits."""

    def __init__(self, message: str, *, cause: str) -> None:
        super().__init__(message, reason="model_unavailable")
        self.cause = cause


class WaitStopped(NeedsHuman):
    """A person asked to cancel or pause while the task waited for the model API."""

    def __init__(self) -> None:
        super().__init__("stopped while waiting for the model API", reason="stop_requested")


class PatientModel:
    """A ``ModelClient`` that waits out transient API failures (see the module docstring)."""

    def __init__(
        self, inner: ModelClient, policy: WaitPolicy | None = None, *,
        on_wait: Callable[[ModelWait | None], None] = lambda _wait: None,
        stop: Callable[[], bool] = lambda: False,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.inner = inner
        # The wrapped client's model id: the budget prices a call's worst case by it.
        self.model = str(getattr(inner, "model", "unknown"))
        self.policy = policy or WaitPolicy()
        self.on_wait = on_wait
        self.stop = stop
        self.sleep = sleep
        self.clock = clock
        self.waits: list[ModelWait] = []  # every wait of this client, for reports and tests

    def complete(self, *, system: str, messages: Sequence[Message], tools: Sequence[ToolSpec],
                 max_tokens: int = 4096) -> ModelReply:
        """The inner call; a retryable failure is waited out and the same request sent again."""
        started: float | None = None
        attempt = 0
        blind = 0  # waits of this outage the API gave no retry-after for
        while True:
            try:
                reply = self.inner.complete(system=system, messages=messages, tools=tools,
                                            max_tokens=max_tokens)
            except ModelError as exc:
                if not exc.retryable:
                    raise
                now = self.clock()
                started = now if started is None else started
                attempt += 1
                blind += self._wait(exc, now - started, attempt, blind)
                continue
            if attempt:
                self.on_wait(None)  # the outage is over: the status comment stops saying so
            return reply

    def _wait(self, exc: ModelError, waited: float, attempt: int, blind: int) -> int:
        """Wait as the API asked, else back off; 1 when the wait had no hint to go by."""
        policy = self.policy
        left = policy.max_total_s - waited
        if left <= 0:
            raise ModelUnavailable(
                f"The model API stayed unavailable ({exc.reason}) for {_duration(waited)}: {exc}",
                cause=exc.reason) from exc
        # The backoff grows over the waits the API gave no hint for, not over every wait: an
        # outage that first said "retry after 5 s" many times and then drops connections starts
        # its own backoff at ``first_s``, not at the cap.
        hinted = exc.retry_after_s is not None
        delay = exc.retry_after_s if exc.retry_after_s is not None else policy.first_s * 2 ** blind
        delay = min(max(delay, policy.shortest_s), policy.longest_s, left)
        wait = ModelWait(exc.reason, delay, waited, attempt)
        self.waits.append(wait)
        self.on_wait(wait)
        deadline = self.clock() + delay
        while (remaining := deadline - self.clock()) > 0:
            if self.stop():
                raise WaitStopped() from exc
            self.sleep(min(policy.poll_s, remaining))
        return 0 if hinted else 1


def _duration(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole} s" if whole < 120 else f"{whole // 60} min"
