"""Installation events recorded in Redis: created, repositories added/removed, suspended, deleted."""

from __future__ import annotations

import redis

from github_app.queue.installations import apply, installation


def change(action: str, **extra: object) -> dict[str, object]:
    return {"action": action, "installation_id": 7, "account": "octo-org", **extra}


def test_lifecycle_of_an_installation(connection: redis.Redis) -> None:
    assert apply(connection, change("created", repositories_added=["octo-org/a"])) == "recorded"
    apply(connection, change("added", repositories_added=["octo-org/b"]))
    apply(connection, change("removed", repositories_removed=["octo-org/a"]))
    assert installation(connection, 7) == {"account": "octo-org", "suspended": False,
                                           "repositories": ["octo-org/b"]}
    apply(connection, change("suspend"))
    assert installation(connection, 7)["suspended"] is True  # type: ignore[index]
    apply(connection, change("new_permissions_accepted"))
    assert installation(connection, 7)["suspended"] is True  # type: ignore[index]
    apply(connection, change("unsuspend"))
    assert installation(connection, 7)["suspended"] is False  # type: ignore[index]
    assert apply(connection, change("deleted")) == "removed"
    assert installation(connection, 7) is None
