"""Where findings go on a pull request's diff: inline comments GitHub accepts, the rest listed.

Pure. GitHub refuses a whole review when one of its comments is off the diff (and does not say
which), so every comment made here is valid by construction: its path is in the PR, its line is
inside a hunk on its side (RIGHT: added and context lines of the head, LEFT: deleted and context
lines of the base), a range lies inside one hunk with ``start_line < line``. A finding inside the
diff lands exactly where it was given; one just outside may move to the closest hunk; anything
else is ``Unplaced`` with the reason, never dropped.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal, cast

from unidiff.errors import UnidiffParseError
from unidiff.patch import Hunk as RawHunk
from unidiff.patch import PatchedFile, PatchSet

from runner.review.findings import SEVERITIES, Finding, Side

FileStatus = Literal["added", "removed", "renamed", "modified"]
LineKind = Literal["+", "-", " "]
_QUOTED = re.compile(r'^"(?:[^"\\]|\\.)*"$')
_ESCAPES = {"a": "\a", "b": "\b", "t": "\t", "n": "\n", "v": "\v", "f": "\f", "r": "\r",
            '"': '"', "\\": "\\"}
_SIDE_WORD = {"RIGHT": "head", "LEFT": "base"}


class DiffError(ValueError):
    """Text that is not a unified diff; the message says what was wrong."""


@dataclass(frozen=True)
class DiffLine:
    """One line of a hunk: its kind, its number in the base (``old``) and head (``new``)."""

    kind: LineKind
    old: int | None
    new: int | None
    text: str

    def number(self, side: Side) -> int | None:
        """The line's number on ``side`` (None: the line is not on that side)."""
        return self.new if side == "RIGHT" else self.old


@dataclass(frozen=True)
class Hunk:
    """One ``@@`` block of a file; ``index`` counts from 0 in its file."""

    index: int
    old_start: int
    old_count: int
    new_start: int
    new_count: int
    lines: tuple[DiffLine, ...]

    def span(self, side: Side) -> tuple[int, int] | None:
        """First and last line number the hunk shows on ``side`` (None: it shows none there)."""
        start, count = (self.new_start, self.new_count) if side == "RIGHT" else (self.old_start, self.old_count)
        return (start, start + count - 1) if count else None

    def shows(self, line: int, side: Side) -> bool:
        """Whether a comment may sit on ``line`` of ``side`` in this hunk."""
        span = self.span(side)
        return span is not None and span[0] <= line <= span[1]

    def changed(self, side: Side) -> tuple[int, ...]:
        """The added (RIGHT) or deleted (LEFT) line numbers of this hunk."""
        kind = "+" if side == "RIGHT" else "-"
        return tuple(n for line in self.lines if line.kind == kind and (n := line.number(side)))


@dataclass(frozen=True)
class FileDiff:
    """One file of the diff: ``path`` is its head path (a deleted file's base path)."""

    path: str
    old_path: str | None
    status: FileStatus
    binary: bool
    hunks: tuple[Hunk, ...]

    def hunk_at(self, line: int, side: Side) -> Hunk | None:
        """The hunk showing ``line`` on ``side``, if any."""
        return next((hunk for hunk in self.hunks if hunk.shows(line, side)), None)


class PullDiff:
    """A pull request's unified diff, parsed: its files, their hunks and lines."""

    def __init__(self, files: Iterable[FileDiff]) -> None:
        self.files: dict[str, FileDiff] = {file.path: file for file in files}
        # A reviewer may name a renamed file by its old path; GitHub wants the new one.
        self._renamed = {f.old_path: f.path for f in self.files.values()
                         if f.status == "renamed" and f.old_path and f.old_path not in self.files}

    @classmethod
    def from_text(cls, text: str) -> PullDiff:
        """Parse a diff as GitHub serves it (``application/vnd.github.diff``) or as
        ``git diff -M base...head`` prints it; raises ``DiffError`` for anything else."""
        if not text.strip():
            return cls(())
        try:
            patches = PatchSet(text)
        except UnidiffParseError as exc:
            raise DiffError(f"not a unified diff: {exc}") from None
        except UnicodeError as exc:
            raise DiffError(f"not a unified diff: {exc}") from None
        if not patches:
            first = text.strip().splitlines()[0][:80]
            raise DiffError(f"not a unified diff: no file header ('diff --git' or '---'/'+++') "
                            f"found; it starts with {first!r}")
        return cls(_file(patch) for patch in patches)

    @property
    def paths(self) -> tuple[str, ...]:
        """The files of the PR by their head path (a deleted file by its base path)."""
        return tuple(self.files)

    def file(self, path: str) -> FileDiff | None:
        """The file at ``path`` (its head path, or the base path of a renamed file)."""
        return self.files.get(path) or self.files.get(self._renamed.get(path, ""))

    def hunk_at(self, path: str, line: int, side: Side) -> Hunk | None:
        """The hunk showing ``line`` of ``path`` on ``side``, if any."""
        file = self.file(path)
        return None if file is None else file.hunk_at(line, side)

    def snippet(self, path: str, first: int, last: int, side: Side) -> str:
        """The text of lines ``first..last`` on ``side`` as the diff shows them ('' if it
        shows none of them)."""
        file = self.file(path)
        if file is None:
            return ""
        return "\n".join(line.text for hunk in file.hunks for line in hunk.lines
                         if (n := line.number(side)) is not None and first <= n <= last)


