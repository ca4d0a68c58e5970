"""Figure: a warm task workspace (mirror exists) against a fresh clone, measured in one run.

A repository of 5,000 files and 500 commits is generated once; then warm checkouts (mirror
fetch + local clone + checkout, `Workspaces.checkout`) and fresh clones (`Workspace.checkout`
without a mirror, as every task did before) are interleaved, so machine noise hits both alike.
Fresh clones go both to the data dir (where they used to go) and to the warm path's task root
(same filesystem, which isolates what the mirror alone buys).
Goal: warm < 1 s and ≥ 5× faster than a fresh clone.
Usage: .venv/bin/python bench/workspace.py [--runs N] [--http] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from rich.console import Console
from rich.progress import Progress

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from runner.workspace import Workspace, Workspaces  # noqa: E402

FILES, COMMITS, ADDED_PER_COMMIT, TOUCHED_PER_COMMIT = 5000, 500, 9, 5
GOAL_WARM_S, GOAL_RATIO = 1.0, 5.0
BRANCH = "nightcrew/issue-1"
_WORDS = ("def class return self import from value result items index count data name path "
          "config error status task queue branch commit token sandbox worker").split()
_GIT_ENV = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull}
console = Console(soft_wrap=True)


def _source(rng: random.Random, lines: int) -> str:
    """Python-looking text: compresses and deltas like real code, not like random bytes."""
    return "".join(
        "    " * rng.randint(0, 2) + " ".join(rng.choices(_WORDS, k=rng.randint(3, 9)))
        + f"  # {rng.randint(0, 99_999)}\n" for _ in range(lines)
    )


def _blob(text: str) -> bytes:
    data = text.encode()
    return f"data {len(data)}\n".encode() + data + b"\n"


def fast_import_stream(seed: int = 1) -> bytes:
    """500 commits on main: the first adds 509 files, each later one adds 9 and edits 5."""
    rng = random.Random(seed)
    first = FILES - (COMMITS - 1) * ADDED_PER_COMMIT
    paths: list[str] = []
    contents: dict[str, str] = {}
    out = bytearray()
    for number in range(COMMITS):
        changed = []
        for _ in range(first if number == 0 else ADDED_PER_COMMIT):
            path = f"pkg{len(paths) % 50:02d}/mod{len(paths):05d}.py"
            paths.append(path)
            contents[path] = _source(rng, rng.randint(20, 120))
            changed.append(path)
        if number:
            for path in rng.sample(paths[:-ADDED_PER_COMMIT], TOUCHED_PER_COMMIT):
                contents[path] += _source(rng, 3)
                changed.append(path)
        message = f"commit {number}".encode()
        out += (f"commit refs/heads/main\ncommitter Bench <bench@example.com> "
                f"{1_700_000_000 + number * 60} +0000\ndata {len(message)}\n").encode() + message + b"\n"
        for path in changed:
            out += f"M 100644 inline {path}\n".encode() + _blob(contents[path])
        out += b"\n"
    return bytes(out)


def make_origin(parent: Path) -> Path:
    """A bare, packed repository of FILES files and COMMITS commits."""
    origin = parent / "octo" / "bench.git"
    origin.parent.mkdir(parents=True)
    subprocess.run(["git", "init", "--quiet", "--bare", "--initial-branch=main", str(origin)],
                   env=_GIT_ENV, check=True)
    subprocess.run(["git", "-C", str(origin), "fast-import", "--quiet"], input=fast_import_stream(),
                   env=_GIT_ENV, check=True)
    subprocess.run(["git", "-C", str(origin), "gc", "--quiet"], env=_GIT_ENV, check=True)
    return origin


class _HttpBackend(BaseHTTPRequestHandler):
    """git smart HTTP through `git http-backend`, as a forge serves it (minus the network)."""

    project_root = Path()

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _serve(self) -> None:
        path, _, query = self.path.partition("?")
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        env = {**_GIT_ENV, "GIT_PROJECT_ROOT": str(self.project_root), "GIT_HTTP_EXPORT_ALL": "1",
               "REQUEST_METHOD": self.command, "PATH_INFO": path, "QUERY_STRING": query,
               "CONTENT_TYPE": self.headers.get("Content-Type", ""), "CONTENT_LENGTH": str(len(body)),
               "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", "")}
        out = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True,
                             check=True).stdout
        head, _, payload = out.partition(b"\r\n\r\n")
        headers = [line.split(": ", 1) for line in head.decode().split("\r\n") if line]
        status = next((int(v.split()[0]) for k, v in headers if k.lower() == "status"), 200)
        self.send_response(status)
        for key, value in headers:
            if key.lower() != "status":
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


@contextmanager
def served(origin: Path, http: bool) -> Iterator[str]:
    """The clone URL: `file://` (git's pack protocol, no hardlink shortcut) or smart HTTP."""
    if not http:
        yield origin.as_uri()
        return
    handler = type("Handler", (_HttpBackend,), {"project_root": origin.parents[1]})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/{origin.parent.name}/{origin.name}"
    finally:
        server.shutdown()
        server.server_close()


def timed(make: Callable[[], Workspace]) -> float:
    """Seconds to a ready workspace (the tree checked out); cleanup is not counted."""
    start = time.perf_counter()
    workspace = make()
    elapsed = time.perf_counter() - start
    assert len(workspace.changed_files()) == 0, "workspace not clean"
    workspace.cleanup()
    return elapsed


def describe(name: str, samples: list[float]) -> str:
    return (f"{name:34s} median {statistics.median(samples) * 1000:7.0f} ms  "
            f"min {min(samples) * 1000:6.0f} ms  (n={len(samples)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--http", action="store_true", help="serve the origin over git http-backend")
    parser.add_argument("--data-dir", type=Path, help="data dir (default: a temp dir on the root fs)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="nightcrew-bench-") as tmp:
        started = time.perf_counter()
        with console.status(f"generating {FILES:,} files × {COMMITS} commits…"):
            origin = make_origin(Path(tmp) / "origin")
        console.print(f"repository generated in {time.perf_counter() - started:.1f} s")
        data_dir = args.data_dir or Path(tmp) / "data"
        spaces = Workspaces(data_dir)
        try:
            with served(origin, args.http) as url:
                samples = measure(spaces, url, args.runs)
        finally:
            if spaces.fast_root is not None and spaces.fast_root != spaces.disk_root:
                shutil.rmtree(spaces.fast_root, ignore_errors=True)
    report(samples, spaces, "http-backend" if args.http else "file://")


def measure(spaces: Workspaces, url: str, runs: int) -> dict[str, list[float]]:
    """Interleave the three ways of getting a workspace, `runs` times each."""
    fast_root = spaces.root_for(spaces.mirrors / "none")
    ways: dict[str, Callable[[], Workspace]] = {
        "warm (mirror + local clone)": lambda: spaces.checkout(
            clone_url=url, token=None, name="warm", branch=BRANCH),
        "fresh clone → data dir (before)": lambda: Workspace.checkout(
            clone_url=url, token=None, root=spaces.disk_root, name="fresh", branch=BRANCH),
        f"fresh clone → {'tmpfs' if fast_root != spaces.disk_root else 'data dir'} (same fs)":
            lambda: Workspace.checkout(clone_url=url, token=None, root=fast_root, name="fresh",
                                       branch=BRANCH),
    }
    timed(next(iter(ways.values())))  # creates the mirror: the warm path starts from here
    samples: dict[str, list[float]] = {name: [] for name in ways}
    with Progress(console=console, transient=True) as progress:
        bar = progress.add_task("measuring", total=runs * len(ways))
        for _ in range(runs):
            for name, make in ways.items():
                samples[name].append(timed(make))
                progress.advance(bar)
    return samples


def report(samples: dict[str, list[float]], spaces: Workspaces, transport: str) -> None:
    names = list(samples)
    warm, before, same_fs = (statistics.median(samples[name]) for name in names)
    console.print(f"transport {transport}; task root {spaces.fast_root or spaces.disk_root}; "
                  f"data dir {spaces.data_dir}")
    for name in names:
        console.print(describe(name, samples[name]))
    ratio, ratio_same_fs = before / warm, same_fs / warm
    console.print(f"ratio fresh(before)/warm {ratio:5.1f}×   fresh(same fs)/warm {ratio_same_fs:5.1f}×")
    console.print(f"goal warm < {GOAL_WARM_S:.0f} s: {'met' if warm < GOAL_WARM_S else 'NOT met'} "
                  f"({warm * 1000:.0f} ms); goal ≥ {GOAL_RATIO:.0f}× a fresh clone: "
                  f"{'met' if ratio >= GOAL_RATIO else 'NOT met'} against the data-dir clone "
                  f"({ratio:.1f}×), {'met' if ratio_same_fs >= GOAL_RATIO else 'NOT met'} on the "
                  f"same filesystem ({ratio_same_fs:.1f}×)")


if __name__ == "__main__":
    main()
