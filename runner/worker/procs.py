"""Child processes the demo and the tests start: started, watched, always stopped."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path


class ProcessFailed(Exception):
    """A child process exited or never became ready; the message points at its log."""


class ManagedProcess:
    """A child in its own process group, logging to a file, stopped with TERM then KILL."""

    def __init__(self, name: str, argv: Sequence[str], env: Mapping[str, str], log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.proc = subprocess.Popen(
            list(argv), env=dict(env), stdin=subprocess.DEVNULL, stdout=self._log,
            stderr=subprocess.STDOUT, start_new_session=True,
        )

    def check_alive(self) -> None:
        """Raise when the process has exited."""
        code = self.proc.poll()
        if code is not None:
            raise ProcessFailed(f"{self.name} exited with {code}; last log lines:\n{self.tail()}")

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, grace_s: float = 5.0) -> None:
        """TERM the whole group (an RQ worker's work-horse included), then KILL stragglers."""
        if self.proc.poll() is None:
            _signal_group(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                pass
        _signal_group(self.proc.pid, signal.SIGKILL)
        if self.proc.poll() is None:
            self.proc.wait(grace_s)
        self._log.close()


def start_helper(argv: Sequence[str], env: Mapping[str, str]) -> subprocess.Popen[bytes]:
    """A helper process of this one, in its session and process group (a terminal's Ctrl-C, or a
    signal to the group, reaches both) and writing to the same stdout and stderr."""
    return subprocess.Popen(list(argv), env=dict(env), stdin=subprocess.DEVNULL)


def stop_helper(proc: subprocess.Popen[bytes], grace_s: float = 10.0) -> None:
    """TERM the helper, KILL it if it is still there after ``grace_s``, and reap it."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(grace_s)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def nightcrew_command(*args: str) -> list[str]:
    """argv that runs the nightcrew CLI with this interpreter (no PATH lookup needed)."""
    return [sys.executable, "-m", "runner.cli", *args]


def free_port() -> int:
    """A port that was free a moment ago on the loopback interface."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_http_ok(url: str, process: ManagedProcess, timeout: float = 30.0) -> None:
    """Wait until ``url`` answers 200, failing early if the process dies."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        process.check_alive()
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.05)
    raise ProcessFailed(f"{process.name} did not answer {url} within {timeout}s:\n{process.tail()}")