def _file(patch: PatchedFile) -> FileDiff:
    old, new = _paths(patch)
    status: FileStatus
    if patch.is_added_file and old is None:
        status = "added"
    elif patch.is_removed_file and new is None:
        status = "removed"
    elif old != new:
        status = "renamed"
    else:
        status = "modified"
    path = new if new is not None else old
    if path is None:
        raise DiffError(f"a file of the diff has no path: {str(patch.patch_info or '')[:80]!r}")
    hunks = tuple(_hunk(index, hunk) for index, hunk in enumerate(patch))
    return FileDiff(path=path, old_path=old, status=status, binary=patch.is_binary_file, hunks=hunks)


def _paths(patch: PatchedFile) -> tuple[str | None, str | None]:
    """(base path, head path) with ``a/``/``b/`` and git's quoting taken off; None for
    /dev/null. ``rename from``/``rename to`` win: a ``diff --git`` line with spaces in both
    names can be split more than one way."""
    info = [str(line).rstrip("\n") for line in patch.patch_info or ()]
    renamed_from = next((line[len("rename from "):] for line in info if line.startswith("rename from ")), None)
    renamed_to = next((line[len("rename to "):] for line in info if line.startswith("rename to ")), None)
    old = _unquote(renamed_from) if renamed_from else _strip(patch.source_file)
    new = _unquote(renamed_to) if renamed_to else _strip(patch.target_file)
    return old, new


def _strip(name: str | None) -> str | None:
    if name is None or name == "/dev/null":
        return None
    name = _unquote(name.strip())
    return name[2:] if name[:2] in ("a/", "b/") else name


def _unquote(name: str) -> str:
    """A path as git writes it with ``core.quotePath``: C-style quoted, octal bytes in UTF-8."""
    if not _QUOTED.match(name):
        return name
    out, body, i = bytearray(), name[1:-1], 0
    while i < len(body):
        char = body[i]
        if char == "\\" and body[i + 1:i + 4].isdigit() and len(body[i + 1:i + 4]) == 3:
            out.append(int(body[i + 1:i + 4], 8))
            i += 4
        elif char == "\\" and i + 1 < len(body):
            out += _ESCAPES.get(body[i + 1], body[i + 1]).encode()
            i += 2
        else:
            out += char.encode()
            i += 1
    return out.decode("utf-8", errors="replace")


def _hunk(index: int, hunk: RawHunk) -> Hunk:
    lines = tuple(DiffLine(kind=cast(LineKind, line.line_type), old=line.source_line_no, new=line.target_line_no,
                           text=line.value.rstrip("\n"))
                  for line in hunk if line.line_type in ("+", "-", " "))
    return Hunk(index=index, old_start=hunk.source_start, old_count=hunk.source_length,
                new_start=hunk.target_start, new_count=hunk.target_length, lines=lines)


@dataclass(frozen=True)
class InlineComment:
    """One entry of a review's ``comments``; ``line`` is the last line of a range."""

    finding: str
    path: str
    line: int
    side: Side
    body: str
    start_line: int | None = None
    start_side: Side | None = None
    moved_from: int | None = None
    subject_type: str = "line"

    def to_github(self) -> dict[str, Any]:
        """The comment as POST /repos/{owner}/{repo}/pulls/{n}/reviews takes it."""
        data: dict[str, Any] = {"path": self.path, "line": self.line, "side": self.side, "body": self.body}
        if self.start_line is not None and self.start_line != self.line:
            data["start_line"] = self.start_line
            data["start_side"] = self.start_side or self.side
        return data

    def to_json(self) -> dict[str, Any]:
        return {**self.to_github(), "subject_type": self.subject_type, "finding": self.finding}


