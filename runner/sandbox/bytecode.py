"""Python bytecode that lives as long as the task: one cache per workspace, beside its work tree.

Inside the sandbox ``PYTHONPYCACHEPREFIX`` is ``/tmp/.pycache``, on the command's private /tmp.
The task's cache is bound over two parts of it, so bytecode lives as long as its source can:

- ``/tmp/.pycache/workspace``: the work tree's sources (the repository, a `.venv` setup made);
- ``/tmp/.pycache/<toolchain>``: the read-only toolchain (``/usr``, nightcrew's venv and base
  interpreter): compiled once per task instead of once per command (``site`` alone is ~120 ms);
- the rest (sources in /tmp, $HOME, /dev/shm) stays on that /tmp and dies with the command.

On the host the cache is ``<work tree>.pycache``: never inside the work tree (so never in a
diff), removed with the workspace, and never shared — a task can rewrite only its own bytecode,
so whatever its code plants there is run by that task alone.

Stale bytecode. CPython trusts a timestamp pyc while the source's mtime (whole seconds) and size
are the ones it recorded, so a same-size edit within that second would run the old code. Before
every command, ``sweep`` keeps a timestamp pyc of a work-tree source only when

- the source has not been touched since the pyc was written (its ctime is older): an edit by
  anyone — the agent's edit tool, the previous command, a ``touch -d``/``cp -p`` that set the
  mtime back — moves the ctime, which nothing unprivileged can set back;
- the pyc was written in a later second than the source mtime it records, so no later write,
  whatever its size, can land in that second again (git calls such entries "racily clean").

Checked-hash pycs stay: every import checks them against the source's hash (setup's precompile
writes these, so they survive a copy into another workspace and the chown before a command).
Unchecked-hash pycs, pycs of sources behind a symlink, and anything unreadable go. What is left
is CPython's own rule inside one command: a module imported, rewritten to the same size within
the same second and imported again by the same command runs stale — as it would outside.
"""

from __future__ import annotations

import os
import stat
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

PREFIX = "/tmp/.pycache"  # PYTHONPYCACHEPREFIX inside the sandbox
SUFFIX = ".pycache"  # the cache dir is the work tree's name plus this, beside it
WORKSPACE_PART = "workspace"  # /workspace's sources map to PREFIX/workspace
_HEADER_BYTES = 16  # magic, flags, then (mtime, size) or the source hash
_TIMESTAMP, _CHECKED_HASH = 0b00, 0b11  # PEP 552 flags; 0b01 (unchecked hash) is never kept
_SECONDS_MASK = 0xFFFFFFFF  # pycs record the mtime's seconds in 32 bits
_RACY_NS = 2_000_000_000  # a directory changed this recently is listed again at the next sweep


def bytecode_dir(work_tree: Path) -> Path:
    """The task's bytecode cache on the host: a sibling of the work tree, never inside it."""
    work_tree = Path(work_tree)
    return work_tree.with_name(work_tree.name + SUFFIX)


def workspace_bytecode(work_tree: Path) -> Path:
    """Where the work tree's bytecode lives on the host (what ``PREFIX/workspace`` shows)."""
    return bytecode_dir(work_tree) / WORKSPACE_PART


def toolchain_roots() -> tuple[str, ...]:
    """The read-only source trees a sandboxed Python imports from (system, venv, base), outermost only."""
    candidates = sorted({os.path.abspath(p) for p in ("/usr", sys.prefix, sys.base_prefix)})
    roots: list[str] = []
    for path in candidates:
        if not any(path == root or path.startswith(root + "/") for root in roots):
            roots.append(path)
    return tuple(roots)


@dataclass(frozen=True)
class _Listing:
    """What a sweep found in one cache directory; it holds while the directory is unchanged."""

    stamp: tuple[int, int]  # (inode, mtime_ns): adding, removing or renaming an entry changes it
    subdirs: tuple[str, ...]
    timestamped: tuple[tuple[str, int], ...]  # kept timestamp pycs: (name, pyc mtime_ns)


