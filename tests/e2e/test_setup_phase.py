"""The setup phase in the real bwrap sandbox: network on, no secrets, output cached by manifests."""

from __future__ import annotations

import os
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner.pipeline.repo_setup import SetupResult, cache_key, manifest_files, run_setup, setup_policy
from runner.sandbox import Sandbox
from runner.sandbox.bwrap import BwrapSandbox
from runner.sandbox.bytecode import workspace_bytecode

pytestmark = pytest.mark.e2e

CANARY = "ghs_" + "setupCANARY0123456789abcdef"  # fake, built at run time
VENV = "python -m venv --without-pip .venv"
DEPS = "mkdir -p deps && echo installed > deps/marker.txt"


def boxed(path: Path) -> Sandbox:
    return BwrapSandbox(path, setup_policy())


class Listener:
    """A TCP server on the host's loopback: reachable only from a sandbox that shares the network."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.received: list[bytes] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                self.received.append(conn.recv(100))

    @property
    def command(self) -> str:
        """A setup command that reports in over the network (what `pip install` would need)."""
        return (f"python -c \"import socket; socket.create_connection(('127.0.0.1', {self.port}))"
                ".sendall(b'setup ran')\"")


@pytest.fixture
def listener() -> Iterator[Listener]:
    server = Listener()
    yield server
    server.sock.close()


def make_repo(path: Path, requirements: str = "pytest==8.0\n") -> Path:
    """A checked-out repository's files: manifests, code, and a nested package."""
    (path / "web").mkdir(parents=True)
    (path / "requirements.txt").write_text(requirements)
    (path / "pyproject.toml").write_text("[project]\nname = 'demo'\n")
    (path / "web" / "package.json").write_text('{"name": "web"}\n')
    (path / "app.py").write_text("print('hi')\n")
    return path


def test_setup_runs_with_network_and_is_then_restored_from_cache(
    tmp_path: Path, listener: Listener
) -> None:
    cache = tmp_path / "cache" / "octo" / "repo"
    commands = [VENV, DEPS, listener.command]
    first_ws, second_ws = make_repo(tmp_path / "ws1"), make_repo(tmp_path / "ws2")

    first = run_setup(first_ws, commands, boxed, cache)
    second = run_setup(second_ws, commands, boxed, cache)

    assert first.ok and first.ran and not first.cached and len(first.results) == 3, first
    assert first.paths == (".venv", "deps") and listener.received == [b"setup ran"]
    assert second.ok and second.cached and not second.ran and second.results == []
    assert second.key == first.key and second.paths == first.paths
    assert listener.received == [b"setup ran"]  # no command ran the second time
    assert (second_ws / "deps" / "marker.txt").read_text() == "installed\n"
    venv_python = BwrapSandbox(second_ws).run([".venv/bin/python", "-c", "import sys; print(sys.prefix)"])
    assert venv_python.ok and venv_python.stdout.strip() == "/workspace/.venv", venv_python


