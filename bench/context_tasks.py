"""Task set of bench/context.py: real bug fixes in PyPI sdists, and the sdists they are built on.

`bench/data/context_tasks.json` lists each base sdist (project, version, file name, sha256, and
the patch release that fixed the bugs) and the tasks (issue title and body, the source files the
fix touched and the lines of them it changed, the changelog entry it came from). This module downloads each sdist once with
`pip download` into `$NIGHTCREW_BENCH_CACHE` (default `~/.cache/nightcrew-bench/sdists`), checks
its sha256, unpacks it next to it and yields `(repo_dir, task)` pairs.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data" / "context_tasks.json"


class TaskSetError(RuntimeError):
    """An sdist could not be had (offline, wrong hash, bad archive)."""


@dataclass(frozen=True)
class Sdist:
    project: str
    version: str
    filename: str
    sha256: str
    fixed_in: str


@dataclass(frozen=True)
class Task:
    id: str
    project: str
    version: str
    title: str
    body: str
    fixed_files: tuple[str, ...]
    source: str
    # per fixed file, the line ranges (1-based, inclusive, in the base version) the fix changed;
    # a pure insertion is the two lines around it
    fix_lines: dict[str, tuple[tuple[int, int], ...]]


def cache_dir() -> Path:
    env = os.environ.get("NIGHTCREW_BENCH_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "nightcrew-bench" / "sdists"


def load(path: Path = DATA) -> tuple[dict[tuple[str, str], Sdist], list[Task]]:
    raw = json.loads(path.read_text(encoding="utf-8"))
    sdists = {(s["project"], s["version"]): Sdist(**s) for s in raw["sdists"]}
    tasks = [
        Task(
            id=t["id"],
            project=t["project"],
            version=t["version"],
            title=t["title"],
            body=t["body"],
            fixed_files=tuple(t["fixed_files"]),
            source=t["source"],
            fix_lines={f: tuple((a, b) for a, b in r) for f, r in t.get("fix_lines", {}).items()},
        )
        for t in raw["tasks"]
    ]
    for t in tasks:
        if (t.project, t.version) not in sdists:
            raise TaskSetError(f"task {t.id}: no sdist entry for {t.project}=={t.version}")
    return sdists, tasks


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _download(sdist: Sdist, dest: Path) -> Path:
    archive = dest / sdist.filename
    if archive.is_file() and _sha256(archive) == sdist.sha256:
        return archive
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
        "--no-binary", ":all:", f"{sdist.project}=={sdist.version}", "-d", str(dest),
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise TaskSetError(f"pip download {sdist.project}=={sdist.version} failed: {e}") from e
    if proc.returncode != 0 or not archive.is_file():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise TaskSetError(
            f"could not download {sdist.project}=={sdist.version} from PyPI (offline?): "
            f"{' | '.join(tail) or 'no output'}. Put {sdist.filename} "
            f"(sha256 {sdist.sha256}) in {dest} to run without the network."
        )
    got = _sha256(archive)
    if got != sdist.sha256:
        archive.unlink()
        raise TaskSetError(f"{sdist.filename}: sha256 {got}, expected {sdist.sha256}")
    return archive


def _unpack(archive: Path, into: Path) -> Path:
    """Unpack once; return the sdist root (its single top-level directory)."""
    done = into / ".complete"
    if not done.is_file():
        shutil.rmtree(into, ignore_errors=True)
        tmp = into.with_name(into.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        if archive.name.endswith(".zip"):
            with zipfile.ZipFile(archive) as z:
                z.extractall(tmp)
        else:
            with tarfile.open(archive) as tar:
                if hasattr(tarfile, "data_filter"):
                    tar.extractall(tmp, filter="data")
                else:  # pragma: no cover - Python < 3.12 without the backport
                    tar.extractall(tmp)  # noqa: S202
        tmp.rename(into)
        done.write_text(archive.name, encoding="utf-8")
    tops = [p for p in into.iterdir() if p.is_dir()]
    if len(tops) != 1:
        raise TaskSetError(f"{archive.name}: expected one top-level directory, found {len(tops)}")
    return tops[0]


def repo_dir(sdist: Sdist, cache: Path | None = None) -> Path:
    """The unpacked sdist root, downloading and checking the archive on first use."""
    base = cache or cache_dir()
    archive = _download(sdist, base)
    return _unpack(archive, base / "unpacked" / f"{sdist.project}-{sdist.version}")


def iter_tasks(only: str | None = None, path: Path = DATA) -> Iterator[tuple[Path, Task]]:
    """Yield (repo_dir, task) for every task (of project `only`, if given)."""
    sdists, tasks = load(path)
    roots: dict[tuple[str, str], Path] = {}
    for t in tasks:
        if only and t.project != only:
            continue
        key = (t.project, t.version)
        if key not in roots:
            roots[key] = repo_dir(sdists[key])
            missing = [f for t2 in tasks if (t2.project, t2.version) == key
                       for f in t2.fixed_files if not (roots[key] / f).is_file()]
            if missing:
                raise TaskSetError(f"{t.project}=={t.version}: fixed files not in sdist: {missing}")
        yield roots[key], t
