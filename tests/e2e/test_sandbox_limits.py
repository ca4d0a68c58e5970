"""Limits and cleanup of BwrapSandbox on this host: cgroups (v1 here), rlimits, wall kill, leftovers."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from runner.sandbox import SandboxPolicy
from runner.sandbox.bwrap import BwrapSandbox, host_cgroups
from runner.sandbox.cgroups import CGROUP_ROOT, PARENT, Cgroups

pytestmark = pytest.mark.e2e

MakeSandbox = Callable[..., BwrapSandbox]
T = TypeVar("T")
CGROUPS = host_cgroups()
needs_cgroups = pytest.mark.skipif(
    not (CGROUPS.supports("memory") and CGROUPS.supports("pids")),
    reason=f"needs root and writable cgroup memory+pids controllers ({CGROUPS.reason}); CI has them",
)
NO_CGROUPS = Cgroups(None, {}, reason="turned off by the test")


@pytest.fixture
def sandbox(workspace: Path) -> MakeSandbox:
    def make(cgroups: Cgroups | None = None, **policy: object) -> BwrapSandbox:
        return BwrapSandbox(workspace, SandboxPolicy(**policy), cgroups=cgroups)  # type: ignore[arg-type]

    return make


@pytest.fixture
def marker() -> Iterator[str]:
    """A string to find this test's processes by; asserts none of them outlive the test."""
    text = f"nc{uuid.uuid4().hex[:10]}"
    yield text
    assert _processes_with(text) == []


@needs_cgroups
def test_fork_bomb_is_contained_and_leaves_nothing(sandbox: MakeSandbox, marker: str) -> None:
    before = _our_cgroups()

    # Every level waits for its children, so the top one is alive until the limit bites (the
    # classic `:(){ :|:& };:` lets the top shell exit at once and the test race the bomb).
    result = sandbox(pids_max=256, wall_seconds=2.0).run(["bash", "-c", ":(){ :|:& wait; };:", marker])

    # bash gives up once forks keep failing, or the wall time stops it: either way it is over
    assert result.killed in (None, "wall_timeout") and result.duration_s < 4, result
    assert "process creations refused: the limit is 256" in result.stderr
    assert _processes_with(marker) == [] and _our_cgroups() == before
    assert sandbox().run(["echo", "still fine"]).stdout == "still fine\n"  # the worker lives on


@needs_cgroups
def test_memory_hog_is_oom_killed_by_the_cgroup(sandbox: MakeSandbox) -> None:
    box = sandbox(memory_bytes=512 * 1024**2)

    result = box.run(["python", "-c", "x = bytearray(4 * 1024**3); print('allocated')"])

    assert (result.exit_code, result.killed) == (137, "oom"), result
    assert "allocated" not in result.stdout and box.isolation()["memory"].startswith("cgroup")


@needs_cgroups
def test_tmp_counts_against_memory_and_its_size(sandbox: MakeSandbox) -> None:
    fill = "dd if=/dev/zero of=/tmp/fill bs=1M count=200 2>&1; ls -s /tmp/fill"

    capped = sandbox(memory_bytes=512 * 1024**2, tmp_bytes=64 * 1024**2).run(["sh", "-c", fill])

    assert "No space left on device" in capped.stdout and "65536 /tmp/fill" in capped.stdout, capped


def test_without_cgroups_memory_falls_back_to_rlimit_as(sandbox: MakeSandbox) -> None:
    box = sandbox(NO_CGROUPS, memory_bytes=256 * 1024**2)

    result = box.run(["python", "-c", "x = bytearray(1024**3)"])

    assert result.exit_code == 1 and "MemoryError" in result.stderr, result
    assert box.isolation()["memory"] == "rlimit AS"


@pytest.mark.skipif(os.geteuid() != 0, reason="RLIMIT_NPROC binds uid 65534, which needs a root worker")
def test_without_cgroups_processes_fall_back_to_rlimit_nproc(sandbox: MakeSandbox) -> None:
    spawn = ("import os\nfor n in range(200):\n    try:\n        pid = os.fork()\n"
             "    except OSError as exc:\n        print('refused', n, exc.errno); break\n"
             "    if pid == 0:\n        os._exit(0)\n")
    box = sandbox(NO_CGROUPS, pids_max=32)

    result = box.run(["python", "-c", spawn])

    assert result.stdout.startswith("refused ") and result.stdout.split()[2] == "11", result
    assert int(result.stdout.split()[1]) < 32 and box.isolation()["pids"] == "rlimit NPROC"


@pytest.mark.skipif(not CGROUPS.supports("cpu"), reason=f"needs a cpu cgroup controller ({CGROUPS.reason})")
def test_cpu_quota_throttles_a_busy_loop(sandbox: MakeSandbox) -> None:
    spin = ("import time\nend = time.monotonic() + 1.0\nwhile time.monotonic() < end: pass\n"
            "print(time.process_time())")

    result = sandbox(cpus=0.2).run(["python", "-c", spin])

    assert result.ok, result
    assert float(result.stdout) < 0.45  # ~0.2 s of CPU in 1 s of wall time; unthrottled it is ~1 s


