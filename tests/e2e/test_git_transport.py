"""Git over a failing transport, for real: a smart-HTTP server (git http-backend) that answers
5xx, resets or drops the connection, or never answers, and the stand-in's own git faults.

A transport failure is retried in-process with backoff (the waits recorded, not slept), then
raised as ``GitTransportError`` (an ``errors.Retryable``, token-free) for the job to wait out;
a refusal (bad token, non-fast-forward, 403) is a plain ``WorkspaceError`` at once.
"""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

import runner.workspace as workspace_module
from devhub import DevHub, Fault
from github_app import errors
from github_app.tracker.eventlog import read_events
from github_app.tracker.status import MARKER
from runner.worker.jobs import through_github_waits
from runner.workspace import (
    TRANSPORT_ATTEMPTS,
    TRANSPORT_BACKOFF_S,
    GitTransportError,
    Workspace,
    WorkspaceError,
    Workspaces,
)
from tests.e2e.task_helpers import FIX_STEPS, scripted_task

pytestmark = pytest.mark.e2e

TOKEN = "ghs_" + "transportCANARY0123456789abcXYZ"  # fake, built at run time
BASIC = base64.b64encode(f"x-access-token:{TOKEN}".encode()).decode()
BRANCH = "nightcrew/issue-3"
WIP_REF = "refs/nightcrew/wip/3"
PUSH, INFO = ("POST", "git-receive-pack"), ("GET", "info/refs")
FETCH = ("POST", "git-upload-pack")
GIT_ENV = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_CONFIG_GLOBAL": os.devnull, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@x"}


