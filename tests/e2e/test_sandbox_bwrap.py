"""BwrapSandbox against the real bwrap on this host: isolation, limits, output, exit codes."""

from __future__ import annotations

import os
import socket
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from runner.sandbox import SandboxPolicy
from runner.sandbox.bwrap import BwrapSandbox, SandboxError
from runner.testrun import run_tests

pytestmark = pytest.mark.e2e

CANARY = "ghp_canary0123456789abcdefNIGHTCREW"
MakeSandbox = Callable[..., BwrapSandbox]


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    path = tmp_path / "ws"
    path.mkdir()
    return path


@pytest.fixture
def sandbox(workspace: Path) -> MakeSandbox:
    def make(**policy: object) -> BwrapSandbox:
        return BwrapSandbox(workspace, SandboxPolicy(**policy))  # type: ignore[arg-type]

    return make


@pytest.fixture
def listener() -> Iterator[int]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    yield server.getsockname()[1]
    server.close()


CONNECT = """
import socket, sys
try:
    socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2)
    print("CONNECTED")
except OSError as exc:
    print("BLOCKED", type(exc).__name__, exc)
"""


def test_network_is_off_by_default(sandbox: MakeSandbox, listener: int) -> None:
    socket.create_connection(("127.0.0.1", listener), timeout=2).close()  # reachable from the host

    result = sandbox().run(["python", "-c", CONNECT, str(listener)])

    assert result.stdout.startswith("BLOCKED ConnectionRefusedError"), result


def test_network_policy_turns_it_on(sandbox: MakeSandbox, listener: int) -> None:
    result = sandbox(network=True).run(["python", "-c", CONNECT, str(listener)])

    assert result.stdout.startswith("CONNECTED"), result


def test_worker_secrets_stay_out(sandbox: MakeSandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", CANARY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", CANARY)

    result = sandbox(env={"NIGHTCREW_PHASE": "test"}).run(
        ["sh", "-c", "env; echo ---; tr '\\0' '\\n' < /proc/1/environ"]
    )

    env_part, pid1_part = result.stdout.split("---")
    assert CANARY not in result.stdout
    assert "PATH=/usr/bin:/bin" in pid1_part  # we really read PID 1's environment
    assert f"PATH={sys.prefix}/bin:" in env_part
    assert "HOME=/tmp/home" in env_part and "NIGHTCREW_PHASE=test" in env_part
    assert "GITHUB_TOKEN" not in env_part


def test_only_workspace_and_tmp_are_writable(sandbox: MakeSandbox, workspace: Path) -> None:
    script = (
        f"for p in /usr/evil /etc/evil /evil {sys.prefix}/evil; do touch $p 2>/dev/null && echo WROTE $p; done;"
        "echo kept > /workspace/kept.txt; echo gone > /tmp/gone.txt; touch $HOME/ok && echo HOME_OK"
    )
    first = sandbox().run(["sh", "-c", script])
    second = sandbox().run(["sh", "-c", "test -e /tmp/gone.txt && echo STILL_THERE; true"])

    assert "WROTE" not in first.stdout and "HOME_OK" in first.stdout, first
    assert (workspace / "kept.txt").read_text() == "kept\n"
    assert second.stdout == "" and second.exit_code == 0
    assert not Path("/evil").exists() and not Path(sys.prefix, "evil").exists()


