"""The task's git checkout, driven from the worker side (never from inside the sandbox).

The git directory lives beside the work tree (`<root>/<name>.git`), not in it: the sandbox
binds only the work tree, so a command in it cannot plant hooks, filters or a new remote URL
that the worker's own git calls would then run with the token at hand. Every call names the
git dir and work tree explicitly, so a forged `.git` file in the work tree is ignored too.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

TOKEN_ENV = "NIGHTCREW_GIT_TOKEN"
LOCAL_TIMEOUT = 60.0
NETWORK_TIMEOUT = 300.0
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


class WorkspaceError(RuntimeError):
    """A git operation failed; the message carries git's stderr with any token scrubbed out."""


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

    def run(
        self, *args: str, token: str | None = None, timeout: float = LOCAL_TIMEOUT,
        env: Mapping[str, str] | None = None, check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        """Run one git command; raise WorkspaceError (token-free) on failure or timeout."""
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
            raise WorkspaceError(f"git {args[0]} timed out after {timeout:.0f}s") from None
        result = subprocess.CompletedProcess(argv, proc.returncode, out, err)
        if check and result.returncode != 0:
            detail = scrub(err.strip() or out.strip(), token)
            raise WorkspaceError(f"git {args[0]} failed (exit {result.returncode}): {detail}")
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
        network_timeout: float = NETWORK_TIMEOUT,
    ) -> None:
        self.path = path
        self.git_dir = git_dir
        self.branch = branch
        self.base_sha = base_sha
        self._git = _Git(git_dir, path, identity)
        self._timeout = timeout
        self._network_timeout = network_timeout

    @classmethod
    def checkout(
        cls, *, clone_url: str, token: str | None, root: Path, name: str, branch: str,
        base_branch: str | None = None, identity: GitIdentity = GitIdentity(),
        timeout: float = LOCAL_TIMEOUT, network_timeout: float = NETWORK_TIMEOUT,
    ) -> Workspace:
        """Clone into `root/name` and check out `branch`: resumed from the remote, else new from base."""
        path, git_dir = _fresh_paths(Path(root), name)
        _Git(None, None, identity).run(
            "clone", "--quiet", "--no-checkout", "--no-recurse-submodules",
            f"--separate-git-dir={git_dir}", "--", clone_url, str(path),
            token=token, timeout=network_timeout,
        )
        git = _Git(git_dir, path, identity)
        base_ref = f"refs/remotes/origin/{base_branch}" if base_branch else _default_ref(git)
        remote_branch = f"refs/remotes/origin/{branch}"
        resume = _resolve(git, remote_branch) is not None
        base_sha = _resolve(git, base_ref)
        if base_sha is None:
            raise WorkspaceError(f"base branch not found on the remote: {base_ref}")
        if resume:
            base_sha = git.run("merge-base", base_sha, remote_branch).stdout.strip() or base_sha
        git.run("checkout", "--quiet", "--no-track", "-B", branch,
                remote_branch if resume else base_sha)
        return cls(path=path, git_dir=git_dir, branch=branch, base_sha=base_sha, identity=identity,
                   timeout=timeout, network_timeout=network_timeout)

    def head(self) -> str:
        """The commit the branch points at."""
        return self._run("rev-parse", "HEAD").stdout.strip()

    def changed_files(self) -> list[str]:
        """Paths that differ from the base commit: committed, modified, deleted or new (untracked)."""
        with self._snapshot_index() as env:
            out = self._run("diff", "--cached", "--name-only", "--no-renames", "-z",
                            self.base_sha, env=env).stdout
        return sorted(name for name in out.split("\0") if name)

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

    def push(self, token: str | None) -> None:
        """Push the branch to origin (fast-forward only: someone else's commits are never lost)."""
        refspec = f"refs/heads/{self.branch}:refs/heads/{self.branch}"
        self._git.run("push", "--quiet", "--no-verify", "origin", refspec, token=token,
                      timeout=self._network_timeout)

    def cleanup(self) -> None:
        """Delete the work tree and git dir; safe to call twice."""
        for directory in (self.path, self.git_dir):
            shutil.rmtree(directory, ignore_errors=True)

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


def _fresh_paths(root: Path, name: str) -> tuple[Path, Path]:
    """`root/name` and its git dir, with any stale copies from an earlier run removed."""
    if not name or "/" in name or name in (".", ".."):
        raise ValueError(f"workspace name must be a single path segment: {name!r}")
    root = root.resolve()
    root.mkdir(parents=True, exist_ok=True)
    path, git_dir = root / name, root / f"{name}.git"
    for stale in (path, git_dir):
        if stale.is_symlink() or stale.is_file():
            stale.unlink()
        elif stale.exists():
            shutil.rmtree(stale)
    return path, git_dir


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
