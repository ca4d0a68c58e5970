"""Search/replace edits: parsed and applied by pure functions.

An edit that does not apply is feedback for the model (which file, what was not found, the
closest match), never an exception that ends the task.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass


@dataclass(frozen=True)
class Edit:
    path: str
    search: str
    replace: str


@dataclass(frozen=True)
class EditResult:
    """The new text when the edit applied, else a message for the model."""

    text: str | None
    message: str

    @property
    def applied(self) -> bool:
        return self.text is not None


def apply_edit(original: str, edit: Edit) -> EditResult:
    """Replace exactly one occurrence of ``edit.search``; an empty search creates or appends."""
    if edit.search == "":
        if original:
            return EditResult(None, f"{edit.path}: empty SEARCH only creates new files; "
                                    "quote the lines to replace")
        return EditResult(edit.replace, f"{edit.path}: created")
    count = original.count(edit.search)
    if count == 1:
        return EditResult(original.replace(edit.search, edit.replace, 1), f"{edit.path}: edited")
    if count > 1:
        return EditResult(None, f"{edit.path}: SEARCH matches {count} places; "
                                "include more surrounding lines so it matches exactly one")
    return EditResult(None, _not_found(original, edit))


def _not_found(original: str, edit: Edit) -> str:
    closest = closest_match(original, edit.search)
    hint = f"\nClosest match in the file:\n```\n{closest}\n```" if closest else ""
    return f"{edit.path}: SEARCH block not found (it must match the file exactly).{hint}"


def closest_match(text: str, search: str) -> str | None:
    """The run of lines in ``text`` most similar to ``search`` (None when nothing is close)."""
    lines = text.splitlines()
    wanted = search.strip("\n").splitlines()
    if not lines or not wanted:
        return None
    size = len(wanted)
    best_ratio, best_start = 0.0, 0
    joined_wanted = "\n".join(wanted)
    for start in range(max(1, len(lines) - size + 1)):
        window = "\n".join(lines[start:start + size])
        ratio = difflib.SequenceMatcher(None, window, joined_wanted).ratio()
        if ratio > best_ratio:
            best_ratio, best_start = ratio, start
    if best_ratio < 0.5:
        return None
    return "\n".join(lines[best_start:best_start + size])
