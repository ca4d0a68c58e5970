"""The setup phase: the repository's `setup:` commands, run once per set of manifests and cached.

Setup runs in the sandbox with the network on (to install dependencies) but with the same
clean, secret-free environment as every other phase. Each sandboxed command gets a fresh
`/tmp` and home, so only what setup writes into the workspace survives it; the paths it
creates there (a `.venv`, `node_modules`, `*.egg-info` …) are copied into
`cache_dir/<key>/tree` and copied back into the next workspace whose manifests and commands
hash to the same key. Copies, not hardlinks: a later phase writing into a restored `.venv`
must not change the cache.

After the commands, what they installed is compiled into the task's bytecode cache (when the
sandbox keeps one, runner/sandbox/bytecode.py) as checked-hash pycs, under the same sandbox and
policy, and cached with the tree: the first test run of every later task starts warm. Hash-based,
because the restored sources get new ctimes (and a chown) in the next workspace, which the
sandbox's sweep would take for edits of timestamp pycs; a hash is checked on every import.

Give each repository its own `cache_dir`: what one repository's setup wrote must never land
in another repository's workspace.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import secrets
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from fnmatch import fnmatch
from pathlib import Path, PurePosixPath

from runner.sandbox import ExecResult, Sandbox, SandboxPolicy
from runner.sandbox.bytecode import is_python_root, precompile_argv, real_dir, workspace_bytecode

CACHE_FORMAT = "nightcrew-setup-v2"  # v2: entries carry the bytecode of what setup installed
KEEP_ENTRIES = 3  # per repository: the current manifests, plus a couple for branches in flight
MANIFEST_DEPTH = 3  # monorepos keep package manifests a level or two down
STAGING_MAX_AGE_S = 3600.0  # a store in progress is minutes old at most
MANIFEST_PATTERNS = (
    "*requirements*.txt", "constraints*.txt", "pyproject.toml", "setup.cfg", "setup.py",
    "poetry.lock", "uv.lock", "pdm.lock", "Pipfile", "Pipfile.lock", "environment.yml",
    ".python-version", "package.json", "package-lock.json", "npm-shrinkwrap.json", "yarn.lock",
    "pnpm-lock.yaml", "bun.lockb", ".nvmrc", ".tool-versions", "go.mod", "go.sum",
    "Cargo.toml", "Cargo.lock", "Gemfile", "Gemfile.lock", "composer.json", "composer.lock",
)
_SKIP_DIRS = frozenset({".git", ".venv", "venv", "node_modules", ".tox", "build", "dist",
                        "__pycache__", "site-packages", "vendor", "target"})
SetupSandboxFactory = Callable[[Path], Sandbox]


@dataclass(frozen=True)
class SetupResult:
    """What the setup phase did: ran the commands, restored a cache, or had nothing to do."""

    ran: bool
    cached: bool
    key: str
    results: list[ExecResult] = field(default_factory=list)
    ok: bool = True
    paths: tuple[str, ...] = ()  # workspace paths setup produced (or the cache restored)
    failed_command: str | None = None
    precompiled: ExecResult | None = None  # compiling what setup installed (best effort)

    def failure_report(self) -> str:
        """The failed command and the tail of its output, for the status comment."""
        if self.ok or not self.results:
            return ""
        last = self.results[-1]
        why = f"killed ({last.killed})" if last.killed else f"exit {last.exit_code}"
        output = (last.stdout + ("\n" if last.stdout and last.stderr else "") + last.stderr)[-4000:]
        return f"setup command `{self.failed_command}` failed ({why}):\n{output}"


def setup_policy(base: SandboxPolicy | None = None) -> SandboxPolicy:
    """The sandbox policy for setup: `base` with the network on and package indexes allowed."""
    base = base or SandboxPolicy()
    # pip reads PIP_NO_INDEX=0 as false: the sandbox's offline default is lifted for this phase
    return replace(base, network=True, env={**base.env, "PIP_NO_INDEX": "0"})


def run_setup(
    workspace_path: Path, commands: Sequence[str], sandbox_for_setup: SetupSandboxFactory,
    cache_dir: Path,
) -> SetupResult:
    """Restore setup's output from the cache, or run the commands in order and cache what they made."""
    if not commands:
        return SetupResult(ran=False, cached=False, key="")
    workspace = Path(workspace_path).resolve()
    key = cache_key(workspace, commands)
    restored = _restore(Path(cache_dir) / key, workspace)
    if restored is not None:
        return SetupResult(ran=False, cached=True, key=key, paths=restored)
    before = _tree(workspace)
    results: list[ExecResult] = []
    sandbox = sandbox_for_setup(workspace)
    for command in commands:
        results.append(sandbox.run(["sh", "-c", command]))
        if not results[-1].ok:
            return SetupResult(ran=True, cached=False, key=key, results=results, ok=False,
                               failed_command=command)
    produced = _new_roots(workspace, before)
    precompiled = _precompile(sandbox, workspace, produced)
    _store(Path(cache_dir), key, workspace, produced, commands)
    return SetupResult(ran=True, cached=False, key=key, results=results, paths=produced,
                       precompiled=precompiled)


