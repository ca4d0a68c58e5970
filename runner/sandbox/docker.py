"""The Docker backend: one container per command through the `docker` SDK, for container fleets.

It speaks the Docker Engine API, so rootful podman's `podman system service` works too
(`scripts/podman_service.sh` sets one up). The default image `nightcrew/empty` holds nothing but
mount points: the host's /usr and /etc and the Python toolchain are bound read-only over it, like
the bwrap backend's minimal root. Measured traps: shared/research/sandbox.md §4.

Commands run as 65534:65534, so before each command the work tree is chowned to that user
(`grant_workspace`; the git dir stays outside it). Every container is removed after its command.
A killed client leaves its container running (§4.5), so each one is labelled with what it
belongs to: its workspace (the worker's reap path removes a killed run's containers at once,
`remove_run`), the process that made it and a deadline (a sweep at worker start and every new
sandbox removes those whose maker is gone or whose deadline passed, `remove_stale`).
"""

from __future__ import annotations

import json
import os
import re
import socket
import sys
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass
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
WORKSPACE_LABEL = "nightcrew.workspace"  # the run's checkout on the worker's host
OWNER_LABEL = "nightcrew.owner"  # the process that made it (`ContainerOwner`, JSON)
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


@contextmanager
def docker_api(base_url: str | None = None) -> Iterator[Any]:
    """A Docker API client for one piece of work, closed after it; API failures raise
    ``SandboxUnavailable`` (the worker logs them and carries on)."""
    client = _client(base_url)
    try:
        yield client
    except (docker.errors.DockerException, RequestException) as exc:
        raise SandboxUnavailable(f"Docker API at {base_url or 'DOCKER_HOST'} failed: {exc}") from exc
    finally:
        client.close()


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
        network_mode: str = "bridge",
    ) -> None:
        self.workspace = Path(workspace).resolve()
        if not self.workspace.is_dir():
            raise ValueError(f"workspace is not a directory: {self.workspace}")
        self.policy = policy or SandboxPolicy()
        self.image = image
        self.binds = default_binds() if binds is None else tuple(map(str, binds))
        self.user = user
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
            "labels": self.labels(deadline), "name": f"nightcrew-{uuid.uuid4().hex[:12]}",
            **self._resources(),
        }

    def labels(self, deadline: float) -> dict[str, str]:
        """What a container carries so that it can be removed without the process that made it."""
        return {LABEL: "1", DEADLINE_LABEL: f"{deadline:.0f}", WORKSPACE_LABEL: str(self.workspace),
                OWNER_LABEL: ContainerOwner.current().label()}

    def isolation(self) -> dict[str, str]:
        """Which isolation this backend puts in force for this policy (for `nightcrew doctor`)."""
        p = self.policy
        return {
            "backend": "docker",
            "engine": _engine(self._client),
            "image": self.image,
            "network": f"{self.network_mode} (policy.network)" if p.network else "none",
            "uid": f"{self.user[0]}:{self.user[1]}, all capabilities dropped, no-new-privileges",
            "root": "read-only image; host " + " ".join(self.binds) + " bound read-only",
            "memory": f"cgroup {p.memory_bytes >> 20} MiB" if p.memory_bytes else "unlimited",
            "pids": f"cgroup {p.pids_max}" if p.pids_max else "unlimited",
            "cpu": f"{self.policy.cpus:g} cores" if self.policy.cpus else "unthrottled",
            "tmp": "tmpfs" + (f" {self.policy.tmp_bytes >> 20} MiB" if self.policy.tmp_bytes else ""),
            "cleanup": "removed after each command; labelled with workspace, owner and deadline",
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
        size = f"size={self.policy.tmp_bytes}," if self.policy.tmp_bytes else ""
        opts = f"rw,nosuid,nodev,{size}mode=1777"
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
        if self.policy.cpus is not None:
            resources["nano_cpus"] = int(self.policy.cpus * 1e9)
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


@dataclass(frozen=True)
class ContainerOwner:
    """The process that made a container. Only a process on the same host and in the same pid
    namespace can tell whether it still runs (a worker in a container shares the engine but not
    the pids); the start time tells it from a later process with the same pid."""

    host: str
    pid_ns: str
    pid: int
    started: int | None

    @classmethod
    def current(cls) -> ContainerOwner:
        pid = os.getpid()
        return cls(socket.gethostname(), _pid_namespace(), pid, _process_start(pid))

    def label(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def parse(cls, text: str) -> ContainerOwner | None:
        try:
            data = json.loads(text)
            started = data["started"]
            return cls(str(data["host"]), str(data["pid_ns"]), int(data["pid"]),
                       None if started is None else int(started))
        except (ValueError, KeyError, TypeError):
            return None

    def gone(self) -> bool:
        """True only when this process can see that the owner no longer runs."""
        if (self.host, self.pid_ns) != (socket.gethostname(), _pid_namespace()):
            return False  # another machine's or namespace's: its deadline decides
        started = _process_start(self.pid)
        return started is None or (self.started is not None and started != self.started)


def remove_stale(client: Any) -> int:
    """Remove nightcrew containers whose maker is gone (a SIGKILLed worker or work horse) or whose
    deadline passed; return how many. Run at worker start and by every new sandbox."""
    removed = 0
    now = time.time()
    for container in _ours(client):
        deadline = container.labels.get(DEADLINE_LABEL, "")
        owner = ContainerOwner.parse(container.labels.get(OWNER_LABEL, ""))
        if (deadline.isdigit() and int(deadline) < now) or (owner is not None and owner.gone()):
            _remove(container)
            removed += 1
    return removed


def remove_run(client: Any, workspaces: Iterable[Path]) -> list[str]:
    """Remove the containers of the runs in these checkouts, running or not (a killed run's, at
    once rather than at their deadline); return their names."""
    wanted = {str(Path(path).resolve()) for path in workspaces}
    removed = []
    for container in _ours(client):
        if container.labels.get(WORKSPACE_LABEL) in wanted:
            _remove(container)
            removed.append(str(container.name))
    return removed


def _ours(client: Any) -> list[Any]:
    return list(client.containers.list(all=True, filters={"label": LABEL}))


def _pid_namespace() -> str:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def _process_start(pid: int) -> int | None:
    """Start time of a live `pid` in clock ticks since boot (field 22 of /proc/pid/stat); None when
    there is no such process or it is a zombie (a killed horse its parent has not waited for)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        return None if fields[0] in ("Z", "X") else int(fields[19])
    except (OSError, ValueError, IndexError):
        return None


def _engine(client: Any) -> str:
    """The engine's name and version, as the API reports them."""
    with suppress(docker.errors.DockerException, RequestException):
        version = client.version()
        names = [c.get("Name", "") for c in version.get("Components", [])]
        name = "Podman" if any("Podman" in n for n in names) else "Docker"
        return f"{name} {version.get('Version', '?')} (API {version.get('ApiVersion', '?')})"
    return "unknown"


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
