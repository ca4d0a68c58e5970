"""Figure: per-command cost of the bwrap sandbox, as a ratio to a bare subprocess.

Both run side by side in one process, interleaved, so machine noise hits both alike.
Usage: .venv/bin/python bench/sandbox.py [--runs N]
"""

from __future__ import annotations

import argparse
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


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        sandbox = BwrapSandbox(Path(tmp), SandboxPolicy())
        cases = {
            "true": (["/bin/true"], ["/bin/true"]),
            "python -c pass": ([sys.executable, "-c", "pass"], ["python", "-c", "pass"]),
        }
        for name, (bare_argv, sandboxed_argv) in cases.items():
            bare, boxed = [], []
            for _ in range(args.runs):
                bare.append(timed(partial(subprocess.run, bare_argv, check=True)))
                boxed.append(timed(partial(sandbox.run, sandboxed_argv)))
            b, s = statistics.median(bare) * 1000, statistics.median(boxed) * 1000
            print(f"{name:16s} bare {b:7.2f} ms · sandboxed {s:7.2f} ms · "
                  f"ratio {s / b:5.2f}× · overhead {s - b:+.2f} ms (median of {args.runs})")


if __name__ == "__main__":
    main()
