"""Git for the stand-in: bare repositories on disk, and smart-HTTP through `git http-backend`.

Clients speak real git over HTTP, so clone/fetch/push behave exactly as against GitHub;
REST answers about branches, contents and diffs are read from the same bare repositories.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import subprocess
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

log = logging.getLogger(__name__)

_AUTHOR_ENV = {
    "GIT_AUTHOR_NAME": "devhub",
    "GIT_AUTHOR_EMAIL": "devhub@localhost",
    "GIT_COMMITTER_NAME": "devhub",
    "GIT_COMMITTER_EMAIL": "devhub@localhost",
}
_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")
GIT_SERVICES = ("info/refs", "git-upload-pack", "git-receive-pack")


class GitError(RuntimeError):
    """A git command failed; the message carries git's stderr."""


@dataclass(frozen=True)
class DiffFile:
    """One file of a `base...head` comparison, as `pulls/{n}/files` reports it."""

    filename: str
    status: str
    additions: int
    deletions: int
    patch: str | None
    sha: str | None
    previous_filename: str | None = None

    @property
    def changes(self) -> int:
        """Added plus deleted lines."""
        return self.additions + self.deletions

    def commentable_lines(self, side: str) -> set[int]:
        """Line numbers a review comment may target on `side` (RIGHT = new file, LEFT = old)."""
        return {line for _, line in self._walk(side) if line is not None}

    def position_of(self, line: int, side: str) -> int | None:
        """GitHub's diff `position`: lines below the file's first `@@` header (which is 0)."""
        return next((index for index, at in self._walk(side) if at == line), None)

    def line_at(self, position: int, side: str = "RIGHT") -> int | None:
        """The `side` line number shown at a diff `position`, if any."""
        return next((at for index, at in self._walk(side) if index == position), None)

    def hunk_of(self, line: int, side: str) -> int | None:
        """Which hunk (0 for the first `@@`) shows `line` on `side`, if any."""
        hunk = -1
        for _, at, header in self._rows(side):
            if header:
                hunk += 1
            elif at == line:
                return hunk
        return None

    def hunk_until(self, line: int, side: str) -> str:
        """The diff hunk up to and including `line`, GitHub's `diff_hunk` of a review comment."""
        position = self.position_of(line, side)
        if position is None:
            return ""
        lines = (self.patch or "").splitlines()[: position + 1]
        start = max(i for i, raw in enumerate(lines) if raw.startswith("@@"))
        return "\n".join(lines[start:])

    def _walk(self, side: str) -> list[tuple[int, int | None]]:
        """(position, line number on `side` or None) for every line of the patch."""
        return [(index, at) for index, at, _ in self._rows(side)]

    def _rows(self, side: str) -> list[tuple[int, int | None, bool]]:
        """(position, line number on `side` or None, is a hunk header) for every patch line."""
        rows: list[tuple[int, int | None, bool]] = []
        old = new = 0
        for index, raw in enumerate((self.patch or "").splitlines()):
            match = _HUNK.match(raw)
            if match:
                old, new = int(match.group(1)), int(match.group(3))
                rows.append((index, None, True))
            elif raw.startswith("-"):
                rows.append((index, old if side == "LEFT" else None, False))
                old += 1
            elif raw.startswith("+"):
                rows.append((index, new if side == "RIGHT" else None, False))
                new += 1
            elif not raw.startswith("\\"):
                rows.append((index, old if side == "LEFT" else new, False))
                old, new = old + 1, new + 1
        return rows


@dataclass(frozen=True)
class CommitInfo:
    """One commit as `git log` tells it: what `commit` objects of the REST API are built from."""

    sha: str
    tree: str
    parents: tuple[str, ...]
    author_name: str
    author_email: str
    author_date: str  # ISO 8601 with offset, as git prints it
    committer_name: str
    committer_email: str
    committer_date: str
    message: str


_LOG_FORMAT = "%H%x1f%T%x1f%P%x1f%an%x1f%ae%x1f%aI%x1f%cn%x1f%ce%x1f%cI%x1f%B%x1e"


