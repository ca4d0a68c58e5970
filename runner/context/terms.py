"""What in an issue points at code: stack frames, paths, error messages, identifiers, words.

Pure functions over text. Each ``Term`` carries a weight saying how specific that kind of
clue usually is: a stack frame or a quoted error message names one place, a plain English
word names many. Retrieval multiplies these by how rare the term is in the repository.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

# The prefix worth scanning: clues sit near the top; a 1 MB body must not cost seconds.
MAX_SCAN_CHARS = 200_000
MAX_TERMS = 48
MAX_WORDS = 16

WEIGHTS = {"frame": 8.0, "path": 6.0, "error": 5.0, "code": 2.5, "identifier": 1.5, "word": 0.4}

_EXT = r"(?:py|pyi|pyx|js|jsx|mjs|cjs|ts|tsx|go|rs|java|kt|rb|c|h|cc|cpp|hpp|cs|php|swift|scala|sh)"
_PY_FRAME = re.compile(r'File "(?P<path>[^"\n]+)", line (?P<line>\d+)(?:, in (?P<func>[\w<>.]+))?')
_COLON_FRAME = re.compile(r"(?P<path>[\w.@~/\\-]*[\w-]\." + _EXT + r"):(?P<line>\d+)(?::\d+)?(?::? in (?P<func>\w+))?")
_PATH = re.compile(r"(?<![\w./-])(?P<path>(?:[\w.-]+/)*[\w-][\w.-]*\." + _EXT + r")\b")
_FENCE = re.compile(r"^[ ]{0,3}(`{3,}|~{3,})[^\n]*\n(.*?)(?:^[ ]{0,3}\1|\Z)", re.DOTALL | re.MULTILINE)
_BACKTICK = re.compile(r"`([^`\n]{1,200})`")
_ERROR_LINE = re.compile(r"^\s*(?:[\w.]+\.)?(?P<exc>[A-Z]\w*(?:Error|Exception|Warning|Exit))\s*:\s*(?P<msg>.{6,300})$",
                         re.MULTILINE)
_QUOTED = re.compile(r"(?<!\w)[\"'](?P<msg>[^\"'\n]{12,160})[\"'](?!\w)")
_CAMEL = re.compile(r"\b(?:[A-Z][a-z0-9]+){2,}[A-Za-z0-9]*\b|\b[A-Z]{2,}[a-z]\w*\b|\b[a-z]+(?:[A-Z][a-z0-9]*)+\b")
_SNAKE = re.compile(r"\b_*[A-Za-z][A-Za-z0-9]*(?:_[A-Za-z0-9]+)+_*\b")
_DOTTED = re.compile(r"\b[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+\b")
_CALL = re.compile(r"\b([A-Za-z_]\w{2,})\(")
_WORD = re.compile(r"\b[a-z][a-z]{3,}\b")
_LITERAL_CHUNK = re.compile(r"[^'\"{}%<>\d\[\]]{10,}")

_STOP_DOTTED = {"e.g", "i.e", "etc.etc"}
_STOP_WORDS = frozenset("""
about above after again against also although always another anything around because been before
being below between both cannot could does doing done down during each either else even every
expected from further have having here however instead into itself just like make many might
more most much must need never none nothing only other otherwise over same seems should since
some something still such than that their them then there these they thing this those though
through under until using very want when where whether which while will with within without
work works would your yours issue error problem happens happened trying tried returns return
when what wrong because example following output actual behavior behaviour version python
bug fix please thanks thank get gets got true false none self cls import raise print test
line file call called code value values case run running instead
""".split())


@dataclass(frozen=True)
class Frame:
    """One stack frame (or ``file.py:123`` reference) the issue quotes."""

    path: str
    line: int
    func: str | None = None


@dataclass(frozen=True)
class Term:
    """A string to look for in the repository, and how much a hit on it is worth."""

    text: str
    kind: str  # "frame" | "path" | "error" | "code" | "identifier" | "word"
    weight: float


@dataclass(frozen=True)
class IssueTerms:
    """Everything the issue says that can be looked up in the code."""

    frames: tuple[Frame, ...]
    paths: tuple[str, ...]
    terms: tuple[Term, ...]

    def of_kind(self, *kinds: str) -> list[Term]:
        """The terms of the given kinds, in rank order."""
        return [term for term in self.terms if term.kind in kinds]


def extract_terms(text: str) -> IssueTerms:
    """Frames, paths and ranked search terms from an issue (or test output)."""
    text = text[:MAX_SCAN_CHARS]
    frames = tuple(dict.fromkeys(find_frames(text)))
    paths = tuple(dict.fromkeys(_normal_path(m.group("path")) for m in _PATH.finditer(text)))
    found: dict[str, Term] = {}
    for term in _all_terms(text, frames):
        kept = found.get(term.text)
        if kept is None or kept.weight < term.weight:
            found[term.text] = term
    ranked = sorted(found.values(), key=lambda t: (-t.weight, -len(t.text)))
    return IssueTerms(frames, paths, tuple(ranked[:MAX_TERMS]))


def find_frames(text: str) -> Iterator[Frame]:
    """``File "x.py", line 3, in f`` frames and ``x.py:3`` references, in order of appearance."""
    spans: list[tuple[int, int]] = []
    for match in _PY_FRAME.finditer(text):
        spans.append(match.span())
        yield Frame(_normal_path(match["path"]), int(match["line"]), match["func"])
    for match in _COLON_FRAME.finditer(text):
        if not any(start <= match.start() < end for start, end in spans):
            yield Frame(_normal_path(match["path"]), int(match["line"]), match["func"])


def error_fragments(message: str) -> list[str]:
    """The literal parts of an error message, the bits a ``raise`` in the source spells out.

    Messages are usually formatted (``f"bad value {x!r}"``), so the quoted values and numbers
    in the issue are not in the source; the stretches between them are.
    """
    chunks = [chunk.strip(" :,.") for chunk in _LITERAL_CHUNK.findall(message)]
    return sorted({c for c in chunks if len(c) >= 10 and " " in c}, key=len, reverse=True)[:2]


def split_identifier(name: str) -> list[str]:
    """``TokenParser`` / ``token_parser`` / ``token-parser`` -> ``["token", "parser"]``."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1 \2", name))
    return [part.lower() for part in re.split(r"[\s_.\-/]+", spaced) if part]


