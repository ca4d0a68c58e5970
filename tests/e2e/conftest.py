"""Fixtures and probes the e2e tests share: the sandbox tests' (each backend's test file makes its
own sandbox) and a worker's environment against a real Redis."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from github_app.redis_conn import EmbeddedRedis
from runner.cli.demo import _child_env


def docker_url_or_skip() -> str | None:
    """The Docker/podman API the Docker backend's tests use (None: DOCKER_HOST or the default
    socket); skips the calling test module, saying why, when no such API answers."""
    from runner.sandbox.docker import DEFAULT_IMAGE, docker_available

    url = os.environ.get("NIGHTCREW_DOCKER_URL") or None
    unavailable = docker_available(url, DEFAULT_IMAGE)
    if unavailable is not None:
        pytest.skip(f"no Docker/podman API at {url or 'DOCKER_HOST/default socket'}: {unavailable}",
                    allow_module_level=True)
    return url


CANARY = "ghp_" + "canary0123456789abcdefNIGHTCREW"  # fake, built at run time

# Run inside a sandbox with the port as argv[1]: prints CONNECTED, or BLOCKED and why.
CONNECT = """
import socket, sys
try:
    socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2)
    print("CONNECTED")
except OSError as exc:
    print("BLOCKED", type(exc).__name__, exc)
"""


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """An empty directory to be a sandbox's /workspace."""
    path = tmp_path / "ws"
    path.mkdir()
    return path


@pytest.fixture
def listener() -> Iterator[int]:
    """A port on the host's loopback that accepts connections (for network probes)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    yield server.getsockname()[1]
    server.close()


@dataclass
class WorkerSetup:
    """An embedded Redis and the environment a ``nightcrew worker`` process needs against it."""

    server: EmbeddedRedis
    url: str
    env: dict[str, str]


@pytest.fixture
def worker_setup(tmp_path: Path, app_private_key: str) -> Iterator[WorkerSetup]:
    """Redis running; App credentials set, GitHub and the model pointing nowhere (nothing here
    may call them). The server is stopped afterwards."""
    server = EmbeddedRedis(tmp_path / "redis")
    url = server.ensure_started()
    key = tmp_path / "app.pem"
    key.write_text(app_private_key)
    nowhere = "http://127.0.0.1:9"
    try:
        yield WorkerSetup(server, url, _child_env(tmp_path, url, nowhere, key, "not-a-secret", nowhere))
    finally:
        server.stop()