def _parse_log(out: bytes) -> list[CommitInfo]:
    commits = []
    for record in out.decode(errors="replace").split("\x1e"):
        fields = record.strip("\n").split("\x1f")
        if len(fields) != 10:
            continue
        sha, tree, parents, an, ae, ad, cn, ce, cd, message = fields
        commits.append(CommitInfo(sha, tree, tuple(parents.split()), an, ae, ad, cn, ce, cd,
                                  message.rstrip("\n")))
    return commits


@dataclass(frozen=True)
class TreeEntry:
    """One entry of `git ls-tree`."""

    mode: str
    kind: str  # blob | tree | commit
    sha: str
    size: int
    path: str


class GitStore:
    """The bare repositories, one per `owner/name`, under `root`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def path(self, owner: str, name: str) -> Path:
        """The bare repository directory of `owner/name`."""
        return self.root / owner / f"{name}.git"

    def git(self, owner: str, name: str, *args: str, stdin: bytes | None = None) -> bytes:
        """Run git in the bare repository and return stdout; raise GitError on failure."""
        return run_git(["--git-dir", str(self.path(owner, name)), *args], stdin=stdin)

    def create(self, owner: str, name: str, files: Mapping[str, str | bytes], default_branch: str) -> str:
        """Create the bare repository with one initial commit holding `files`; return its sha."""
        target = self.path(owner, name)
        target.parent.mkdir(parents=True, exist_ok=True)
        run_git(["init", "--quiet", "--bare", f"--initial-branch={default_branch}", str(target)])
        self.git(owner, name, "config", "http.receivepack", "true")
        # Never gc during a test run: it only costs time and changes nothing observable.
        self.git(owner, name, "config", "gc.auto", "0")
        if not files:
            return ""
        tree = self._write_tree(owner, name, files)
        commit = self.git(owner, name, "commit-tree", tree, "-m", "Initial commit").decode().strip()
        self.git(owner, name, "update-ref", f"refs/heads/{default_branch}", commit)
        return commit

    def commit_files(self, owner: str, name: str, branch: str, files: Mapping[str, str | bytes],
                     message: str, *, parent: str | None, author: tuple[str, str] | None = None) -> str:
        """Commit `files` (over `parent`'s tree, if any) and point `branch` at it; return the sha."""
        tree = self._write_tree(owner, name, files, base=parent)
        args = ["commit-tree", tree, "-m", message] + (["-p", parent] if parent else [])
        env = {} if author is None else {"GIT_AUTHOR_NAME": author[0], "GIT_AUTHOR_EMAIL": author[1]}
        commit = run_git(["--git-dir", str(self.path(owner, name)), *args], env=env).decode().strip()
        self.git(owner, name, "update-ref", f"refs/heads/{branch}", commit)
        return commit

    def fork(self, owner: str, name: str, fork_owner: str) -> None:
        """Copy `owner/name` (every branch) to `fork_owner/name`, as GitHub's fork does."""
        target = self.path(fork_owner, name)
        target.parent.mkdir(parents=True, exist_ok=True)
        run_git(["clone", "--quiet", "--bare", str(self.path(owner, name)), str(target)])
        self.git(fork_owner, name, "config", "http.receivepack", "true")
        self.git(fork_owner, name, "config", "gc.auto", "0")

    def fetch_ref(self, owner: str, name: str, source: Path, ref: str, into: str) -> None:
        """Fetch `ref` of the repository at `source` into ref `into` here (objects included)."""
        self.git(owner, name, "fetch", "--quiet", "--force", str(source), f"+{ref}:{into}")

    def commits(self, owner: str, name: str, base: str, head: str) -> list[CommitInfo]:
        """Commits reachable from `head` but not `base`, oldest first (as GitHub lists them)."""
        out = self.git(owner, name, "log", "--reverse", f"--format={_LOG_FORMAT}", f"{base}..{head}")
        return _parse_log(out)

    def commit(self, owner: str, name: str, sha: str) -> CommitInfo:
        """One commit."""
        return _parse_log(self.git(owner, name, "log", "-1", f"--format={_LOG_FORMAT}", sha))[0]

    def merge_base(self, owner: str, name: str, base: str, head: str) -> str | None:
        """The best common ancestor of two commits, if they have one."""
        try:
            return self.git(owner, name, "merge-base", base, head).decode().strip() or None
        except GitError:
            return None

    def _write_tree(self, owner: str, name: str, files: Mapping[str, str | bytes],
                    base: str | None = None) -> str:
        index_file = self.path(owner, name) / "devhub-index"
        lines = []
        for rel, content in sorted(files.items()):
            data = content.encode() if isinstance(content, str) else content
            sha = self.git(owner, name, "hash-object", "-w", "--stdin", stdin=data).decode().strip()
            lines.append(f"100644 {sha}\t{rel.lstrip('/')}\n")
        env = {"GIT_INDEX_FILE": str(index_file)}
        git_dir = ["--git-dir", str(self.path(owner, name))]
        try:
            if base is not None:
                run_git([*git_dir, "read-tree", base], env=env)
            run_git([*git_dir, "update-index", "--add", "--index-info"], stdin="".join(lines).encode(), env=env)
            return run_git([*git_dir, "write-tree"], env=env).decode().strip()
        finally:
            index_file.unlink(missing_ok=True)

    def branches(self, owner: str, name: str) -> dict[str, str]:
        """Branch name → head sha."""
        out = self.git(owner, name, "for-each-ref", "--format=%(refname:short) %(objectname)", "refs/heads")
        pairs = (line.split(" ", 1) for line in out.decode().splitlines() if line)
        return {branch: sha for branch, sha in pairs}

    def resolve(self, owner: str, name: str, ref: str) -> str | None:
        """The commit sha of a branch, tag or sha, or None."""
        try:
            out = self.git(owner, name, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
        except GitError:
            return None
        return out.decode().strip() or None

    def read_blob(self, owner: str, name: str, sha: str) -> bytes:
        """The bytes of a blob."""
        return self.git(owner, name, "cat-file", "blob", sha)

    def entry(self, owner: str, name: str, commit: str, path: str) -> TreeEntry | None:
        """The tree entry at `path` in `commit`, or None."""
        out = self.git(owner, name, "ls-tree", "--long", "--full-tree", commit, "--", path.strip("/"))
        entries = _parse_ls_tree(out)
        return entries[0] if entries else None

    def listdir(self, owner: str, name: str, commit: str, path: str) -> list[TreeEntry]:
        """The entries of directory `path` ("" for the root) in `commit`."""
        spec = f"{commit}:{path.strip('/')}" if path.strip("/") else commit
        out = self.git(owner, name, "ls-tree", "--long", spec)
        prefix = f"{path.strip('/')}/" if path.strip("/") else ""
        return [
            TreeEntry(e.mode, e.kind, e.sha, e.size, prefix + e.path) for e in _parse_ls_tree(out)
        ]

    def count_commits(self, owner: str, name: str, base: str, head: str) -> int:
        """Commits reachable from `head` but not from `base`."""
        out = self.git(owner, name, "rev-list", "--count", f"{base}..{head}")
        return int(out.decode().strip() or 0)

    def diff(self, owner: str, name: str, base: str, head: str) -> list[DiffFile]:
        """The files changed between the merge base of `base` and `head`, and `head`."""
        range_ = f"{base}...{head}"
        numstat = self.git(owner, name, "diff", "--numstat", "-M", "-z", range_)
        status = self.git(owner, name, "diff", "--name-status", "-M", "-z", range_)
        blobs = self.git(owner, name, "diff", "--raw", "-M", "--no-abbrev", "-z", range_)
        sha_of = _raw_new_shas(blobs)
        files = []
        for (code, old, new), (adds, dels) in zip(
            _parse_name_status(status), _parse_numstat(numstat), strict=True
        ):
            paths = [old, new] if old != new else [new]
            patch = self.git(owner, name, "diff", "-M", range_, "--", *paths).decode(errors="replace")
            files.append(
                DiffFile(
                    filename=new,
                    status=_STATUS.get(code[0], "modified"),
                    additions=adds,
                    deletions=dels,
                    patch=_hunk_text(patch),
                    sha=sha_of.get(new),
                    previous_filename=old if old != new else None,
                )
            )
        return files


_STATUS = {"A": "added", "D": "removed", "M": "modified", "R": "renamed", "C": "copied", "T": "changed"}


def _parse_ls_tree(out: bytes) -> list[TreeEntry]:
    entries = []
    for line in out.decode(errors="replace").splitlines():
        meta, path = line.split("\t", 1)
        mode, kind, sha, size = meta.split()
        entries.append(TreeEntry(mode, kind, sha, int(size) if size != "-" else 0, path))
    return entries


def _parse_name_status(out: bytes) -> list[tuple[str, str, str]]:
    fields = out.decode(errors="replace").split("\0")
    result, i = [], 0
    while i < len(fields) and fields[i]:
        code = fields[i]
        if code[0] in "RC":
            result.append((code, fields[i + 1], fields[i + 2]))
            i += 3
        else:
            result.append((code, fields[i + 1], fields[i + 1]))
            i += 2
    return result


def _parse_numstat(out: bytes) -> list[tuple[int, int]]:
    fields = out.decode(errors="replace").split("\0")
    result, i = [], 0
    while i < len(fields) and fields[i]:
        adds, dels, path = fields[i].split("\t", 2)
        # A rename prints an empty path, then the old and new names as separate fields.
        i += 3 if path == "" else 1
        result.append((int(adds) if adds != "-" else 0, int(dels) if dels != "-" else 0))
    return result


def _raw_new_shas(out: bytes) -> dict[str, str]:
    fields = out.decode(errors="replace").split("\0")
    shas, i = {}, 0
    while i < len(fields) and fields[i].startswith(":"):
        meta = fields[i].split()
        paths = 2 if meta[4][0] in "RC" else 1
        shas[fields[i + paths]] = meta[3]
        i += 1 + paths
    return shas


def _hunk_text(patch: str) -> str | None:
    """The patch from the first `@@` on: what GitHub puts in a file's `patch` field."""
    start = patch.find("\n@@")
    if start < 0:
        return None  # binary, or a pure rename
    return patch[start + 1 :].rstrip("\n")


def run_git(args: list[str], *, stdin: bytes | None = None, env: dict[str, str] | None = None) -> bytes:
    """Run `git args`, returning stdout; raise GitError with stderr on a non-zero exit."""
    full_env = {**os.environ, **_AUTHOR_ENV, "GIT_TERMINAL_PROMPT": "0", **(env or {})}
    proc = subprocess.run(
        ["git", *args], input=stdin, capture_output=True, env=full_env, check=False
    )
    if proc.returncode != 0:
        raise GitError(f"git {args[2] if args[:1] == ['--git-dir'] else args[0]}: "
                       f"{proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout


# ------------------------------------------------------------------------------ smart HTTP


def split_git_path(path: str) -> tuple[str, str, str] | None:
    """`/owner/repo.git/info/refs` → (owner, repo, "info/refs"); None if not a git URL."""
    match = re.fullmatch(r"/([^/]+)/([^/]+?)\.git/(info/refs|git-upload-pack|git-receive-pack)", path)
    return (match.group(1), match.group(2), match.group(3)) if match else None


def cgi_environment(request: Request, store: GitStore, owner: str, name: str, service: str,
                    remote_user: str | None) -> dict[str, str]:
    """The CGI variables `git http-backend` reads (RFC 3875 plus git's own)."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(store.root),
        "GIT_PROJECT_ROOT": str(store.root),
        "GIT_HTTP_EXPORT_ALL": "1",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GATEWAY_INTERFACE": "CGI/1.1",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "PATH_INFO": f"/{owner}/{name}.git/{service}",
        "REQUEST_METHOD": request.method,
        "QUERY_STRING": request.url.query,
        "REMOTE_ADDR": request.client.host if request.client else "127.0.0.1",
    }
    optional = {
        "CONTENT_TYPE": request.headers.get("content-type"),
        # Absent for chunked uploads; http-backend then reads to EOF.
        "CONTENT_LENGTH": request.headers.get("content-length"),
        "HTTP_CONTENT_ENCODING": request.headers.get("content-encoding"),
        "HTTP_GIT_PROTOCOL": request.headers.get("git-protocol"),
        "REMOTE_USER": remote_user,
    }
    env.update({key: value for key, value in optional.items() if value})
    return env


def pushed_refs(body: bytes, encoding: str | None = None) -> tuple[str, ...]:
    """The refs a receive-pack request updates: the pkt-line commands before the pack."""
    if encoding == "gzip":
        body = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(body, 1 << 20)
    refs, at = [], 0
    while at + 4 <= len(body):
        try:
            size = int(body[at:at + 4], 16)
        except ValueError:
            break
        if size < 4:  # flush (0000) ends the commands; delim/response-end never come here
            break
        line = body[at + 4:at + size].split(b"\0", 1)[0].rstrip(b"\n")
        parts = line.split(b" ")
        if len(parts) >= 3:
            refs.append(parts[2].decode(errors="replace"))
        at += size
    return tuple(refs)


async def serve_git(request: Request, env: dict[str, str],
                    on_done: Callable[[], Awaitable[None]] | None = None) -> StreamingResponse:
    """Run one `git http-backend` request, streaming the request and response bodies."""
    proc = await asyncio.create_subprocess_exec(
        "git", "http-backend",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    assert proc.stdin and proc.stdout and proc.stderr
    feeder = asyncio.create_task(_feed(request, proc.stdin))
    status, headers, first = await _read_cgi_head(proc.stdout)
    return _PipedResponse(_body(proc, feeder, first, on_done), status_code=status, headers=headers)


class _PipedResponse(StreamingResponse):
    """A streaming response that never calls `receive()` itself.

    Starlette's StreamingResponse listens for a client disconnect by reading `receive()` while
    it streams; that steals the request body chunks the feeder is still piping into git, and
    truncates large pushes ("fatal: early EOF").
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.stream_response(send)


async def _feed(request: Request, stdin: asyncio.StreamWriter) -> None:
    try:
        async for chunk in request.stream():
            stdin.write(chunk)
            await stdin.drain()
    except (BrokenPipeError, ConnectionResetError):
        log.debug("git http-backend closed its stdin early")
    finally:
        stdin.close()


async def _read_cgi_head(stdout: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """Parse the CGI header block; return status, headers and any body bytes already read."""
    buffer = b""
    while b"\r\n\r\n" not in buffer and b"\n\n" not in buffer:
        chunk = await stdout.read(65536)
        if not chunk:
            return 502, {"Content-Type": "text/plain"}, b"git http-backend produced no response\n"
        buffer += chunk
    sep = b"\r\n\r\n" if b"\r\n\r\n" in buffer else b"\n\n"
    head, rest = buffer.split(sep, 1)
    status, headers = 200, {}
    for line in head.decode("latin-1").splitlines():
        key, _, value = line.partition(":")
        if key.lower() == "status":
            status = int(value.strip().split()[0])
        elif key:
            headers[key.strip()] = value.strip()
    return status, headers, rest


async def _body(proc: asyncio.subprocess.Process, feeder: asyncio.Task[None], first: bytes,
                on_done: Callable[[], Awaitable[None]] | None) -> AsyncIterator[bytes]:
    assert proc.stdout and proc.stderr
    try:
        if first:
            yield first
        while chunk := await proc.stdout.read(65536):
            yield chunk
        await feeder
    finally:
        if proc.returncode is None and not feeder.done():
            # The client went away mid-request: stop git rather than leave it waiting on stdin.
            feeder.cancel()
            proc.kill()
    stderr = await proc.stderr.read()
    code = await proc.wait()
    if stderr or code:
        log.debug("git http-backend exit=%s stderr=%s", code, stderr.decode(errors="replace")[:2000])
    if on_done is not None:
        await on_done()
