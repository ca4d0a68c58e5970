"""File ranking from match evidence: definitions, frames, rarity and test damping."""

from __future__ import annotations

from runner.context.ranking import is_test_path, rank_files, resolve_path
from runner.context.rg import RgMatch
from runner.context.terms import extract_terms

FILES = ["pkg/__init__.py", "pkg/parser.py", "pkg/cli.py", "pkg/util.py", "tests/test_parser.py", "docs/x.md"]


def order(issue: str, matches: list[RgMatch]) -> list[str]:
    return [e.path for e in rank_files(FILES, extract_terms(issue), matches)]


def test_the_file_defining_a_named_symbol_outranks_its_callers() -> None:
    matches = [RgMatch("pkg/cli.py", 3, "    parse_header(x)", ("parse_header",)),
               RgMatch("pkg/cli.py", 9, "    parse_header(y)", ("parse_header",)),
               RgMatch("pkg/parser.py", 40, "def parse_header(line):", ("parse_header",))]
    assert order("`parse_header` drops the last field", matches)[0] == "pkg/parser.py"


def test_rare_terms_count_more_than_common_ones() -> None:
    common = [RgMatch(p, 1, "config_value", ("config_value",)) for p in ("pkg/cli.py", "pkg/util.py", "pkg/parser.py")]
    rare = [RgMatch("pkg/util.py", 7, "x = strip_bom(t)", ("strip_bom",))]
    ranked = order("config_value and strip_bom misbehave", common + rare)
    assert ranked[0] == "pkg/util.py"


def test_a_stack_frame_names_its_file_even_without_matches() -> None:
    issue = 'File "/site-packages/pkg/util.py", line 12, in helper'
    assert order(issue, [])[0] == "pkg/util.py"


def test_tests_are_damped_below_the_code_they_test() -> None:
    matches = [RgMatch("tests/test_parser.py", n, "parse_header()", ("parse_header",)) for n in range(1, 6)]
    matches.append(RgMatch("pkg/parser.py", 4, "    return parse_header(x)", ("parse_header",)))
    assert order("parse_header fails", matches)[0] == "pkg/parser.py"


def test_a_file_named_like_a_term_is_a_candidate() -> None:
    assert "pkg/parser.py" in order("The parser chokes on tabs", [])


def test_resolve_path_matches_by_longest_suffix() -> None:
    assert resolve_path("usr/lib/site-packages/pkg/cli.py", FILES) == "pkg/cli.py"
    assert resolve_path("elsewhere/nothing.py", FILES) is None


def test_is_test_path() -> None:
    assert is_test_path("tests/test_a.py") and is_test_path("src/a.spec.ts") and is_test_path("x_test.go")
    assert not is_test_path("pkg/contest.py") and not is_test_path("pkg/attest/x.py")


def test_docs_and_changelogs_are_damped_below_code() -> None:
    matches = [RgMatch("docs/x.md", n, "parse_header parse_header", ("parse_header",)) for n in range(1, 9)]
    matches.append(RgMatch("pkg/util.py", 4, "    parse_header(x)", ("parse_header",)))
    assert order("parse_header fails", matches)[0] == "pkg/util.py"


def test_a_definition_whose_name_holds_an_issue_word_counts() -> None:
    issue = "The cookie header is parsed wrongly"
    plain = [RgMatch("pkg/cli.py", 2, "# cookie header", ("cookie", "header"))]
    definition = [RgMatch("pkg/util.py", 9, "def parse_cookie(header):", ("def parse_cookie",))]
    ranked = [e.path for e in rank_files(FILES, extract_terms(issue), plain + [
        RgMatch("pkg/util.py", 9, "def parse_cookie(header):", ("cookie",))], definitions=definition)]
    assert ranked[0] == "pkg/util.py"
