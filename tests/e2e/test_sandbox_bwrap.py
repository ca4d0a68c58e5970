"""BwrapSandbox against the real bwrap on this host: isolation, limits, output, exit codes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from runner.sandbox import SandboxPolicy
from runner.sandbox.bwrap import BwrapSandbox, SandboxError
from runner.testrun import run_tests
from tests.e2e.conftest import CANARY, CONNECT

pytestmark = pytest.mark.e2e

MakeSandbox = Callable[..., BwrapSandbox]


@pytest.fixture
def sandbox(workspace: Path) -> MakeSandbox:
    def make(**policy: object) -> BwrapSandbox:
        return BwrapSandbox(workspace, SandboxPolicy(**policy))  # type: ignore[arg-type]

    return make


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
        ["sh", "-c", "env; echo ---; for f in /proc/[0-9]*/environ; do echo \"== $f\"; "
                     "tr '\\0' '\\n' < $f; done 2>&1; true"]
    )

    env_part, proc_part = result.stdout.split("---")
    assert CANARY not in result.stdout
    assert "NIGHTCREW_PHASE=test" in proc_part  # the probe really read environments in /proc
    assert "== /proc/1/environ" in proc_part  # and looked at PID 1, bwrap's own fork
    assert f":{sys.prefix}/bin:" in env_part and "PATH=/workspace/.venv/bin:" in env_part
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


needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="the uid-65534 drop needs a root worker (CI runs these as root)"
)


@needs_root
def test_command_runs_as_nobody_without_privileges(sandbox: MakeSandbox) -> None:
    box = sandbox()

    result = box.run(["sh", "-c", "id -u; id -g; id -G; grep -E '^(CapEff|CapBnd|NoNewPrivs)' "
                                  "/proc/self/status; unshare --user true 2>&1; echo rc=$?"])

    lines = result.stdout.splitlines()
    assert lines[:3] == ["65534", "65534", "65534"], result
    assert "CapEff:\t0000000000000000" in lines and "CapBnd:\t0000000000000000" in lines
    assert "NoNewPrivs:\t1" in lines
    assert "Operation not permitted" in result.stdout and "rc=0" not in result.stdout  # no nested userns
    assert box.isolation()["uid"].startswith("65534") and box.drops_to_nobody


@needs_root
def test_root_owned_private_file_is_visible_but_unreadable(sandbox: MakeSandbox, tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "token").write_text(CANARY)
    (secrets / "token").chmod(0o600)
    (secrets / "public").write_text("hello\n")

    result = sandbox(ro_paths=(secrets,)).run(
        ["sh", "-c", f"cat {secrets}/public; test -e {secrets}/token && echo EXISTS; cat {secrets}/token"]
    )

    assert result.stdout == "hello\nEXISTS\n", result
    assert "Permission denied" in result.stderr and CANARY not in result.stderr


def test_symlink_to_a_host_file_reads_nothing(sandbox: MakeSandbox, workspace: Path, tmp_path: Path) -> None:
    host_file = tmp_path / "outside.txt"
    host_file.write_text(CANARY)
    (workspace / "link.txt").symlink_to(host_file)
    (workspace / "etc-link").symlink_to(tmp_path)
    before = os.stat(host_file)

    result = sandbox().run(["sh", "-c", "cat link.txt; ls etc-link; echo overwrite > link.txt; true"])

    assert CANARY not in result.stdout and "No such file" in result.stderr, result
    assert host_file.read_text() == CANARY  # the write through the link did not reach the host
    after = os.stat(host_file)
    assert (after.st_uid, after.st_gid, after.st_mode) == (before.st_uid, before.st_gid, before.st_mode)


def test_worker_home_config_and_data_dir_are_hidden(sandbox: MakeSandbox, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    (data_dir / "workspaces" / "task").mkdir(parents=True)
    (data_dir / "app-key.pem").write_text(CANARY)
    home = Path.home()
    probes = [str(home / ".ssh"), str(home / ".config"), str(home / ".npmrc"), str(data_dir),
              str(data_dir / "app-key.pem"), str(Path(sys.prefix).parent / "pyproject.toml")]
    box = BwrapSandbox(data_dir / "workspaces" / "task", SandboxPolicy())

    result = box.run(["sh", "-c", 'for p in "$@"; do test -e "$p" && echo SEEN $p; done; ls -a /workspace',
                      "probe", *probes])

    assert "SEEN" not in result.stdout, result.stdout
    assert result.stdout.split() == [".", ".."]  # the work tree itself, empty, is all there is


@needs_root
def test_worker_files_become_writable_and_stay_usable_by_worker_git(
    sandbox: MakeSandbox, workspace: Path, tmp_path: Path
) -> None:
    git_dir = tmp_path / "ws.git"
    git = ["git", f"--git-dir={git_dir}", f"--work-tree={workspace}"]
    subprocess.run(["git", "init", "--quiet", "--bare", str(git_dir)], check=True)
    (workspace / "pkg").mkdir()
    (workspace / "pkg" / "mod.py").write_text("A = 1\n")  # the worker (root) wrote these

    result = sandbox().run(["sh", "-c", "echo B = 2 >> pkg/mod.py && echo new > pkg/new.txt && mkdir out"])
    subprocess.run([*git, "add", "--all"], check=True)
    status = subprocess.run([*git, "status", "--porcelain"], check=True, capture_output=True, text=True)

    assert result.ok, result
    assert (workspace / "pkg" / "mod.py").read_text() == "A = 1\nB = 2\n"
    assert os.stat(workspace / "pkg" / "new.txt").st_uid == 65534
    assert status.stdout.split() == ["A", "pkg/mod.py", "A", "pkg/new.txt"]


def test_isolation_report_names_the_mechanisms(sandbox: MakeSandbox) -> None:
    report = sandbox(memory_bytes=None, cpus=0.5, cpu_seconds=60).isolation()

    assert report["backend"] == "bwrap" and report["network"] == "none (own namespace)"
    assert report["memory"] == "none (policy)" and report["cpu"].endswith("rlimit CPU")
    assert report["pids"] in ("cgroup v1", "cgroup v2", "rlimit NPROC")
    assert sandbox(network=True).isolation()["network"].startswith("host")


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


def test_an_edit_of_the_same_size_in_the_same_second_runs_the_new_code(
    sandbox: MakeSandbox, workspace: Path,
) -> None:
    source = workspace / "calc.py"
    source.write_text("def add(a, b):\n    return a - b\n")
    assert sandbox().run(["python", "-m", "compileall", "-q", "calc.py"]).exit_code == 0
    stamp = source.stat().st_mtime
    # The agent's edit: same size, and (as happens within one second) the same mtime.
    source.write_text("def add(a, b):\n    return a + b\n")
    os.utime(source, (stamp, stamp))
    result = sandbox().run(["python", "-c", "import calc; print(calc.add(2, 3))"])
    assert result.stdout.strip() == "5", result  # not the stale bytecode's -1
