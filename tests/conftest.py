"""Shared fixtures: the local GitHub stand-in (`devhub`), the App key it trusts, and a real
Redis server (the embedded one nightcrew ships)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from devhub import DevHub
from github_app.redis_conn import EmbeddedRedis

DEVHUB_APP_ID = 4242
DEVHUB_WEBHOOK_SECRET = "devhub-test-secret-not-real"


@pytest.fixture(scope="session")
def app_keypair() -> tuple[str, str]:
    """(private PEM, public PEM) of the test App; RSA keygen is slow, so once per session."""
    return DevHub.generate_app_keypair()


@pytest.fixture
def app_private_key(app_keypair: tuple[str, str]) -> str:
    """The App's private key, for `AppAuthStrategy(DEVHUB_APP_ID, app_private_key)`."""
    return app_keypair[0]


@pytest.fixture
def devhub(tmp_path: Path, app_keypair: tuple[str, str]) -> Iterator[DevHub]:
    """A running stand-in; the test fails if anything sent to it (or by it) broke GitHub's contract.

    Its App id is `hub.app_id` (DEVHUB_APP_ID), its webhook secret `hub.webhook_secret`; set
    `hub.webhook_url` to receive webhooks. A test that provokes violations on purpose must
    clear `hub.violations` before it ends.
    """
    hub = DevHub(tmp_path / "devhub", app_id=DEVHUB_APP_ID, app_public_key_pem=app_keypair[1],
                 webhook_secret=DEVHUB_WEBHOOK_SECRET)
    hub.start()
    try:
        yield hub
        hub.wait_deliveries(timeout=10)
    finally:
        hub.stop()
    if hub.violations:
        pytest.fail("GitHub contract violations:\n  " + "\n  ".join(hub.violations), pytrace=False)

@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"))
    url = server.ensure_started()
    yield url
    server.stop()


@pytest.fixture
def connection(redis_server: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server)
    client.flushall()
    yield client
    client.close()


# The suite runs on several workers (pytest-xdist, README). Its longest test waits out a
# two-minute model outage; started last it would be the whole tail, so it starts first.
_FIRST = ("tests/e2e/test_chaos_model.py",)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: not item.nodeid.startswith(_FIRST))