def _precompile(sandbox: Sandbox, workspace: Path, roots: tuple[str, ...]) -> ExecResult | None:
    """Compile the Python that setup installed into the task's bytecode cache, if it keeps one.

    A failure (a package shipping files for another Python version) costs only speed: whatever
    did not compile is compiled on first import, as before.
    """
    targets = [root for root in roots if is_python_root(workspace, root)]
    # the cache exists once the sandbox has run a command with one (setup's commands just did)
    if not targets or not workspace_bytecode(workspace).is_dir():
        return None
    return sandbox.run(precompile_argv(targets))


def cache_key(workspace: Path, commands: Sequence[str]) -> str:
    """sha256 over the commands, the toolchain the sandbox offers, and every manifest's content."""
    digest = hashlib.sha256()
    toolchain = [CACHE_FORMAT, sys.version, sys.prefix, platform.machine()]
    digest.update(json.dumps([toolchain, list(commands)]).encode())
    for relative in manifest_files(workspace):
        digest.update(f"\0{relative}\0".encode())
        digest.update(_file_digest(workspace / relative))
    return digest.hexdigest()


def manifest_files(workspace: Path) -> list[str]:
    """Dependency manifests and lock files in the workspace (a few levels deep), sorted."""
    found: list[str] = []
    for directory, names in _walk(workspace, MANIFEST_DEPTH):
        for name in names:
            path = directory / name
            if path.is_file() and not path.is_symlink() and _is_manifest(path):
                found.append(path.relative_to(workspace).as_posix())
    return sorted(found)


def _is_manifest(path: Path) -> bool:
    in_requirements_dir = path.parent.name == "requirements" and path.suffix in (".txt", ".in")
    return in_requirements_dir or any(fnmatch(path.name, pattern) for pattern in MANIFEST_PATTERNS)


def _walk(root: Path, depth: int) -> Iterator[tuple[Path, list[str]]]:
    """(directory, file names) down to `depth` levels, skipping VCS, environments and builds."""
    for directory, dirnames, filenames in os.walk(root):
        level = len(Path(directory).relative_to(root).parts)
        dirnames[:] = [] if level + 1 >= depth else [d for d in dirnames if d not in _SKIP_DIRS]
        yield Path(directory), filenames


def _file_digest(path: Path) -> bytes:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").digest()


# -- what setup produced -------------------------------------------------------------------------


def _tree(workspace: Path) -> set[str]:
    """Every path in the workspace (symlinks not followed), relative."""
    paths: set[str] = set()
    for directory, dirnames, filenames in os.walk(workspace):
        base = Path(directory).relative_to(workspace)
        paths.update((base / name).as_posix() for name in (*dirnames, *filenames))
    return paths


def _new_roots(workspace: Path, before: set[str]) -> tuple[str, ...]:
    """The topmost paths that did not exist before setup (whole new trees count once)."""
    roots: list[str] = []
    for directory, dirnames, filenames in os.walk(workspace):
        base = Path(directory).relative_to(workspace)
        for name in (*dirnames, *filenames):
            if (base / name).as_posix() not in before:
                roots.append((base / name).as_posix())
        dirnames[:] = [d for d in dirnames if (base / d).as_posix() in before]
    return tuple(sorted(roots))


# -- the cache -----------------------------------------------------------------------------------


