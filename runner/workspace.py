"""The task's git checkout, driven from the worker side (never from inside the sandbox).

The git directory lives beside the work tree (`<root>/<name>.git`), not in it: the sandbox
binds only the work tree, so a command in it cannot plant hooks, filters or a new remote URL
that the worker's own git calls would then run with the token at hand. Every call names the
git dir and work tree explicitly, so a forged `.git` file in the work tree is ignored too.

`Workspaces` keeps one bare mirror per repository under the data dir and makes each task's
checkout a local clone of it: a fetch plus a copy of the packs instead of a full clone. The
clone is independent of the mirror (own objects, own refs), so the sandbox never needs to see
the mirror. On one filesystem its object files are hardlinks to the mirror's (git never
rewrites an object file), so a task's git dir may be bound read-only, never writable.
Task trees go on tmpfs when the machine has one with room: creating thousands of files on
this VM's ext4 costs 1–6 s, on tmpfs ~0.1 s (shared/research/sandbox.md §5).

Clone, fetch and push are retried like a GitHub API call (``github_app/github.py``): a failure
of the transport (an HTTP 5xx or 429 from the server, a connection refused or reset, a remote
that hung up, a timeout) is tried again in-process with backoff, then raised as
``GitTransportError``, an ``errors.Retryable``, so the job waits and runs the task again from
its checkpoint. Anything else (authentication refused, a non-fast-forward, a missing ref) is a
plain ``WorkspaceError``: trying again would not change the answer.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from github_app import errors
from runner.sandbox.bytecode import bytecode_dir

TOKEN_ENV = "NIGHTCREW_GIT_TOKEN"
LOCAL_TIMEOUT = 60.0
NETWORK_TIMEOUT = 300.0
SHM = Path("/dev/shm")
# tmpfs is RAM: use it only while a checkout (work tree ≈ a few times the packed size) fits
# with room to spare, else fall back to the data dir.
TMPFS_HEADROOM_BYTES = 256 * 1024**2
TREE_BYTES_PER_PACK_BYTE = 4
SWEEP_MAX_AGE_S = 3600.0
TRANSPORT_ATTEMPTS = 4  # tries of one clone/fetch/push in-process: the first and up to three retries
TRANSPORT_BACKOFF_S = (1.0, 2.0, 4.0)  # waits after the 1st, 2nd, 3rd transport failure
# The helper reads the token from git's environment at request time: not on argv, not on disk.
_CREDENTIAL_HELPER = (
    f'!f() {{ test "$1" = get && test -n "${TOKEN_ENV}" || return 0; echo username=x-access-token; '
    f'echo "password=${TOKEN_ENV}"; }}; f'
)
# Only what git needs to reach a remote: the worker's secrets and stray GIT_* settings stay out.
_FORWARDED_ENV = (
    "PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SSL_CERT_FILE", "SSL_CERT_DIR",
    "GIT_SSL_CAINFO", "GIT_SSL_CAPATH", "CURL_CA_BUNDLE",
    "http_proxy", "https_proxy", "no_proxy", "all_proxy",
    "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY",
)
_URL_USERINFO = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^/@\s]+@", re.IGNORECASE)
_TASK_ENTRY = re.compile(r"^(?P<name>.+?)(?:\.git|\.pycache|\.owner(?:\.tmp-[0-9a-f]+)?)?$")
_RESERVED_SUFFIXES = (".git", ".pycache", ".owner")
# What git (with libcurl) prints when the server or the network failed, not the request: an
# HTTP status decides when git names one ("returned error: 502", "RPC failed; HTTP 413"), so a
# 413 followed by "the remote end hung up unexpectedly" is not taken for a network failure.
_HTTP_STATUS = re.compile(r"(?:returned error: |RPC failed; HTTP )(?P<status>\d{3})\b")
_TRANSPORT_TEXTS = (
    "the remote end hung up unexpectedly",
    "unexpected disconnect while reading sideband packet",
    "early eof",
    "rpc failed",
    "connection reset",
    "connection refused",
    "connection timed out",
    "operation timed out",
    "couldn't connect to server",
    "failed to connect to",
    "could not resolve host",  # DNS is the network too; GitHub's adapter retries it alike
    "empty reply from server",
    "recv failure",
    "send failure",
    "transfer closed with",  # "... N bytes remaining to read" / "... outstanding read data"
    "gnutls_handshake() failed",
    "gnutls recv error",
    "ssl_read:",
    "ssl_write:",
)

sleep: Callable[[float], None] = time.sleep  # the only wait between transport retries; tests replace it


class WorkspaceError(errors.NightcrewError, RuntimeError):
    """A git operation failed; the message carries git's stderr with any token scrubbed out."""


