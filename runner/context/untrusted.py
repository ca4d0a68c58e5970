"""Untrusted text is data: strip what a reader on GitHub cannot see, and quote the rest.

An issue body can hide instructions from the people who review it — in HTML comments,
zero-width or bidi-control characters, Unicode tag characters, ``<details>`` with an empty
summary, elements marked ``hidden``, or markdown link-reference "comments" like
``[//]: # (...)``. A person approving a task sees only the rendered page, so the model must
see only that too. Removals are counted per kind so the status comment can say so.

Fenced and inline code stay as written: GitHub shows an ``<!-- -->`` inside code verbatim.
"""

from __future__ import annotations

import html
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

_ZERO_WIDTH = "\u00ad\u200b\u200c\u200d\u2060\u2061\u2062\u2063\u2064\ufeff"
_BIDI = "\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
_CHAR_KINDS = (
    ("zero_width", re.compile(f"[{_ZERO_WIDTH}]")),
    ("bidi_control", re.compile(f"[{_BIDI}]")),
    ("tag_char", re.compile("[\U000e0000-\U000e007f]")),
)

# One left-to-right scan: whichever construct starts first wins, so a comment that begins
# before a code fence hides it, and a fence that begins first protects the comment inside.
_STRUCTURES = re.compile(
    r"(?P<fence>^[ ]{0,3}(?P<marker>`{3,}|~{3,})[^\n]*\n.*?(?:^[ ]{0,3}(?P=marker)[^\n]*$|\Z))"
    r"|(?P<code>`[^`\n]+`)"
    r"|(?P<html_comment><!--.*?(?:-->|\Z))"
    r"|(?P<hidden_details><details\b[^>]*>\s*<summary\b[^>]*>(?:\s|&nbsp;|<[^>]*>)*</summary\s*>"
    r".*?(?:</details\s*>|\Z))"
    r"|(?P<hidden_element><(?P<tag>[A-Za-z][\w-]*)\b[^>]*?\shidden\b[^>]*>.*?(?:</(?P=tag)\s*>|\Z))"
    r"|(?P<link_reference>^[ ]{0,3}\[[^\]\n]+\]:[ \t]*\S[^\n]*(?:\n|\Z))",
    re.DOTALL | re.MULTILINE | re.IGNORECASE,
)
_HIDDEN_KINDS = ("html_comment", "hidden_details", "hidden_element", "link_reference")

# The tags the rendered context uses; quoted text must not open or close them.
QUOTE_TAGS = ("untrusted", "file", "rules", "memory", "test-output", "repo-tree", "context")
_OUR_TAGS = re.compile(r"<(\s*/?\s*(?:" + "|".join(QUOTE_TAGS) + r")\b)", re.IGNORECASE)


@dataclass(frozen=True)
class Sanitized:
    """Text as a person sees it on GitHub, and what was taken out (kind -> count)."""

    text: str
    removed: Mapping[str, int] = field(default_factory=dict)


def strip_hidden(text: str) -> Sanitized:
    """Remove invisible characters, then hidden markup; count each removal by kind."""
    removed: Counter[str] = Counter()
    for kind, pattern in _CHAR_KINDS:
        text, count = pattern.subn("", text)
        removed[kind] += count

    def drop(match: re.Match[str]) -> str:
        kind = next((k for k in _HIDDEN_KINDS if match.group(k) is not None), None)
        if kind is None:  # code: visible as written
            return match.group(0)
        removed[kind] += 1
        return ""

    text = _STRUCTURES.sub(drop, text)
    return Sanitized(text, {kind: n for kind, n in removed.items() if n})


def sanitize(text: str) -> str:
    """The visible text of ``text``, trimmed (``strip_hidden`` without the counts)."""
    return strip_hidden(text).text.strip()


def merge_removed(counts: Iterable[Mapping[str, int]]) -> dict[str, int]:
    """Sum removal counts from several texts (title, body, comments)."""
    total: Counter[str] = Counter()
    for count in counts:
        total.update(count)
    return dict(sorted(total.items()))


def escape_markup(text: str) -> str:
    """Neutralise our own quoting tags inside quoted text, so it cannot end its quote."""
    return _OUR_TAGS.sub(r"&lt;\1", text)


def attribute(value: str) -> str:
    """A value safe inside a double-quoted attribute of a quoting tag."""
    return html.escape(sanitize(value).replace("\n", " "), quote=True)


def quote_untrusted(text: str, *, source: str, author: str) -> str:
    """Quote text written by a person on GitHub as data with its origin and author."""
    who = author if author.startswith("@") or author == "unknown" else f"@{author}"
    return (
        f'<untrusted source="{attribute(source)}" author="{attribute(who)}">\n'
        f"{escape_markup(text)}\n</untrusted>"
    )


def quote_file(path: str, text: str, **attrs: str) -> str:
    """Quote repository content (a file, part of one, or its outline) as a ``<file>`` block."""
    extra = "".join(f' {name}="{attribute(value)}"' for name, value in attrs.items())
    body = escape_markup(text.rstrip("\n"))
    return f'<file path="{attribute(path)}"{extra}>\n{body}\n</file>'
