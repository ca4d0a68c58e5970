"""The embedded Redis in a data dir too deep for a unix socket path (a long TMPDIR, pytest-xdist's
temp dirs): it still starts, and every process of that data dir finds the same socket."""

from __future__ import annotations

import os
from pathlib import Path

import redis

from github_app.redis_conn import MAX_SOCKET_PATH, EmbeddedRedis


def test_a_deep_data_dir_gets_a_short_private_socket_that_every_process_finds(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60) / "redis"
    assert len(os.fsencode(deep / "redis.sock")) > MAX_SOCKET_PATH  # too long to bind as is
    server = EmbeddedRedis(deep)
    try:
        url = server.ensure_started()
        socket = server.socket_path
        assert len(os.fsencode(socket)) <= MAX_SOCKET_PATH and url == f"unix://{socket}"
        assert EmbeddedRedis(deep).socket_path == socket  # another process, the same server
        assert (socket.parent.stat().st_mode & 0o777) == 0o700
        assert redis.Redis(unix_socket_path=str(socket)).ping()
        assert EmbeddedRedis(tmp_path / "other" / ("d" * 120)).socket_path != socket
    finally:
        server.stop()


def test_a_short_data_dir_keeps_its_socket_inside_it(tmp_path: Path) -> None:
    assert EmbeddedRedis(tmp_path / "redis").socket_path == tmp_path / "redis" / "redis.sock"
