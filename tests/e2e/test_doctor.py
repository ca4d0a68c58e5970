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


def test_sandbox_backend_in_force_is_reported(tmp_path: Path) -> None:
    _, checks = checks_of(doctor(tmp_path, "--json"))
    assert checks["sandbox backend"] == {"name": "sandbox backend", "status": "ok",
                                         "detail": "bwrap (NIGHTCREW_SANDBOX)"}
    assert "backend: bwrap" in checks["isolation mechanisms"]["detail"]


def test_docker_backend_without_an_api_fails_and_probes_nothing(tmp_path: Path) -> None:
    proc = doctor(tmp_path, "--json", NIGHTCREW_SANDBOX="docker",
                  NIGHTCREW_DOCKER_URL="unix:///nonexistent/docker.sock")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    ok, checks = checks_of(proc)
    backend = checks["sandbox backend"]
    assert not ok and backend["status"] == "fail"
    assert backend["detail"].startswith("docker (NIGHTCREW_SANDBOX): no usable Docker API at "
                                        "unix:///nonexistent/docker.sock")
    assert {checks[name]["status"] for name in SANDBOX_CHECKS} == {"warn"}
    assert all("not run" in checks[name]["detail"] for name in SANDBOX_CHECKS)


def test_docker_backend_is_probed_through_the_api(tmp_path: Path) -> None:
    docker = pytest.importorskip("runner.sandbox.docker", reason="the docker SDK is not installed")
    url = os.environ.get("NIGHTCREW_DOCKER_URL") or None
    unavailable = docker.docker_available(url, docker.DEFAULT_IMAGE)
    if unavailable is not None:
        pytest.skip(f"no Docker/podman API at {url or 'DOCKER_HOST/default socket'}: {unavailable}")
    extra = {"NIGHTCREW_DOCKER_URL": url} if url else {}
    proc = doctor(tmp_path, "--json", NIGHTCREW_SANDBOX="docker", **extra)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ok, checks = checks_of(proc)
    assert ok and checks["sandbox backend"]["status"] == "ok"
    assert f"image {docker.DEFAULT_IMAGE} present" in checks["sandbox backend"]["detail"]
    assert {name: checks[name]["status"] for name in SANDBOX_CHECKS} == dict.fromkeys(
        SANDBOX_CHECKS, "ok"), checks
    assert "backend: docker" in checks["isolation mechanisms"]["detail"]
    assert "killed (oom)" in checks["memory limit"]["detail"]
