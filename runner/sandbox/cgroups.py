"""Per-command cgroups: memory, process and CPU limits that hold for every process a command starts.

This machine's kind has cgroup v1 controllers (memory, pids, cpu, freezer) writable by root and
a v2 mount without memory or pids (shared/research/sandbox.md §0, §2); both layouts are
detected, v1 first. Each command gets its own cgroup under a fixed `nightcrew/` parent, never
under the worker's own cgroup, which the machinery may own. The launcher joins it by writing
its own pid from an exec chain (`/bin/sh -c 'echo $$ > …/cgroup.procs; exec "$@"'`): no
`preexec_fn`, which is unsafe in a threaded worker, and nothing forks before it has joined.
The v2 path is written to the kernel's documented interface but untested here (no v2 host).
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import shlex
import signal
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
PARENT = "nightcrew"
V1_CONTROLLERS = ("memory", "pids", "cpu", "freezer")
CPU_PERIOD_US = 100_000
# After a fork bomb, rmdir answers EBUSY for more than a second while the dead are reaped (§2).
REMOVE_PATIENCE_S = 5.0
# A leftover of a dead worker gets less: sweeping runs when a sandbox is created.
SWEEP_PATIENCE_S = 1.0
JOIN_FAILED_EXIT = 125
JOIN_FAILED_MESSAGE = "nightcrew sandbox: cannot join the command's cgroup"
_NAME = re.compile(r"^(?P<pid>\d+)-(?P<start>\d+)-[0-9a-f]+$")
_POLL_S = 0.002


class CgroupError(RuntimeError):
    """A cgroup could not be created, configured or removed."""


@dataclass(frozen=True)
class CgroupLimits:
    """The limits one command's cgroup enforces; None leaves a resource unlimited."""

    memory_bytes: int | None = None
    pids_max: int | None = None
    cpus: float | None = None  # CPU bandwidth in cores, e.g. 0.5 = half of one core


@dataclass(frozen=True)
class CgroupUsage:
    """What the kernel recorded for a command's cgroup before it was removed."""

    oom_kills: int = 0
    pids_denied: int = 0  # forks refused because pids.max was reached
    memory_peak: int | None = None


class CommandCgroup:
    """One command's cgroup (a directory per v1 controller, or one v2 directory)."""

    def __init__(self, version: str, dirs: Mapping[str, Path]) -> None:
        self.version = version
        self.dirs = dict(dirs)

    @property
    def paths(self) -> list[Path]:
        """Each distinct directory once (v2 maps every controller to the same one)."""
        return list(dict.fromkeys(self.dirs.values()))

    def join_script(self) -> str:
        """Shell that moves the shell itself into this cgroup, or exits 125 saying so."""
        joins = " && ".join(f"echo $$ > {shlex.quote(str(path / 'cgroup.procs'))}"
                            for path in self.paths)
        return (f"{{ {joins}; }} 2>/dev/null || {{ echo {shlex.quote(JOIN_FAILED_MESSAGE)} >&2; "
                f"exit {JOIN_FAILED_EXIT}; }}")

    def members(self) -> set[int]:
        """Host pids of every process still in the cgroup."""
        found: set[int] = set()
        for path in self.paths:
            with suppress(FileNotFoundError):
                found.update(int(line) for line in (path / "cgroup.procs").read_text().split())
        return found

    def usage(self) -> CgroupUsage:
        """OOM kills, refused forks and peak memory so far."""
        memory, pids = self.dirs.get("memory"), self.dirs.get("pids")
        if self.version == "v1":
            oom = _field(memory, "memory.oom_control", "oom_kill")
            peak = _number(memory, "memory.max_usage_in_bytes")
        else:
            oom = _field(memory, "memory.events", "oom_kill")
            peak = _number(memory, "memory.peak")
        return CgroupUsage(oom_kills=oom, pids_denied=_field(pids, "pids.events", "max"),
                           memory_peak=peak)

    def kill(self, patience: float = REMOVE_PATIENCE_S) -> None:
        """SIGKILL every process in the cgroup, including ones forking right now; wait until empty."""
        deadline = time.monotonic() + patience
        kill_file = self.paths[0] / "cgroup.kill"
        if self.version == "v2" and kill_file.exists():
            _write(kill_file, "1")
        while members := self.members():
            if time.monotonic() > deadline:
                raise CgroupError(f"processes {sorted(members)[:10]} survived SIGKILL in {self.paths[0]}")
            with _Freeze(self):
                for pid in self.members():
                    with suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
            time.sleep(_POLL_S)

    def remove(self, patience: float = REMOVE_PATIENCE_S) -> None:
        """Kill what is left, then rmdir every directory (retrying EBUSY while the dead are reaped)."""
        self.kill(patience)
        deadline = time.monotonic() + patience
        for path in self.paths:
            _rmdir(path, deadline)


