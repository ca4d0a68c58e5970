"""The repo map: a file's classes, functions and methods with their line numbers.

Python, JavaScript and TypeScript are parsed with tree-sitter, so the outline is exact even
for decorated, nested or multi-line definitions. Other files get a regex outline of the usual
``def``/``class``/``function``/``func``/``fn`` lines, which is rough but better than nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache

import tree_sitter
import tree_sitter_javascript
import tree_sitter_python
import tree_sitter_typescript

MAX_HEADER_CHARS = 110

_DEFINITIONS = {
    "class_definition", "function_definition",  # Python
    "class_declaration", "function_declaration", "generator_function_declaration", "method_definition",
    "abstract_class_declaration", "interface_declaration", "type_alias_declaration", "enum_declaration",
}
_GRAMMARS: dict[str, Callable[[], object]] = {
    ".py": tree_sitter_python.language, ".pyi": tree_sitter_python.language,
    ".js": tree_sitter_javascript.language, ".jsx": tree_sitter_javascript.language,
    ".mjs": tree_sitter_javascript.language, ".cjs": tree_sitter_javascript.language,
    ".ts": tree_sitter_typescript.language_typescript, ".tsx": tree_sitter_typescript.language_tsx,
}
_REGEX_DEF = re.compile(
    r"^(?P<indent>[ \t]*)(?:pub(?:\([^)]*\))?\s+|export\s+|public\s+|private\s+|static\s+|async\s+)*"
    r"(?:def|class|function|func|fn|struct|interface|trait|enum|impl|module)\s+(?P<name>[A-Za-z_]\w*)",
    re.MULTILINE,
)


@dataclass(frozen=True)
class Symbol:
    """One definition: its name, 1-based first and last line, nesting depth and header."""

    name: str
    line: int
    end_line: int
    depth: int
    header: str

    def render(self) -> str:
        """``  12 |   def name(self, x):`` — the line number, then the indented header."""
        return f"{self.line:>5} | {'  ' * self.depth}{self.header}"


def outline(path: str, source: str) -> list[Symbol]:
    """The definitions in ``source``, in file order; tree-sitter where a grammar exists."""
    suffix = path[path.rfind("."):] if "." in path else ""
    if suffix in _GRAMMARS:
        return list(_tree_symbols(_parser(suffix).parse(source.encode("utf-8", "replace")).root_node, 0))
    return list(_regex_symbols(source))


@cache
def _parser(suffix: str) -> tree_sitter.Parser:
    return tree_sitter.Parser(tree_sitter.Language(_GRAMMARS[suffix]()))


def _tree_symbols(node: tree_sitter.Node, depth: int) -> Iterator[Symbol]:
    for child in node.named_children:
        name_node = child.child_by_field_name("name") if child.type in _DEFINITIONS else None
        if name_node is not None and name_node.text is not None:
            yield Symbol(name_node.text.decode("utf-8", "replace"), child.start_point[0] + 1,
                         child.end_point[0] + 1, depth, _header(child))
            yield from _tree_symbols(child, depth + 1)
        else:
            yield from _tree_symbols(child, depth)


def _header(node: tree_sitter.Node) -> str:
    text = (node.text or b"").decode("utf-8", "replace").split("\n", 1)[0].strip()
    return text if len(text) <= MAX_HEADER_CHARS else text[: MAX_HEADER_CHARS - 1] + "…"


def _regex_symbols(source: str) -> Iterator[Symbol]:
    for match in _REGEX_DEF.finditer(source):
        line = source.count("\n", 0, match.start()) + 1
        header = source[match.start():source.find("\n", match.start()) % (len(source) + 1)].strip()
        depth = len(match["indent"].expandtabs(4)) // 4
        yield Symbol(match["name"], line, line, depth, header[:MAX_HEADER_CHARS])


def enclosing(symbols: list[Symbol], line: int) -> list[Symbol]:
    """The symbols whose span contains ``line``, outermost first."""
    return [s for s in symbols if s.line <= line <= max(s.end_line, s.line)]
