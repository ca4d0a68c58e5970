"""The per-repo trigger label, cached in Redis for ingress (which may not call GitHub)."""

from __future__ import annotations

import redis


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