def _store(cache_dir: Path, key: str, workspace: Path, roots: tuple[str, ...],
           commands: Sequence[str]) -> None:
    """Copy `roots` into `cache_dir/<key>` (built aside, renamed into place whole)."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    staging = cache_dir / f".tmp-{secrets.token_hex(4)}"
    try:
        _copy_roots(workspace, staging / "tree", roots)
        compiled = _copy_bytecode(workspace_bytecode(workspace), staging / "bytecode", roots)
        manifest = {"paths": list(roots), "bytecode": list(compiled), "commands": list(commands),
                    "created": time.time()}
        (staging / "manifest.json").write_text(json.dumps(manifest))
        staging.rename(cache_dir / key)
    except OSError:
        return  # another task stored the same key first, or the disk is full: setup still ran
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _prune(cache_dir, keep=KEEP_ENTRIES)


def _restore(entry: Path, workspace: Path) -> tuple[str, ...] | None:
    """Copy a cache entry's trees into the workspace; None (nothing changed) if it cannot be used."""
    roots = _cached_roots(entry)
    if roots is None or not all(_restorable(workspace, root) for root in roots):
        return None
    os.utime(entry)  # the prune keeps the most recently used entries
    try:
        _copy_roots(entry / "tree", workspace, roots)
    except OSError:
        for root in roots:  # a prune or a full disk mid-copy: undo, and run setup instead
            _remove(workspace / root)
        return None
    _copy_bytecode(entry / "bytecode", workspace_bytecode(workspace), roots)
    return roots


def _copy_bytecode(source: Path, destination: Path, roots: tuple[str, ...]) -> tuple[str, ...]:
    """Copy the bytecode of each root that has some; the roots copied. Best effort: bytecode
    only saves compile time, and whatever is copied, the sandbox's sweep checks like any pyc."""
    copied: list[str] = []
    if not source.is_dir():
        return ()
    try:
        destination.mkdir(parents=True, exist_ok=True)  # the worker's own path, up to here
    except OSError:
        return ()
    for root in roots:
        parent = str(PurePosixPath(root).parent)
        # both trees were written by sandboxed commands: never through a link they planted
        if not real_dir(source, root) or not real_dir(destination, parent, create=True):
            continue
        try:
            shutil.copytree(source / root, destination / root, symlinks=True, dirs_exist_ok=True)
        except OSError:
            continue
        copied.append(root)
    return tuple(copied)


def _cached_roots(entry: Path) -> tuple[str, ...] | None:
    try:
        paths = json.loads((entry / "manifest.json").read_text())["paths"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(paths, list) or not all(isinstance(p, str) and _safe_relative(p) for p in paths):
        return None
    if not all(os.path.lexists(entry / "tree" / p) for p in paths):
        return None
    return tuple(paths)


def _safe_relative(path: str) -> bool:
    pure = PurePosixPath(path)
    return bool(path) and not pure.is_absolute() and ".." not in pure.parts


def _restorable(workspace: Path, root: str) -> bool:
    """Free to restore: the path is absent and every parent is a real directory (no symlink out)."""
    target = workspace / root
    if os.path.lexists(target):
        return False
    parent = target.parent
    while parent != workspace:
        if parent.is_symlink() or not parent.is_dir():
            return False
        parent = parent.parent
    return True


def _copy_roots(source: Path, destination: Path, roots: tuple[str, ...]) -> None:
    """Copy each root from `source` to the same place under `destination`, symlinks kept as links."""
    for root in roots:
        (destination / root).parent.mkdir(parents=True, exist_ok=True)
        _copy(source / root, destination / root)


def _copy(source: Path, target: Path) -> None:
    # A full copy, never a hardlink: a write into the workspace must not reach the cache.
    if source.is_symlink():
        target.symlink_to(os.readlink(source))
    elif source.is_dir():
        shutil.copytree(source, target, symlinks=True)
    else:
        shutil.copy2(source, target, follow_symlinks=False)


def _prune(cache_dir: Path, keep: int) -> None:
    """Keep the `keep` most recently used entries; drop the rest and staging dirs of dead workers."""
    entries = sorted((p for p in cache_dir.iterdir() if p.is_dir() and not p.name.startswith(".")),
                     key=_mtime, reverse=True)
    abandoned = [p for p in cache_dir.glob(".tmp-*") if time.time() - _mtime(p) > STAGING_MAX_AGE_S]
    for stale in (*entries[keep:], *abandoned):
        shutil.rmtree(stale, ignore_errors=True)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:  # removed by a concurrent prune
        return 0.0


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    elif path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
