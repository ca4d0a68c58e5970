"""The command line as a user runs it: clear refusals, and a demo that cleans up after Ctrl-C."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e


def nightcrew(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runner.cli", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=60)


def clean_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NIGHTCREW_", "REDIS_URL"))}
    return {**env, "NIGHTCREW_DATA_DIR": str(tmp_path / "data")}


def test_serve_without_webhook_secret_refuses_with_one_line(tmp_path: Path) -> None:
    proc = nightcrew("serve", "--port", "0", env=clean_env(tmp_path), cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "nightcrew: configuration error: NIGHTCREW_WEBHOOK_SECRET is required: "
        "the web app will not accept unsigned webhooks"
    ]


def test_invalid_setting_names_the_variable(tmp_path: Path) -> None:
    env = {**clean_env(tmp_path), "NIGHTCREW_APP_ID": "not-a-number"}
    proc = nightcrew("worker", env=env, cwd=tmp_path)
    assert proc.returncode == 2 and "NIGHTCREW_APP_ID:" in proc.stderr
    assert "Traceback" not in proc.stderr


def one_line_refusal(proc: subprocess.CompletedProcess[str]) -> str:
    """The single stderr line a refused command printed (no traceback, nothing else)."""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


def closed_port() -> int:
    """A loopback port nothing listens on (bound a moment ago, then closed)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


NOT_A_KEY = "ghp_" + "x" * 36  # a token pasted where the key goes
PUBLIC_KEY_LINE = "-----BEGIN PUBLIC KEY-----"


@pytest.mark.parametrize("command", ["worker", "serve"])
@pytest.mark.parametrize("form", ["path", "inline", "unreadable"])
def test_a_private_key_that_cannot_sign_stops_start_up_with_one_line(
    command: str, form: str, tmp_path: Path, app_keypair: tuple[str, str],
) -> None:
    key_file = tmp_path / "app.pem"
    env = {**clean_env(tmp_path), "NIGHTCREW_APP_ID": "7", "NIGHTCREW_WEBHOOK_SECRET": "s3cret"}
    if form == "path":
        key_file.write_text(NOT_A_KEY + "\n")
        env["NIGHTCREW_PRIVATE_KEY_PATH"] = str(key_file)
        said = f"NIGHTCREW_PRIVATE_KEY_PATH: {key_file}: not a PEM private key"
    elif form == "inline":
        env["NIGHTCREW_PRIVATE_KEY"] = app_keypair[1]  # the public half
        said = "NIGHTCREW_PRIVATE_KEY: a public key or certificate, not the App's private key"
    else:
        env["NIGHTCREW_PRIVATE_KEY_PATH"] = str(key_file)  # never written
        said = f"NIGHTCREW_PRIVATE_KEY_PATH: cannot read {key_file}: No such file or directory"

    proc = nightcrew(command, *(["--port", "0"] if command == "serve" else []), env=env, cwd=tmp_path)

    assert proc.returncode == 2
    assert one_line_refusal(proc).startswith(f"nightcrew: configuration error: {said}")
    assert NOT_A_KEY not in proc.stderr and app_keypair[1].splitlines()[1] not in proc.stderr


def test_a_worker_without_redis_says_so_in_one_line(tmp_path: Path, app_keypair: tuple[str, str]) -> None:
    (tmp_path / "app.pem").write_text(app_keypair[0])
    env = {**clean_env(tmp_path), "NIGHTCREW_APP_ID": "7",
           "NIGHTCREW_PRIVATE_KEY_PATH": str(tmp_path / "app.pem"),
           "REDIS_URL": f"redis://127.0.0.1:{closed_port()}/0"}
    proc = nightcrew("worker", env=env, cwd=tmp_path)
    assert proc.returncode == 1
    assert one_line_refusal(proc) == "nightcrew: REDIS_URL: cannot reach Redis (ConnectionError)"


def test_run_on_what_is_not_a_repository_says_so_in_one_line(tmp_path: Path) -> None:
    proc = nightcrew("run", "--repo", "/not/a/repo", "--model", "scripted:/none.json", "x",
                     env=clean_env(tmp_path), cwd=tmp_path)
    assert proc.returncode != 0 and one_line_refusal(proc).startswith("nightcrew run: ")


def test_run_on_an_empty_repository_ends_in_git_s_one_line(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    subprocess.run(["git", "init", "--quiet", str(empty)], check=True, capture_output=True)
    script = tmp_path / "script.json"
    script.write_text('[{"text": "- [ ] nothing"}]')
    proc = nightcrew("run", "--repo", str(empty), "--model", f"scripted:{script}", "x",
                     env=clean_env(tmp_path), cwd=tmp_path)
    assert proc.returncode == 1
    assert one_line_refusal(proc) == (
        "nightcrew: the remote has no default branch (is the repository empty?)")


_RAISES = """
import sys
from runner.cli.main import app, main
from runner.model import ModelError
from runner.workspace import GitTransportError

@app.command()
def fail(kind: str) -> None:
    if kind == "git":
        raise GitTransportError("git push failed (exit 1): error: RPC failed; HTTP 502\\n"
                                "fatal: the remote end hung up unexpectedly")
    if kind == "model":
        raise ModelError("the model API is unreachable", retryable=True, reason="unreachable")
    print(1 / 0)

@app.command()
def other() -> None:
    pass

sys.argv[0] = "nightcrew"
main()
"""


@pytest.mark.parametrize(("kind", "said"), [
    ("git", "nightcrew: git push failed (exit 1): error: RPC failed; HTTP 502; "
            "fatal: the remote end hung up unexpectedly"),
    ("model", "nightcrew: the model API is unreachable"),
])
def test_an_error_raised_on_purpose_ends_a_command_in_one_line(kind: str, said: str, tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-c", _RAISES, "fail", kind], env=clean_env(tmp_path),
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and one_line_refusal(proc) == said


def test_a_bug_keeps_its_traceback(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-c", _RAISES, "fail", "bug"], env=clean_env(tmp_path),
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "Traceback" in proc.stderr and "ZeroDivisionError" in proc.stderr


def test_help_lists_the_commands(tmp_path: Path) -> None:
    proc = nightcrew("--help", env=clean_env(tmp_path), cwd=tmp_path)
    for command in ("serve", "worker", "devhub", "demo"):
        assert command in proc.stdout


def processes_mentioning(marker: str) -> list[str]:
    """Live processes whose command line or environment mentions ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            text = (entry / "cmdline").read_bytes() + (entry / "environ").read_bytes()
        except OSError:
            continue
        if marker.encode() in text:
            found.append(f"{entry.name}: {(entry / 'cmdline').read_bytes()[:120]!r}")
    return found


def test_demo_stops_every_process_it_started_on_ctrl_c(tmp_path: Path) -> None:
    env = {**clean_env(tmp_path), "TMPDIR": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, "-m", "runner.cli", "demo"], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # Wait until the web app and worker are up (the demo's data dir lives under tmp_path).
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(processes_mentioning(str(tmp_path))) < 4:
            time.sleep(0.05)
        started = processes_mentioning(str(tmp_path))
        assert len(started) >= 4, started  # demo, redis, web app, worker
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and processes_mentioning(str(tmp_path)):
        time.sleep(0.1)
    assert processes_mentioning(str(tmp_path)) == []
    assert not any(tmp_path.glob("nightcrew-demo-*")), "the demo's data dir was left behind"