class BytecodeCache:
    """One task's bytecode: the directories bound into its sandbox and the check before a command."""

    def __init__(self, root: Path, toolchains: tuple[str, ...] | None = None) -> None:
        self.root = Path(root)
        self.toolchains = toolchain_roots() if toolchains is None else toolchains
        # Directories unchanged since the last sweep are not listed again (a large .venv holds
        # thousands of pycs); only the sources of their timestamp pycs are looked at.
        self._listings: dict[str, _Listing] = {}

    def binds(self) -> list[tuple[Path, str]]:
        """(host directory, path inside the sandbox) for every part of the cache."""
        parts = [(self.root / WORKSPACE_PART, f"{PREFIX}/{WORKSPACE_PART}")]
        parts += [(self.root / path.lstrip("/"), PREFIX + path) for path in self.toolchains]
        return parts

    def prepare(self, owner: tuple[int, int] | None) -> None:
        """Create the bound directories, owned by the sandbox's user so imports can write there.

        Only the bound directories are the sandbox's: their parents stay the worker's, so a
        command can empty its cache but never swap a bound directory for a link.
        """
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        for host, _ in self.binds():
            host.mkdir(mode=0o755, parents=True, exist_ok=True)
            if owner is not None and _owner_of(os.lstat(host)) != owner:
                os.chown(host, *owner, follow_symlinks=False)

    def sweep(self, work_tree: Path, owner: tuple[int, int] | None = None) -> int:
        """Remove the work tree's bytecode that a later import could trust wrongly; return how much.

        Directories restored from the setup cache are the worker's: they become ``owner``'s,
        so the sandbox can replace what it must recompile.
        """
        removed = 0
        top = str(self.root / WORKSPACE_PART)
        stack: list[tuple[str, str | None]] = [(top, str(work_tree))]
        while stack:
            cache_dir, source_dir = stack.pop()
            subdirs, dropped = self._sweep_dir(cache_dir, source_dir, owner)
            removed += dropped
            stack += [(os.path.join(cache_dir, name), _real_subdir(source_dir, name)) for name in subdirs]
        return removed

    def _sweep_dir(
        self, cache_dir: str, source_dir: str | None, owner: tuple[int, int] | None
    ) -> tuple[tuple[str, ...], int]:
        """Sweep one directory: its subdirectories and how many files went."""
        try:
            # The sweep runs as the worker in a tree the sandbox writes: never through a link
            # it planted (it would point into the host), and everything relative to this fd.
            fd = os.open(cache_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            return (), 0  # gone, or a link (removed when its parent is listed again)
        try:
            st = os.fstat(fd)
            known = self._listings.get(cache_dir)
            if known is not None and known.stamp == (st.st_ino, st.st_mtime_ns) and all(
                _untouched(source_dir, name, pyc_mtime) for name, pyc_mtime in known.timestamped
            ):
                return known.subdirs, 0
            listing, removed = _scan(fd, source_dir, owner)
        finally:
            os.close(fd)
        if _recently_changed(listing):
            # timestamps are coarse: an entry added just after the listing may leave the mtime
            # as it was, so a directory changed this recently is listed again next time
            self._listings.pop(cache_dir, None)
        else:
            self._listings[cache_dir] = listing
        return listing.subdirs, removed


def _scan(dir_fd: int, source_dir: str | None, owner: tuple[int, int] | None) -> tuple[_Listing, int]:
    """List one cache directory, removing what is not trusted; the listing and how many went."""
    subdirs: list[str] = []
    timestamped: list[tuple[str, int]] = []
    removed = 0
    with os.scandir(dir_fd) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                if owner is not None and _owner_of(entry.stat(follow_symlinks=False)) != owner:
                    os.chown(entry.name, *owner, dir_fd=dir_fd, follow_symlinks=False)
                subdirs.append(entry.name)
                continue
            verdict = _verdict(entry, dir_fd, source_dir)
            if verdict is None:
                os.unlink(entry.name, dir_fd=dir_fd)
                removed += 1
            elif verdict >= 0:
                timestamped.append((entry.name, verdict))
    st = os.fstat(dir_fd)
    return _Listing((st.st_ino, st.st_mtime_ns), tuple(subdirs), tuple(timestamped)), removed


def _recently_changed(listing: _Listing) -> bool:
    return listing.stamp[1] > time.time_ns() - _RACY_NS


def _owner_of(st: os.stat_result) -> tuple[int, int]:
    return st.st_uid, st.st_gid


def _real_subdir(parent: str | None, name: str) -> str | None:
    """``parent/name`` if it is a real directory (no symlink on the way), else None.

    The sweep runs as the worker: following a link the sandbox planted would let it probe host
    paths through which pycs are kept or dropped.
    """
    if parent is None:
        return None
    path = os.path.join(parent, name)
    try:
        return path if stat.S_ISDIR(os.lstat(path).st_mode) else None
    except OSError:
        return None


def _verdict(entry: os.DirEntry[str], dir_fd: int, source_dir: str | None) -> int | None:
    """None: remove the file. -1: a checked-hash pyc. Else a timestamp pyc safe for now: its mtime_ns."""
    if not entry.name.endswith(".pyc") or not entry.is_file(follow_symlinks=False):
        return None  # leftovers of an interrupted write, or something planted
    header = _read_header(entry.name, dir_fd)
    if header is None:
        return None
    flags = int.from_bytes(header[4:8], "little")
    if flags == _CHECKED_HASH:
        return -1  # every import compares the source's hash itself
    if flags != _TIMESTAMP or source_dir is None:
        return None
    pyc_mtime_ns = entry.stat(follow_symlinks=False).st_mtime_ns
    recorded_seconds = int.from_bytes(header[8:12], "little")
    # Written in a later second than the source's recorded mtime: no later write can match it.
    settled = (pyc_mtime_ns // 1_000_000_000) & _SECONDS_MASK > recorded_seconds
    return pyc_mtime_ns if settled and _untouched(source_dir, entry.name, pyc_mtime_ns) else None


def _untouched(source_dir: str | None, pyc_name: str, pyc_mtime_ns: int) -> bool:
    """Whether the pyc's source is a regular file no one has changed since the pyc was written."""
    if source_dir is None:
        return False
    try:
        st = os.lstat(os.path.join(source_dir, source_name(pyc_name)))
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and st.st_ctime_ns < pyc_mtime_ns


def source_name(pyc_name: str) -> str:
    """``mod.cpython-311.pyc``, ``mod.cpython-311.opt-1.pyc``, ``mod.cpython-311-pytest-8.0.pyc`` → ``mod.py``."""
    return pyc_name.partition(".")[0] + ".py"


def _read_header(name: str, dir_fd: int) -> bytes | None:
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError:
        return None
    try:
        data = os.read(fd, _HEADER_BYTES)
    except OSError:
        return None
    finally:
        os.close(fd)
    return data if len(data) == _HEADER_BYTES else None


def precompile_argv(roots: Sequence[str]) -> list[str]:
    """The command that compiles ``roots`` (work-tree paths) into the cache as checked-hash pycs.

    ``-f``: pip already compiled what it installed, but as timestamp pycs written in the second
    their sources were, which the sweep would drop. node_modules holds no importable Python.
    """
    return ["python", "-m", "compileall", "-q", "-f", "--invalidation-mode",
            "checked-hash", "-x", "/node_modules/", "--", *roots]


def real_dir(base: Path, relative: str, *, create: bool = False) -> bool:
    """Whether ``base/relative`` is a directory reached through real directories only
    (``create``: making the missing ones, never through a link).

    The worker copies bytecode out of (and into) trees the sandbox wrote; a planted link on
    the way would make it read or write host paths.
    """
    path = base
    for part in (".", *PurePosixPath(relative).parts):
        path = path / part
        try:
            if not stat.S_ISDIR(os.lstat(path).st_mode):
                return False
        except FileNotFoundError:
            if not create:
                return False
            try:
                path.mkdir()
            except OSError:
                return False
        except OSError:
            return False
    return True


def is_python_root(work_tree: Path, root: str) -> bool:
    """Whether a path setup produced can hold Python sources worth compiling (not node_modules:
    a walk through its many thousand files finds nothing anyone imports)."""
    path, pure = work_tree / root, PurePosixPath(root)
    if path.is_symlink() or "node_modules" in pure.parts:
        return False
    return path.is_dir() or pure.suffix == ".py"