@dataclass(frozen=True)
class Unplaced:
    """A finding that does not go inline, and why; ``text`` is its body's first line."""

    finding: str
    path: str
    line: int
    reason: str
    text: str = ""

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"

    def to_json(self) -> dict[str, Any]:
        return {"finding": self.finding, "path": self.path, "line": self.line, "reason": self.reason}


@dataclass(frozen=True)
class Placement:
    """Every finding, once: as an inline comment or as unplaced."""

    comments: tuple[InlineComment, ...] = ()
    unplaced: tuple[Unplaced, ...] = ()


BodyRenderer = Callable[[Finding], str]


def comment_body(finding: Finding) -> str:
    """The comment's markdown: a severity/category lead, the text, the suggestion block."""
    lead = f"**{finding.severity}**" + (f" · {finding.category}" if finding.category else "")
    parts = [lead, finding.body]
    if finding.suggestion is not None and finding.side == "RIGHT":
        parts.append(suggestion_block(finding.suggestion))
    return "\n\n".join(parts)


def suggestion_block(text: str) -> str:
    """A ``suggestion`` fence for ``text``, longer than any backtick run inside it."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    text = text.removesuffix("\n")
    return f"{fence}suggestion\n{text}\n{fence}" if text else f"{fence}suggestion\n{fence}"


def place(findings: Sequence[Finding], diff: PullDiff, *, max_inline: int = 10, move_within: int = 3,
          body: BodyRenderer = comment_body) -> Placement:
    """Each finding as a comment GitHub accepts, or unplaced with the reason (see the module
    docstring); past ``max_inline`` the least severe go to unplaced (ties: later ones)."""
    placed: list[tuple[int, InlineComment]] = []
    unplaced: list[tuple[int, Unplaced]] = []
    for order, finding in enumerate(findings):
        spot = _place_one(finding, diff, move_within, body)
        if isinstance(spot, InlineComment):
            placed.append((order, spot))
        else:
            unplaced.append((order, spot))
    kept = _most_severe(findings, placed, max_inline)
    over = f"over this round's limit of {max_inline} inline comments"
    unplaced += [(order, _unplaced(findings[order], over)) for order, _ in placed if order not in kept]
    return Placement(comments=tuple(c for order, c in placed if order in kept),
                     unplaced=tuple(u for _, u in sorted(unplaced, key=lambda item: item[0])))


def _most_severe(findings: Sequence[Finding], placed: Sequence[tuple[int, InlineComment]],
                 limit: int) -> set[int]:
    """The input positions of the comments kept: most severe first, then earlier first."""
    ranked = sorted((order for order, _ in placed),
                    key=lambda order: (-SEVERITIES.index(findings[order].severity), order))
    return set(ranked[:max(limit, 0)])


def _unplaced(finding: Finding, reason: str) -> Unplaced:
    text = finding.body.strip().splitlines()[0] if finding.body.strip() else ""
    return Unplaced(finding=finding.id, path=finding.path, line=finding.first_line, reason=reason, text=text)


def _place_one(finding: Finding, diff: PullDiff, move_within: int,
               body: BodyRenderer) -> InlineComment | Unplaced:
    file = diff.file(finding.path)
    if file is None:
        return _unplaced(finding, f"{finding.path} is not in this pull request")
    if file.binary:
        return _unplaced(finding, f"{file.path} is a binary file: it takes no line comments")
    if not file.hunks:
        return _unplaced(finding, f"the diff shows no lines of {file.path} ({file.status}, no "
                                  "changed lines)")
    first, last, side = finding.first_line, finding.last_line, finding.side
    hunk = file.hunk_at(last, side)
    if hunk is not None and hunk.shows(first, side):
        if finding.suggestion is not None and side == "LEFT":
            note = ("_A suggested change is left out: GitHub cannot apply suggestions on deleted "
                    "(LEFT) lines._")
            return _comment(finding, file.path, first, last,
                            f"{body(replace(finding, suggestion=None))}\n\n{note}")
        return _comment(finding, file.path, first, last, body(finding))
    clipped = _clip(file, first, last, side)
    if clipped is not None:
        return _clipped_comment(finding, file.path, *clipped, body)
    return _moved(finding, file, move_within, body)


def _comment(finding: Finding, path: str, first: int, last: int, text: str,
             moved_from: int | None = None) -> InlineComment:
    ranged = first < last
    return InlineComment(finding=finding.id, path=path, line=last, side=finding.side, body=text,
                         start_line=first if ranged else None,
                         start_side=finding.side if ranged else None, moved_from=moved_from)


def _clip(file: FileDiff, first: int, last: int, side: Side) -> tuple[int, int] | None:
    """The part of ``first..last`` inside one hunk: the hunk holding most of it (the earlier
    on a tie); None when no hunk shows any of it."""
    best: tuple[int, int] | None = None
    for hunk in file.hunks:
        span = hunk.span(side)
        if span is None:
            continue
        low, high = max(first, span[0]), min(last, span[1])
        if low <= high and (best is None or high - low > best[1] - best[0]):
            best = (low, high)
    return best


def _clipped_comment(finding: Finding, path: str, low: int, high: int,
                     body: BodyRenderer) -> InlineComment:
    shown = f"line {low}" if low == high else f"lines {low}–{high}"
    note = (f"_About lines {finding.first_line}–{finding.last_line}; the diff shows {shown} of "
            "them in one hunk, so this comment covers only those._")
    return _comment(finding, path, low, high, _with_notes(finding, note, body))


def _moved(finding: Finding, file: FileDiff, move_within: int,
           body: BodyRenderer) -> InlineComment | Unplaced:
    """A finding just outside the diff: to the nearest changed line of the closest hunk, when
    that hunk is at most ``move_within`` lines away."""
    first, last, side = finding.first_line, finding.last_line, finding.side
    where = f"line {first}" if first == last else f"lines {first}–{last}"
    gaps = [(_gap(first, last, span), hunk) for hunk in file.hunks if (span := hunk.span(side))]
    if not gaps:
        return _unplaced(finding, f"{where} of the {_SIDE_WORD[side]} ({side}) is not in the diff: "
                                  f"{file.path} has no {side} lines in it")
    gap, hunk = min(gaps, key=lambda item: (item[0], item[1].index))
    if gap > move_within:
        return _unplaced(finding, f"{where} is not in the diff ({gap} lines from the nearest hunk; "
                                  f"comments move at most {move_within})")
    target = _nearest(hunk, first, last, side)
    note = f"_About {where}, which the diff does not show; placed on the nearest changed line._"
    return _comment(finding, file.path, target, target, _with_notes(finding, note, body),
                    moved_from=first)


def _gap(first: int, last: int, span: tuple[int, int]) -> int:
    """Lines between the range ``first..last`` and a hunk's span (0: they overlap)."""
    return max(span[0] - last, first - span[1], 0)


