"""Workspace against real git: a bare origin on disk, and one behind token-checking smart HTTP."""

from __future__ import annotations

import base64
import os
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from runner.sandbox import SandboxPolicy
from runner.sandbox.bwrap import BwrapSandbox
from runner.workspace import Workspace, WorkspaceError

pytestmark = pytest.mark.e2e

TOKEN = "ghs_canaryTOKEN0123456789abcdefXYZ"
BRANCH = "nightcrew/issue-7"
GIT_ENV = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_CONFIG_GLOBAL": os.devnull, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@x"}


def git(*args: str, cwd: Path | None = None) -> str:
    """Plain git for setting up and inspecting the test's own repositories."""
    return subprocess.run(["git", *args], cwd=cwd, env=GIT_ENV, check=True, capture_output=True,
                          text=True, timeout=30).stdout.strip()


@pytest.fixture
def origin(tmp_path: Path) -> Path:
    """A bare repo with `main` (README.md, app.py) and `develop` one commit ahead."""
    bare, seed = tmp_path / "origin.git", tmp_path / "seed"
    git("init", "--quiet", "--bare", "--initial-branch=main", str(bare))
    git("init", "--quiet", "--initial-branch=main", str(seed))
    (seed / "README.md").write_text("hello\n")
    (seed / "app.py").write_text("print('hi')\n")
    git("add", ".", cwd=seed)
    git("commit", "--quiet", "-m", "init", cwd=seed)
    git("checkout", "--quiet", "-b", "develop", cwd=seed)
    (seed / "dev.txt").write_text("dev\n")
    git("add", ".", cwd=seed)
    git("commit", "--quiet", "-m", "dev", cwd=seed)
    git("push", "--quiet", str(bare), "main", "develop", cwd=seed)
    return bare


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "workspaces"


def checkout(origin: Path | str, root: Path, **kwargs: object) -> Workspace:
    args: dict[str, object] = dict(clone_url=str(origin), token=None, root=root, name="task",
                                   branch=BRANCH)
    args.update(kwargs)
    return Workspace.checkout(**args)  # type: ignore[arg-type]


def test_new_branch_starts_at_the_default_branch(origin: Path, root: Path) -> None:
    ws = checkout(origin, root)

    assert ws.path == (root / "task").resolve() and ws.branch == BRANCH
    assert ws.base_sha == ws.head() == git("--git-dir", str(origin), "rev-parse", "main")
    assert (ws.path / "README.md").read_text() == "hello\n"
    assert git("-C", str(ws.path), "symbolic-ref", "--short", "HEAD") == BRANCH
    assert ws.changed_files() == [] and ws.diff() == "" and ws.commit_all("nothing") is None


def test_explicit_base_branch(origin: Path, root: Path) -> None:
    ws = checkout(origin, root, base_branch="develop")

    assert ws.base_sha == git("--git-dir", str(origin), "rev-parse", "develop")
    assert (ws.path / "dev.txt").exists()


def test_changes_commit_push_and_resume(origin: Path, root: Path) -> None:
    ws = checkout(origin, root)
    (ws.path / "README.md").write_text("hello\nworld\n")
    (ws.path / "new_module.py").write_text("ANSWER = 42\n")
    (ws.path / "app.py").unlink()

    assert ws.changed_files() == ["README.md", "app.py", "new_module.py"]
    diff = ws.diff()
    assert "+++ b/new_module.py" in diff and "+ANSWER = 42" in diff and "+world" in diff
    assert "?? new_module.py" in git("-C", str(ws.path), "status", "--porcelain")  # index untouched

    sha = ws.commit_all("nightcrew: step 1")
    assert sha is not None and ws.head() == sha and ws.commit_all("again") is None
    ws.push(None)
    assert git("--git-dir", str(origin), "rev-parse", BRANCH) == sha
    author = git("--git-dir", str(origin), "log", "-1", "--format=%an <%ae>", BRANCH)
    assert author == "nightcrew[bot] <nightcrew[bot]@users.noreply.github.com>"

    base = ws.base_sha
    resumed = checkout(origin, root)  # same name: the stale checkout is replaced
    assert resumed.head() == sha and resumed.base_sha == base
    assert resumed.changed_files() == ["README.md", "app.py", "new_module.py"]
    assert "+ANSWER = 42" in resumed.diff()


