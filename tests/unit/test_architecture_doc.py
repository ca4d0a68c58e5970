"""docs/architecture.md stays true: its lifecycle drawing is the table's, and what it names exists."""

from __future__ import annotations

import ast
import importlib.util
import re
from functools import cache
from pathlib import Path
from types import ModuleType

from github_app.tracker.lifecycle import TRANSITIONS, Event, Move, State

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs/architecture.md"
PACKAGES = ("github_app", "runner", "devhub")
# Dotted names of our packages (a module, or a module and the names in it) and repository paths.
DOTTED = re.compile(r"(?<![\w./])(?:github_app|runner|devhub)(?:\.\w+)+")
PATHS = re.compile(r"(?<![\w./-])(?:github_app|runner|devhub|tests|bench|scripts|docs)/[\w/.-]*\w/?")


def diagram_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("lifecycle_diagram", ROOT / "scripts/lifecycle_diagram.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def doc_block(text: str) -> str:
    begin, end = "<!-- lifecycle:begin -->", "<!-- lifecycle:end -->"
    assert text.count(begin) == 1 and text.count(end) == 1, "the doc needs one pair of lifecycle markers"
    return text.split(begin, 1)[1].split(end, 1)[0].strip("\n")


def test_the_lifecycle_drawing_is_the_table() -> None:
    printed = diagram_script().render()
    assert doc_block(DOC.read_text()) == printed, (
        "docs/architecture.md's lifecycle block is stale: run "
        "`python scripts/lifecycle_diagram.py --write docs/architecture.md`")


def parse_mermaid(block: str) -> set[tuple[str | None, str, str, bool]]:
    """(from, event, to, deferred) for every arrow and every "stays on" in the drawing."""
    rows: set[tuple[str | None, str, str, bool]] = set()
    body = block.split("```mermaid", 1)[1].split("```", 1)[0]
    for line in body.splitlines():
        line = line.strip()
        arrow = re.fullmatch(r"(\S+) --> (\w+) : (.+)", line)
        stays = re.fullmatch(r"(\w+) : stays on (.+)", line)
        if arrow:
            source, target, events = arrow.groups()
        elif stays:
            source, events = stays.groups()
            target = source
        else:
            continue
        for event in events.split(", "):
            rows.add((None if source == "[*]" else source, event.rstrip("*"), target, event.endswith("*")))
    return rows


def test_the_drawing_shows_every_transition_and_no_other() -> None:
    # The script's own check: a drawing that dropped or invented a transition fails here.
    table: set[tuple[str | None, str, str, bool]] = {
        (state, event, move.to, move.deferred) for (state, event), move in TRANSITIONS.items()}
    assert parse_mermaid(diagram_script().render()) == table
    fewer: dict[tuple[State | None, Event], Move] = dict(TRANSITIONS)
    fewer.pop(("running", "pushed"))
    assert parse_mermaid(diagram_script().render(fewer)) != table


@cache
def top_level_names(path: Path) -> dict[str, ast.AST]:
    names: dict[str, ast.AST] = {}
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            names[node.name] = node
        elif isinstance(node, ast.Assign):
            names.update((t.id, node) for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names[node.target.id] = node
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names.update(((a.asname or a.name).split(".")[0], node) for a in node.names)
    return names


def module_file(dotted: str) -> Path | None:
    base = ROOT / dotted.replace(".", "/")
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def dotted_exists(dotted: str) -> bool:
    """A module, or a module and a name in it (a class's attribute below that), as written."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        path = module_file(".".join(parts[:cut]))
        if path is None:
            continue
        rest = parts[cut:]
        if not rest:
            return True
        node = top_level_names(path).get(rest[0])
        for attr in rest[1:]:
            if not isinstance(node, ast.ClassDef):
                return False
            node = next((n for n in ast.walk(node) if getattr(n, "name", None) == attr), None)
        return node is not None
    return False


def missing_names(text: str) -> list[str]:
    dotted = [name for name in DOTTED.findall(text) if not dotted_exists(name)]
    paths = [path for path in PATHS.findall(text) if not (ROOT / path).exists()]
    return sorted(set(dotted + paths))


def test_every_module_the_doc_names_exists() -> None:
    text = DOC.read_text()
    assert len(set(DOTTED.findall(text))) >= 40 and len(set(PATHS.findall(text))) >= 10  # it names them
    assert missing_names(text) == []


def test_the_name_check_catches_a_stale_name() -> None:
    stale = ("`runner.pipeline.run.run` `github_app.queue.nope` `runner/task.py` "
             "`github_app.tracker.lifecycle.NOPE` `runner.wiring.Dependencies.nope` `devhub/`")
    assert missing_names(stale) == ["github_app.queue.nope", "github_app.tracker.lifecycle.NOPE",
                                    "runner.wiring.Dependencies.nope", "runner/task.py"]


def protocols() -> list[str]:
    """Every public ``typing.Protocol`` in the product packages, as ``module.Class``."""
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            for node in ast.parse(path.read_text()).body:
                if (isinstance(node, ast.ClassDef) and not node.name.startswith("_")
                        and any(ast.unparse(base) in ("Protocol", "typing.Protocol") for base in node.bases)):
                    found.append(f"{module}.{node.name}")
    return found


def test_every_seam_is_in_the_doc() -> None:
    seams = protocols()
    assert "github_app.github.GitHost" in seams and "runner.model.ModelClient" in seams
    text = DOC.read_text()
    assert [seam for seam in seams if f"`{seam}`" not in text] == [], (
        "a new Protocol: add it, its real implementation and its fake to the Seams table")
