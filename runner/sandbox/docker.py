"""The Docker backend: one container per command through the `docker` SDK, for container fleets.

It speaks the Docker Engine API, so rootful podman's `podman system service` works too
(`scripts/podman_service.sh` sets one up). The default image `nightcrew/empty` holds nothing but
mount points: the host's /usr and /etc and the Python toolchain are bound read-only over it, like
the bwrap backend's minimal root. Measured traps: shared/research/sandbox.md §4.

Commands run as 65534:65534, so before each command the work tree is chowned to that user
(`grant_workspace`; the git dir stays outside it). Every container is removed after its command,
and carries a deadline label so that one left by a killed worker is swept by the next sandbox.
"""

from __future__ import annotations

import os
import re
import sys
import time
import uuid
from collections.abc import Sequence
from contextlib import suppress
from pathlib import Path
from typing import Any

import docker
import docker.errors
from docker.types import LogConfig, Ulimit
from requests.exceptions import RequestException

from runner.sandbox import ExecResult, SandboxPolicy
from runner.sandbox.bwrap import (
    SANDBOX_HOME,
    WORKSPACE_MOUNT,
    BoundedText,
    SandboxError,
    SandboxUnavailable,
    command_cwd,
    grant_workspace,
    sandbox_env,
)

DEFAULT_IMAGE = "nightcrew/empty"
SANDBOX_USER = (65534, 65534)  # nobody:nogroup
LABEL = "nightcrew.sandbox"
DEADLINE_LABEL = "nightcrew.deadline"  # epoch seconds after which any worker may remove it
# A container outlives its wall time only while we read its logs and remove it.
DEADLINE_GRACE_S = 60.0
API_TIMEOUT_S = 30
# The hard RLIMIT_NOFILE/NPROC here is below podman's defaults and cannot be raised (§4.2 #1).
ULIMITS = (("nofile", 4096), ("nproc", 4096))
# The daemon keeps a command's output on disk until we read it: cap it, keeping the latest part.
LOG_MAX = "16m"
# runc's words for an argv[0] it cannot exec (podman adds ": OCI runtime …", Docker ": unknown")
_EXEC_FAILURE = re.compile(r"exec: (?P<why>[^\n]*?)(?:: OCI runtime[^\n]*|: unknown)?$", re.MULTILINE)
# The init process's words for the same (podman's catatonit, Docker's tini), as its only output
_INIT_EXEC_FAILURE = re.compile(
    r"^(?:ERROR \(catatonit:\d+\): failed to exec pid1|\[FATAL tini \(\d+\)\] exec .* failed): (?P<why>.*)\n?$"
)


def docker_available(base_url: str | None = None, image: str | None = None) -> str | None:
    """None when the Docker API at `base_url` answers (and has `image`, if given), else why not."""
    try:
        client = _client(base_url)
    except SandboxUnavailable as exc:
        return str(exc.__cause__ or exc)
    try:
        client.ping()
        if image is not None:
            client.images.get(image)
    except docker.errors.ImageNotFound:
        return f"image {image} is missing (scripts/podman_service.sh start builds it)"
    except (docker.errors.DockerException, RequestException) as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        client.close()
    return None


def default_binds() -> tuple[str, ...]:
    """Host paths bound read-only at the same place: the system and this Python toolchain."""
    paths: list[str] = []
    for raw in ("/usr", "/etc", sys.prefix, sys.base_prefix):
        path = os.path.abspath(raw)
        if not any(path == seen or path.startswith(seen + "/") for seen in paths):
            paths.append(path)
    return tuple(paths)