def test_sleep_is_killed_at_the_wall_time(sandbox: MakeSandbox, marker: str) -> None:
    started = time.monotonic()
    result = sandbox(wall_seconds=1.0).run(["sh", "-c", "sleep 3600", marker])

    assert result.killed == "wall_timeout" and 0.9 < time.monotonic() - started < 2.0, result


def test_term_ignoring_double_fork_is_killed(sandbox: MakeSandbox, marker: str) -> None:
    hostile = ("trap '' TERM HUP INT; (setsid sh -c \"trap '' TERM HUP; sleep 3600\" \"$0\" &) ; "
               "sleep 3600 & wait")

    result = sandbox(wall_seconds=1.0).run(["sh", "-c", hostile, marker])

    assert result.killed == "wall_timeout" and result.duration_s < 2.0, result


def test_zombies_left_behind_are_reaped(sandbox: MakeSandbox) -> None:
    name = f"z{uuid.uuid4().hex[:12]}"  # the zombie's comm, at most 15 characters
    code = (
        "import ctypes, os, time, subprocess\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        f"    ctypes.CDLL(None).prctl(15, b'{name}', 0, 0, 0)\n"  # PR_SET_NAME
        "    os._exit(0)\n"
        "time.sleep(0.2)\n"
        "print(open(f'/proc/{pid}/stat').read().split()[2])\n"
        "subprocess.Popen(['sleep', '3600'])\n"  # and a child that outlives its parent
    )

    result = sandbox().run(["python", "-c", code])

    assert result.ok and result.stdout == "Z\n" and result.duration_s < 5, result  # a zombie inside
    assert _host_processes_named(name) == []


def test_huge_output_is_cut_without_hanging_or_ballooning(sandbox: MakeSandbox) -> None:
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    result = sandbox(output_limit=10_000).run(["sh", "-c", "head -c 100000000 /dev/zero | tr '\\0' a"])

    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before
    assert result.ok and result.duration_s < 10, result.duration_s
    assert "[99990000 chars cut]" in result.stdout and len(result.stdout) < 10_100
    assert grown_kib < 64 * 1024  # 100 MB went through; the worker kept well under 64 MiB of it


@needs_cgroups
def test_killed_worker_leaves_a_cgroup_that_sweep_stale_removes(workspace: Path, marker: str) -> None:
    script = ("import sys; from pathlib import Path; from runner.sandbox.bwrap import BwrapSandbox\n"
              "print('running', flush=True)\n"
              f"BwrapSandbox(Path({str(workspace)!r})).run(['sh', '-c', 'sleep 3600', {marker!r}])\n")
    worker = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                              cwd=Path(__file__).resolve().parents[2])
    assert worker.stdout is not None and worker.stdout.readline() == "running\n"
    leftovers = _wait_for(lambda: _cgroups_of(worker.pid))
    # wait for the command itself: bwrap arms --die-with-parent only once it runs
    assert _wait_for(lambda: [p for p in _processes_with(marker) if p.split(": ", 1)[1].startswith("sh -c")])

    worker.send_signal(signal.SIGKILL)
    worker.wait()
    worker.stdout.close()

    assert _wait_for(lambda: _processes_with(marker) == []), "--die-with-parent did not kill the sandbox"
    assert all(path.is_dir() for path in leftovers)  # a dead worker cannot clean up after itself
    removed = Cgroups.detect().sweep_stale()
    assert sorted(removed) == sorted(leftovers) and not any(path.exists() for path in leftovers)


def _wait_for(probe: Callable[[], T], timeout: float = 5.0) -> T:
    """Poll `probe` until it returns something truthy (or time runs out); return its last value."""
    deadline = time.monotonic() + timeout
    while not (value := probe()) and time.monotonic() < deadline:
        time.sleep(0.02)
    return value


def _cgroups_of(pid: int) -> list[Path]:
    """Command cgroup directories a worker with this pid created."""
    return sorted(p for p in CGROUP_ROOT.glob(f"*/{PARENT}/{pid}-*") if p.is_dir())


def _our_cgroups() -> list[Path]:
    return _cgroups_of(os.getpid())


def _processes_with(marker: str) -> list[str]:
    """Command lines of live host processes that contain `marker`."""
    found = []
    for pid in _pids():
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if marker in cmdline:
            found.append(f"{pid}: {cmdline}")
    return found


def _host_processes_named(name: str) -> list[str]:
    found = []
    for pid in _pids():
        try:
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            continue
        if comm == name:
            found.append(pid)
    return found


def _pids() -> list[str]:
    return [p for p in os.listdir("/proc") if p.isdigit() and int(p) != os.getpid()]
