"""A task's bytecode cache in the real bwrap sandbox: reused across commands, private to the task,
never stale after an edit, and gone with the workspace."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runner.agent.tools import Toolbox
from runner.model import ToolCall
from runner.sandbox.bwrap import BwrapSandbox
from runner.sandbox.bytecode import bytecode_dir, workspace_bytecode
from runner.testrun import PYTEST_COMMAND, TestCommand
from runner.workspace import Workspaces

pytestmark = pytest.mark.e2e

TAG = sys.implementation.cache_tag
CALC_V1 = "def add(a, b):\n    return a - b\n"
CALC_V2 = "def add(a, b):\n    return a + b\n"  # the fix: same size, so only the mtime tells them apart
RUN_CALC = ["python", "-c", "import calc; print(calc.add(2, 3))"]


def task_sandbox(work_tree: Path) -> BwrapSandbox:
    work_tree.mkdir(parents=True, exist_ok=True)
    return BwrapSandbox.for_task(work_tree)


def write_settled(path: Path, text: str, age_s: float = 30.0) -> float:
    """Write a source as a checkout did a while ago (its mtime in the past); that mtime."""
    path.write_text(text)
    stamp = time.time() - age_s
    os.utime(path, (stamp, stamp))
    return stamp


def loaded_from_cache(verbose_stderr: str, module: str) -> bool:
    """Whether `python -v` says it ran `module`'s code from the bytecode cache."""
    return f"code object from '/tmp/.pycache/workspace/{module}.{TAG}.pyc'" in verbose_stderr


def test_bytecode_written_by_one_command_is_used_by_the_next(tmp_path: Path) -> None:
    work_tree = tmp_path / "task"
    box = task_sandbox(work_tree)
    write_settled(work_tree / "calc.py", CALC_V1)
    pyc = workspace_bytecode(work_tree) / f"calc.{TAG}.pyc"

    run_verbose = ["python", "-v", "-c", "import json, calc; print(calc.add(2, 3))"]
    first = box.run(run_verbose)
    written = pyc.stat()
    second = box.run(run_verbose)

    assert first.stdout == second.stdout == "-1\n", (first, second)
    assert not loaded_from_cache(first.stderr, "calc") and loaded_from_cache(second.stderr, "calc")
    assert (pyc.stat().st_ino, pyc.stat().st_mtime_ns) == (written.st_ino, written.st_mtime_ns)
    # the toolchain's bytecode is kept for the task too: the stdlib is not compiled per command
    stdlib = f"python{sys.version_info.major}.{sys.version_info.minor}"
    json_pyc = f"/tmp/.pycache{sys.base_prefix}/lib/{stdlib}/json/__init__.{TAG}.pyc"
    assert f"code object from '{json_pyc}'" not in first.stderr
    assert f"code object from '{json_pyc}'" in second.stderr
    assert sorted(os.listdir(work_tree)) == ["calc.py"]  # nothing in the work tree: nothing in the diff


# Run in the sandbox with a module name: writes bytecode for that stdlib module, in the cache the
# import will read, whose header matches the real source (so CPython would trust it) but whose
# code prints PLANTED.
PLANT = """
import importlib.util, marshal, os, sys
source = importlib.util.find_spec(sys.argv[1]).origin
pyc = importlib.util.cache_from_source(source)
st = os.stat(source)
header = importlib.util.MAGIC_NUMBER + bytes(4) + (int(st.st_mtime) & 0xFFFFFFFF).to_bytes(4, "little")
header += (st.st_size & 0xFFFFFFFF).to_bytes(4, "little")
os.makedirs(os.path.dirname(pyc), exist_ok=True)
with open(pyc, "wb") as handle:
    handle.write(header + marshal.dumps(compile("print('PLANTED')", source, "exec")))
"""


def test_two_tasks_never_share_bytecode(tmp_path: Path) -> None:
    a_tree, b_tree = tmp_path / "task-a", tmp_path / "task-b"
    a, b = task_sandbox(a_tree), task_sandbox(b_tree)
    # The same path, size and mtime in both: a shared timestamp cache would hand A's code to B.
    stamp = write_settled(a_tree / "calc.py", CALC_V1)
    (b_tree / "calc.py").write_text(CALC_V2)
    os.utime(b_tree / "calc.py", (stamp, stamp))
    plant = a.run(["python", "-c", PLANT, "colorsys"])  # A's code forges stdlib bytecode

    a_run = a.run(["python", "-c", "import colorsys, calc; print(calc.add(2, 3))"])
    b_run = b.run(["python", "-c", "import colorsys, calc; print(calc.add(2, 3))"])
    b_sees = b.run(["sh", "-c", "ls -A /tmp/.pycache/workspace"])

    assert plant.ok, plant
    assert a_run.stdout == "PLANTED\n-1\n", a_run  # the forgery works — in A's own cache
    assert b_run.stdout == "5\n", b_run
    assert bytecode_dir(a_tree) != bytecode_dir(b_tree)
    assert b_sees.stdout.split() == [f"calc.{TAG}.pyc"], b_sees  # B sees its own cache only


