"""Workspace against real git: a bare origin on disk, and one behind token-checking smart HTTP."""

from __future__ import annotations

import base64
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import runner.workspace as workspace_module
from runner.sandbox import SandboxPolicy
from runner.sandbox.bwrap import BwrapSandbox
from runner.workspace import (
    SHM,
    GitTransportError,
    Workspace,
    WorkspaceError,
    Workspaces,
    _is_tmpfs,
    mirror_path,
)

pytestmark = pytest.mark.e2e

TOKEN = "ghs_" + "canaryTOKEN0123456789abcdefXYZ"  # fake, built at run time
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


Checkout = Callable[..., Workspace]


@pytest.fixture(params=["direct", "mirror"])
def checkout(request: pytest.FixtureRequest, root: Path, tmp_path: Path) -> Checkout:
    """`Workspace.checkout` into `root/task`: a clone straight from origin, or through a mirror."""
    mirrors = tmp_path / "mirrors" if request.param == "mirror" else None

    def make(origin: Path | str, **kwargs: object) -> Workspace:
        args: dict[str, object] = dict(clone_url=str(origin), token=None, root=root, name="task",
                                       branch=BRANCH, mirrors=mirrors)
        args.update(kwargs)
        return Workspace.checkout(**args)  # type: ignore[arg-type]

    return make


def test_new_branch_starts_at_the_default_branch(origin: Path, root: Path, checkout: Checkout) -> None:
    ws = checkout(origin)

    assert ws.path == (root / "task").resolve() and ws.branch == BRANCH
    assert ws.base_sha == ws.head() == git("--git-dir", str(origin), "rev-parse", "main")
    assert (ws.path / "README.md").read_text() == "hello\n"
    assert git("-C", str(ws.path), "symbolic-ref", "--short", "HEAD") == BRANCH
    assert ws.changed_files() == [] and ws.diff() == "" and ws.commit_all("nothing") is None


def test_explicit_base_branch(origin: Path, root: Path, checkout: Checkout) -> None:
    ws = checkout(origin, base_branch="develop")

    assert ws.base_sha == git("--git-dir", str(origin), "rev-parse", "develop")
    assert (ws.path / "dev.txt").exists()


def test_changes_commit_push_and_resume(origin: Path, root: Path, checkout: Checkout) -> None:
    ws = checkout(origin)
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
    resumed = checkout(origin)  # same name: the stale checkout is replaced
    assert resumed.head() == sha and resumed.base_sha == base
    assert resumed.changed_files() == ["README.md", "app.py", "new_module.py"]
    assert "+ANSWER = 42" in resumed.diff()


def test_cleanup_is_idempotent(origin: Path, root: Path, checkout: Checkout) -> None:
    ws = checkout(origin)
    ws.cleanup()
    ws.cleanup()

    assert not ws.path.exists() and not ws.git_dir.exists()


def test_sandbox_cannot_plant_hooks_or_redirect_git(origin: Path, checkout: Checkout) -> None:
    ws = checkout(origin)
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


def test_git_is_readable_but_not_writable_in_the_sandbox(origin: Path, checkout: Checkout) -> None:
    ws = checkout(origin)
    sandbox = BwrapSandbox(ws.path, SandboxPolicy(ro_paths=(ws.git_dir,)))

    log = sandbox.run(["git", "log", "--format=%s"])
    hooked = sandbox.run(["sh", "-c", "echo x > $(git rev-parse --git-dir)/hooks/pre-commit"])

    assert log.exit_code == 0 and log.stdout.strip() == "init", log
    assert hooked.exit_code != 0 and "Read-only file system" in hooked.stderr


def test_submodules_are_not_fetched(tmp_path: Path, origin: Path, checkout: Checkout) -> None:
    seed = tmp_path / "seed"
    git("checkout", "--quiet", "main", cwd=seed)
    (seed / ".gitmodules").write_text('[submodule "dep"]\n\tpath = dep\n\turl = /nonexistent/dep.git\n')
    sub_sha = git("rev-parse", "HEAD", cwd=seed)
    git("update-index", "--add", "--cacheinfo", f"160000,{sub_sha},dep", cwd=seed)
    git("add", ".gitmodules", cwd=seed)
    git("commit", "--quiet", "-m", "add submodule", cwd=seed)
    git("push", "--quiet", str(origin), "main", cwd=seed)

    ws = checkout(origin)

    assert (ws.path / ".gitmodules").exists() and ws.changed_files() == []


