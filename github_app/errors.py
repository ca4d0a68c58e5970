"""One error tree, grouped by what the caller does about it.

* ``Retryable`` — something outside nightcrew (GitHub, the model API, a git transport) is
  throttling or failing: wait (``retry_after`` at the earliest, if known) and try again from
  the checkpoint. Never the task's failure.
* ``TaskFailed`` — the task cannot go on: report on the issue (the message is shown there) and
  stop as failed.
* ``NeedsHuman`` — the task cannot go on without a person (an outage that outlasted every wait,
  a refused API key): checkpoint, say what is needed on the issue, stop as paused; ``/nightcrew
  resume`` continues.

Adapters raise their own subclasses (``github.Retryable``, ``workspace.GitTransportError``,
``runner.model.ModelKeyRefused``, ``runner.model.patience.ModelUnavailable``…) so a message can
say what failed; callers catch these three. A model API error that may pass
(``ModelError.retryable``: overloaded, rate limited, 5xx, unreachable) is retried in place by
``runner.model.patience.PatientModel`` — the same request again, nothing re-asked — and becomes
``NeedsHuman`` only when the outage outlasts the wait.
"""

from __future__ import annotations

from datetime import timedelta


class NightcrewError(Exception):
    """The root: every error nightcrew raises on purpose."""


class Retryable(NightcrewError):
    """Try again later: ``retry_after`` is the earliest moment that may help, when known."""

    def __init__(self, message: str, *, retry_after: timedelta | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class TaskFailed(NightcrewError):
    """The task cannot go on; the message is shown on the issue."""


class NeedsHuman(NightcrewError):
    """The task stops, resumable, until a person (or a working key) lets it go on.

    ``reason`` is a short machine-readable word (``"model_unavailable"``, ``"model_key"``).
    """

    def __init__(self, message: str, *, reason: str = "needs_human") -> None:
        super().__init__(message)
        self.reason = reason
