"""A finding: what a reviewer (the review model, a linter, a person's JSON) says about one place.

Pure values. ``parse_findings`` reads the JSON list ``nightcrew review --findings`` takes and the
review model's tool input; a bad entry is an error naming its index and field, never a silently
dropped finding.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

from github_app.repo_config import Severity

Side = Literal["RIGHT", "LEFT"]
SEVERITIES: tuple[Severity, ...] = get_args(Severity)
_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_FIELDS = {"id", "path", "line", "end_line", "side", "severity", "category", "body", "suggestion"}
MAX_BODY = 4_000  # characters of one finding's text; GitHub allows 65,536 per comment


class FindingError(ValueError):
    """A finding that cannot be read; the message names the entry and the field."""


@dataclass(frozen=True)
class Finding:
    """One thing a reviewer found.

    ``line`` (and ``end_line`` for a range, inclusive) are line numbers of the file on ``side``:
    RIGHT is the PR's head (added and unchanged lines), LEFT the base (deleted lines).
    ``suggestion`` is replacement text for exactly lines ``line..end_line`` (RIGHT only).
    """

    id: str
    path: str
    line: int
    body: str
    severity: Severity = "medium"
    end_line: int | None = None
    side: Side = "RIGHT"
    category: str | None = None
    suggestion: str | None = None

    @property
    def first_line(self) -> int:
        return min(self.line, self.end_line or self.line)

    @property
    def last_line(self) -> int:
        return max(self.line, self.end_line or self.line)

    @property
    def where(self) -> str:
        """``path:line`` (or ``path:first-last``), as the summary names a place."""
        if self.last_line != self.first_line:
            return f"{self.path}:{self.first_line}-{self.last_line}"
        return f"{self.path}:{self.line}"

    def at_least(self, threshold: Severity) -> bool:
        """Whether this finding is as severe as ``threshold`` or more."""
        return SEVERITIES.index(self.severity) >= SEVERITIES.index(threshold)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.id, "path": self.path, "line": self.line,
                                "side": self.side, "severity": self.severity, "body": self.body}
        for name in ("end_line", "category", "suggestion"):
            if getattr(self, name) is not None:
                data[name] = getattr(self, name)
        return data


def parse_findings(raw: Any, *, id_prefix: str = "f") -> list[Finding]:
    """A JSON list of findings (``{"findings": [...]}`` too); entries without an ``id`` get
    ``{id_prefix}{n}``. Ids must be unique."""
    if isinstance(raw, Mapping) and "findings" in raw:
        raw = raw["findings"]
    if not isinstance(raw, Sequence) or isinstance(raw, str | bytes):
        raise FindingError("findings must be a JSON list of objects")
    findings = [parse_finding(entry, index, id_prefix=id_prefix) for index, entry in enumerate(raw)]
    seen: set[str] = set()
    for finding in findings:
        if finding.id in seen:
            raise FindingError(f"finding id {finding.id!r} is used twice")
        seen.add(finding.id)
    return findings


def parse_finding(entry: Any, index: int = 0, *, id_prefix: str = "f") -> Finding:
    """One finding from its JSON object (see ``Finding``)."""
    where = f"finding {index}"
    if not isinstance(entry, Mapping):
        raise FindingError(f"{where}: must be an object, not {type(entry).__name__}")
    if unknown := sorted(set(entry) - _FIELDS):
        raise FindingError(f"{where}: unknown field(s) {', '.join(unknown)}")
    ident = entry.get("id", f"{id_prefix}{index + 1}")
    if not isinstance(ident, str | int) or isinstance(ident, bool) or not _ID.fullmatch(str(ident)):
        raise FindingError(f"{where}: id must be 1-64 letters, digits or ._:-")
    path = entry.get("path")
    if not isinstance(path, str) or not path.strip() or path.startswith("/") or "\x00" in path:
        raise FindingError(f"{where}: path must be a repository-relative file path")
    line = _line(entry, "line", where, required=True)
    end_line = _line(entry, "end_line", where, required=False)
    raw_side = entry.get("side", "RIGHT")
    side: Side = "LEFT" if isinstance(raw_side, str) and raw_side.upper() == "LEFT" else "RIGHT"
    if not isinstance(raw_side, str) or raw_side.upper() not in ("RIGHT", "LEFT"):
        raise FindingError(f"{where}: side must be RIGHT or LEFT")
    severity = entry.get("severity", "medium")
    severity = severity.lower() if isinstance(severity, str) else severity
    if severity not in SEVERITIES:
        raise FindingError(f"{where}: severity must be one of {', '.join(SEVERITIES)}")
    body = entry.get("body")
    if not isinstance(body, str) or not body.strip():
        raise FindingError(f"{where}: body must be non-empty text")
    category, suggestion = entry.get("category"), entry.get("suggestion")
    if category is not None and (not isinstance(category, str) or len(category) > 64):
        raise FindingError(f"{where}: category must be text of at most 64 characters")
    if suggestion is not None and not isinstance(suggestion, str):
        raise FindingError(f"{where}: suggestion must be text")
    return Finding(id=str(ident), path=path.strip().removeprefix("./"), line=line,
                   end_line=end_line, side=side, severity=severity, category=category or None,
                   body=body.strip()[:MAX_BODY], suggestion=suggestion)


def _line(entry: Mapping[str, Any], name: str, where: str, *, required: bool) -> Any:
    value = entry.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise FindingError(f"{where}: {name} must be a line number (1 or more)")
    return value


def normalise_snippet(text: str) -> str:
    """Code as a fingerprint sees it: whitespace runs collapsed, blank lines gone."""
    lines = (" ".join(line.split()) for line in text.splitlines())
    return "\n".join(line for line in lines if line)


def fingerprint(path: str, snippet: str, category: str | None) -> str:
    """What makes a finding the same one in a later round, wherever its line moved to."""
    text = "\x1f".join((path, normalise_snippet(snippet), (category or "").lower()))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:20]