def test_an_edit_through_the_edit_tool_in_the_same_second_runs_the_new_code(tmp_path: Path) -> None:
    work_tree = tmp_path / "task"
    box = task_sandbox(work_tree)
    stamp = write_settled(work_tree / "calc.py", CALC_V1)
    tools = Toolbox(work_tree, box, None)
    assert box.run(RUN_CALC).stdout == "-1\n"  # compiled and cached

    edited = tools.execute(ToolCall("1", "edit_file", {"path": "calc.py", "search": "a - b",
                                                       "replace": "a + b"}))
    os.utime(work_tree / "calc.py", (stamp, stamp))  # as if the edit landed within that second

    assert not edited.is_error, edited
    assert box.run(RUN_CALC).stdout == "5\n"  # not the cached -1


def test_an_edit_is_seen_in_a_cache_directory_the_sweep_has_not_listed_again(tmp_path: Path) -> None:
    # A cache directory unchanged for a while is not listed again before each command (a big
    # .venv has thousands of pycs); the sources of its timestamp pycs are still checked.
    work_tree = tmp_path / "task"
    box = task_sandbox(work_tree)
    stamp = write_settled(work_tree / "calc.py", CALC_V1)
    assert box.run(RUN_CALC).stdout == "-1\n"
    cache = workspace_bytecode(work_tree)
    os.utime(cache, (stamp, stamp))  # the directory's last change is long past
    assert box.run(["true"]).ok  # this sweep lists it and remembers the listing
    assert box.run(["true"]).ok  # and this one goes by what it remembered

    (work_tree / "calc.py").write_text(CALC_V2)
    os.utime(work_tree / "calc.py", (stamp, stamp))

    assert box.bytecode is not None and str(cache) in box.bytecode._listings  # the path under test
    assert box.run(RUN_CALC).stdout == "5\n"


def test_a_command_that_edits_and_sets_the_mtime_back_never_runs_stale_code(tmp_path: Path) -> None:
    work_tree = tmp_path / "task"
    box = task_sandbox(work_tree)
    stamp = int(write_settled(work_tree / "calc.py", CALC_V1))
    assert box.run(RUN_CALC).stdout == "-1\n"

    # a same-size rewrite whose mtime is put back (cp -p, tar, touch -d do this)
    edit = box.run(["sh", "-c", f"sed -i 's/a - b/a + b/' calc.py && touch -d @{stamp} calc.py"])

    assert edit.ok and int((work_tree / "calc.py").stat().st_mtime) == stamp, edit
    assert box.run(RUN_CALC).stdout == "5\n"


def test_bytecode_written_in_its_sources_second_is_not_kept(tmp_path: Path) -> None:
    # A source whose recorded mtime is not over when its pyc is written: a later command may
    # still write it within that second. Its mtime is set ahead here to make that certain.
    work_tree = tmp_path / "task"
    box = task_sandbox(work_tree)
    ahead = int(time.time()) + 3600
    (work_tree / "calc.py").write_text(CALC_V1)
    os.utime(work_tree / "calc.py", (ahead, ahead))
    assert box.run(RUN_CALC).stdout == "-1\n"

    # one command: a same-size edit "in the same second", then the import — no sweep between
    edit_and_run = box.run(["sh", "-c", f"sed -i 's/a - b/a + b/' calc.py && touch -d @{ahead} calc.py "
                                        "&& python -c 'import calc; print(calc.add(2, 3))'"])

    assert edit_and_run.stdout == "5\n", edit_and_run


def test_a_same_size_fix_between_two_test_runs_turns_them_green(tmp_path: Path) -> None:
    work_tree = tmp_path / "task"
    box = task_sandbox(work_tree)
    stamp = write_settled(work_tree / "calc.py", CALC_V1)
    write_settled(work_tree / "test_calc.py", "from calc import add\n\ndef test_add():\n    assert add(2, 3) == 5\n")
    tools = Toolbox(work_tree, box, TestCommand(list(PYTEST_COMMAND), "pytest"))

    red = tools.execute(ToolCall("1", "run_tests", {}))
    tools.execute(ToolCall("2", "edit_file", {"path": "calc.py", "search": "a - b", "replace": "a + b"}))
    os.utime(work_tree / "calc.py", (stamp, stamp))
    green = tools.execute(ToolCall("3", "run_tests", {}))

    assert red.is_error and "1 failed" in red.content, red
    assert not green.is_error and "1 passed" in green.content, green