def test_host_home_and_work_dirs_are_hidden(
    sandbox: MakeSandbox, workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_home = tmp_path / "home"
    (fake_home / ".ssh").mkdir(parents=True)
    (fake_home / ".ssh" / "id_rsa").write_text(CANARY)
    monkeypatch.setenv("HOME", str(fake_home))
    hidden = [str(fake_home / ".ssh" / "id_rsa"), str(workspace), "/work/shared", "/var", "/home"]
    hidden += [f"/root/{name}" for name in _listdir("/root") if name != ".pyenv"]

    result = sandbox().run(["sh", "-c", 'for p in "$@"; do test -e "$p" && echo SEEN $p; done; true',
                            "probe", *hidden])

    assert result.stdout == "", result.stdout
    assert len(hidden) > 5  # the probe looked at real host paths


def test_wall_timeout_kills_the_whole_tree(sandbox: MakeSandbox) -> None:
    marker = f"100.{uuid.uuid4().int % 10**9}"
    script = f"sleep {marker} & setsid sh -c 'sleep {marker}' & sleep {marker}; true"

    started = time.monotonic()
    result = sandbox(wall_seconds=1.0).run(["sh", "-c", script])
    elapsed = time.monotonic() - started

    assert result.killed == "wall_timeout" and not result.ok
    assert 0.9 < elapsed < 2.0, elapsed
    assert _processes_with(marker) == []


def test_timeout_argument_overrides_policy(sandbox: MakeSandbox) -> None:
    result = sandbox(wall_seconds=60).run(["sleep", "30"], timeout=0.3)

    assert result.killed == "wall_timeout" and result.duration_s < 1.5


def test_big_output_is_cut_in_the_middle(sandbox: MakeSandbox) -> None:
    code = "import sys; sys.stdout.write('START' + 'a' * 5_000_000 + 'END'); sys.stderr.write('e' * 3_000_000)"

    result = sandbox(output_limit=10_000).run(["python", "-c", code])

    assert result.exit_code == 0 and result.duration_s < 5
    assert result.stdout.startswith("START") and result.stdout.endswith("END")
    assert "\n… [4990008 chars cut] …\n" in result.stdout
    assert len(result.stdout) < 10_100 and len(result.stderr) < 10_100


def test_memory_hog_dies_and_worker_lives(sandbox: MakeSandbox) -> None:
    result = sandbox(memory_bytes=256 * 1024**2).run(["python", "-c", "x = bytearray(1024**3)"])

    assert result.exit_code != 0
    assert "MemoryError" in result.stderr or result.killed is not None


def test_cpu_limit_reports_cpu_time(sandbox: MakeSandbox) -> None:
    result = sandbox(cpu_seconds=1, wall_seconds=10).run(["python", "-c", "while True: pass"])

    assert result.killed == "cpu_time" and result.exit_code == 128 + 24
    assert result.duration_s < 4


def test_missing_executable_is_exit_127(sandbox: MakeSandbox) -> None:
    result = sandbox().run(["no-such-tool", "--help"])

    assert result.exit_code == 127 and "no-such-tool" in result.stderr


def test_broken_setup_raises_instead_of_failing_the_command(sandbox: MakeSandbox) -> None:
    with pytest.raises(SandboxError, match="Can't find source path /nonexistent/toolchain"):
        sandbox(ro_paths=(Path("/nonexistent/toolchain"),)).run(["true"])


def test_exit_codes_and_signals_come_through(sandbox: MakeSandbox) -> None:
    assert sandbox().run(["sh", "-c", "exit 3"]).exit_code == 3
    killed = sandbox().run(["sh", "-c", "kill -TERM $$"])
    assert killed.exit_code == 143 and killed.killed == "signal 15"


def test_cwd_is_inside_the_workspace(sandbox: MakeSandbox, workspace: Path) -> None:
    (workspace / "pkg" / "sub").mkdir(parents=True)

    assert sandbox().run(["pwd"], cwd="pkg/sub").stdout == "/workspace/pkg/sub\n"
    assert sandbox().run(["pwd"], cwd="/workspace/pkg").stdout == "/workspace/pkg\n"
    assert sandbox().run(["pwd"], cwd="nope").exit_code != 0
    for escape in ("..", "pkg/../../etc", "/etc"):
        with pytest.raises(ValueError):
            sandbox().run(["pwd"], cwd=escape)


def test_pytest_pass_and_fail_come_through(sandbox: MakeSandbox, workspace: Path) -> None:
    (workspace / "test_one.py").write_text("def test_ok():\n    assert True\n")
    green = run_tests(sandbox())
    (workspace / "test_two.py").write_text("def test_bad():\n    assert 1 == 2\n")
    red = run_tests(sandbox())

    assert (green.exit_code, green.passed, green.green) == (0, 1, True), green.output
    assert (red.exit_code, red.passed, red.failed, red.green) == (1, 1, 1, False), red.output
    assert "FAILED test_two.py::test_bad" in red.output
    assert sorted(os.listdir(workspace)) == ["test_one.py", "test_two.py"]  # no cache litter


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def _processes_with(marker: str) -> list[str]:
    """Command lines of live host processes that contain `marker`."""
    found = []
    for pid in _listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if marker in cmdline:
            found.append(f"{pid}: {cmdline}")
    return found