def test_cleanup_is_idempotent(origin: Path, root: Path) -> None:
    ws = checkout(origin, root)
    ws.cleanup()
    ws.cleanup()

    assert not ws.path.exists() and not ws.git_dir.exists()


def test_sandbox_cannot_plant_hooks_or_redirect_git(origin: Path, root: Path) -> None:
    ws = checkout(origin, root)
    planted = ws.path / ".git"  # what a sandboxed command could rewrite
    evil = ws.path / "evil.git"
    git("init", "--quiet", "--bare", str(evil))
    (evil / "hooks" / "pre-commit").write_text(f"#!/bin/sh\ntouch {ws.path}/HOOK_RAN\n")
    (evil / "hooks" / "pre-commit").chmod(0o755)
    planted.write_text(f"gitdir: {evil}\n")
    (ws.path / "change.txt").write_text("x\n")

    sha = ws.commit_all("still ours")

    assert not (ws.path / "HOOK_RAN").exists()
    assert sha == git("--git-dir", str(ws.git_dir), "rev-parse", BRANCH)


def test_git_is_readable_but_not_writable_in_the_sandbox(origin: Path, root: Path) -> None:
    ws = checkout(origin, root)
    sandbox = BwrapSandbox(ws.path, SandboxPolicy(ro_paths=(ws.git_dir,)))

    log = sandbox.run(["git", "log", "--format=%s"])
    hooked = sandbox.run(["sh", "-c", "echo x > $(git rev-parse --git-dir)/hooks/pre-commit"])

    assert log.exit_code == 0 and log.stdout.strip() == "init", log
    assert hooked.exit_code != 0 and "Read-only file system" in hooked.stderr


def test_submodules_are_not_fetched(tmp_path: Path, origin: Path, root: Path) -> None:
    seed = tmp_path / "seed"
    git("checkout", "--quiet", "main", cwd=seed)
    (seed / ".gitmodules").write_text('[submodule "dep"]\n\tpath = dep\n\turl = /nonexistent/dep.git\n')
    sub_sha = git("rev-parse", "HEAD", cwd=seed)
    git("update-index", "--add", "--cacheinfo", f"160000,{sub_sha},dep", cwd=seed)
    git("add", ".gitmodules", cwd=seed)
    git("commit", "--quiet", "-m", "add submodule", cwd=seed)
    git("push", "--quiet", str(origin), "main", cwd=seed)

    ws = checkout(origin, root)

    assert (ws.path / ".gitmodules").exists() and ws.changed_files() == []


def test_missing_base_branch_is_a_workspace_error(origin: Path, root: Path) -> None:
    with pytest.raises(WorkspaceError, match="base branch not found"):
        checkout(origin, root, base_branch="nope")