def _all_terms(text: str, frames: tuple[Frame, ...]) -> Iterator[Term]:
    yield from _frame_terms(frames)
    yield from _error_terms(text)
    code = "\n".join(m.group(2) for m in _FENCE.finditer(text))
    for span in _BACKTICK.findall(text):
        yield from _code_terms(span)
    yield from _identifier_terms(text + "\n" + code)
    yield from _word_terms(_FENCE.sub(" ", text))


def _frame_terms(frames: tuple[Frame, ...]) -> Iterator[Term]:
    for frame in frames:
        if frame.func and frame.func not in {"<module>", "<lambda>"} and len(frame.func) > 2:
            yield Term(frame.func, "identifier", WEIGHTS["identifier"] + 1.0)


def _error_terms(text: str) -> Iterator[Term]:
    messages = [m["msg"] for m in _ERROR_LINE.finditer(text)] + [m["msg"] for m in _QUOTED.finditer(text)]
    for message in messages:
        for fragment in error_fragments(message):
            yield Term(fragment, "error", WEIGHTS["error"])
    for match in _ERROR_LINE.finditer(text):
        if match["exc"] not in _BUILTIN_EXCEPTIONS:
            yield Term(match["exc"], "code", WEIGHTS["code"])


def _code_terms(span: str) -> Iterator[Term]:
    span = span.strip().removesuffix("()")
    if re.fullmatch(r"[A-Za-z_][\w.]*", span) and len(span) > 2:
        yield Term(span, "code", WEIGHTS["code"])
        for part in span.split(".")[1:]:
            if len(part) > 2:
                yield Term(part, "code", WEIGHTS["code"] - 0.5)
    for name in re.findall(r"[A-Za-z_]\w{2,}", span):
        if name != span and (not name.islower() or "_" in name):
            yield Term(name, "identifier", WEIGHTS["identifier"])


def _identifier_terms(text: str) -> Iterator[Term]:
    for pattern in (_CAMEL, _SNAKE):
        for name in pattern.findall(text):
            if name not in _BUILTIN_EXCEPTIONS and len(name) > 3:
                yield Term(name, "identifier", WEIGHTS["identifier"])
    for dotted in _DOTTED.findall(text):
        if dotted.lower() in _STOP_DOTTED or _PATH.fullmatch(dotted):
            continue
        last = dotted.rsplit(".", 1)[-1]
        if len(last) > 2:
            yield Term(last, "identifier", WEIGHTS["identifier"])
    for name in _CALL.findall(text):
        if name.lower() not in _STOP_WORDS:
            yield Term(name, "identifier", WEIGHTS["identifier"])


def _word_terms(text: str) -> Iterator[Term]:
    counts = Counter(w for w in _WORD.findall(text.lower()) if w not in _STOP_WORDS)
    for word, _count in counts.most_common(MAX_WORDS):
        yield Term(word, "word", WEIGHTS["word"])


def _normal_path(path: str) -> str:
    """Forward slashes, no leading ``./`` or ``/`` (frames are matched by path suffix later)."""
    path = path.replace("\\", "/")
    while path.startswith(("./", "/")):
        path = path[1:] if path.startswith("/") else path[2:]
    return path


_BUILTIN_EXCEPTIONS = frozenset("""
ValueError TypeError KeyError IndexError AttributeError RuntimeError AssertionError ImportError
ModuleNotFoundError NotImplementedError OSError IOError FileNotFoundError ZeroDivisionError
StopIteration RecursionError UnicodeDecodeError UnicodeEncodeError NameError SyntaxError
PermissionError TimeoutError ConnectionError OverflowError LookupError ArithmeticError
DeprecationWarning UserWarning FutureWarning RuntimeWarning SystemExit Exception BaseException
""".split())
