"""The sandbox seam: run a command in a throw-away, network-less, credential-less jail.

The policy is data (``SandboxPolicy``); backends (``bwrap`` by default) turn it into isolation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

DEFAULT_OUTPUT_LIMIT = 32_000


@dataclass(frozen=True)
class SandboxPolicy:
    """What a sandboxed command may do. Network is off unless a phase turns it on."""

    network: bool = False
    memory_bytes: int | None = 2 * 1024**3
    pids_max: int | None = 512
    cpu_seconds: int | None = None
    wall_seconds: float = 600.0
    env: Mapping[str, str] = field(default_factory=dict)
    ro_paths: tuple[Path, ...] = ()
    output_limit: int = DEFAULT_OUTPUT_LIMIT
    cpus: float | None = None  # CPU bandwidth in cores (cgroup quota); None = unthrottled
    tmp_bytes: int | None = 512 * 1024**2  # each of the private /tmp and /dev/shm (RAM: counts as memory)


@dataclass(frozen=True)
class ExecResult:
    """What a command did: exit code, truncated output, time, and why it was killed, if it was."""

    exit_code: int
    stdout: str
    stderr: str
    duration_s: float
    killed: str | None = None  # "wall_timeout" | "oom" | "cpu_time" | "signal N"

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and self.killed is None


class Sandbox(Protocol):
    """Runs argv inside the task's workspace (mounted at /workspace)."""

    def run(
        self, argv: Sequence[str], *, cwd: str = ".", timeout: float | None = None
    ) -> ExecResult: ...
