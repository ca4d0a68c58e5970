"""A real Redis server for queue and ingress tests (the embedded one nightcrew ships)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from github_app.redis_conn import EmbeddedRedis


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
