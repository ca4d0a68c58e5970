"""The per-repo trigger label, cached in Redis for ingress (which may not call GitHub)."""

from __future__ import annotations

import time

import redis

LOCAL_TTL_S = 30.0  # how long a web process trusts what it read


def remember_trigger_label(connection: redis.Redis, repo: str, label: str) -> None:
    """Cache a repo's trigger label, as intake last read it from the repo's config.

    No expiry: a repo with its own label must keep it between tasks; every intake refreshes it,
    and losing Redis only means the server default applies until the next one.
    """
    connection.set(_key(repo), label)


def trigger_label_for(connection: redis.Redis, repo: str, default: str) -> str:
    """The repo's trigger label as last read from its config, else the server default."""
    value = connection.get(_key(repo))
    if value is None:
        return default
    return value.decode() if isinstance(value, bytes) else str(value)


def _key(repo: str) -> str:
    return f"nc:trigger-label:{repo.lower()}"


class TriggerLabels:
    """Per-process reads of the cached trigger labels, kept for a short while (hot path)."""

    def __init__(self, connection: redis.Redis, ttl_s: float = LOCAL_TTL_S) -> None:
        self._connection = connection
        self._ttl_s = ttl_s
        self._seen: dict[str, tuple[float, str | None]] = {}

    def get(self, repo: str, default: str) -> str:
        """The repo's trigger label, at most ``ttl_s`` old."""
        now = time.monotonic()
        hit = self._seen.get(repo.lower())
        if hit is None or now - hit[0] > self._ttl_s:
            value = self._connection.get(_key(repo))
            text = value.decode() if isinstance(value, bytes) else None if value is None else str(value)
            hit = (now, text)
            self._seen[repo.lower()] = hit
        return hit[1] or default
