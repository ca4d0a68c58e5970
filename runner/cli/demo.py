"""``nightcrew demo``: the whole path on this machine, with no credentials and no services.

Embedded Redis, the GitHub stand-in, the web app and a worker (separate processes), and the
production Anthropic adapter talking to a local scripted Messages server. A small repository
with a real failing test gets an issue; labeling it ``nightcrew`` starts everything else.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

from rich.console import Console

from devhub import DevHub
from github_app.redis_conn import EmbeddedRedis, RedisUnavailable
from github_app.tasks import TaskKey
from github_app.tracker.status import MARKER, split_block
from runner.fakes.messages_server import FakeMessagesServer
from runner.fakes.script import ScriptStep
from runner.review.ledger import MARKER as REVIEW_MARKER
from runner.worker.procs import (
    ManagedProcess,
    ProcessFailed,
    free_port,
    nightcrew_command,
    wait_http_ok,
)

OWNER, REPO = "demo-org", "calculator"
APP_ID = 4242
DEMO_FILES: dict[str, str] = {
    "README.md": "# calculator\n\nA tiny calculator library.\n",
    "calc.py": (
        '"""A tiny calculator."""\n\n\n'
        "def add(a: float, b: float) -> float:\n"
        '    """Return the sum of a and b."""\n'
        "    return a - b\n\n\n"
        "def multiply(a: float, b: float) -> float:\n"
        '    """Return the product of a and b."""\n'
        "    return a * b\n"
    ),
    "tests/test_calc.py": (
        "from calc import add, multiply\n\n\n"
        "def test_add() -> None:\n    assert add(2, 3) == 5\n\n\n"
        "def test_multiply() -> None:\n    assert multiply(2, 3) == 6\n"
    ),
    "pyproject.toml": '[tool.pytest.ini_options]\npythonpath = ["."]\n',
    ".gitignore": "__pycache__/\n.pytest_cache/\n",
    ".github/nightcrew.yml": (
        "# nightcrew's per-repo config (see the README)\n"
        "setup:\n  - python -m compileall -q calc.py tests\n"
        "caps:\n  per_repository: 1\n"
        "rules:\n  - Keep the change minimal.\n"
    ),
}
DEMO_ISSUE_TITLE = "add() returns the wrong result"
DEMO_ISSUE_BODY = (
    "`calc.add(2, 3)` returns `-1` instead of `5`; `tests/test_calc.py::test_add` fails.\n"
)
SUMMARY = "`add` subtracted its arguments; it now returns `a + b`, and `test_add` passes."


def demo_script() -> list[ScriptStep]:
    """What the scripted model answers, step by step: the fix a good model would make."""
    steps: list[dict[str, Any]] = [
        {"text": "- [ ] Find why `add` returns the wrong sum in calc.py\n"
                 "- [ ] Fix `add` with the smallest change\n"
                 "- [ ] Run the tests\n"
                 "Acceptance:\n- [ ] tests/test_calc.py::test_add passes; no other test fails"},
        {"text": "I'll run the tests first.", "tool_calls": [{"name": "run_tests", "input": {}}]},
        {"tool_calls": [{"name": "read_file", "input": {"path": "calc.py"}}]},
        {"text": "`add` subtracts; it should add.", "tool_calls": [{"name": "edit_file", "input": {
            "path": "calc.py", "search": "    return a - b\n", "replace": "    return a + b\n"}}]},
        {"tool_calls": [{"name": "run_tests", "input": {}}]},
        {"tool_calls": [{"name": "mark_done", "input": {"items": [1, 2, 3]}}]},
        {"tool_calls": [{"name": "finish", "input": {"summary": SUMMARY}}]},
        # The PR is nightcrew's own, so opening it asks for a review round: the review model.
        {"tool_calls": [{"name": "submit_review", "input": {
            "findings": [{"path": "calc.py", "line": 6, "severity": "low", "category": "tests",
                          "body": "Consider a test with negative numbers too."}],
            "summary": "The fix is the smallest one and the failing test now passes."}}]},
    ]
    return [ScriptStep.from_json(step) for step in steps]


def start_devhub(
    root: Path, *, port: int = 0, webhook_secret: str, webhook_url: str | None = None,
) -> tuple[DevHub, Path]:
    """Start the stand-in with a fresh App key pair; returns it and the private key's path."""
    private_pem, public_pem = DevHub.generate_app_keypair()
    root.mkdir(parents=True, exist_ok=True)
    key_path = root / "app-private-key.pem"
    key_path.write_text(private_pem)
    key_path.chmod(0o600)
    hub = DevHub(root / "hub", app_id=APP_ID, app_public_key_pem=public_pem,
                 webhook_secret=webhook_secret, webhook_url=webhook_url, port=port)
    hub.start()
    return hub, key_path


