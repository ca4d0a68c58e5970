"""Rank repository files by how strongly the issue points at them.

A file's score sums, over the issue's terms it contains, the term's weight (how specific
that kind of clue is, see ``terms.WEIGHTS``) times its rarity in this repository (an inverse
document frequency), with diminishing returns for repeats. On top: a file that *defines* a
named symbol, a file a stack frame or path names, a file whose name spells a term. Test files
are damped: issues are fixed in the code under test far more often than in the tests.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from runner.context.rg import RgMatch
from runner.context.terms import Frame, IssueTerms, Term, split_identifier

DEFINES_BONUS = 2.5
NAME_PART_BONUS = 1.5
NAMED_BONUS = 1.0
TEST_DAMPING = 0.35
DOCS_DAMPING = 0.3
_TEST_PATH = re.compile(r"(^|/)(tests?|testing|__tests__|spec)/|(^|/)test_[^/]*$|_test\.\w+$|\.(spec|test)\.\w+$")
_DOCS_PATH = re.compile(r"(^|/)(docs?|examples?|changelog\.d)/|\.(rst|md|txt|html|css|cfg|ini|toml|ya?ml|json)$"
                        r"|(^|/)(PKG-INFO|CHANGES|CHANGELOG|HISTORY|README|LICENSE|NEWS|AUTHORS)[^/]*$", re.IGNORECASE)
_DEFINITION = re.compile(r"^\s*(?:export\s+|pub\s+|async\s+)*(?:def|class|function|func|fn|struct|interface)\s+(\w+)"
                         r"|^(\w+)\s*(?::[^=]*)?=")


@dataclass
class FileEvidence:
    """Why a file ranks where it does: hits per term, matching lines, named lines."""

    path: str
    score: float = 0.0
    hits: dict[str, int] = field(default_factory=dict)
    lines: dict[int, float] = field(default_factory=dict)  # line -> how much it matched
    defines: set[str] = field(default_factory=set)
    name_parts: dict[str, int] = field(default_factory=dict)  # word -> definitions naming it


def is_test_path(path: str) -> bool:
    """True for test code (``tests/``, ``test_x.py``, ``x_test.go``, ``x.spec.ts``)."""
    return bool(_TEST_PATH.search(path))


def is_docs_path(path: str) -> bool:
    """True for prose, examples and metadata: they mention everything and are rarely the fix."""
    return bool(_DOCS_PATH.search(path))


def rank_files(files: Sequence[str], terms: IssueTerms, matches: Iterable[RgMatch],
               frames: Sequence[Frame] = (), definitions: Iterable[RgMatch] = ()) -> list[FileEvidence]:
    """Files with any evidence, best first.

    ``matches`` are lines holding a term; ``definitions`` are ``def``/``class``/``function``
    lines whose name holds a term (exactly, or as a part: "cookie" in ``parse_cookie``).
    """
    by_text = {t.text: t for t in terms.terms}
    by_folded = {t.text.lower(): t for t in terms.terms if t.kind == "word"}
    evidence: dict[str, FileEvidence] = {}
    for match in matches:
        _add_match(evidence, match, by_text, by_folded)
    for match in definitions:
        _add_definition(evidence, match, terms)
    idf = _idf(evidence.values(), len(files))
    for item in evidence.values():
        item.score = _match_score(item, by_text | by_folded, idf)
    _add_named(evidence, files, terms, frames)
    _add_stem_matches(evidence, files, terms)
    for item in evidence.values():
        item.score *= TEST_DAMPING if is_test_path(item.path) else DOCS_DAMPING if is_docs_path(item.path) else 1.0
    return sorted(evidence.values(), key=lambda e: (-e.score, e.path))


def resolve_path(mentioned: str, files: Sequence[str]) -> str | None:
    """The repository file a mentioned path (maybe absolute, maybe from site-packages) means."""
    parts = [p for p in mentioned.split("/") if p]
    for start in range(len(parts)):
        suffix = "/".join(parts[start:])
        hits = [f for f in files if f == suffix or f.endswith("/" + suffix)]
        if hits:
            return min(hits, key=len)
    return None


def _add_match(evidence: dict[str, FileEvidence], match: RgMatch, by_text: Mapping[str, Term],
               by_folded: Mapping[str, Term]) -> None:
    item = evidence.setdefault(match.path, FileEvidence(match.path))
    defined = _defined_name(match.text)
    weight = 0.0
    for hit in set(match.hits):
        term = by_text.get(hit) or by_folded.get(hit.lower())
        if term is None:
            continue
        item.hits[term.text] = item.hits.get(term.text, 0) + match.hits.count(hit)
        weight += term.weight
        if defined == term.text and term.kind != "word":
            item.defines.add(term.text)
    item.lines[match.line] = item.lines.get(match.line, 0.0) + weight + (3.0 if defined in item.defines else 0.0)


def _add_definition(evidence: dict[str, FileEvidence], match: RgMatch, terms: IssueTerms) -> None:
    name = _defined_name(match.text)
    if name is None:
        return
    item = evidence.setdefault(match.path, FileEvidence(match.path))
    parts = set(split_identifier(name))
    for term in terms.terms:
        if term.text == name and term.kind != "word":
            item.defines.add(name)
            item.lines[match.line] = item.lines.get(match.line, 0.0) + 3.0 + term.weight
        elif term.kind in ("word", "identifier") and term.text.lower() in parts:
            item.name_parts[term.text] = item.name_parts.get(term.text, 0) + 1
            item.lines[match.line] = item.lines.get(match.line, 0.0) + term.weight


def _defined_name(line: str) -> str | None:
    match = _DEFINITION.match(line)
    return (match.group(1) or match.group(2)) if match else None


def _idf(evidence: Iterable[FileEvidence], total: int) -> dict[str, float]:
    df: dict[str, int] = defaultdict(int)
    for item in evidence:
        for term in item.hits:
            df[term] += 1
    return {term: math.log(1 + max(total, 1) / count) for term, count in df.items()}


def _match_score(item: FileEvidence, terms: Mapping[str, Term], idf: Mapping[str, float]) -> float:
    score = 0.0
    for text, count in item.hits.items():
        term = terms.get(text) or terms.get(text.lower())
        if term is not None:
            score += term.weight * idf[text] * (1 + math.log(count))
            if text in item.defines:
                score += DEFINES_BONUS * term.weight * idf[text]
    for text, count in item.name_parts.items():
        term = terms.get(text) or terms.get(text.lower())
        if term is not None and text in idf:
            score += NAME_PART_BONUS * term.weight * idf[text] * (1 + math.log(count))
    return score


def _add_named(evidence: dict[str, FileEvidence], files: Sequence[str], terms: IssueTerms,
               frames: Sequence[Frame]) -> None:
    """Files that a stack frame or a written path names outright."""
    top = max((e.score for e in evidence.values()), default=1.0) or 1.0
    for frame in (*terms.frames, *frames):
        _bump(evidence, resolve_path(frame.path, files), 0.6 * top, frame.line)
    for mentioned in terms.paths:
        _bump(evidence, resolve_path(mentioned, files), 0.5 * top, None)


def _add_stem_matches(evidence: dict[str, FileEvidence], files: Sequence[str], terms: IssueTerms) -> None:
    """Files whose name spells a term: ``TokenParser`` or "parser" -> ``token_parser.py``."""
    wanted = {_key(t.text): t for t in terms.of_kind("identifier", "code", "word")}
    for path in files:
        stem = path.rsplit("/", 1)[-1].split(".", 1)[0]
        if stem in {"__init__", "index", "main", "utils", "util"}:
            continue
        term = wanted.get(_key(stem))
        if term is not None:
            item = evidence.setdefault(path, FileEvidence(path))
            item.score += NAMED_BONUS * term.weight * 2


def _bump(evidence: dict[str, FileEvidence], path: str | None, amount: float, line: int | None) -> None:
    if path is None:
        return
    item = evidence.setdefault(path, FileEvidence(path))
    item.score += amount
    if line is not None:
        item.lines[line] = item.lines.get(line, 0.0) + 10.0


def _key(name: str) -> str:
    return "_".join(split_identifier(name))