class GitTransportError(WorkspaceError, errors.Retryable):
    """The remote failed or could not be reached (5xx, reset, refused, timeout): retry later.

    Raised once the in-process retries are used up; the job then waits and runs the task again
    from its checkpoint (``runner.worker.jobs.through_github_waits``).
    """

    def __init__(self, message: str, *, timed_out: bool = False) -> None:
        errors.Retryable.__init__(self, message)
        self.timed_out = timed_out  # already waited a whole network timeout: not retried in-process


def is_transport_failure(stderr: str) -> bool:
    """Whether git's stderr says the server or the network failed (worth trying again)."""
    statuses = [int(m.group("status")) for m in _HTTP_STATUS.finditer(stderr)]
    if statuses:
        return all(status >= 500 or status == 429 for status in statuses)
    lowered = stderr.lower()
    return any(text in lowered for text in _TRANSPORT_TEXTS)


def _failure(what: str, result: subprocess.CompletedProcess[str], token: str | None,
            *, remote: bool = True) -> WorkspaceError:
    """The error for a failed git command: ``GitTransportError`` for a transport failure of a
    command that talked to the remote, else ``WorkspaceError``; git's output token-free."""
    detail = scrub(result.stderr.strip() or result.stdout.strip(), token)
    message = f"git {what} failed (exit {result.returncode}): {detail}"
    if remote and is_transport_failure(result.stderr):
        return GitTransportError(message)
    return WorkspaceError(message)


@dataclass(frozen=True)
class GitIdentity:
    """Who commits: the App's bot account unless the operator says otherwise."""

    name: str = "nightcrew[bot]"
    email: str = "nightcrew[bot]@users.noreply.github.com"


def scrub(text: str, token: str | None) -> str:
    """Remove `token` and any `user:password@` in URLs from text meant for logs or errors."""
    if token:
        basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
        text = text.replace(token, "***").replace(basic, "***")
    return _URL_USERINFO.sub(r"\g<scheme>***@", text)