def test_missing_base_branch_is_a_workspace_error(origin: Path, root: Path, checkout: Checkout) -> None:
    with pytest.raises(WorkspaceError, match="base branch not found"):
        checkout(origin, base_branch="nope")


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
    http_origin: tuple[_AuthGitServer, str], origin: Path, root: Path, checkout: Checkout,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server, url = http_origin
    monkeypatch.setenv("GIT_TRACE", "1")  # a worker's debug settings must not reach our git
    monkeypatch.setenv("GIT_TRACE_CURL", "1")
    monkeypatch.setenv("GIT_TRACE_REDACT", "0")

    ws = checkout(url, token=TOKEN)
    (ws.path / "fix.py").write_text("fixed = True\n")
    sha = ws.commit_all("fix")
    ws.push(TOKEN)

    assert git("--git-dir", str(origin), "rev-parse", BRANCH) == sha
    assert f"x-access-token:{TOKEN}" in server.auth_seen
    assert not server.token_on_a_command_line
    mirrors = root.parent / "mirrors"  # the mirror, in the "mirror" variant, is kept too
    stored = [p for p in (*ws.git_dir.rglob("*"), *ws.path.rglob("*"), *mirrors.rglob("*"))
              if p.is_file()]
    assert not [p for p in stored if TOKEN.encode() in p.read_bytes()]
    assert git("--git-dir", str(ws.git_dir), "config", "remote.origin.url") == url
    for config in mirrors.glob("*/*.git/config"):
        assert git("config", "--file", str(config), "remote.origin.url") == url


