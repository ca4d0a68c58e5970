"""The command line as a user runs it: clear refusals, and a demo that cleans up after Ctrl-C."""

from __future__ import annotations

import os
import signal
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