Inspector = Callable[[DevHub, dict[str, Any]], None]


def run_demo(
    *, json_output: bool, keep: bool = False, timeout: float = 180.0,
    inspect: Inspector | None = None,
) -> dict[str, Any]:
    """Run the demo; print progress to stderr and the result to stdout.

    ``inspect`` sees the stand-in and the result before anything is torn down (tests use it).
    """
    console = Console(stderr=True)
    out = Console()
    started = time.monotonic()
    data_dir = Path(tempfile.mkdtemp(prefix="nightcrew-demo-"))
    with _terminate_as_interrupt(), ExitStack() as stack:
        if not keep:
            stack.callback(shutil.rmtree, data_dir, ignore_errors=True)
        try:
            result = _run(stack, data_dir, console, timeout, inspect)
        except (ProcessFailed, TimeoutError, RedisUnavailable) as exc:
            console.print(f"[red]demo failed:[/red] {exc}")
            result = {"ok": False, "error": str(exc).splitlines()[0]}
    result["seconds"] = round(time.monotonic() - started, 2)
    if json_output:
        print(json.dumps(result), flush=True)
    elif "error" in result:
        out.print(f"no PR: {result['error']}")
    else:
        _print_summary(out, result, data_dir if keep else None)
    return result


def _run(
    stack: ExitStack, data_dir: Path, console: Console, timeout: float,
    inspect: Inspector | None,
) -> dict[str, Any]:
    secret = secrets.token_hex(16)
    with console.status("starting embedded Redis…"):
        redis = EmbeddedRedis(data_dir / "redis")
        redis_url = redis.ensure_started()
        stack.callback(redis.stop)
    model_server = FakeMessagesServer(demo_script())
    model_url = model_server.start()
    stack.callback(model_server.stop)
    hub, key_path = start_devhub(data_dir / "devhub", webhook_secret=secret)
    stack.callback(hub.stop)
    console.log(f"GitHub stand-in at {hub.url}; scripted Messages API at {model_url}")
    env = _child_env(data_dir, redis_url, hub.url, key_path, secret, model_url)
    port = free_port()
    web = ManagedProcess("web app", nightcrew_command("serve", "--port", str(port)), env,
                         data_dir / "web.log")
    stack.callback(web.stop)
    worker = ManagedProcess("worker", nightcrew_command("worker"), env, data_dir / "worker.log")
    stack.callback(worker.stop)
    wait_http_ok(f"http://127.0.0.1:{port}/healthz", web)
    hub.webhook_url = f"http://127.0.0.1:{port}/webhooks"
    console.log(f"web app on :{port}, worker pid {worker.proc.pid}")
    hub.install(OWNER)
    hub.create_repo(OWNER, REPO, DEMO_FILES)
    number = hub.create_issue(OWNER, REPO, DEMO_ISSUE_TITLE, DEMO_ISSUE_BODY)
    console.log(f"issue #{number} opened in {OWNER}/{REPO}; labeling it `nightcrew`")
    hub.add_label(OWNER, REPO, number, "nightcrew")
    issue = _watch(hub, number, [web, worker], console, timeout)
    result = _result(hub, issue, redis_url, TaskKey(OWNER, REPO, number))
    if result["pr"] is not None:
        with console.status("nightcrew reviews its pull request…"):
            result["reviewed"] = _reviewed(hub, result["pr"], [web, worker], deadline_s=60.0)
        if result["reviewed"]:
            console.log(f"PR #{result['pr']} reviewed: one inline comment, the findings ledger")
    if inspect is not None:
        inspect(hub, result)
    return result


def _child_env(
    data_dir: Path, redis_url: str, hub_url: str, key_path: Path, secret: str, model_url: str,
) -> dict[str, str]:
    # Only what the children need: the demo's own environment may hold real credentials.
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    return {
        **keep,
        "NIGHTCREW_DATA_DIR": str(data_dir / "worker-data"),
        "REDIS_URL": redis_url,
        "NIGHTCREW_GITHUB_API_URL": hub_url,
        "NIGHTCREW_APP_ID": str(APP_ID),
        "NIGHTCREW_PRIVATE_KEY_PATH": str(key_path),
        "NIGHTCREW_WEBHOOK_SECRET": secret,
        "ANTHROPIC_API_KEY": "demo-key-not-secret",
        "ANTHROPIC_BASE_URL": model_url,
        "NIGHTCREW_TEST_TIMEOUT": "120",
    }