def test_failed_auth_error_does_not_leak_the_token(
    http_origin: tuple[_AuthGitServer, str], root: Path, checkout: Checkout, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, url = http_origin
    monkeypatch.setenv("GIT_CURL_VERBOSE", "1")
    monkeypatch.setenv("GIT_TRACE_REDACT", "0")
    wrong = TOKEN[::-1]

    with pytest.raises(WorkspaceError) as caught:
        checkout(url, token=wrong)

    message = str(caught.value)
    assert "Authentication failed" in message or "401" in message, message
    assert not list(root.parent.rglob("*.tmp-*")) and not (root / "task").exists()  # nothing half-made
    assert f"x-access-token:{wrong}" in server.auth_seen  # the token was really sent
    assert wrong not in message and base64.b64encode(f"x-access-token:{wrong}".encode()).decode() not in message


def test_push_to_a_dead_remote_raises_without_the_token(
    origin: Path, checkout: Checkout, monkeypatch: pytest.MonkeyPatch,
) -> None:
    ws = checkout(origin)
    git("--git-dir", str(ws.git_dir), "remote", "set-url", "origin", "http://127.0.0.1:9/gone.git")
    (ws.path / "x.txt").write_text("x\n")
    ws.commit_all("x")
    waited: list[float] = []
    monkeypatch.setattr(workspace_module, "sleep", waited.append)  # retried, not slept

    with pytest.raises(GitTransportError) as caught:
        ws.push(TOKEN)

    assert "push failed" in str(caught.value) and TOKEN not in str(caught.value)
    assert len(waited) == workspace_module.TRANSPORT_ATTEMPTS - 1


# -- Workspaces: mirrors, task roots, owners and the sweep ---------------------------------------

_CHILD = """
import os, signal, sys
from pathlib import Path
from runner.workspace import Workspaces
data, fast, url, name, fate = sys.argv[1:]
ws = Workspaces(Path(data), tasks_root=Path(fast)).checkout(
    clone_url=url, token=None, name=name, branch="nightcrew/issue-1")
print(ws.path, flush=True)
if fate == "die":
    os.kill(os.getpid(), signal.SIGKILL)
sys.stdin.read()
"""


@pytest.fixture
def spaces(tmp_path: Path) -> Workspaces:
    """Workspaces with its fast root in the test's temp dir (the tmpfs choice has its own test)."""
    return Workspaces(tmp_path / "data", tasks_root=tmp_path / "fast")


def task_checkout(spaces: Workspaces, origin: Path | str, name: str = "task", **kwargs: str) -> Workspace:
    return spaces.checkout(clone_url=str(origin), token=None, name=name, branch=BRANCH, **kwargs)


def push_commit(tmp_path: Path, origin: Path, branch: str, filename: str) -> str:
    """Commit a new file on `branch` of origin from a scratch clone; the new sha."""
    scratch = tmp_path / f"scratch-{filename}"
    git("clone", "--quiet", "--branch", branch, str(origin), str(scratch))
    (scratch / filename).write_text(f"{filename}\n")
    git("add", filename, cwd=scratch)
    git("commit", "--quiet", "-m", f"add {filename}", cwd=scratch)
    git("push", "--quiet", "origin", branch, cwd=scratch)
    return git("rev-parse", "HEAD", cwd=scratch)


def mirror_fingerprint(mirror: Path) -> dict[str, int]:
    """Inode of HEAD and of every pack: a re-clone (or a repack) would change them."""
    files = [mirror / "HEAD", *sorted((mirror / "objects" / "pack").iterdir())]
    return {f.name: f.stat().st_ino for f in files}


def test_mirror_is_made_once_and_reused(spaces: Workspaces, origin: Path) -> None:
    first = task_checkout(spaces, origin, "one")
    mirror = mirror_path(spaces.mirrors, str(origin))
    before = mirror_fingerprint(mirror)
    second = task_checkout(spaces, origin, "two")

    assert mirror == spaces.mirrors / origin.parent.name / "origin.git"
    assert mirror_fingerprint(mirror) == before
    assert first.path.parent == second.path.parent == spaces.fast_root
    assert first.head() == second.head() == git("--git-dir", str(origin), "rev-parse", "main")
    # the task's repository stands alone: the sandbox can be given it without the mirror
    assert not (second.git_dir / "objects" / "info" / "alternates").exists()
    assert git("--git-dir", str(second.git_dir), "config", "remote.origin.url") == str(origin)


def test_reuse_fetches_new_remote_commits(tmp_path: Path, spaces: Workspaces, origin: Path) -> None:
    task_checkout(spaces, origin, "one").cleanup()
    new_main = push_commit(tmp_path, origin, "main", "later.txt")

    ws = task_checkout(spaces, origin, "two")

    assert ws.base_sha == ws.head() == new_main and (ws.path / "later.txt").exists()


def test_resumes_from_the_branch_pushed_by_an_earlier_run(spaces: Workspaces, origin: Path) -> None:
    with task_checkout(spaces, origin) as first:
        (first.path / "step1.py").write_text("x = 1\n")
        sha = first.commit_all("step 1")
        first.push(None)

    with task_checkout(spaces, origin) as resumed:
        assert resumed.head() == sha and resumed.changed_files() == ["step1.py"]
        assert resumed.base_sha == git("--git-dir", str(origin), "rev-parse", "main")


def test_concurrent_checkouts_of_one_repository(spaces: Workspaces, origin: Path) -> None:
    barrier = threading.Barrier(4)
    made: dict[int, Workspace] = {}
    errors: list[BaseException] = []

    def work(i: int) -> None:
        barrier.wait()
        try:
            made[i] = task_checkout(spaces, origin, f"t{i}")
        except BaseException as exc:  # reported below, with the others
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert not errors and len(made) == 4
    assert len({ws.path for ws in made.values()}) == 4
    assert len({ws.head() for ws in made.values()}) == 1
    assert [p.name for p in spaces.mirrors.rglob("*.git")] == ["origin.git"]
    assert not list(spaces.mirrors.rglob("*.tmp-*"))


def test_context_manager_cleans_up_on_error(spaces: Workspaces, origin: Path) -> None:
    with pytest.raises(RuntimeError), task_checkout(spaces, origin) as ws:
        owner_file = ws.owner_file
        assert owner_file is not None and owner_file.exists()
        raise RuntimeError("the agent crashed")

    assert not ws.path.exists() and not ws.git_dir.exists()
    assert owner_file is not None and not owner_file.exists()


def test_failed_checkout_leaves_nothing(spaces: Workspaces, origin: Path) -> None:
    with pytest.raises(WorkspaceError, match="base branch not found"):
        task_checkout(spaces, origin, base_branch="nope")

    assert spaces.fast_root is not None and list(spaces.fast_root.iterdir()) == []


def test_sweep_removes_what_dead_workers_left(tmp_path: Path, spaces: Workspaces, origin: Path) -> None:
    assert spaces.fast_root is not None
    task_checkout(spaces, origin, "warm-up").cleanup()  # the mirror exists: children only fetch
    argv = [sys.executable, "-c", _CHILD, str(spaces.data_dir), str(spaces.fast_root), str(origin)]
    killed = subprocess.run([*argv, "dead", "die"], capture_output=True, text=True, timeout=60)
    live = subprocess.Popen([*argv, "live", "wait"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    assert live.stdout is not None
    live_path = Path(live.stdout.readline().strip())
    mine = task_checkout(spaces, origin, "mine")
    orphan, recent = spaces.fast_root / "orphan", spaces.fast_root / "recent"
    orphan.mkdir()
    recent.mkdir()
    os.utime(orphan, (time.time() - 7200, time.time() - 7200))
    staging = mirror_path(spaces.mirrors, str(origin)).with_name("origin.git.tmp-deadbeef")
    staging.mkdir()

    try:
        assert killed.returncode == -signal.SIGKILL and (spaces.fast_root / "dead").is_dir()
        removed = spaces.sweep(max_age=3600)
        assert {p.name for p in removed} == {"dead", "dead.git", "dead.owner", "orphan",
                                             "origin.git.tmp-deadbeef"}
        assert live_path.is_dir() and mine.path.is_dir() and recent.is_dir()
    finally:
        live.communicate("", timeout=30)  # the live worker exits (without cleaning up)

    assert {p.name for p in spaces.sweep(max_age=3600)} == {"live", "live.git", "live.owner"}
    assert mine.path.is_dir() and (mine.owner_file is not None and mine.owner_file.exists())


def test_a_live_owner_keeps_its_name(spaces: Workspaces, origin: Path) -> None:
    assert spaces.fast_root is not None
    argv = [sys.executable, "-c", _CHILD, str(spaces.data_dir), str(spaces.fast_root), str(origin)]
    live = subprocess.Popen([*argv, "task", "wait"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    assert live.stdout is not None
    try:
        held = Path(live.stdout.readline().strip())
        with pytest.raises(WorkspaceError, match="in use by process"):
            task_checkout(spaces, origin, "task")
        assert held.is_dir()
    finally:
        live.communicate("", timeout=30)


def test_task_dirs_go_to_tmpfs_when_there_is_room(tmp_path: Path, origin: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    spaces = Workspaces(tmp_path / "data")
    try:
        if not _is_tmpfs(SHM):
            assert spaces.fast_root is None
        else:
            assert spaces.fast_root is not None and spaces.fast_root.parent == SHM
            assert oct(spaces.fast_root.stat().st_mode & 0o777) == "0o700"
            with task_checkout(spaces, origin) as ws:
                assert ws.path.parent == spaces.fast_root
        monkeypatch.setattr(workspace_module, "TMPFS_HEADROOM_BYTES", 1 << 62)  # tmpfs "full"
        with task_checkout(spaces, origin) as ws:
            assert ws.path.parent == spaces.disk_root
            # same filesystem as the mirror: the objects are hardlinked, not copied
            objects = [p for p in (ws.git_dir / "objects").glob("[0-9a-f][0-9a-f]/*")]
            assert objects and all(p.stat().st_nlink > 1 for p in objects)
    finally:
        if spaces.fast_root is not None:
            shutil.rmtree(spaces.fast_root)


def test_lfs_pointers_check_out_as_pointers(tmp_path: Path, spaces: Workspaces, origin: Path) -> None:
    pointer = ("version https://git-lfs.github.com/spec/v1\n"
               "oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\n"
               "size 12345\n")
    seed = tmp_path / "seed"
    git("checkout", "--quiet", "main", cwd=seed)
    (seed / ".gitattributes").write_text("*.bin filter=lfs diff=lfs merge=lfs -text\n")
    (seed / "model.bin").write_text(pointer)
    git("add", ".", cwd=seed)
    git("commit", "--quiet", "-m", "lfs", cwd=seed)
    git("push", "--quiet", str(origin), "main", cwd=seed)

    ws = task_checkout(spaces, origin)
    (ws.path / "other.txt").write_text("x\n")
    sha = ws.commit_all("touch something else")

    assert (ws.path / "model.bin").read_text() == pointer
    assert ws.changed_files() == ["other.txt"]
    assert sha is not None and git("--git-dir", str(ws.git_dir), "show", f"{sha}:model.bin") + "\n" == pointer


def test_credentials_in_the_clone_url_are_refused(spaces: Workspaces) -> None:
    with pytest.raises(ValueError, match="must not carry credentials"):
        task_checkout(spaces, f"https://x-access-token:{TOKEN}@github.com/octo/repo.git")

    assert not any(TOKEN in str(p) for p in spaces.data_dir.rglob("*"))


def test_mirror_path_is_owner_and_repo() -> None:
    mirrors = Path("/data/mirrors")

    assert mirror_path(mirrors, "https://github.com/octo/repo.git") == mirrors / "octo" / "repo.git"
    assert mirror_path(mirrors, "git@github.com:octo/repo.git") == mirrors / "octo" / "repo.git"
    assert mirror_path(mirrors, "https://h/../..") == mirrors / "_" / "_.git"  # never escapes


def test_excluded_setup_output_never_reaches_a_commit(origin: Path, checkout: Checkout) -> None:
    ws = checkout(origin)
    (ws.path / ".venv" / "bin").mkdir(parents=True)
    (ws.path / ".venv" / "bin" / "python").write_text("#!fake\n")
    (ws.path / "weird[name]*").write_text("x\n")
    (ws.path / "fix.py").write_text("x = 1\n")
    ws.exclude([".venv", "weird[name]*"])
    assert ws.changed_files() == ["fix.py"]
    sha = ws.commit_all("fix")
    assert sha is not None
    tree = git("--git-dir", str(ws.git_dir), "ls-tree", "-r", "--name-only", sha)
    assert ".venv/bin/python" not in tree and "weird[name]*" not in tree and "fix.py" in tree


WIP = "refs/nightcrew/wip/7"


def test_work_in_progress_goes_to_a_hidden_ref_and_comes_back_uncommitted(
    origin: Path, checkout: Checkout, root: Path,
) -> None:
    ws = checkout(origin)
    head, clean = ws.head(), ws.tree()
    assert ws.fetch_ref(WIP, None) is None  # nothing saved yet: no error either
    (ws.path / "README.md").write_text("hello\nworld\n")
    (ws.path / "new_module.py").write_text("ANSWER = 42\n")
    (ws.path / "app.py").unlink()
    edited = ws.tree()
    assert edited != clean

    sha = ws.wip_commit("wip")
    ws.push_ref(sha, WIP, None)
    # Beside the branch, not on it: the head, the index and the remote branches are as they were.
    assert ws.head() == head and ws.tree() == edited
    assert "?? new_module.py" in git("-C", str(ws.path), "status", "--porcelain")
    assert git("--git-dir", str(origin), "rev-parse", f"{sha}^") == head
    assert BRANCH not in git("--git-dir", str(origin), "branch", "--list")
    with pytest.raises(ValueError):
        ws.push_ref(sha, f"refs/heads/{BRANCH}", None)  # never a branch

    resumed = Workspace.checkout(clone_url=str(origin), token=None, root=root, name="resumed",
                                 branch=BRANCH)
    fetched = resumed.fetch_ref(WIP, None)
    assert fetched == sha
    assert resumed.restore(sha) == ["README.md", "app.py", "new_module.py"]
    assert resumed.head() == head and resumed.tree() == edited
    assert (resumed.path / "new_module.py").read_text() == "ANSWER = 42\n"
    assert not (resumed.path / "app.py").exists()
    assert git("-C", str(resumed.path), "diff", "--cached", "--name-only") == ""  # uncommitted
    assert resumed.changed_files() == ["README.md", "app.py", "new_module.py"]

    # Once a commit holds the work, the branch push deletes the WIP in the same round trip.
    committed = resumed.commit_all("step 1")
    assert committed is not None
    resumed.push(None, delete=[WIP])
    assert git("--git-dir", str(origin), "rev-parse", BRANCH) == committed
    assert git("--git-dir", str(origin), "for-each-ref", "refs/nightcrew") == ""
    # A WIP on an older head is stale: not restored, nothing touched.
    assert resumed.restore(sha) is None and resumed.tree() == edited and resumed.head() == committed


def test_deleting_work_in_progress_that_is_gone_is_no_error(origin: Path, checkout: Checkout) -> None:
    ws = checkout(origin)
    (ws.path / "fix.py").write_text("x = 1\n")
    assert ws.commit_all("fix") is not None
    ws.push(None, delete=[WIP])  # the WIP ref never existed: the branch still lands
    assert git("--git-dir", str(origin), "rev-parse", BRANCH) == ws.head()
    ws.delete_ref(WIP, None)

    # Someone else moved the branch: the push is refused (not a fast-forward), WIP or not.
    main_tree = git("--git-dir", str(origin), "rev-parse", "main^{tree}")
    theirs = git("--git-dir", str(origin), "commit-tree", "-m", "theirs", "-p", "main", main_tree)
    git("--git-dir", str(origin), "update-ref", f"refs/heads/{BRANCH}", theirs)
    (ws.path / "fix.py").write_text("x = 2\n")
    assert ws.commit_all("fix 2") is not None
    with pytest.raises(WorkspaceError, match="push failed"):
        ws.push(None, delete=[WIP])
    assert git("--git-dir", str(origin), "rev-parse", BRANCH) == theirs
