"""Trust validators: plain values in, a refusal with a reason (or None) out."""

from __future__ import annotations

import pytest

from github_app.trust import check_actor, check_app_permissions, check_same_repository


@pytest.mark.parametrize(("permission", "allowed"), [
    ("admin", True), ("maintain", True), ("write", True), ("triage", False), ("read", False),
    ("none", False), ("something-new", False),
])
def test_default_needs_write(permission: str, allowed: bool) -> None:
    assert (check_actor("alice", permission) is None) is allowed


def test_min_permission_is_configurable() -> None:
    assert check_actor("alice", "triage", min_permission="triage") is None
    refusal = check_actor("alice", "write", min_permission="admin")
    assert refusal is not None and "admin access" in refusal.reason and "(yours: write)" in refusal.reason


def test_allow_and_deny_lists() -> None:
    assert check_actor("Bob", "read", allow_users=["bob"]) is None
    refusal = check_actor("Mallory", "admin", deny_users=["mallory"])
    assert refusal is not None and "@Mallory is not allowed" in refusal.reason


def test_app_permissions() -> None:
    full = {"issues": "write", "pull_requests": "write", "contents": "write", "metadata": "read"}
    assert check_app_permissions(full) is None
    assert check_app_permissions({**full, "contents": "admin"}) is None
    refusal = check_app_permissions({**full, "contents": "read", "pull_requests": "none"})
    assert refusal is not None
    assert "contents: write" in refusal.reason and "pull_requests: write" in refusal.reason
    assert "issues" not in refusal.reason


def test_forks_are_refused() -> None:
    assert check_same_repository("octo/hello", "Octo/Hello") is None
    refusal = check_same_repository("octo/hello", "mallory/hello")
    assert refusal is not None and "mallory/hello" in refusal.reason
    assert check_same_repository("octo/hello", None) is not None