def git(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(["git", *args], cwd=cwd, env=GIT_ENV, check=True, capture_output=True,
                          text=True, timeout=30).stdout.strip()


class FlakyGitServer:
    """git http-backend behind Basic auth (x-access-token:TOKEN), answering badly on cue.

    ``fail(request, *answers)`` queues answers for the next matching requests; ``always``
    answers every matching one. An answer is an HTTP status ("502"), "applied-502" (carried out,
    then answered 502), "reset" (TCP RST), "close" (no reply at all) or "hang" (no answer until
    the server stops). ``seen`` lists (method, service, answer) of every request.
    """

    def __init__(self, project_root: Path) -> None:
        self.project_root = project_root
        self.queued: list[tuple[tuple[str, str], str]] = []
        self.always: tuple[tuple[str, str], str] | None = None
        self.seen: list[tuple[str, str, str]] = []
        self.stopping = threading.Event()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def fail(self, request: tuple[str, str], *answers: str) -> None:
        self.queued += [(request, answer) for answer in answers]

    def count(self, request: tuple[str, str]) -> int:
        return sum(1 for method, service, _ in self.seen if (method, service) == request)

    def _answer_for(self, request: tuple[str, str]) -> str:
        for n, (wanted, answer) in enumerate(self.queued):
            if wanted == request:
                del self.queued[n]
                return answer
        if self.always is not None and self.always[0] == request:
            return self.always[1]
        return "backend"

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
        if request.headers.get("Authorization", "") != f"Basic {BASIC}":
            request.send_response(401)
            request.send_header("WWW-Authenticate", 'Basic realm="git"')
            request.send_header("Content-Length", "0")
            request.end_headers()
            return
        service = request.path.partition("?")[0].split(".git/", 1)[-1]
        answer = self._answer_for((request.command, service))
        self.seen.append((request.command, service, answer))
        if answer == "reset":
            request.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
            request.connection.close()
            request.close_connection = True
        elif answer == "close":
            request.connection.close()
            request.close_connection = True
        elif answer == "hang":
            self.stopping.wait(30)
        elif answer.isdigit():
            self._reply(request, int(answer), b"Server Error\n")
        else:
            status, payload = self._backend(request)
            if answer == "applied-502":
                status, payload = 502, b"Server Error\n"
            self._reply(request, status, payload, backend=answer == "backend")

    def _backend(self, request: BaseHTTPRequestHandler) -> tuple[int, bytes]:
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
        self._headers = [line.split(": ", 1) for line in head.decode().split("\r\n") if line]
        status = next((int(v.split()[0]) for k, v in self._headers if k.lower() == "status"), 200)
        return status, payload

    def _reply(self, request: BaseHTTPRequestHandler, status: int, payload: bytes, *,
               backend: bool = False) -> None:
        request.send_response(status)
        for key, value in self._headers if backend else [("Content-Type", "text/plain")]:
            if key.lower() != "status":
                request.send_header(key, value)
        request.send_header("Content-Length", str(len(payload)))
        request.end_headers()
        request.wfile.write(payload)

    def __enter__(self) -> FlakyGitServer:
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def origin(tmp_path: Path) -> Path:
    """A bare repo with `main` (README.md) that accepts pushes over HTTP."""
    bare, seed = tmp_path / "srv" / "origin.git", tmp_path / "seed"
    git("init", "--quiet", "--bare", "--initial-branch=main", str(bare))
    git("config", "--file", str(bare / "config"), "http.receivepack", "true")
    git("init", "--quiet", "--initial-branch=main", str(seed))
    (seed / "README.md").write_text("hello\n")
    git("add", ".", cwd=seed)
    git("commit", "--quiet", "-m", "init", cwd=seed)
    git("push", "--quiet", str(bare), "main", cwd=seed)
    return bare


@pytest.fixture
def server(origin: Path) -> Iterator[FlakyGitServer]:
    with FlakyGitServer(origin.parent) as flaky:
        yield flaky


@pytest.fixture
def waited(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The waits between transport retries, recorded instead of slept."""
    waits: list[float] = []
    monkeypatch.setattr(workspace_module, "sleep", waits.append)
    return waits


def url_of(server: FlakyGitServer, origin: Path) -> str:
    return f"{server.url}/{origin.name}"


def checkout(tmp_path: Path, url: str, token: str = TOKEN, **kwargs: float) -> Workspace:
    return Workspace.checkout(clone_url=url, token=token, root=tmp_path / "ws", name="task",
                              branch=BRANCH, **kwargs)


def commit(ws: Workspace, name: str = "fix.py") -> str:
    (ws.path / name).write_text(f"{name} = True\n")
    sha = ws.commit_all(f"add {name}")
    assert sha is not None
    return sha


def remote_ref(origin: Path, ref: str) -> str | None:
    try:
        return git("--git-dir", str(origin), "rev-parse", "--verify", "--quiet", ref)
    except subprocess.CalledProcessError:
        return None


def test_a_push_answered_502_twice_is_retried_and_lands(
    tmp_path: Path, origin: Path, server: FlakyGitServer, waited: list[float],
) -> None:
    ws = checkout(tmp_path, url_of(server, origin))
    sha = commit(ws)
    server.fail(PUSH, "502", "502")

    ws.push(TOKEN)

    assert remote_ref(origin, f"refs/heads/{BRANCH}") == sha
    assert server.count(PUSH) == 3 and waited == list(TRANSPORT_BACKOFF_S[:2])


def test_a_push_that_landed_unanswered_is_retried_as_done(
    tmp_path: Path, origin: Path, server: FlakyGitServer, waited: list[float],
) -> None:
    ws = checkout(tmp_path, url_of(server, origin))
    ws.push_ref(ws.wip_commit("wip"), WIP_REF, TOKEN)
    server.fail(PUSH, "applied-502")
    server.seen.clear()
    sha = commit(ws)

    # The first push moved the branch and deleted the WIP, then lost its answer: the same push
    # again finds the branch up to date and the WIP gone, and that is success.
    ws.push(TOKEN, delete=[WIP_REF])

    assert remote_ref(origin, f"refs/heads/{BRANCH}") == sha
    assert remote_ref(origin, WIP_REF) is None
    assert [a for m, s, a in server.seen if (m, s) == PUSH] == ["applied-502", "backend"]
    assert waited == [TRANSPORT_BACKOFF_S[0]]


@pytest.mark.parametrize(("request_", "answer"), [
    (PUSH, "502"), (PUSH, "503"), (INFO, "500"), (INFO, "reset"), (INFO, "close"),
], ids=["push-502", "push-503", "refs-500", "reset", "no-reply"])
def test_a_remote_that_keeps_failing_ends_in_a_retryable_error_without_the_token(
    tmp_path: Path, origin: Path, server: FlakyGitServer, waited: list[float],
    request_: tuple[str, str], answer: str,
) -> None:
    ws = checkout(tmp_path, url_of(server, origin))
    commit(ws)
    server.always = (request_, answer)
    server.seen.clear()

    with pytest.raises(GitTransportError) as caught:
        ws.push(TOKEN)

    assert isinstance(caught.value, errors.Retryable) and isinstance(caught.value, WorkspaceError)
    assert server.count(request_) == TRANSPORT_ATTEMPTS
    assert waited == list(TRANSPORT_BACKOFF_S[:TRANSPORT_ATTEMPTS - 1])
    message = str(caught.value)
    assert message.startswith("git push failed") and TOKEN not in message and BASIC not in message
    assert remote_ref(origin, f"refs/heads/{BRANCH}") is None


def test_a_closed_port_is_the_transport(tmp_path: Path, origin: Path, server: FlakyGitServer,
                                        waited: list[float]) -> None:
    ws = checkout(tmp_path, url_of(server, origin))
    commit(ws)
    with socket.socket() as probe:  # a port nothing listens on: bound, never listening
        probe.bind(("127.0.0.1", 0))
        git("--git-dir", str(ws.git_dir), "remote", "set-url", "origin",
            f"http://127.0.0.1:{probe.getsockname()[1]}/gone.git")
        with pytest.raises(GitTransportError) as caught:
            ws.push(TOKEN)
    assert "Couldn't connect to server" in str(caught.value) and len(waited) == TRANSPORT_ATTEMPTS - 1


@pytest.mark.parametrize("via_mirror", [False, True], ids=["direct", "mirror"])
def test_a_clone_is_retried_and_a_failed_attempt_leaves_nothing_behind(
    tmp_path: Path, origin: Path, server: FlakyGitServer, waited: list[float], via_mirror: bool,
) -> None:
    url = url_of(server, origin)
    server.fail(INFO, "502")
    server.fail(FETCH, "reset")
    if via_mirror:
        spaces = Workspaces(tmp_path / "data", tasks_root=tmp_path / "fast")
        ws = spaces.checkout(clone_url=url, token=TOKEN, name="task", branch=BRANCH)
    else:
        ws = checkout(tmp_path, url)

    assert (ws.path / "README.md").read_text() == "hello\n"
    assert waited == list(TRANSPORT_BACKOFF_S[:2])
    assert not list(tmp_path.rglob("*.tmp-*"))


def test_a_mirror_fetch_is_retried(tmp_path: Path, origin: Path, server: FlakyGitServer,
                                   waited: list[float]) -> None:
    url = url_of(server, origin)
    spaces = Workspaces(tmp_path / "data", tasks_root=tmp_path / "fast")
    spaces.checkout(clone_url=url, token=TOKEN, name="first", branch=BRANCH).cleanup()
    seed = tmp_path / "seed"  # someone else moves main meanwhile
    (seed / "news.txt").write_text("news\n")
    git("add", ".", cwd=seed)
    git("commit", "--quiet", "-m", "news", cwd=seed)
    git("push", "--quiet", str(origin), "main", cwd=seed)
    new = git("rev-parse", "HEAD", cwd=seed)
    server.fail(FETCH, "502")

    ws = spaces.checkout(clone_url=url, token=TOKEN, name="second", branch="other")

    assert ws.base_sha == new and waited == [TRANSPORT_BACKOFF_S[0]]


def test_a_refused_token_is_not_retried(tmp_path: Path, origin: Path, server: FlakyGitServer,
                                        waited: list[float]) -> None:
    wrong = TOKEN[::-1]
    with pytest.raises(WorkspaceError) as caught:
        checkout(tmp_path, url_of(server, origin), token=wrong)
    assert not isinstance(caught.value, GitTransportError) and waited == []
    assert "Authentication failed" in str(caught.value) and wrong not in str(caught.value)


def test_a_403_or_a_non_fast_forward_is_not_retried(
    tmp_path: Path, origin: Path, server: FlakyGitServer, waited: list[float],
) -> None:
    ws = checkout(tmp_path, url_of(server, origin))
    commit(ws)
    server.fail(PUSH, "403")
    with pytest.raises(WorkspaceError) as forbidden:
        ws.push(TOKEN)
    ws.push(TOKEN)
    git("--git-dir", str(ws.git_dir), "commit", "--amend", "--quiet", "-m", "rewritten",
        cwd=ws.path)
    with pytest.raises(WorkspaceError) as rejected:
        ws.push(TOKEN)

    for caught in (forbidden, rejected):
        assert not isinstance(caught.value, GitTransportError)
    assert "non-fast-forward" in str(rejected.value) and waited == []


def test_a_remote_that_never_answers_goes_to_the_job_after_one_timeout(
    tmp_path: Path, origin: Path, server: FlakyGitServer, waited: list[float],
) -> None:
    ws = checkout(tmp_path, url_of(server, origin), network_timeout=1.0)
    commit(ws)
    server.fail(PUSH, "hang")

    with pytest.raises(GitTransportError) as caught:
        ws.push(TOKEN)

    # One whole timeout was already waited: no in-process retry on top, the job waits instead.
    assert caught.value.timed_out and "timed out" in str(caught.value)
    assert server.count(PUSH) == 1 and waited == []


# -- the stand-in's git faults --------------------------------------------------------------------

OWNER, REPO = "octo", "calc"
RECEIVE_PACK = rf"/{OWNER}/{REPO}\.git/git-receive-pack"


@pytest.fixture
def hub_checkout(devhub: DevHub, tmp_path: Path) -> tuple[Workspace, str]:
    installation = devhub.install(OWNER)
    repo = devhub.create_repo(OWNER, REPO, {"calc.py": "def add(a, b):\n    return a - b\n"})
    token = devhub.mint_installation_token(installation, None).value
    ws = Workspace.checkout(clone_url=repo["clone_url"], token=token, root=tmp_path / "ws",
                            name="task", branch=BRANCH)
    return ws, token


def test_the_stand_in_answers_pushes_502_n_times(
    devhub: DevHub, hub_checkout: tuple[Workspace, str], waited: list[float],
) -> None:
    ws, token = hub_checkout
    sha = commit(ws)
    with devhub.inject(Fault(502, "POST", RECEIVE_PACK, count=2, git=True)) as injection:
        ws.push(token)

    assert devhub.branches(OWNER, REPO)[BRANCH] == sha
    assert injection.faults[0].answered == 2 and len(waited) == 2
    recorded = [r for r in devhub.requests if r.fault]
    assert [(r.status, r.applied, r.fault) for r in recorded] == [(502, False, "502 not-applied")] * 2


def test_the_stand_in_can_carry_a_push_out_and_fail_its_answer(
    devhub: DevHub, hub_checkout: tuple[Workspace, str], waited: list[float],
) -> None:
    ws, token = hub_checkout
    sha = commit(ws)
    fault = Fault(502, "POST", RECEIVE_PACK, count=1, applied=True, git=True)
    with devhub.inject(fault):
        ws.push(token)

    assert devhub.branches(OWNER, REPO)[BRANCH] == sha and fault.answered == 1
    assert [(r.applied, r.fault) for r in devhub.requests if r.fault] == [(True, "502 applied")]
    assert waited == [TRANSPORT_BACKOFF_S[0]]  # the retry found the branch up to date


def test_rest_faults_leave_git_alone_and_git_faults_rest(
    devhub: DevHub, hub_checkout: tuple[Workspace, str], waited: list[float],
) -> None:
    ws, token = hub_checkout
    commit(ws)
    with devhub.inject(Fault(502, "*", r".*", count=None)):  # every REST request fails
        ws.push(token)
    assert waited == [] and BRANCH in devhub.branches(OWNER, REPO)
    with devhub.inject(Fault(502, "*", r".*", count=None, git=True)):  # every git request fails
        answer = httpx.get(f"{devhub.url}/repos/{OWNER}/{REPO}",
                           headers={"Authorization": f"token {token}"}, timeout=10)
    assert answer.status_code == 200
    with pytest.raises(ValueError, match="server error"):
        Fault(429, "POST", RECEIVE_PACK, git=True)


# -- past the in-process retries: the job waits and the task runs again from its checkpoint ------


def test_pushes_failing_past_the_retries_wait_in_the_job_and_the_task_ends_once(
    devhub: DevHub, app_private_key: str, tmp_path: Path, waited: list[float],
) -> None:
    edit, run_tests, finish = FIX_STEPS[1:]
    # The first run's work-in-progress push fails every in-process try; the second run (from
    # the checkpoint: the plan kept, the edit not saved) makes the edit again and publishes.
    scripted = scripted_task(devhub, app_private_key, tmp_path,
                             [*FIX_STEPS[:2], edit, run_tests, finish])
    task, model, config = scripted.task, scripted.model, scripted.config
    pushes = rf"/{task.owner}/{task.repo}\.git/git-receive-pack"
    job_waits: list[float] = []
    with devhub.inject(Fault(502, "POST", pushes, count=TRANSPORT_ATTEMPTS, git=True)) as injection:
        outcome = through_github_waits(lambda _first: scripted.attempt(), what=str(task),
                                       sleep=job_waits.append)
        assert injection.faults[0].answered == TRANSPORT_ATTEMPTS

    assert waited == list(TRANSPORT_BACKOFF_S) and len(job_waits) == 1
    assert outcome.state == "pr_opened" and model.remaining == 0
    issue = devhub.issue(task.owner, task.repo, task.number)
    assert len([c for c in issue["comments"] if MARKER in c["body"]]) == 1
    assert len(devhub.pulls(task.owner, task.repo)) == 1
    assert "nightcrew:done" in issue["labels"] and "nightcrew:failed" not in issue["labels"]
    log = devhub.git.git(task.owner, task.repo, "log", "--format=%s", f"main..{task.branch}")
    assert log.decode().splitlines() == [f"nightcrew: checkpoint of #{task.number} (tests pass)"]
    events = read_events(config.data_dir, task)
    assert [e.data.get("resumed") for e in events if e.kind == "run_started"] == [False, True]
    assert [e.data.get("state") for e in events if e.kind == "run_finished"] == ["pr_opened"]
    [wait] = [e for e in events if e.kind == "error"]
    assert wait.data["fatal"] is False and "git push failed" in wait.data["message"]