class _Git:
    """Runs git with a fixed, isolated configuration and a timeout on every call."""

    def __init__(self, git_dir: Path | None, work_tree: Path | None, identity: GitIdentity) -> None:
        self.git_dir = git_dir
        self.work_tree = work_tree
        self.identity = identity

    def remote(
        self, *args: str, token: str | None, timeout: float, check: bool = True,
        half_made: Sequence[Path] = (),
    ) -> subprocess.CompletedProcess[str]:
        """Run a git command that talks to the remote, retrying transport failures in-process.

        The whole command is repeated, so it must be safe to repeat: a clone starts over (the
        ``half_made`` paths a failed attempt may leave are removed first), a fetch is a fetch,
        and a push sends the same commit to the same ref — one that landed although its answer
        was lost is "up to date" the second time. A transport failure raises
        ``GitTransportError`` even with ``check=False``; a timeout is not retried here (it
        already took a whole timeout), the job waits instead.
        """
        failures = 0
        while True:
            try:
                return self.run(*args, token=token, timeout=timeout, check=check, remote=True)
            except GitTransportError as exc:
                failures += 1
                if exc.timed_out or failures >= TRANSPORT_ATTEMPTS:
                    raise
            for path in half_made:
                _remove(path)
            sleep(TRANSPORT_BACKOFF_S[min(failures, len(TRANSPORT_BACKOFF_S)) - 1])

    def run(
        self, *args: str, token: str | None = None, timeout: float = LOCAL_TIMEOUT,
        env: Mapping[str, str] | None = None, check: bool = True, remote: bool = False,
    ) -> subprocess.CompletedProcess[str]:
        """Run one git command; raise WorkspaceError (token-free) on failure or timeout.

        ``remote``: the command talks to the remote, so a transport failure or a timeout raises
        ``GitTransportError`` (whatever ``check`` says); ``remote()`` retries those.
        """
        argv = [*self._prefix(), *args]
        proc_env = self._env(token, env)
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=proc_env, text=True,
                                errors="replace", start_new_session=True)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            # kill the group: git leaves helpers (git-remote-https, ssh) running otherwise
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            message = f"git {args[0]} timed out after {timeout:.0f}s"
            if remote:
                raise GitTransportError(message, timed_out=True) from None
            raise WorkspaceError(message) from None
        result = subprocess.CompletedProcess(argv, proc.returncode, out, err)
        if result.returncode != 0 and (check or remote and is_transport_failure(err)):
            raise _failure(args[0], result, token, remote=remote)
        return result

    def _prefix(self) -> list[str]:
        prefix = ["git"]
        if self.git_dir is not None:
            prefix.append(f"--git-dir={self.git_dir}")
        if self.work_tree is not None:
            prefix.append(f"--work-tree={self.work_tree}")
        config = {
            "user.name": self.identity.name,
            "user.email": self.identity.email,
            "core.hooksPath": os.devnull,  # never run hooks, whoever wrote them
            "core.fsmonitor": "false",
            "commit.gpgsign": "false",
            "advice.detachedHead": "false",
            "protocol.ext.allow": "never",
            "submodule.recurse": "false",
            "gc.autoDetach": "false",  # no background gc outliving the call (or the mirror lock)
            "checkout.workers": "0",  # one per CPU: ~15 % faster for a 5,000-file tree
            # LFS pointers stay pointers: no git-lfs needed, and none runs if one is installed
            "filter.lfs.smudge": "",
            "filter.lfs.clean": "",
            "filter.lfs.process": "",
            "filter.lfs.required": "false",
            "credential.helper": "",  # drop every helper configured elsewhere (e.g. `store`)
        }
        for key, value in config.items():
            prefix += ["-c", f"{key}={value}"]
        return [*prefix, "-c", f"credential.helper={_CREDENTIAL_HELPER}"]

    @staticmethod
    def _env(token: str | None, extra: Mapping[str, str] | None) -> dict[str, str]:
        env = {key: os.environ[key] for key in _FORWARDED_ENV if key in os.environ}
        env.setdefault("PATH", "/usr/bin:/bin")
        env.update({
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_ASKPASS": "/bin/false",  # never prompt, even if the helper gives nothing
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_LFS_SKIP_SMUDGE": "1",
            "LC_ALL": "C",  # stable, parseable messages
        })
        if token:
            env[TOKEN_ENV] = token
        env.update(extra or {})
        return env


