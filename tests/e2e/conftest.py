"""Fixtures and probes the sandbox tests share (each backend's test file makes its own sandbox)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

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