class _AuthGitServer:
    """Smart HTTP (git http-backend) behind Basic auth that only accepts x-access-token:TOKEN."""

    def __init__(self, project_root: Path) -> None:
        self.project_root = project_root
        self.auth_seen: list[str] = []
        self.token_on_a_command_line = False
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.serve(self)

            def do_POST(self) -> None:
                server.serve(self)

            def log_message(self, format: str, *args: object) -> None:
                pass

        return Handler

    def serve(self, request: BaseHTTPRequestHandler) -> None:
        auth = request.headers.get("Authorization", "")
        self.token_on_a_command_line |= _token_in_any_cmdline()
        if auth:
            self.auth_seen.append(base64.b64decode(auth.removeprefix("Basic ")).decode())
        expected = "Basic " + base64.b64encode(f"x-access-token:{TOKEN}".encode()).decode()
        if auth != expected:
            request.send_response(401)
            request.send_header("WWW-Authenticate", 'Basic realm="git"')
            request.send_header("Content-Length", "0")
            request.end_headers()
            return
        self._backend(request)

    def _backend(self, request: BaseHTTPRequestHandler) -> None:
        path, _, query = request.path.partition("?")
        body = request.rfile.read(int(request.headers.get("Content-Length") or 0))
        env = {"PATH": "/usr/bin:/bin", "GIT_PROJECT_ROOT": str(self.project_root),
               "GIT_HTTP_EXPORT_ALL": "1", "REMOTE_USER": "x-access-token",
               "REQUEST_METHOD": request.command, "PATH_INFO": path, "QUERY_STRING": query,
               "CONTENT_TYPE": request.headers.get("Content-Type", ""),
               "CONTENT_LENGTH": str(len(body)),
               "HTTP_CONTENT_ENCODING": request.headers.get("Content-Encoding", ""),
               "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull}
        out = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True,
                             timeout=30, check=True).stdout
        head, _, payload = out.partition(b"\r\n\r\n")
        headers = [line.split(": ", 1) for line in head.decode().split("\r\n") if line]
        status = next((int(v.split()[0]) for k, v in headers if k.lower() == "status"), 200)
        request.send_response(status)
        for key, value in headers:
            if key.lower() != "status":
                request.send_header(key, value)
        request.send_header("Content-Length", str(len(payload)))
        request.end_headers()
        request.wfile.write(payload)

    def __enter__(self) -> _AuthGitServer:
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _token_in_any_cmdline() -> bool:
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                if TOKEN.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                    return True
            except OSError:
                continue
    return False


@pytest.fixture
def http_origin(origin: Path) -> Iterator[tuple[_AuthGitServer, str]]:
    with _AuthGitServer(origin.parent) as server:
        yield server, f"{server.url}/{origin.name}"


def test_token_authenticates_over_http_and_is_never_stored(
    http_origin: tuple[_AuthGitServer, str], origin: Path, root: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server, url = http_origin
    monkeypatch.setenv("GIT_TRACE", "1")  # a worker's debug settings must not reach our git
    monkeypatch.setenv("GIT_TRACE_CURL", "1")
    monkeypatch.setenv("GIT_TRACE_REDACT", "0")

    ws = checkout(url, root, token=TOKEN)
    (ws.path / "fix.py").write_text("fixed = True\n")
    sha = ws.commit_all("fix")
    ws.push(TOKEN)

    assert git("--git-dir", str(origin), "rev-parse", BRANCH) == sha
    assert f"x-access-token:{TOKEN}" in server.auth_seen
    assert not server.token_on_a_command_line
    stored = [p for p in (*ws.git_dir.rglob("*"), *ws.path.rglob("*")) if p.is_file()]
    assert not [p for p in stored if TOKEN.encode() in p.read_bytes()]
    assert git("--git-dir", str(ws.git_dir), "config", "remote.origin.url") == url


def test_failed_auth_error_does_not_leak_the_token(
    http_origin: tuple[_AuthGitServer, str], root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, url = http_origin
    monkeypatch.setenv("GIT_CURL_VERBOSE", "1")
    monkeypatch.setenv("GIT_TRACE_REDACT", "0")
    wrong = TOKEN[::-1]

    with pytest.raises(WorkspaceError) as caught:
        checkout(url, root, token=wrong)

    message = str(caught.value)
    assert "Authentication failed" in message or "401" in message, message
    assert f"x-access-token:{wrong}" in server.auth_seen  # the token was really sent
    assert wrong not in message and base64.b64encode(f"x-access-token:{wrong}".encode()).decode() not in message


def test_push_to_a_dead_remote_raises_without_the_token(origin: Path, root: Path) -> None:
    ws = checkout(origin, root)
    git("--git-dir", str(ws.git_dir), "remote", "set-url", "origin", "http://127.0.0.1:9/gone.git")
    (ws.path / "x.txt").write_text("x\n")
    ws.commit_all("x")

    with pytest.raises(WorkspaceError) as caught:
        ws.push(TOKEN)

    assert "push failed" in str(caught.value) and TOKEN not in str(caught.value)