class Workspace:
    """One task's checkout: a work tree on `branch`, a private git dir, and the base it forked from."""

    def __init__(
        self, *, path: Path, git_dir: Path, branch: str, base_sha: str,
        identity: GitIdentity = GitIdentity(), timeout: float = LOCAL_TIMEOUT,
        network_timeout: float = NETWORK_TIMEOUT, owner_file: Path | None = None,
    ) -> None:
        self.path = path
        self.git_dir = git_dir
        self.branch = branch
        self.base_sha = base_sha
        self.owner_file = owner_file
        self._git = _Git(git_dir, path, identity)
        self._timeout = timeout
        self._network_timeout = network_timeout

    @classmethod
    def checkout(
        cls, *, clone_url: str, token: str | None, root: Path, name: str, branch: str,
        base_branch: str | None = None, identity: GitIdentity = GitIdentity(),
        timeout: float = LOCAL_TIMEOUT, network_timeout: float = NETWORK_TIMEOUT,
        mirrors: Path | None = None, owner_file: Path | None = None,
    ) -> Workspace:
        """Check out `branch` into `root/name`: resumed from the remote, else new from base.

        With `mirrors`, the clone comes from the repository's mirror there (created or fetched
        first); without, straight from `clone_url`. A failed checkout leaves nothing behind.
        """
        _reject_credentials(clone_url)
        path, git_dir = _fresh_paths(Path(root), name)
        try:
            if mirrors is None:
                _Git(None, None, identity).remote(
                    *_CLONE, f"--separate-git-dir={git_dir}", "--", clone_url, str(path),
                    token=token, timeout=network_timeout, half_made=(path, git_dir),
                )
            else:
                _clone_via_mirror(Path(mirrors), clone_url, token, path, git_dir, identity,
                                  network_timeout)
            base_sha = _start_branch(_Git(git_dir, path, identity), branch, base_branch)
        except BaseException:
            _remove(path)
            _remove(git_dir)
            raise
        return cls(path=path, git_dir=git_dir, branch=branch, base_sha=base_sha, identity=identity,
                   timeout=timeout, network_timeout=network_timeout, owner_file=owner_file)

    def __enter__(self) -> Workspace:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.cleanup()

    def head(self) -> str:
        """The commit the branch points at."""
        return self._run("rev-parse", "HEAD").stdout.strip()

    def exclude(self, paths: Sequence[str]) -> None:
        """Keep paths out of every diff and commit (setup output such as .venv, node_modules)."""
        if not paths:
            return
        info = self.git_dir / "info"
        info.mkdir(parents=True, exist_ok=True)
        # Anchored at the root, with glob characters escaped: exactly these paths, nothing else.
        lines = ["/" + re.sub(r"([*?\[\\!#])", r"\\\1", p.strip("/")) for p in paths]
        with (info / "exclude").open("a") as handle:
            handle.write("\n".join(lines) + "\n")

    def changed_files(self) -> list[str]:
        """Paths that differ from the base commit: committed, modified, deleted or new (untracked)."""
        with self._snapshot_index() as env:
            out = self._run("diff", "--cached", "--name-only", "--no-renames", "-z",
                            self.base_sha, env=env).stdout
        return sorted(name for name in out.split("\0") if name)

    def changes(self) -> list[tuple[str, str]]:
        """(status, path) of every change against the base: A added, M modified, D deleted, …"""
        with self._snapshot_index() as env:
            out = self._run("diff", "--cached", "--name-status", "--no-renames", "-z",
                            self.base_sha, env=env).stdout
        fields = [f for f in out.split("\0") if f]
        return [(fields[i][0], fields[i + 1]) for i in range(0, len(fields) - 1, 2)]

    def top_level_at_base(self) -> set[str]:
        """Names at the root of the base commit, and ``src/<name>`` ones (to tell a new package)."""
        names = {n for n in self._run("ls-tree", "--name-only", "-z", self.base_sha).stdout.split("\0") if n}
        if "src" in names:
            src = self._run("ls-tree", "--name-only", "-z", f"{self.base_sha}:src").stdout
            names |= {f"src/{n}" for n in src.split("\0") if n}
        return names

    def diff(self) -> str:
        """Unified diff of the work tree (new files included) against the base commit."""
        with self._snapshot_index() as env:
            return self._run("diff", "--cached", "--no-color", "--no-ext-diff", "--no-textconv",
                             self.base_sha, env=env).stdout

    def commit_all(self, message: str) -> str | None:
        """Stage everything and commit; the new head sha, or None when nothing changed."""
        self._run("add", "--all")
        if self._run("diff", "--cached", "--quiet", check=False).returncode == 0:
            return None
        self._run("commit", "--quiet", "--no-verify", "-m", message)
        return self.head()

    def push(self, token: str | None, *, delete: Sequence[str] = ()) -> None:
        """Push the branch to origin (fast-forward only: someone else's commits are never lost).

        ``delete``: remote refs to remove in the same push (one round trip), best effort: the
        push succeeds when the branch landed, whether or not those refs were still there.
        A transport failure is retried (``_Git.remote``): the push is idempotent — the same
        commit to the same ref, fast-forward only — so a retry can only land it or find it landed.
        """
        branch = f"refs/heads/{self.branch}"
        if not delete:
            self._git.remote("push", "--quiet", "--no-verify", "origin", f"{branch}:{branch}",
                             token=token, timeout=self._network_timeout)
            return
        # A retry after a push that landed unanswered finds the branch up to date and the refs
        # gone: `_landed` counts that as done.
        result = self._git.remote("push", "--porcelain", "--no-verify", "origin",
                                  f"{branch}:{branch}", *(f":{ref}" for ref in delete),
                                  token=token, timeout=self._network_timeout, check=False)
        if result.returncode != 0 and not _landed(result.stdout, branch):
            raise _failure("push", result, token)

    # -- work in progress: a commit on a hidden ref, beside the branch -------------------------

    def tree(self) -> str:
        """The work tree as the next commit would record it (a tree id); the index is untouched."""
        with self._snapshot_index() as env:
            return self._run("write-tree", env=env).stdout.strip()

    def wip_commit(self, message: str) -> str:
        """A commit of the work tree on top of the branch head, on no branch (the head stays)."""
        with self._snapshot_index() as env:
            tree = self._run("write-tree", env=env).stdout.strip()
        return self._run("commit-tree", tree, "-p", "HEAD", "-m", message).stdout.strip()

    def push_ref(self, sha: str, ref: str, token: str | None) -> None:
        """Point the remote's ``ref`` (outside refs/heads) at ``sha``, whatever it held before."""
        if not ref.startswith("refs/") or ref.startswith(("refs/heads/", "refs/tags/")):
            raise ValueError(f"not a hidden ref: {ref!r}")
        self._git.remote("push", "--quiet", "--no-verify", "--force", "origin", f"{sha}:{ref}",
                         token=token, timeout=self._network_timeout)

    def fetch_ref(self, ref: str, token: str | None) -> str | None:
        """Fetch the remote's ``ref`` (objects included); its commit, or None when there is none."""
        result = self._git.remote("fetch", "--quiet", "--no-tags", "--no-write-fetch-head",
                                  "--no-recurse-submodules", "origin", f"+{ref}:{_FETCHED}",
                                  token=token, timeout=self._network_timeout, check=False)
        if result.returncode != 0:
            if "couldn't find remote ref" in result.stderr:
                return None
            raise _failure("fetch", result, token)
        return _resolve(self._git, _FETCHED)

    def delete_ref(self, ref: str, token: str | None) -> None:
        """Delete the remote's hidden ``ref`` (one that is already gone is no error)."""
        if not ref.startswith("refs/") or ref.startswith(("refs/heads/", "refs/tags/")):
            raise ValueError(f"not a hidden ref: {ref!r}")
        result = self._git.remote("push", "--porcelain", "--no-verify", "origin", f":{ref}",
                                  token=token, timeout=self._network_timeout, check=False)
        if result.returncode != 0 and not _landed(result.stdout, ref):
            raise _failure("push", result, token)

    def restore(self, sha: str) -> list[str] | None:
        """Make the work tree what commit ``sha`` holds, uncommitted, if ``sha`` sits directly on
        the branch head (a WIP commit of this branch): the paths that changed. None, and nothing
        touched, when ``sha`` has another parent (a WIP an older commit superseded)."""
        parents = self._run("rev-list", "--parents", "-n", "1", sha).stdout.split()
        if parents[1:] != [self.head()]:
            return None
        changed = self._run("diff", "--name-only", "--no-renames", "-z", "HEAD", sha).stdout
        # Index and work tree to the commit's tree (files it lacks are removed), then the index
        # back to the head: the head stays, the restored change is uncommitted as it was.
        self._run("read-tree", "--reset", "-u", sha)
        self._run("reset", "--quiet")
        return sorted(name for name in changed.split("\0") if name)

    def cleanup(self) -> None:
        """Delete the work tree, git dir, bytecode cache and owner record; safe to call twice."""
        for directory in (self.path, self.git_dir, bytecode_dir(self.path)):
            shutil.rmtree(directory, ignore_errors=True)
        if self.owner_file is not None:
            self.owner_file.unlink(missing_ok=True)

    def _run(self, *args: str, env: Mapping[str, str] | None = None,
             check: bool = True) -> subprocess.CompletedProcess[str]:
        return self._git.run(*args, env=env, check=check, timeout=self._timeout)

    @contextmanager
    def _snapshot_index(self) -> Iterator[dict[str, str]]:
        """A throw-away copy of the index with everything staged: reading a diff changes nothing."""
        with tempfile.TemporaryDirectory(prefix="nightcrew-index-") as tmp:
            index = Path(tmp) / "index"
            if (self.git_dir / "index").exists():
                shutil.copyfile(self.git_dir / "index", index)
            env = {"GIT_INDEX_FILE": str(index)}
            self._run("add", "--all", env=env)
            yield env