class DockerSandbox:
    """Runs each command in a fresh, network-less, read-only container with the workspace at /workspace."""

    def __init__(
        self,
        workspace: Path,
        policy: SandboxPolicy | None = None,
        *,
        image: str = DEFAULT_IMAGE,
        base_url: str | None = None,
        binds: Sequence[str | Path] | None = None,
        user: tuple[int, int] = SANDBOX_USER,
        cpus: float | None = None,
        tmp_bytes: int = 512 * 1024**2,
        network_mode: str = "bridge",
    ) -> None:
        self.workspace = Path(workspace).resolve()
        if not self.workspace.is_dir():
            raise ValueError(f"workspace is not a directory: {self.workspace}")
        self.policy = policy or SandboxPolicy()
        self.image = image
        self.binds = default_binds() if binds is None else tuple(map(str, binds))
        self.user = user
        self.cpus = cpus
        self.tmp_bytes = tmp_bytes
        self.network_mode = network_mode  # used only when the policy allows network
        self._client = _client(base_url)
        try:
            remove_stale(self._client)
        except (docker.errors.DockerException, RequestException) as exc:
            raise SandboxUnavailable(f"Docker API at {base_url or 'DOCKER_HOST'} failed: {exc}") from exc

    def close(self) -> None:
        """Close the API connection."""
        self._client.close()

    def run(
        self, argv: Sequence[str], *, cwd: str = ".", timeout: float | None = None
    ) -> ExecResult:
        """Run argv in a new container and return what it did; never raises for the command's own failures."""
        inner_cwd, missing = command_cwd(self.workspace, argv, cwd)
        if missing is not None:
            return missing
        wall = self.policy.wall_seconds if timeout is None else timeout
        grant_workspace(self.workspace, *self.user)
        return self._execute(list(argv), inner_cwd, wall)

    def container_config(self, argv: list[str], cwd: str, deadline: float) -> dict[str, Any]:
        """The keyword arguments for `containers.create`: isolation, limits, mounts and env."""
        uid, gid = self.user
        return {
            "image": self.image, "command": argv, "working_dir": cwd, "user": f"{uid}:{gid}",
            "hostname": "sandbox", "environment": sandbox_env(self.policy.env),
            "network_mode": self.network_mode if self.policy.network else "none",
            "read_only": True, "volumes": self._volumes(), "tmpfs": self._tmpfs(),
            "cap_drop": ["ALL"], "security_opt": ["no-new-privileges"],
            "init": True,  # the command is not PID 1, so signals and zombies behave as on a host
            "ulimits": self._ulimits(), "log_config": LogConfig(type="json-file", config={"max-size": LOG_MAX}),
            "labels": {LABEL: "1", DEADLINE_LABEL: f"{deadline:.0f}"}, "name": f"nightcrew-{uuid.uuid4().hex[:12]}",
            **self._resources(),
        }

    def _volumes(self) -> dict[str, dict[str, str]]:
        volumes = {str(self.workspace): {"bind": WORKSPACE_MOUNT, "mode": "rw"}}
        for raw in (*self.binds, *map(str, self.policy.ro_paths)):
            path = os.path.abspath(raw)
            if not os.path.exists(path):
                # Docker would create a missing bind source as an empty directory: fail instead
                raise SandboxError(f"sandbox setup failed: bind source does not exist: {path}")
            volumes.setdefault(path, {"bind": path, "mode": "ro"})
        return volumes

    def _tmpfs(self) -> dict[str, str]:
        # tmpfs pages count against the memory limit (§2), so the size bounds disk, not memory
        opts = f"rw,nosuid,nodev,size={self.tmp_bytes},mode=1777"
        return {"/tmp": opts, SANDBOX_HOME: opts}

    def _ulimits(self) -> list[Ulimit]:
        limits = [Ulimit(name=name, soft=value, hard=value) for name, value in ULIMITS]
        if self.policy.cpu_seconds is not None:
            # soft limit sends SIGXCPU (reported as cpu_time); the hard one a second later is SIGKILL
            limits.append(Ulimit(name="cpu", soft=self.policy.cpu_seconds, hard=self.policy.cpu_seconds + 1))
        return limits

    def _resources(self) -> dict[str, int]:
        resources: dict[str, int] = {}
        if self.policy.memory_bytes is not None:
            # equal swap limit: no swapping past the limit (there is no swap here anyway)
            resources["mem_limit"] = resources["memswap_limit"] = self.policy.memory_bytes
        if self.policy.pids_max is not None:
            resources["pids_limit"] = self.policy.pids_max
        if self.cpus is not None:
            resources["nano_cpus"] = int(self.cpus * 1e9)
        return resources

    def _execute(self, argv: list[str], cwd: str, wall: float) -> ExecResult:
        started = time.monotonic()
        config = self.container_config(argv, cwd, time.time() + wall + DEADLINE_GRACE_S)
        try:
            container = self._client.containers.create(**config)
        except docker.errors.ImageNotFound as exc:
            raise SandboxUnavailable(f"sandbox image {self.image} is missing: {exc}") from exc
        except (docker.errors.DockerException, RequestException) as exc:
            raise SandboxError(f"sandbox setup failed: {exc}") from exc
        try:
            return self._run_container(container, argv, started, wall)
        except (docker.errors.DockerException, RequestException) as exc:
            raise SandboxError(f"sandbox run failed: {exc}") from exc
        finally:
            # a killed or timed-out client leaves the container running (§4.5): always remove it
            _remove(container)

    def _run_container(self, container: Any, argv: list[str], started: float, wall: float) -> ExecResult:
        try:
            container.start()
        except docker.errors.APIError as exc:
            return _start_failure(argv, exc, time.monotonic() - started)
        code, timed_out = _wait(container, started + wall)
        stdout, stderr = self._logs(container)
        duration = time.monotonic() - started
        missing = None if timed_out or stdout else _INIT_EXEC_FAILURE.match(stderr)
        if missing is not None:
            return _cannot_run(argv, missing.group("why"), duration)
        killed = "wall_timeout" if timed_out else self._killed(container, code)
        return ExecResult(code, stdout, stderr, duration, killed=killed)

    def _logs(self, container: Any) -> tuple[str, str]:
        """stdout and stderr, each cut to head + tail like the bwrap backend's."""
        texts = []
        for stdout in (True, False):
            # one buffered read: podman 4.3 drops the rest of a streamed log its reader lags on
            data = container.logs(stdout=stdout, stderr=not stdout)
            text = BoundedText(self.policy.output_limit)
            text.feed(data, final=True)
            texts.append(text.text())
        return texts[0], texts[1]

    def _killed(self, container: Any, code: int) -> str | None:
        signum = code - 128
        if not 0 < signum < 65:
            return None
        if signum == 9 and (self.policy.memory_bytes is not None or _oom_killed(container)):
            return "oom"  # podman on cgroup v1 never sets OOMKilled: a SIGKILL we did not send is OOM
        if signum == 24:
            return "cpu_time"
        return f"signal {signum}"