class _Freeze:
    """Freezes the cgroup for the duration of a `with` block, so nothing forks while we kill."""

    def __init__(self, cgroup: CommandCgroup) -> None:
        freezer = cgroup.dirs.get("freezer")
        if freezer is None:
            self._state, self._values = None, ("", "")
        elif cgroup.version == "v1":
            self._state, self._values = freezer / "freezer.state", ("FROZEN", "THAWED")
        else:
            self._state, self._values = freezer / "cgroup.freeze", ("1", "0")

    def __enter__(self) -> None:
        if self._state is None:
            return
        with suppress(FileNotFoundError):
            _write(self._state, self._values[0])
            deadline = time.monotonic() + 0.5
            # v1 passes through FREEZING; killing then still works, it only may miss a new fork
            while self._state.read_text().strip() not in ("FROZEN", "1") and time.monotonic() < deadline:
                time.sleep(_POLL_S)

    def __exit__(self, *exc: object) -> None:
        if self._state is not None:
            with suppress(FileNotFoundError):
                _write(self._state, self._values[1])


class Cgroups:
    """What this machine's cgroups offer nightcrew: a version and the controllers it may use."""

    def __init__(self, version: str | None, parents: Mapping[str, Path], reason: str = "") -> None:
        self.version = version
        self.parents = dict(parents)
        self.reason = reason

    @classmethod
    def detect(cls, root: Path = CGROUP_ROOT) -> Cgroups:
        """Probe v1 controllers, then v2; create the `nightcrew/` parents where writable."""
        v1 = _v1_parents(root)
        if "memory" in v1 or "pids" in v1:
            return cls("v1", v1)
        v2, why = _v2_parent(root)
        if v2 is not None:
            return v2
        return cls(None, {}, reason=why or "no writable cgroup controllers")

    def supports(self, controller: str) -> bool:
        """Whether limits of this kind ("memory", "pids", "cpu", "freezer") can go through cgroups."""
        return controller in self.parents

    def label(self, controller: str) -> str | None:
        """How the report names this mechanism, e.g. "cgroup v1"; None when unsupported."""
        return f"cgroup {self.version}" if self.supports(controller) else None

    def create(self, limits: CgroupLimits) -> CommandCgroup:
        """Make a cgroup for one command with `limits` set; the caller must `remove()` it."""
        _retry_leftovers()
        wanted = {"freezer"}
        wanted |= {"memory"} if limits.memory_bytes is not None else set()
        wanted |= {"pids"} if limits.pids_max is not None else set()
        wanted |= {"cpu"} if limits.cpus is not None else set()
        name = f"{_owner_tag(os.getpid())}-{secrets.token_hex(6)}"
        dirs = {ctrl: parent / name for ctrl, parent in self.parents.items() if ctrl in wanted}
        if not dirs:
            raise CgroupError("no cgroup controller for these limits")
        cgroup = CommandCgroup(self.version or "v1", dirs)
        try:
            for path in cgroup.paths:
                path.mkdir()
            _apply(cgroup, limits)
        except OSError as exc:
            release(cgroup)
            raise CgroupError(f"cannot set up cgroup {name}: {exc}") from exc
        return cgroup

    def sweep_stale(self) -> list[Path]:
        """Remove the cgroups of workers that have died (kill leftovers first); return what went."""
        removed: list[Path] = []
        for name, dirs in self._children().items():
            match = _NAME.match(name)
            if match is None or _alive(int(match["pid"]), int(match["start"])):
                continue
            cgroup = CommandCgroup(self.version or "v1", dirs)
            with suppress(CgroupError):
                cgroup.remove(SWEEP_PATIENCE_S)
                removed.extend(cgroup.paths)
        return removed

    def _children(self) -> dict[str, dict[str, Path]]:
        children: dict[str, dict[str, Path]] = {}
        for ctrl, parent in self.parents.items():
            for entry in _subdirs(parent):
                children.setdefault(entry.name, {})[ctrl] = Path(entry.path)
        return children


def release(cgroup: CommandCgroup) -> None:
    """Remove a command's cgroup; one that will not go yet is retried at the next `create`."""
    try:
        cgroup.remove()
    except (CgroupError, OSError):
        with _LEFTOVERS_LOCK:
            _LEFTOVERS.append(cgroup)


# this worker's cgroups that would not go in time (sweep_stale only takes dead workers' ones)
_LEFTOVERS: list[CommandCgroup] = []
_LEFTOVERS_LOCK = threading.Lock()