_FETCHED = "refs/nightcrew/fetched"  # where fetch_ref puts what it fetched (local only)


def _landed(porcelain: str, ref: str) -> bool:
    """Whether ``git push --porcelain`` output reports ``ref`` updated (or already up to date)."""
    for line in porcelain.splitlines():
        fields = line.split("\t")
        if len(fields) >= 2 and fields[1].endswith(f":{ref}"):
            return fields[0] != "!"
    return False


class Workspaces:
    """This machine's git state for tasks: a mirror per repository and a checkout per task."""

    def __init__(
        self, data_dir: Path, *, tasks_root: Path | None = None,
        identity: GitIdentity = GitIdentity(), timeout: float = LOCAL_TIMEOUT,
        network_timeout: float = NETWORK_TIMEOUT,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.mirrors = self.data_dir / "mirrors"
        self.disk_root = self.data_dir / "workspaces"
        self.fast_root = _private_dir(tasks_root) if tasks_root else _tmpfs_root(self.data_dir)
        self.identity = identity
        self.timeout = timeout
        self.network_timeout = network_timeout

    def checkout(
        self, *, clone_url: str, token: str | None, name: str, branch: str,
        base_branch: str | None = None,
    ) -> Workspace:
        """Refresh the repository's mirror and check `branch` out for the task `name`."""
        _check_name(name)
        root = self.root_for(mirror_path(self.mirrors, clone_url))
        owner_file = _claim(root, name)
        try:
            return Workspace.checkout(
                clone_url=clone_url, token=token, root=root, name=name, branch=branch,
                base_branch=base_branch, identity=self.identity, timeout=self.timeout,
                network_timeout=self.network_timeout, mirrors=self.mirrors, owner_file=owner_file,
            )
        except BaseException:
            owner_file.unlink(missing_ok=True)
            raise

    def root_for(self, mirror: Path) -> Path:
        """Where a checkout of `mirror`'s repository goes: tmpfs when it fits, else the data dir."""
        if self.fast_root is not None and _free_bytes(self.fast_root) >= _room_needed(mirror):
            return self.fast_root
        return self.disk_root

    def roots(self) -> tuple[Path, ...]:
        """Every directory task checkouts may live in."""
        return tuple(dict.fromkeys(r for r in (self.fast_root, self.disk_root) if r is not None))

    def sweep(self, max_age: float = SWEEP_MAX_AGE_S) -> list[Path]:
        """Remove leftovers of dead workers: checkouts whose owner process is gone, half-made mirrors.

        Entries without a readable owner record (or owned on another host) go once older
        than `max_age` seconds. Call at worker start and now and then.
        """
        removed: list[Path] = []
        for root in self.roots():
            removed += _sweep_root(root, max_age)
        return removed + _sweep_mirror_staging(self.mirrors)


# -- checkout steps ------------------------------------------------------------------------------

_CLONE = ("clone", "--quiet", "--no-checkout", "--no-recurse-submodules")


def _clone_via_mirror(
    mirrors: Path, clone_url: str, token: str | None, path: Path, git_dir: Path,
    identity: GitIdentity, network_timeout: float,
) -> None:
    """Fetch (or create) the mirror, then clone it locally; origin then points at `clone_url`."""
    mirror = mirror_path(mirrors, clone_url)
    with _exclusive(_lock_file(mirror)):  # gc after a fetch must not delete packs being copied
        _sync_mirror(mirror, clone_url, token, identity, network_timeout)
        # A plain path, not --local or file://: git hardlinks the packs on the same filesystem
        # and copies them across (explicit --local fails with exit 128 there; file:// repacks).
        _Git(None, None, identity).run(
            *_CLONE, f"--separate-git-dir={git_dir}", "--", str(mirror), str(path),
            timeout=network_timeout,
        )
    _Git(git_dir, None, identity).run("remote", "set-url", "origin", clone_url)


def _sync_mirror(
    mirror: Path, clone_url: str, token: str | None, identity: GitIdentity, timeout: float
) -> None:
    """Bring the mirror's branches and tags up to date with the remote (creating it if needed)."""
    if not (mirror / "HEAD").is_file():
        _create_mirror(mirror, clone_url, token, identity, timeout)
        return
    git = _Git(mirror, None, identity)
    if git.run("config", "--get", "remote.origin.url", check=False).stdout.strip() != clone_url:
        git.run("config", "remote.origin.url", clone_url)
    git.remote("fetch", "--quiet", "--prune", "--no-recurse-submodules", "origin", token=token,
               timeout=timeout)


def _create_mirror(
    mirror: Path, clone_url: str, token: str | None, identity: GitIdentity, timeout: float
) -> None:
    """Clone the remote bare into a staging dir and move it into place whole."""
    mirror.parent.mkdir(parents=True, exist_ok=True)
    _remove(mirror)  # a directory without HEAD is the remains of something broken
    staging = mirror.with_name(f"{mirror.name}.tmp-{secrets.token_hex(4)}")
    try:
        _Git(None, None, identity).remote("clone", "--quiet", "--bare", "--", clone_url,
                                          str(staging), token=token, timeout=timeout,
                                          half_made=(staging,))
        git = _Git(staging, None, identity)
        # Branches and tags only: GitHub's refs/pull/* would multiply what every fetch moves.
        git.run("config", "remote.origin.fetch", "+refs/heads/*:refs/heads/*")
        git.run("config", "--add", "remote.origin.fetch", "+refs/tags/*:refs/tags/*")
        staging.rename(mirror)
    finally:
        _remove(staging)


def _start_branch(git: _Git, branch: str, base_branch: str | None) -> str:
    """Check out `branch` (from the remote's branch if it exists, else new at base); the base sha."""
    base_ref = f"refs/remotes/origin/{base_branch}" if base_branch else _default_ref(git)
    remote_branch = f"refs/remotes/origin/{branch}"
    resume = _resolve(git, remote_branch) is not None
    base_sha = _resolve(git, base_ref)
    if base_sha is None:
        raise WorkspaceError(f"base branch not found on the remote: {base_ref}")
    if resume:
        base_sha = git.run("merge-base", base_sha, remote_branch).stdout.strip() or base_sha
    git.run("checkout", "--quiet", "--no-track", "-B", branch, remote_branch if resume else base_sha)
    return base_sha


def mirror_path(mirrors: Path, clone_url: str) -> Path:
    """`mirrors/<owner>/<repo>.git` for a clone URL (https, scp-style or a local path)."""
    parts = [part for part in re.split(r"[/:]", clone_url.rstrip("/")) if part]
    repo = parts[-1].removesuffix(".git") if parts else ""
    owner = parts[-2] if len(parts) > 1 else ""
    return mirrors / _segment(owner) / f"{_segment(repo)}.git"


def _segment(text: str) -> str:
    """One safe path segment: no separators, no leading dot (so never `.` or `..`)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text).lstrip(".") or "_"


def _reject_credentials(clone_url: str) -> None:
    if _URL_USERINFO.search(clone_url):
        raise ValueError("clone_url must not carry credentials; pass the token separately")


def _lock_file(mirror: Path) -> Path:
    return mirror.with_name(f"{mirror.name}.lock")


@contextmanager
def _exclusive(lock_file: Path, *, wait: bool = True) -> Iterator[bool]:
    """Hold an flock on `lock_file` (threads and processes alike); yields False if busy and not waiting."""
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _check_name(name: str) -> None:
    if not name or "/" in name or name in (".", "..") or name.endswith(_RESERVED_SUFFIXES):
        raise ValueError(f"workspace name must be a single path segment: {name!r}")


def _fresh_paths(root: Path, name: str) -> tuple[Path, Path]:
    """`root/name` and its git dir, with any stale copies from an earlier run removed."""
    _check_name(name)
    root = root.resolve()
    root.mkdir(parents=True, exist_ok=True)
    path, git_dir = root / name, root / f"{name}.git"
    for stale in (path, git_dir, bytecode_dir(path)):
        _remove(stale)
    return path, git_dir


def _remove(path: Path) -> None:
    """Delete a file, symlink or directory tree if it exists."""
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    elif path.exists():
        shutil.rmtree(path, ignore_errors=True)


def _default_ref(git: _Git) -> str:
    """The remote's default branch as a remote-tracking ref (what origin/HEAD points at)."""
    result = git.run("symbolic-ref", "--quiet", "refs/remotes/origin/HEAD", check=False)
    ref = result.stdout.strip()
    if result.returncode != 0 or not ref:
        raise WorkspaceError("the remote has no default branch (is the repository empty?)")
    return ref


def _resolve(git: _Git, ref: str) -> str | None:
    """The commit `ref` names, or None if it does not exist."""
    result = git.run("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", check=False)
    return result.stdout.strip() or None if result.returncode == 0 else None


# -- where checkouts live ------------------------------------------------------------------------


def _tmpfs_root(data_dir: Path) -> Path | None:
    """A private directory on /dev/shm for this data dir, if /dev/shm is a tmpfs we can use."""
    if not _is_tmpfs(SHM):
        return None
    digest = hashlib.sha256(str(data_dir).encode()).hexdigest()[:12]
    return _private_dir(SHM / f"nightcrew-{os.getuid()}-{digest}")


def _private_dir(path: Path) -> Path | None:
    """`path`, created 0700 if missing; None unless it is a real directory only we can enter."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = path.lstat()
    except OSError:
        return None
    # /dev/shm is world-writable: use the directory only if nobody else made or can enter it
    private = stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and not info.st_mode & 0o077
    return path.resolve() if private else None


def _is_tmpfs(mountpoint: Path) -> bool:
    """Whether the last mount on `mountpoint` is a tmpfs (per /proc/self/mounts)."""
    try:
        lines = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return False
    kinds = [fields[2] for fields in (line.split() for line in lines)
             if len(fields) > 2 and fields[1] == str(mountpoint)]
    return bool(kinds) and kinds[-1] == "tmpfs"


def _free_bytes(path: Path) -> int:
    try:
        info = os.statvfs(path)
    except OSError:
        return 0
    return info.f_bavail * info.f_frsize


def _room_needed(mirror: Path) -> int:
    """Bytes a checkout of `mirror` may take: objects copied plus the tree, with headroom."""
    packed = sum(f.stat().st_size for f in (mirror / "objects").rglob("*") if f.is_file())
    return TMPFS_HEADROOM_BYTES + (1 + TREE_BYTES_PER_PACK_BYTE) * packed


# -- owners and the sweep ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Owner:
    """The process a checkout belongs to; the start time tells a live owner from a reused pid."""

    host: str
    pid: int
    started: int | None

    @classmethod
    def current(cls) -> _Owner:
        return cls(socket.gethostname(), os.getpid(), _process_start(os.getpid()))

    def alive(self) -> bool:
        """Whether the owning process still runs (only answerable on its own host)."""
        if self.started is not None:
            return _process_start(self.pid) == self.started
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def _process_start(pid: int) -> int | None:
    """Start time of `pid` in clock ticks since boot (field 22 of /proc/pid/stat), or None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        return int(fields[19])
    except (OSError, ValueError, IndexError):
        return None


def _claim(root: Path, name: str) -> Path:
    """Write `root/name.owner` for this process; refuse if another live process owns the name."""
    root.mkdir(parents=True, exist_ok=True)
    owner_file = root / f"{name}.owner"
    holder = _read_owner(owner_file)
    me = _Owner.current()
    if holder is not None and holder.host == me.host and holder.pid != me.pid and holder.alive():
        raise WorkspaceError(f"workspace {name!r} is in use by process {holder.pid}")
    staging = owner_file.with_name(f"{owner_file.name}.tmp-{secrets.token_hex(4)}")
    staging.write_text(json.dumps({"host": me.host, "pid": me.pid, "started": me.started}))
    staging.replace(owner_file)
    return owner_file


def _read_owner(owner_file: Path) -> _Owner | None:
    try:
        data = json.loads(owner_file.read_text())
        started = data["started"]
        return _Owner(str(data["host"]), int(data["pid"]), None if started is None else int(started))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _sweep_root(root: Path, max_age: float) -> list[Path]:
    """Remove the checkouts in `root` whose owner is gone."""
    try:
        entries = list(root.iterdir())
    except OSError:
        return []
    groups: dict[str, list[Path]] = {}
    for entry in entries:
        match = _TASK_ENTRY.match(entry.name)
        groups.setdefault(match.group("name") if match else entry.name, []).append(entry)
    removed: list[Path] = []
    now = time.time()
    for name, members in groups.items():
        if _abandoned(root / f"{name}.owner", members, now, max_age):
            for member in members:
                _remove(member)
            removed += members
    return removed


def _abandoned(owner_file: Path, members: list[Path], now: float, max_age: float) -> bool:
    owner = _read_owner(owner_file)
    if owner is not None and owner.host == socket.gethostname():
        return not owner.alive()
    return all(now - _mtime(member) > max_age for member in members)


def _mtime(path: Path) -> float:
    try:
        return path.lstat().st_mtime
    except OSError:
        return 0.0


def _sweep_mirror_staging(mirrors: Path) -> list[Path]:
    """Remove half-made mirrors: a staging dir whose repository lock is free has no creator left."""
    removed: list[Path] = []
    for staging in mirrors.glob("*/*.git.tmp-*"):
        mirror = staging.with_name(staging.name.partition(".tmp-")[0])
        with _exclusive(_lock_file(mirror), wait=False) as held:
            if held:
                _remove(staging)
                removed.append(staging)
    return removed