def remove_stale(client: Any) -> int:
    """Remove nightcrew containers past their deadline (left by a killed worker); return how many."""
    removed = 0
    now = time.time()
    for container in client.containers.list(all=True, filters={"label": LABEL}):
        deadline = container.labels.get(DEADLINE_LABEL, "")
        if deadline.isdigit() and int(deadline) < now:
            _remove(container)
            removed += 1
    return removed


def _client(base_url: str | None) -> Any:
    """A Docker API client; `None` means the worker's DOCKER_HOST or the default socket."""
    try:
        if base_url is None:
            return docker.from_env(timeout=API_TIMEOUT_S)
        return docker.DockerClient(base_url=base_url, timeout=API_TIMEOUT_S)
    except docker.errors.DockerException as exc:
        raise SandboxUnavailable(f"no Docker API at {base_url or 'DOCKER_HOST'}: {exc}") from exc


def _wait(container: Any, deadline: float) -> tuple[int, bool]:
    """(exit code, timed out): wait until the deadline, then kill."""
    try:
        status = container.wait(timeout=max(0.01, deadline - time.monotonic()))
        return int(status["StatusCode"]), False
    except RequestException:
        if time.monotonic() < deadline:
            raise  # the API went away, not the command's time
    with suppress(docker.errors.APIError):
        container.kill()  # it may have exited just now; that is fine
    with suppress(docker.errors.APIError, RequestException):
        return int(container.wait(timeout=10)["StatusCode"]), True
    return 137, True


def _oom_killed(container: Any) -> bool:
    """Docker proper records OOM kills; ask only when the exit looked like SIGKILL."""
    with suppress(docker.errors.APIError, RequestException):
        container.reload()
        return bool(container.attrs.get("State", {}).get("OOMKilled"))
    return False


def _start_failure(argv: list[str], exc: docker.errors.APIError, duration: float) -> ExecResult:
    """The runtime refused argv[0] (no init process): 127/126; any other start failure raises."""
    message = str(exc.explanation or exc)
    match = _EXEC_FAILURE.search(message)
    if match is None:
        raise SandboxError(f"sandbox start failed: {message}") from exc
    return _cannot_run(argv, match.group("why"), duration)


def _cannot_run(argv: list[str], why: str, duration: float) -> ExecResult:
    """Exit 127 for a missing command, 126 for one that cannot be executed, as in a shell."""
    why = why.strip()
    code = 127 if "not found" in why or "no such file" in why.lower() else 126
    return ExecResult(code, "", f"nightcrew sandbox: cannot run {argv[0]!r}: {why}\n", duration)


def _remove(container: Any) -> None:
    """Force-remove (kill first if running); gone already is fine."""
    with suppress(docker.errors.NotFound):
        container.remove(force=True)
