"""The model API keys of a fleet: several for rotation, a refused one skipped for the next.

``ANTHROPIC_API_KEY`` may hold a comma-separated list (like the webhook secret). A key the API
refuses (401/403) is recorded as refused — in Redis for a fleet (``github_app.queue.model_hold``),
in memory for ``nightcrew run`` — and every client moves to the next key at its next call. Keys
are only ever named by a fingerprint, never by value.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from typing import Protocol

from pydantic import SecretStr


def fingerprint(key: str) -> str:
    """A short, stable name for a key that reveals nothing of it (for logs, Redis, doctor)."""
    return "key-" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:12]


def split_keys(value: str | None) -> list[str]:
    """The keys in a comma-separated setting, in order, without blanks or repeats."""
    keys: list[str] = []
    for part in (value or "").split(","):
        key = part.strip()
        if key and key not in keys:
            keys.append(key)
    return keys


def configured_keys(secret: SecretStr | None) -> list[str]:
    """The keys of the ``ANTHROPIC_API_KEY`` setting (``Settings.anthropic_api_key``)."""
    return split_keys(secret.get_secret_value() if secret is not None else None)


class Refusals(Protocol):
    """Where refused keys are recorded (by fingerprint)."""

    def refused(self) -> set[str]: ...
    def refuse(self, fingerprint: str, why: str) -> bool: ...
    def clear(self, fingerprint: str) -> None: ...


class MemoryRefusals:
    """Refusals for one process (``nightcrew run``, tests)."""

    def __init__(self) -> None:
        self._refused: dict[str, str] = {}
        self._lock = threading.Lock()

    def refused(self) -> set[str]:
        with self._lock:
            return set(self._refused)

    def refuse(self, fingerprint: str, why: str) -> bool:
        """Record a refusal; True the first time (so it is logged once)."""
        with self._lock:
            first = fingerprint not in self._refused
            self._refused[fingerprint] = why
            return first

    def clear(self, fingerprint: str) -> None:
        with self._lock:
            self._refused.pop(fingerprint, None)


class KeyRing:
    """The configured keys and which of them may still be used."""

    def __init__(self, keys: Sequence[str], refusals: Refusals | None = None) -> None:
        self.keys = list(keys)
        self.refusals = refusals if refusals is not None else MemoryRefusals()

    def usable(self) -> list[str]:
        """Keys not refused, in configured order."""
        refused = self.refusals.refused()
        return [key for key in self.keys if fingerprint(key) not in refused]

    def current(self) -> str | None:
        """The key to use now (None: every key was refused)."""
        usable = self.usable()
        return usable[0] if usable else None

    def refuse(self, key: str, why: str) -> bool:
        """The API refused ``key``: skip it from now on. True the first time it is recorded."""
        return self.refusals.refuse(fingerprint(key), why)

    def fingerprints(self) -> list[str]:
        return [fingerprint(key) for key in self.keys]