def _nearest(hunk: Hunk, first: int, last: int, side: Side) -> int:
    """The hunk's changed line nearest the range; its nearest edge if it changed nothing on
    ``side`` (a pure deletion seen from the head)."""
    span = hunk.span(side)
    assert span is not None
    candidates = hunk.changed(side) or span
    return min(candidates, key=lambda n: (_gap(first, last, (n, n)), n))


def _with_notes(finding: Finding, note: str, body: BodyRenderer) -> str:
    """The body for a comment that is not exactly the finding's place: its suggestion, written
    for the original lines, would replace the wrong ones, so it is left out and said so."""
    if finding.suggestion is None:
        return f"{body(finding)}\n\n{note}"
    text = body(replace(finding, suggestion=None))
    return f"{text}\n\n{note} _Its suggested change is left out: it was written for other lines._"


def review_summary(placement: Placement) -> str:
    """The review's top-level markdown: counts, then each finding not inline with its reason."""
    inline, listed = len(placement.comments), len(placement.unplaced)
    moved = sum(1 for c in placement.comments if c.moved_from is not None)
    lines = [f"**nightcrew review**: {inline + listed} finding(s), {inline} inline"
             + (f" ({moved} moved to the nearest changed line)" if moved else "")
             + (f", {listed} listed here." if listed else ".")]
    if listed:
        lines += ["", "Not inline:"]
        lines += [f"- `{u.where}` — {u.text or u.finding} _({u.reason})_" for u in placement.unplaced]
    return "\n".join(lines)


def placement_json(placement: Placement) -> dict[str, Any]:
    """The placement as ``nightcrew review --json`` prints it."""
    return {"comments": [c.to_json() for c in placement.comments],
            "unplaced": [u.to_json() for u in placement.unplaced],
            "summary": review_summary(placement)}

