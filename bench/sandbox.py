"""Figure: per-command cost of the bwrap sandbox, as a ratio to a bare subprocess.

Cases: `true` (the sandbox's own cost), `python -c pass`, and a real pytest run of a small
suite (a package and 78 tests) with the test gate's command and this venv's plugins. The
sandbox is a task's, as in the worker: its bytecode cache (runner/sandbox/bytecode.py) sits
beside the work tree and lives for the task. Bare runs use a copy of the suite with Python's
usual __pycache__, so both sides run warm; the first run of a fresh task (cold cache) and a
sandbox without a task cache (every command compiles afresh) are reported for scale.
Each case runs bare and sandboxed in turn, in one process, so machine noise hits both alike.
Goal: pytest sandboxed ≤ 1.2× bare.
Usage: .venv/bin/python bench/sandbox.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from runner.sandbox import SandboxPolicy  # noqa: E402
from runner.sandbox.bwrap import BwrapSandbox  # noqa: E402
from runner.sandbox.bytecode import bytecode_dir  # noqa: E402
from runner.testrun import PYTEST_COMMAND  # noqa: E402

GOAL_PYTEST_RATIO = 1.2
MODULES, TEST_FILES, TESTS_PER_FILE = 4, 6, 10
# Bare runs get the worker's environment minus what would change Python's behaviour.
BARE_ENV = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}


def write_suite(root: Path) -> None:
    """A small project: a package of a few modules and 78 tests that import it."""
    package = root / "calc"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("from calc.core import add\n")
    (package / "core.py").write_text("def add(a, b):\n    return a + b\n")
    for n in range(MODULES):
        (package / f"ops{n}.py").write_text(
            "import dataclasses, json\n\n\n@dataclasses.dataclass\nclass Box:\n    value: int\n\n"
            f"def scale(x):\n    return json.loads(json.dumps(x)) * {n + 1}\n"
        )
    tests = root / "tests"
    tests.mkdir()
    for f in range(TEST_FILES):
        body = "import pytest\n\nfrom calc import add\nfrom calc.ops0 import Box, scale\n\n"
        body += "".join(
            f"def test_add_{f}_{t}():\n    assert add({t}, {f}) == {t + f}\n    assert Box({t}).value == {t}\n\n"
            for t in range(TESTS_PER_FILE)
        )
        body += "@pytest.mark.parametrize('x', [1, 2, 3])\ndef test_scale(x):\n    assert scale(x) == x\n"
        (tests / f"test_part{f}.py").write_text(body)


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def boxed(sandbox: BwrapSandbox, argv: list[str]) -> None:
    result = sandbox.run(argv)
    if not result.ok:
        raise SystemExit(f"sandboxed {argv} failed: {result.stdout[-500:]}{result.stderr[-500:]}")


def bare(argv: list[str], cwd: Path) -> None:
    subprocess.run(argv, cwd=cwd, env=BARE_ENV, check=True, stdout=subprocess.DEVNULL)


def task_sandbox(root: Path, name: str) -> BwrapSandbox:
    """A sandbox over a fresh copy of the suite, with the task's bytecode cache beside it."""
    work_tree = root / name
    write_suite(work_tree)
    return BwrapSandbox(work_tree, SandboxPolicy(), bytecode_dir=bytecode_dir(work_tree))


def compare(name: str, bare_run: Callable[[], None], boxed_run: Callable[[], None], runs: int,
            ) -> tuple[float, float]:
    """Median of each side over `runs` interleaved runs (after one warm-up each), in ms."""
    bare_run(), boxed_run()
    bare_s, boxed_s = [], []
    for _ in range(runs):
        bare_s.append(timed(bare_run))
        boxed_s.append(timed(boxed_run))
    b, s = statistics.median(bare_s) * 1000, statistics.median(boxed_s) * 1000
    print(f"{name:18s} bare {b:8.2f} ms · sandboxed {s:8.2f} ms · "
          f"ratio {s / b:5.2f}× · overhead {s - b:+8.2f} ms (median of {runs})")
    return b, s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    pytest_argv = list(PYTEST_COMMAND)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        bare_tree = root / "bare"
        write_suite(bare_tree)
        sandbox = task_sandbox(root, "task")
        compare("true", partial(bare, ["/bin/true"], bare_tree), partial(boxed, sandbox, ["/bin/true"]),
                args.runs)
        compare("python -c pass", partial(bare, [sys.executable, "-c", "pass"], bare_tree),
                partial(boxed, sandbox, ["python", "-c", "pass"]), args.runs)
        pytest_bare = partial(bare, [sys.executable, *pytest_argv[1:]], bare_tree)
        bare_ms, boxed_ms = compare(f"pytest ({TEST_FILES * (TESTS_PER_FILE + 3)} tests)", pytest_bare,
                                    partial(boxed, sandbox, pytest_argv), max(5, args.runs // 3))
        # For scale: the first run of a fresh task, and a sandbox without a task cache (as
        # before it, every run compiled every module it imported).
        cold_ms = timed(partial(boxed, task_sandbox(root, "fresh-task"), pytest_argv)) * 1000
        uncached = BwrapSandbox(root / "task", SandboxPolicy())
        uncached_ms = statistics.median(timed(partial(boxed, uncached, pytest_argv)) for _ in range(3)) * 1000
        print(f"pytest, first run of a fresh task (cold cache): {cold_ms:8.0f} ms ({cold_ms / bare_ms:.2f}× bare)")
        print(f"pytest, sandbox without a task cache:           {uncached_ms:8.0f} ms "
              f"({uncached_ms / bare_ms:.2f}× bare, median of 3)")
        ratio = boxed_ms / bare_ms
        verdict = "met" if ratio <= GOAL_PYTEST_RATIO else "NOT met"
        print(f"goal pytest sandboxed ≤ {GOAL_PYTEST_RATIO}× bare: {verdict} ({ratio:.2f}×)")


if __name__ == "__main__":
    main()
