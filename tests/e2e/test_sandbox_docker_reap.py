"""The Docker backend in a worker: the backend the settings pick, and no container of a killed run
left running until its wall deadline (a killed client leaves its container running).

Runs against a real Docker API (rootful podman's service here): point NIGHTCREW_DOCKER_URL at the
socket `scripts/podman_service.sh start` prints. Without a reachable API (or the `docker` SDK)
the whole module is skipped and the summary says why.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("docker", reason="the docker SDK is not installed (pip install docker)")

from github_app.settings import Settings, load_settings  # noqa: E402
from runner.sandbox import SandboxPolicy  # noqa: E402
from runner.sandbox.docker import (  # noqa: E402
    DEFAULT_IMAGE,
    LABEL,
    OWNER_LABEL,
    WORKSPACE_LABEL,
    DockerSandbox,
)
from tests.e2e.conftest import docker_url_or_skip

URL = docker_url_or_skip()

import docker  # noqa: E402

from runner.wiring import Dependencies  # noqa: E402
from runner.worker.rq_worker import reap_killed_run, sweep_containers  # noqa: E402

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
# A work horse in miniature: a process running a long command in the Docker sandbox.
_LONG_RUN = """
import sys
from pathlib import Path
from runner.sandbox import SandboxPolicy
from runner.sandbox.docker import DockerSandbox
box = DockerSandbox(Path(sys.argv[1]), SandboxPolicy(wall_seconds=3600), base_url=sys.argv[2] or None)
box.run(["sh", "-c", "echo started; sleep 3600"])
"""


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    api = docker.DockerClient(base_url=URL) if URL else docker.from_env()
    yield api
    api.close()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(data_dir=tmp_path / "data", sandbox="docker", docker_url=URL)


@pytest.fixture
def checkout(settings: Settings, client: Any) -> Iterator[Callable[[str], Path]]:
    """Makes a task checkout where the worker keeps them; removes what its runs left at the end."""
    made: list[Path] = []

    def make(name: str) -> Path:
        path = settings.data_dir.resolve() / "workspaces" / name
        path.mkdir(parents=True)
        made.append(path)
        return path

    yield make
    for path in made:
        for container in containers_of(client, path):
            container.remove(force=True)


@pytest.fixture
def runs() -> Iterator[Callable[[Path], subprocess.Popen[bytes]]]:
    """Starts processes running a long command in a container of a checkout; kills them at the end."""
    started: list[subprocess.Popen[bytes]] = []

    def start(workspace: Path) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen([sys.executable, "-c", _LONG_RUN, str(workspace), URL or ""],
                                cwd=ROOT, start_new_session=True, stdout=subprocess.DEVNULL)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_worker_wiring_picks_docker_for_both_phases(settings: Settings, tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    deps = Dependencies(settings)
    agent, setup = deps.sandbox_for(workspace), deps.sandbox_for(workspace, network=True)
    try:
        assert isinstance(agent, DockerSandbox) and isinstance(setup, DockerSandbox)
        assert agent.image == setup.image == DEFAULT_IMAGE
        # the network differs, nothing else does
        assert (agent.policy.network, setup.policy.network) == (False, True)
        assert setup.policy.memory_bytes == agent.policy.memory_bytes == SandboxPolicy().memory_bytes
        interfaces = "import socket; print(sorted(n for _, n in socket.if_nameindex()))"
        offline = agent.run(["python", "-c", interfaces])
        online = setup.run(["python", "-c", interfaces])
    finally:
        agent.close()
        setup.close()

    assert offline.stdout == "['lo']\n", offline
    assert online.ok and online.stdout != "['lo']\n", online


def test_killed_runs_container_is_removed_by_the_reap_at_once(
    settings: Settings, client: Any, checkout: Callable[[str], Path],
    runs: Callable[[Path], subprocess.Popen[bytes]],
) -> None:
    killed, other = checkout("octo-repo-7"), checkout("octo-repo-8")
    victim, bystander = runs(killed), runs(other)
    wait_for("both runs' commands to start", lambda: running(client, killed) and running(client, other),
             alive=(victim, bystander))

    os.killpg(victim.pid, signal.SIGKILL)
    assert victim.wait() == -signal.SIGKILL
    # what the reap is for: the engine keeps a dead client's container running for its hour
    assert running(client, killed), "the container died with its client: nothing to reap"
    (container,) = containers_of(client, killed)

    remains = reap_killed_run(settings, "octo-repo-7")

    assert remains.containers == [container.name]
    assert containers_of(client, killed) == []
    assert running(client, other) and bystander.poll() is None  # another run is left alone
    assert reap_killed_run(settings, "octo-repo-7").containers == []


def test_worker_start_sweeps_containers_whose_maker_is_dead(
    settings: Settings, client: Any, checkout: Callable[[str], Path],
    runs: Callable[[Path], subprocess.Popen[bytes]],
) -> None:
    orphaned, live = checkout("octo-repo-9"), checkout("octo-repo-10")
    horse = runs(orphaned)
    wait_for("the run's command to start", lambda: running(client, orphaned), alive=(horse,))
    ours = DockerSandbox(live, SandboxPolicy(), base_url=URL)  # made by this live process
    kept = client.containers.create(**ours.container_config(["sleep", "3600"], "/workspace",
                                                            deadline=time.time() + 3600))
    kept.start()
    ours.close()

    # SIGKILLed and not yet waited for, as a killed worker's horse is until init reaps it
    os.killpg(horse.pid, signal.SIGKILL)
    wait_for("the killed process to be a zombie", lambda: process_state(horse.pid) == "Z")

    removed = sweep_containers(settings)
    horse.wait()

    assert removed >= 1  # leftovers of other dead makers on this engine go too
    assert containers_of(client, orphaned) == []
    assert [c.id for c in containers_of(client, live)] == [kept.id]


def test_reap_and_sweep_need_no_docker_with_bwrap(tmp_path: Path) -> None:
    bwrap = load_settings(data_dir=tmp_path / "data", sandbox="bwrap",
                          docker_url="unix:///nonexistent/docker.sock")

    assert reap_killed_run(bwrap, "octo-repo-7").containers == []
    assert sweep_containers(bwrap) == 0


def test_unreachable_api_is_reported_not_raised(tmp_path: Path) -> None:
    gone = load_settings(data_dir=tmp_path / "data", sandbox="docker",
                         docker_url="unix:///nonexistent/docker.sock")

    assert reap_killed_run(gone, "octo-repo-7").containers == []  # logged; the sweep retries
    assert sweep_containers(gone) == 0


def containers_of(client: Any, workspace: Path) -> list[Any]:
    """The nightcrew containers labelled with this checkout, running or not."""
    return [c for c in client.containers.list(all=True, filters={"label": LABEL})
            if c.labels.get(WORKSPACE_LABEL) == str(workspace.resolve())]


def running(client: Any, workspace: Path) -> bool:
    found = containers_of(client, workspace)
    return bool(found) and all(c.status == "running" and OWNER_LABEL in c.labels for c in found)


def process_state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return "gone"


def wait_for(what: str, check: Callable[[], bool], *, alive: tuple[subprocess.Popen[bytes], ...] = (),
             timeout: float = 60.0) -> None:
    """Wait until `check()` holds; fail at once if one of `alive` exited, and after `timeout`."""
    deadline = time.monotonic() + timeout
    while not check():
        for proc in alive:
            assert proc.poll() is None, f"{what}: the process exited with {proc.returncode}"
        assert time.monotonic() < deadline, f"{what}: not within {timeout:.0f}s"
        time.sleep(0.1)
