"""The context layers, each turned into packer candidates with terse-to-full options.

Values are on one scale so the packer can trade layers against each other: the repository's
own rules and the failing tests are worth most per token, then the code the issue points at
(scaled by its relevance), then the file tree, which only orients.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from runner.context.outline import Symbol, enclosing
from runner.context.package import Snippet
from runner.context.packer import Candidate, Option
from runner.context.ranking import FileEvidence
from runner.context.tokens import count_tokens, cut_to_tokens
from runner.context.untrusted import escape_markup, quote_file, sanitize

CONVENTION_FILES = ("AGENTS.md", "CLAUDE.md", "CONTRIBUTING.md", "CONTRIBUTING.rst", "CONTRIBUTING",
                    ".github/CONTRIBUTING.md", "docs/CONTRIBUTING.md")
VALUE = {"rules": 3.0, "tests": 3.0, "memory": 2.0, "conventions": 1.2, "code": 4.0, "tree": 0.6}
TREE_SKIP = {".git", "node_modules", ".venv", "venv", "__pycache__", "build", "dist", ".tox", ".eggs"}
TREE_COLLAPSE_AT = 12  # a directory with more entries shows only its first few
_TEST_LINE = re.compile(r"FAILED|ERROR|Error|error:|assert|^E\s|^>|Traceback|File \"|\.\w+:\d+|^_{3,}|^={3,}|"
                        r"passed|failed")


def snippet(layer: str, path: str | None, text: str, score: float) -> Snippet:
    """A snippet whose token count is that of its rendered text."""
    return Snippet(layer, path, text, score, count_tokens(text))


def rules_candidate(rules: Sequence[str]) -> Candidate | None:
    """The repository's rules from ``.github/nightcrew.yml``: short, binding, always wanted."""
    lines = [f"- {sanitize(rule)}" for rule in rules if sanitize(rule)]
    if not lines:
        return None
    text = "<rules>\n" + escape_markup("\n".join(lines)) + "\n</rules>"
    return Candidate("rules", None, (Option((snippet("conventions", None, text, 1.0),), VALUE["rules"]),))


def convention_candidates(repo: Path) -> list[Candidate]:
    """AGENTS.md, CLAUDE.md, CONTRIBUTING: the head of each at three lengths."""
    found = []
    for name in CONVENTION_FILES:
        path = repo / name
        if path.is_file():
            text = path.read_text(errors="replace")
            options = tuple(
                Option((snippet("conventions", name, quote_file(name, cut_to_tokens(text, size)), 0.9),), value)
                for size, value in ((150, 0.6), (450, 0.85), (1000, 1.0))
            )
            found.append(Candidate(f"conventions:{name}", name, _distinct(options, VALUE["conventions"])))
    return found


def memory_candidate(memory: Sequence[str]) -> Candidate | None:
    """What went wrong on earlier tasks here, newest first as the caller ordered it."""
    lines = [escape_markup(sanitize(line)) for line in memory if line.strip()]
    if not lines:
        return None
    options = tuple(
        Option((snippet("memory", None, "<memory>\n" + "\n".join(lines[:n]) + "\n</memory>", 0.95),), n / len(lines))
        for n in sorted({min(3, len(lines)), min(10, len(lines)), len(lines)})
    )
    return Candidate("memory", None, _distinct(options, VALUE["memory"]))


def tests_candidate(test_output: str | None) -> Candidate | None:
    """The failing test names and assertion/traceback lines, head and tail."""
    if not test_output or not test_output.strip():
        return None
    lines = [line.rstrip() for line in test_output.splitlines() if line.strip()]
    keep = [line for line in lines if _TEST_LINE.search(line)] or lines
    options = []
    for head, tail, value in ((8, 4, 0.6), (30, 10, 0.85), (80, 30, 1.0)):
        chosen = keep if len(keep) <= head + tail else [*keep[:head], "[…]", *keep[-tail:]]
        text = "<test-output>\n" + escape_markup("\n".join(line[:300] for line in chosen)) + "\n</test-output>"
        options.append(Option((snippet("tests", None, text, 1.0),), value))
    return Candidate("tests", None, _distinct(tuple(options), VALUE["tests"]))


def tree_candidate(files: Sequence[str]) -> Candidate | None:
    """The pruned file tree at three depths; orientation, worth little per token."""
    if not files:
        return None
    options = []
    for depth, value in ((1, 0.4), (2, 0.7), (4, 1.0)):
        text = "<repo-tree>\n" + escape_markup(render_tree(files, depth)) + "\n</repo-tree>"
        options.append(Option((snippet("tree", None, text, 0.1),), value))
    return Candidate("tree", None, _distinct(tuple(options), VALUE["tree"]))


