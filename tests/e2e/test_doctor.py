"""`nightcrew doctor` as an operator runs it: real settings, Redis, tools and sandbox probes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.e2e

SANDBOX_CHECKS = ["network blocked", "environment empty", "read-only system", "memory limit",
                  "wall-clock limit", "isolation mechanisms"]
WEBHOOK_SECRET = "doctor-test-secret-d41d8cd98f00"


def doctor(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("NIGHTCREW_", "REDIS_URL", "ANTHROPIC_"))}
    return subprocess.run(
        [sys.executable, "-m", "runner.cli", "doctor", *args], cwd=tmp_path, capture_output=True,
        text=True, timeout=60, env={**base, "NIGHTCREW_DATA_DIR": str(tmp_path / "data"), **env},
    )


def checks_of(proc: subprocess.CompletedProcess[str]) -> tuple[bool, dict[str, dict[str, Any]]]:
    report = json.loads(proc.stdout)
    return report["ok"], {check["name"]: check for check in report["checks"]}


def redis_servers_for(data_dir: Path) -> list[str]:
    """Live redis-server processes whose command line names `data_dir`."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "redis-server" in cmdline and str(data_dir) in cmdline:
            found.append(cmdline)
    return found


def test_healthy_install_passes_every_probe_and_cleans_up(tmp_path: Path) -> None:
    proc = doctor(tmp_path, "--json", NIGHTCREW_WEBHOOK_SECRET=WEBHOOK_SECRET)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ok, checks = checks_of(proc)
    assert ok
    assert list(checks)[:8] == ["settings", "GitHub App", "webhook secret", "model API key",
                                "redis", "git", "rg", "bwrap"]
    assert {name: checks[name]["status"] for name in SANDBOX_CHECKS} == dict.fromkeys(
        SANDBOX_CHECKS, "ok"), checks
    assert checks["GitHub App"]["status"] == "warn" and "NIGHTCREW_APP_ID" in checks["GitHub App"]["detail"]
    assert checks["webhook secret"]["status"] == "ok"
    assert "embedded" in checks["redis"]["detail"] and checks["redis"]["status"] == "ok"
    assert "NIGHTCREW_DOCTOR_CANARY" not in checks["environment empty"]["detail"]
    assert WEBHOOK_SECRET not in proc.stdout
    assert redis_servers_for(tmp_path / "data") == []  # the embedded server it started is gone


def test_broken_setting_fails_with_the_variable_named(tmp_path: Path) -> None:
    proc = doctor(tmp_path, "--json", REDIS_URL="http://x")
    assert proc.returncode == 1, proc.stderr
    ok, checks = checks_of(proc)
    assert not ok
    assert checks["settings"]["status"] == "fail"
    assert checks["settings"]["detail"].startswith("REDIS_URL:")
    assert "redis://" in checks["settings"]["detail"]
    assert checks["redis"] == {"name": "redis", "status": "warn",
                               "detail": "not checked: settings did not load"}


def test_table_for_people_with_a_redis_url(tmp_path: Path, redis_server: str) -> None:
    proc = doctor(tmp_path, REDIS_URL=redis_server)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = {line.split("│")[1].strip(): line for line in proc.stdout.splitlines()
            if line.count("│") == 4 and line.split("│")[1].strip()}
    for name in ("settings", "redis", "git", "rg", "bwrap", *SANDBOX_CHECKS):
        assert name in rows, proc.stdout
    assert " ok " in rows["redis"] and " warn " in rows["webhook secret"]