def test_unchecked_and_malformed_bytecode_is_removed_before_a_command(tmp_path: Path) -> None:
    work_tree = tmp_path / "task"
    box = task_sandbox(work_tree)
    write_settled(work_tree / "calc.py", CALC_V1)
    # an unchecked-hash pyc is never compared with its source again, whatever happens to it
    unchecked = box.run(["python", "-m", "compileall", "-q", "--invalidation-mode", "unchecked-hash",
                         "calc.py"])
    cache = workspace_bytecode(work_tree)
    pyc = cache / f"calc.{TAG}.pyc"
    flags_written = pyc.read_bytes()[4:8]
    (cache / "junk.txt").write_text("x")
    (cache / f"short.{TAG}.pyc").write_bytes(b"\x00")

    result = box.run(RUN_CALC)

    assert unchecked.ok and result.stdout == "-1\n", (unchecked, result)
    assert flags_written == b"\x01\x00\x00\x00"
    assert pyc.read_bytes()[4:8] == bytes(4)  # recompiled by the import, as a timestamp pyc
    assert sorted(os.listdir(cache)) == [f"calc.{TAG}.pyc"]


def test_the_sweep_never_follows_a_link_the_sandbox_planted(tmp_path: Path) -> None:
    work_tree, host = tmp_path / "task", tmp_path / "host"
    box = task_sandbox(work_tree)
    host.mkdir()
    (host / "keep.txt").write_text("worker data\n")
    (host / f"keep.{TAG}.pyc").write_bytes(b"not bytecode")
    (work_tree / "pkg").mkdir()
    (work_tree / "pkg" / "calc.py").write_text(CALC_V1)
    # links in the cache (the sweep deletes what it does not trust) and in the work tree (the
    # sweep looks at sources), both naming a host directory the sandbox itself cannot see
    plant = box.run(["sh", "-c", f"ln -s {host} /tmp/.pycache/workspace/evil && mkdir -p "
                                 f"/tmp/.pycache/workspace/pkg && ln -s {host} /tmp/.pycache/workspace/pkg/sub"])

    after = box.run(["true"])

    assert plant.ok and after.ok, (plant, after)
    assert sorted(os.listdir(host)) == [f"keep.{TAG}.pyc", "keep.txt"]
    assert not os.path.lexists(workspace_bytecode(work_tree) / "evil")
    assert not os.path.lexists(workspace_bytecode(work_tree) / "pkg" / "sub")


def test_the_bytecode_cache_goes_with_the_workspace(tmp_path: Path) -> None:
    origin = _origin(tmp_path)
    spaces = Workspaces(tmp_path / "data", tasks_root=tmp_path / "fast")
    workspace = spaces.checkout(clone_url=str(origin), token=None, name="issue-1", branch="nightcrew/issue-1")
    result = BwrapSandbox.for_task(workspace.path).run(RUN_CALC)
    cache = bytecode_dir(workspace.path)

    assert result.stdout == "-1\n" and (workspace_bytecode(workspace.path) / f"calc.{TAG}.pyc").is_file()
    assert workspace.changed_files() == []  # the cache is outside the work tree
    workspace.cleanup()
    assert not cache.exists() and not workspace.path.exists()

    # a worker killed mid-task leaves its cache; the sweep at the next worker start removes it
    child = subprocess.run([sys.executable, "-c", _DYING_WORKER, str(spaces.data_dir),
                            str(spaces.fast_root), str(origin)], capture_output=True, text=True, timeout=120)
    left = Path(child.stdout.strip())
    assert child.returncode == -signal.SIGKILL and bytecode_dir(left).is_dir(), child.stderr
    removed = {p.name for p in spaces.sweep(max_age=3600)}
    assert {"dead", "dead.git", "dead.owner", "dead.pycache"} <= removed
    assert not bytecode_dir(left).exists()


_DYING_WORKER = """
import os, signal, sys
from pathlib import Path
from runner.sandbox.bwrap import BwrapSandbox
from runner.workspace import Workspaces
data, fast, url = sys.argv[1:]
ws = Workspaces(Path(data), tasks_root=Path(fast)).checkout(
    clone_url=url, token=None, name="dead", branch="nightcrew/issue-2")
assert BwrapSandbox.for_task(ws.path).run(["python", "-c", "import calc"]).ok
print(ws.path, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def _origin(tmp_path: Path) -> Path:
    """A bare repository whose main holds calc.py."""
    env = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_CONFIG_GLOBAL": os.devnull, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@x"}
    bare, seed = tmp_path / "origin.git", tmp_path / "seed"
    for argv in (["init", "-q", "--bare", "--initial-branch=main", str(bare)],
                 ["init", "-q", "--initial-branch=main", str(seed)]):
        subprocess.run(["git", *argv], env=env, check=True)
    (seed / "calc.py").write_text(CALC_V1)
    for argv in (["add", "."], ["commit", "-q", "-m", "init"], ["push", "-q", str(bare), "main"]):
        subprocess.run(["git", *argv], cwd=seed, env=env, check=True)
    return bare


def test_the_cache_layout_matches_what_cpython_looks_for() -> None:
    # The sweep maps a pyc back to its source by name; CPython's own names must fit that map.
    from runner.sandbox.bytecode import source_name

    for optimization in ("", 1, 2):
        pyc = importlib.util.cache_from_source("/workspace/pkg/mod.py", optimization=optimization)
        assert source_name(Path(pyc).name) == "mod.py"
    assert source_name(f"test_x.{TAG}-pytest-8.0.0.pyc") == "test_x.py"