def test_restored_output_is_a_copy_not_a_link_to_the_cache(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    run_setup(make_repo(tmp_path / "ws1"), [DEPS], boxed, cache)
    second_ws = make_repo(tmp_path / "ws2")
    run_setup(second_ws, [DEPS], boxed, cache)
    (second_ws / "deps" / "marker.txt").write_text("changed by the agent\n")

    third_ws = make_repo(tmp_path / "ws3")
    third = run_setup(third_ws, [DEPS], boxed, cache)

    assert third.cached and (third_ws / "deps" / "marker.txt").read_text() == "installed\n"


def test_a_changed_manifest_or_command_misses_the_cache(tmp_path: Path, listener: Listener) -> None:
    cache = tmp_path / "cache"
    commands = [DEPS, listener.command]
    run_setup(make_repo(tmp_path / "ws1"), commands, boxed, cache)
    bumped_ws = make_repo(tmp_path / "ws2", requirements="pytest==8.1\n")
    nested_ws = make_repo(tmp_path / "ws3")
    (nested_ws / "web" / "package.json").write_text('{"name": "web", "version": "2"}\n')

    bumped = run_setup(bumped_ws, commands, boxed, cache)
    nested = run_setup(nested_ws, commands, boxed, cache)
    other_command = run_setup(make_repo(tmp_path / "ws4"), [*commands, "true"], boxed, cache)

    assert bumped.ran and nested.ran and other_command.ran
    assert not (bumped.cached or nested.cached or other_command.cached)
    assert len({bumped.key, nested.key, other_command.key}) == 3 and len(listener.received) == 4


def test_a_failing_command_reports_and_stops(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    ws = make_repo(tmp_path / "ws")
    failing = "echo 'ERROR: No matching distribution found for nosuchpkg' >&2; exit 3"

    result = run_setup(ws, [DEPS, failing, "touch never"], boxed, cache)

    assert not result.ok and result.ran and result.failed_command == failing
    assert [r.exit_code for r in result.results] == [0, 3]
    assert "No matching distribution" in result.results[-1].stderr
    assert "exit 3" in result.failure_report() and "nosuchpkg" in result.failure_report()
    assert not (ws / "never").exists() and not list(cache.glob("*"))  # nothing cached
    assert not run_setup(make_repo(tmp_path / "ws2"), [DEPS, failing], boxed, cache).cached


def test_setup_sees_no_worker_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("GITHUB_TOKEN", "NIGHTCREW_GIT_TOKEN", "ANTHROPIC_API_KEY", "PIP_INDEX_URL"):
        monkeypatch.setenv(name, f"https://u:{CANARY}@example.invalid/" if "URL" in name else CANARY)

    result = run_setup(make_repo(tmp_path / "ws"), ["env; for f in /proc/[0-9]*/environ; do tr '\\0' '\\n' < $f; done 2>/dev/null; true"],
                       boxed, tmp_path / "cache")

    assert result.ok and "PIP_NO_INDEX=0" in result.results[0].stdout, result
    assert CANARY not in result.results[0].stdout + result.results[0].stderr
    assert "HOME=/tmp/home" in result.results[0].stdout


def test_cache_never_restores_through_a_symlink(tmp_path: Path) -> None:
    cache, outside = tmp_path / "cache", tmp_path / "outside"
    outside.mkdir()
    command = "mkdir -p web/node_modules && echo x > web/node_modules/left-pad.js"
    first = run_setup(make_repo(tmp_path / "ws1"), [command], boxed, cache)
    hostile = make_repo(tmp_path / "ws2")
    for child in (hostile / "web").iterdir():
        child.unlink()
    (hostile / "web").rmdir()
    (hostile / "web").symlink_to(outside)  # a tracked symlink pointing out of the workspace

    second = run_setup(hostile, [command], boxed, cache)

    assert first.paths == ("web/node_modules",) and not second.cached
    assert list(outside.iterdir()) == []


def test_no_commands_is_a_no_op(tmp_path: Path) -> None:
    assert run_setup(make_repo(tmp_path / "ws"), [], boxed, tmp_path / "cache") == SetupResult(
        ran=False, cached=False, key="")


def test_manifests_are_found_a_few_levels_down_but_not_in_dependencies(tmp_path: Path) -> None:
    ws = make_repo(tmp_path / "ws")
    (ws / "requirements").mkdir()
    (ws / "requirements" / "dev.txt").write_text("ruff\n")
    (ws / "node_modules" / "x").mkdir(parents=True)
    (ws / "node_modules" / "x" / "package.json").write_text("{}\n")
    key = cache_key(ws, [DEPS])

    assert manifest_files(ws) == ["pyproject.toml", "requirements.txt", "requirements/dev.txt",
                                  "web/package.json"]
    (ws / "app.py").write_text("print('changed')\n")  # code is not a manifest
    (ws / "node_modules" / "x" / "package.json").write_text('{"v": 2}\n')
    assert cache_key(ws, [DEPS]) == key


def test_a_venv_made_by_setup_is_what_the_tests_run_with(tmp_path: Path) -> None:
    workspace = make_repo(tmp_path / "ws")
    result = run_setup(workspace, ["python -m venv --without-pip .venv"], boxed, tmp_path / "cache")
    assert result.ok, result
    which = BwrapSandbox(workspace).run(["sh", "-c", "command -v python"])
    assert which.stdout.strip() == "/workspace/.venv/bin/python"


# Setup installs a package into the venv it made (as pip would, without the network).
INSTALL = ("SP=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_path(\"purelib\"))') && "
           "mkdir -p $SP/demo_pkg && echo 'VALUE = 1' > $SP/demo_pkg/__init__.py")
IMPORT_DEMO = [".venv/bin/python", "-v", "-c", "import demo_pkg; print(demo_pkg.VALUE)"]


def test_what_setup_installed_is_compiled_and_comes_back_with_the_cache(tmp_path: Path) -> None:
    def task_box(path: Path) -> Sandbox:
        return BwrapSandbox.for_task(path, setup_policy())

    cache = tmp_path / "cache"
    first_ws, second_ws = make_repo(tmp_path / "ws1"), make_repo(tmp_path / "ws2")
    package = f".venv/lib/python3.{sys.version_info.minor}/site-packages/demo_pkg"
    pyc = f"{package}/__init__.{sys.implementation.cache_tag}.pyc"

    first = run_setup(first_ws, [VENV, INSTALL], task_box, cache)
    second = run_setup(second_ws, [VENV, INSTALL], task_box, cache)
    restored_run = BwrapSandbox.for_task(second_ws).run(IMPORT_DEMO)

    assert first.ok and first.precompiled is not None and first.precompiled.ok, first
    assert second.cached and second.precompiled is None
    for workspace in (first_ws, second_ws):
        # checked-hash: trusted by the source's content, whatever its mtime in this workspace
        assert (workspace_bytecode(workspace) / pyc).read_bytes()[4:8] == b"\x03\x00\x00\x00"
    assert restored_run.stdout == "1\n", restored_run
    assert f"code object from '/tmp/.pycache/workspace/{pyc}'" in restored_run.stderr

    source = second_ws / package / "__init__.py"  # the agent patches the installed package
    stamp = source.stat().st_mtime
    source.write_text("VALUE = 2\n")
    os.utime(source, (stamp, stamp))
    assert BwrapSandbox.for_task(second_ws).run(IMPORT_DEMO).stdout == "2\n"


def test_setup_without_a_bytecode_cache_compiles_nothing(tmp_path: Path) -> None:
    result = run_setup(make_repo(tmp_path / "ws"), [VENV, INSTALL], boxed, tmp_path / "cache")

    assert result.ok and result.precompiled is None


def test_setup_bytecode_is_never_copied_through_a_planted_link(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text(CANARY)
    # A .pth file setup installed runs in every later Python of the task, the precompile's
    # included: after the last sweep, it swaps the venv's bytecode dir for a link to the host.
    link = "/tmp/.pycache/workspace/.venv"
    pth = (f"import os, shutil; os.path.islink('{link}') or shutil.rmtree('{link}', True); "
           f"os.path.lexists('{link}') or os.symlink('{outside}', '{link}')")
    plant = (f"{VENV} && SP=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_path(\"purelib\"))')"
             f' && echo "{pth}" > $SP/plant.pth')
    cache = tmp_path / "cache"

    result = run_setup(make_repo(tmp_path / "ws"), [plant],
                       lambda path: BwrapSandbox.for_task(path, setup_policy()), cache)

    assert result.ok and result.paths == (".venv",) and result.precompiled is not None, result
    stored = [p.name for p in cache.rglob("*")]
    assert "plant.pth" in stored  # the setup output itself is cached as it was
    assert "secret.txt" not in stored and CANARY not in "".join(
        p.read_text(errors="replace") for p in cache.rglob("*") if p.is_file() and not p.is_symlink())
