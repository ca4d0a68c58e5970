"""What went wrong before on a repository, so a later task does not repeat it.

One append-only JSONL file per repository, ``<data_dir>/memory/<owner>/<repo>.jsonl``. Each line
is one ``FailureRecord``, written with a single ``write`` on an ``O_APPEND`` descriptor, so
workers appending at once never interleave or overwrite each other. The file is kept to the last
``keep`` records; trimming happens under a lock file, and appends take the same lock so no line
lands in a file that is being replaced. A line that does not parse is skipped, not fatal:
memory is a hint to the agent, never a reason for a task to fail.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

KEEP_RECORDS = 200
TRIM_SLACK = 50  # trim only when this many lines past ``keep``: one rewrite per 50 appends
MAX_FIELD_CHARS = 2_000  # keeps every line small enough for one write
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")
_FIELDS = ("task", "at", "tried", "failed", "why")


@dataclass(frozen=True)
class FailureRecord:
    """One task that did not work out: what was tried, what failed, and why."""

    task: str  # "issue #12"
    at: str  # ISO 8601, UTC
    tried: str
    failed: str
    why: str


class FailureLog:
    """The failure memory of one repository."""

    def __init__(self, data_dir: Path | str, owner: str, repo: str, *, keep: int = KEEP_RECORDS) -> None:
        self.path = Path(data_dir) / "memory" / _safe_name(owner) / f"{_safe_name(repo)}.jsonl"
        self.keep = keep

    def record(self, rec: FailureRecord) -> None:
        """Append ``rec``; trim the file to the last ``keep`` records when it has grown past them."""
        fields = {name: value[:MAX_FIELD_CHARS] for name, value in asdict(rec).items()}
        line = (json.dumps(fields, ensure_ascii=False) + "\n").encode()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._locked():
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, line)
            finally:
                os.close(fd)
            self._trim()

    def recent(self, n: int = 5) -> list[FailureRecord]:
        """The last ``n`` records, newest first; lines that do not parse are skipped."""
        found: list[FailureRecord] = []
        for line in reversed(self._lines()):
            rec = _parse(line)
            if rec is not None:
                found.append(rec)
                if len(found) >= n:
                    break
        return found

    def render(self, max_chars: int = 1500, n: int = 5) -> list[str]:
        """Recent failures as prompt lines, newest first, together at most ``max_chars`` long.

        "issue #12 (2026-11-20): tried X; failed: Y; why: Z"
        """
        lines: list[str] = []
        left = max_chars
        for rec in self.recent(n):
            line = _one_line(rec)
            if len(line) > left:
                if left >= 40:  # a stub shorter than this says nothing
                    lines.append(line[: left - 1] + "…")
                break
            lines.append(line)
            left -= len(line)
        return lines

    def _lines(self) -> list[str]:
        try:
            return self.path.read_text(encoding="utf-8", errors="replace").splitlines()
        except FileNotFoundError:
            return []

    def _trim(self) -> None:
        """Rewrite the file with its last ``keep`` lines (caller holds the lock)."""
        lines = self._lines()
        if len(lines) <= self.keep + TRIM_SLACK:
            return
        tmp = self.path.with_suffix(".jsonl.tmp")
        tmp.write_text("".join(line + "\n" for line in lines[-self.keep:]), encoding="utf-8")
        os.replace(tmp, self.path)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """Exclusive lock across processes: appends and trims of this repository's file."""
        fd = os.open(self.path.with_suffix(".lock"), os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock


def _safe_name(name: str) -> str:
    """An owner or repository name as a file name; refuses anything that could leave the directory.

    GitHub names are case-insensitive, so ``Octo/Repo`` and ``octo/repo`` share one file.
    """
    if not _NAME.match(name) or set(name) == {"."}:
        raise ValueError(f"not a repository or owner name: {name!r}")
    return name.lower()


def _parse(line: str) -> FailureRecord | None:
    """The record on one line, or None for a corrupt or foreign line."""
    try:
        data = json.loads(line)
    except json.JSONDecodeError:
        return None
    if not isinstance(data, dict) or not all(isinstance(data.get(f), str) for f in _FIELDS):
        return None
    return FailureRecord(**{f: data[f] for f in _FIELDS})


def _one_line(rec: FailureRecord) -> str:
    """The record as one prompt line, each part collapsed to one line and shortened."""
    day = rec.at[:10]
    return (f"{_flat(rec.task, 40)} ({_flat(day, 10)}): tried {_flat(rec.tried, 300)}; "
            f"failed: {_flat(rec.failed, 120)}; why: {_flat(rec.why, 300)}")


def _flat(text: str, limit: int) -> str:
    """Whitespace and control characters collapsed to single spaces, at most ``limit`` long."""
    clean = " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())
    return clean if len(clean) <= limit else clean[: limit - 1] + "…"