def _watch(
    hub: DevHub, number: int, procs: list[ManagedProcess], console: Console, timeout: float,
) -> dict[str, Any]:
    """Follow the status comment until the task ends; show each new headline."""
    deadline = time.monotonic() + timeout
    seen = ""
    with console.status("waiting for the webhook…") as spinner:
        while time.monotonic() < deadline:
            for proc in procs:
                proc.check_alive()
            issue = hub.issue(OWNER, REPO, number)
            comment = _status_comment(issue)
            if comment is not None:
                headline = _progress(comment["body"])
                if headline != seen:
                    seen = headline
                    console.log(headline)
                    spinner.update(headline)
            if {"nightcrew:done", "nightcrew:failed"} & set(issue["labels"]):
                return issue
            time.sleep(0.2)
    raise TimeoutError(
        f"the task did not finish within {timeout}s; worker log:\n{procs[-1].tail()}"
    )


def _reviewed(hub: DevHub, pr: int, procs: list[ManagedProcess], *, deadline_s: float) -> bool:
    """Whether the review round's summary comment (the ledger) appears on the PR in time."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        for proc in procs:
            proc.check_alive()
        if any(REVIEW_MARKER in c["body"] for c in hub.issue(OWNER, REPO, pr)["comments"]):
            return True
        time.sleep(0.2)
    return False


def _status_comment(issue: dict[str, Any]) -> dict[str, Any] | None:
    comments: list[dict[str, Any]] = issue["comments"]
    return next((c for c in comments if MARKER in c["body"]), None)


def _progress(body: str) -> str:
    visible, _block = split_block(body)
    lines = [line for line in visible.splitlines() if line and MARKER not in line]
    headline = lines[0].replace("### nightcrew · ", "").replace("**", "") if lines else ""
    step = next((line for line in lines if line.startswith("step ")), "")
    return f"{headline} · {step}" if step else headline


def _result(hub: DevHub, issue: dict[str, Any], redis_url: str, task: TaskKey) -> dict[str, Any]:
    import redis as redis_client
    from rq.job import Job

    outcome: dict[str, Any] = {}
    connection = redis_client.Redis.from_url(redis_url)
    deadline = time.monotonic() + 15  # the label lands just before the job records its result
    while time.monotonic() < deadline and not outcome:
        job = Job.fetch(task.job_id, connection=connection)
        value = job.return_value()
        outcome = value if isinstance(value, dict) else {}
        time.sleep(0.1)
    comment = _status_comment(issue)
    pulls = [p for p in hub.pulls(OWNER, REPO) if p["head"] == task.branch]
    return {
        "ok": bool(pulls) and (outcome.get("tests_after") or {}).get("failed", 1) == 0,
        "issue": task.number,
        "pr": pulls[0]["number"] if pulls else None,
        "branch": task.branch,
        "tests_before": outcome.get("tests_before"),
        "tests_after": outcome.get("tests_after"),
        "status_comment": comment["id"] if comment else None,
        "labels": sorted(issue["labels"]),
        "tokens": outcome.get("tokens", 0),
        "cost_usd": outcome.get("cost_usd", 0.0),
    }


def _print_summary(out: Console, result: dict[str, Any], kept: Path | None) -> None:
    before, after = result.get("tests_before") or {}, result.get("tests_after") or {}
    verdict = "[green]PR opened[/green]" if result["ok"] else "[red]no PR[/red]"
    out.print(f"\n{verdict}: issue #{result['issue']} → PR #{result['pr']} "
              f"on branch {result['branch']}")
    out.print(f"tests before: {before.get('passed')} passed, {before.get('failed')} failed · "
              f"after: {after.get('passed')} passed, {after.get('failed')} failed")
    out.print(f"{result['tokens']:,} tokens · ${result['cost_usd']:.4f} · labels "
              f"{', '.join(result['labels'])} · {result['seconds']} s")
    if kept:
        out.print(f"data kept in {kept}")


@contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C, so every process started is stopped either way."""
    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