def _retry_leftovers() -> None:
    with _LEFTOVERS_LOCK:
        pending = list(_LEFTOVERS)
        _LEFTOVERS.clear()
    for cgroup in pending:
        try:
            cgroup.remove(patience=0.0)
        except (CgroupError, OSError):
            with _LEFTOVERS_LOCK:
                _LEFTOVERS.append(cgroup)


def _v1_parents(root: Path) -> dict[str, Path]:
    parents: dict[str, Path] = {}
    for ctrl in V1_CONTROLLERS:
        hierarchy = root / ctrl
        if (hierarchy / "tasks").is_file() and _writable_parent(hierarchy / PARENT):
            parents[ctrl] = hierarchy / PARENT
    return parents


def _v2_parent(root: Path) -> tuple[Cgroups | None, str]:
    unified = next((p for p in (root, root / "unified") if (p / "cgroup.controllers").is_file()), None)
    if unified is None:
        return None, "no cgroup v1 memory/pids controller and no cgroup v2 mount"
    available = set((unified / "cgroup.controllers").read_text().split())
    if not {"memory", "pids"} <= available:
        return None, f"cgroup v2 has only {' '.join(sorted(available)) or 'no controllers'}"
    parent = unified / PARENT
    enable = " ".join(f"+{c}" for c in ("memory", "pids", "cpu") if c in available)
    try:
        _write(unified / "cgroup.subtree_control", enable)
        parent.mkdir(exist_ok=True)
        _write(parent / "cgroup.subtree_control", enable)
    except OSError as exc:
        return None, f"cgroup v2 is not writable here: {exc}"
    controllers = {c for c in ("memory", "pids", "cpu") if c in available} | {"freezer"}
    return Cgroups("v2", {c: parent for c in controllers}), ""


def _writable_parent(parent: Path) -> bool:
    try:
        parent.mkdir(exist_ok=True)
    except OSError:
        return False
    return os.access(parent / "cgroup.procs", os.W_OK)


def _apply(cgroup: CommandCgroup, limits: CgroupLimits) -> None:
    """Write the limits into the cgroup's control files."""
    memory, pids, cpu = (cgroup.dirs.get(c) for c in ("memory", "pids", "cpu"))
    v1 = cgroup.version == "v1"
    if memory is not None and limits.memory_bytes is not None:
        value = str(limits.memory_bytes)
        _write(memory / ("memory.limit_in_bytes" if v1 else "memory.max"), value)
        # without a swap limit a hog would page out instead of dying (when the host has swap)
        swap = memory / ("memory.memsw.limit_in_bytes" if v1 else "memory.swap.max")
        if swap.exists():
            _write(swap, value if v1 else "0")
    if pids is not None and limits.pids_max is not None:
        _write(pids / "pids.max", str(limits.pids_max))
    if cpu is not None and limits.cpus is not None:
        quota = max(1000, int(limits.cpus * CPU_PERIOD_US))
        if v1:
            _write(cpu / "cpu.cfs_period_us", str(CPU_PERIOD_US))
            _write(cpu / "cpu.cfs_quota_us", str(quota))
        else:
            _write(cpu / "cpu.max", f"{quota} {CPU_PERIOD_US}")


def _rmdir(path: Path, deadline: float) -> None:
    delay = _POLL_S
    while True:
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                raise CgroupError(f"cannot remove {path}: {exc}") from exc
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def _write(path: Path, value: str) -> None:
    # one write() per value: cgroup files reject a value split over several writes
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def _field(directory: Path | None, name: str, key: str) -> int:
    """The number after `key` in a "key value" per line control file; 0 when absent."""
    if directory is None:
        return 0
    try:
        lines = (directory / name).read_text().splitlines()
    except OSError:
        return 0
    for line in lines:
        parts = line.split()
        if len(parts) == 2 and parts[0] == key and parts[1].isdigit():
            return int(parts[1])
    return 0


def _number(directory: Path | None, name: str) -> int | None:
    if directory is None:
        return None
    try:
        return int((directory / name).read_text())
    except (OSError, ValueError):
        return None


def _subdirs(parent: Path) -> Iterator[os.DirEntry[str]]:
    try:
        with os.scandir(parent) as entries:
            yield from (e for e in entries if e.is_dir(follow_symlinks=False))
    except FileNotFoundError:
        return


def _owner_tag(pid: int) -> str:
    """pid plus start time: a recycled pid must not make a dead worker's cgroup look alive."""
    return f"{pid}-{_process_start(pid) or 0}"


def _process_start(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name may hold spaces and parentheses: fields count from the last ')'
    return int(stat.rsplit(")", 1)[1].split()[19])


def _alive(pid: int, start: int) -> bool:
    return _process_start(pid) == start
