"""Installations: the App was installed, removed, suspended, or its repositories changed."""

from __future__ import annotations

import json
from typing import Any

import redis

from github_app import logs
from github_app.redis_conn import connect
from github_app.settings import load_settings

INSTALLATIONS = "nc:installations"  # hash: installation id -> {account, suspended, repositories}
log = logs.get("nightcrew.installations")


def record(change: dict[str, Any]) -> str:
    """RQ entry point: keep the installation record in Redis current."""
    return apply(connect(load_settings()), change)


def apply(connection: redis.Redis, change: dict[str, Any]) -> str:
    """Apply one installation change to the record; returns the action taken."""
    key = str(change["installation_id"])
    action = str(change["action"])
    if action == "deleted":
        connection.hdel(INSTALLATIONS, key)
        log.info("installation.removed", installation=key)
        return "removed"
    current = installation(connection, int(key)) or {"repositories": []}
    repos = set(current["repositories"]) | set(change.get("repositories_added") or ())
    repos -= set(change.get("repositories_removed") or ())
    record_ = {
        "account": change.get("account") or current.get("account"),
        "suspended": action == "suspend" or (current.get("suspended", False) and action != "unsuspend"),
        "repositories": sorted(repos),
    }
    connection.hset(INSTALLATIONS, key, json.dumps(record_))
    log.info("installation.recorded", installation=key, action=action)
    return "recorded"


def installation(connection: redis.Redis, installation_id: int) -> dict[str, Any] | None:
    """The stored record of an installation, if any."""
    raw = connection.hget(INSTALLATIONS, str(installation_id))
    if raw is None:
        return None
    loaded: dict[str, Any] = json.loads(raw)
    return loaded