def render_tree(files: Sequence[str], max_depth: int) -> str:
    """An indented tree of ``files``; deep levels and crowded directories are collapsed."""
    tree: dict[str, object] = {}
    for path in files:
        parts = path.split("/")
        if any(part in TREE_SKIP or part.endswith(".egg-info") for part in parts):
            continue
        node = tree
        for part in parts[:-1]:
            child = node.setdefault(part + "/", {})
            assert isinstance(child, dict)
            node = child
        node[parts[-1]] = None
    return "\n".join(_tree_lines(tree, 0, max_depth))


def _tree_lines(node: dict[str, object], depth: int, max_depth: int) -> list[str]:
    lines: list[str] = []
    names = sorted(node, key=lambda n: (not n.endswith("/"), n))
    for name in names[:TREE_COLLAPSE_AT]:
        child = node[name]
        if isinstance(child, dict):
            count = _count_files(child)
            if depth + 1 >= max_depth:
                lines.append(f"{'  ' * depth}{name} ({count} files)")
            else:
                lines += [f"{'  ' * depth}{name}", *_tree_lines(child, depth + 1, max_depth)]
        else:
            lines.append(f"{'  ' * depth}{name}")
    if len(names) > TREE_COLLAPSE_AT:
        lines.append(f"{'  ' * depth}… {len(names) - TREE_COLLAPSE_AT} more")
    return lines


def _count_files(node: dict[str, object]) -> int:
    return sum(_count_files(c) if isinstance(c, dict) else 1 for c in node.values())


def file_candidate(evidence: FileEvidence, relevance: float, source: str, symbols: list[Symbol]) -> Candidate:
    """One file at four granularities: match lines, + their symbols, windows, + full outline."""
    lines = source.splitlines()
    top = [n for n, _w in sorted(evidence.lines.items(), key=lambda kv: (-kv[1], kv[0])) if 0 < n <= len(lines)]
    path, value = evidence.path, VALUE["code"] * relevance
    matching = _symbols_for(symbols, top[:6], evidence)
    options: list[Option] = []
    if top:
        options.append(_code_option(path, lines, top[:3], 0, [], relevance, 0.55 * value))
        options.append(_code_option(path, lines, top[:4], 1, matching, relevance, 0.75 * value))
        options.append(_code_option(path, lines, top[:8], 3, matching, relevance, 0.9 * value))
    if symbols:
        options.append(_code_option(path, lines, top[:8], 3 if top else 0, symbols, relevance, value))
    if not options:
        head = "\n".join(f"{n:>5} | {line}" for n, line in enumerate(lines[:12], 1))
        options.append(Option((snippet("matches", path, quote_file(path, head), relevance),), 0.5 * value))
    return Candidate(f"file:{path}", path, tuple(options))


def _symbols_for(symbols: list[Symbol], lines: list[int], evidence: FileEvidence) -> list[Symbol]:
    wanted = {s for line in lines for s in enclosing(symbols, line)}
    wanted |= {s for s in symbols if s.name in evidence.defines or s.name in evidence.hits}
    return [s for s in symbols if s in wanted]


def _code_option(path: str, lines: list[str], hits: list[int], radius: int, symbols: list[Symbol],
                 relevance: float, value: float) -> Option:
    parts: list[Snippet] = []
    if hits:
        shown = sorted({n for hit in hits for n in range(max(1, hit - radius), min(len(lines), hit + radius) + 1)})
        numbered = _with_gaps(shown, lines)
        parts.append(snippet("matches", path, quote_file(path, numbered), relevance))
    if symbols:
        outline = "\n".join(s.render() for s in symbols)
        parts.append(snippet("repo_map", path, quote_file(path, outline, kind="outline"), relevance * 0.99))
    return Option(tuple(parts), value)


def _with_gaps(shown: list[int], lines: list[str]) -> str:
    out: list[str] = []
    for index, number in enumerate(shown):
        if index and number != shown[index - 1] + 1:
            out.append("  ⋮")
        out.append(f"{number:>5} | {lines[number - 1][:200]}")
    return "\n".join(out)


def _distinct(options: tuple[Option, ...], scale: float) -> tuple[Option, ...]:
    """Scale values; where a fuller option costs no more than a terser one, keep only the fuller."""
    kept: list[Option] = []
    for option in options:
        if kept and option.tokens <= kept[-1].tokens:
            kept.pop()  # the fuller option costs no more: keep it instead
        kept.append(Option(option.snippets, option.value * scale))
    return tuple(kept)
