"""Assemble the initial context: sanitize and quote the issue, gather the layers, pack them."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from runner.context import layers, rg
from runner.context.outline import outline
from runner.context.package import ContextPackage, IssueText, render_overhead
from runner.context.packer import Candidate, pack
from runner.context.ranking import FileEvidence, rank_files
from runner.context.terms import IssueTerms, extract_terms
from runner.context.tokens import CHARS_PER_TOKEN, count_tokens
from runner.context.untrusted import merge_removed, quote_untrusted, strip_hidden

# The issue is always quoted, but a 1 MB body must not crowd out the code: past this share of
# the budget it keeps its head and tail (where the description and the traceback usually sit).
ISSUE_SHARE = 0.4
MIN_ISSUE_TOKENS = 200
CANDIDATE_FILES = 40  # files considered for packing: enough for max_files_per_task choices
MAX_SOURCE_BYTES = 400_000


def build_context(repo: Path, issue: IssueText, *, token_budget: int = 4200, max_files: int = 15,
                  rules: Sequence[str] = (), memory: Sequence[str] = (),
                  test_output: str | None = None) -> ContextPackage:
    """The token-budgeted context package for ``issue`` on the checkout at ``repo``."""
    issue_block, visible, removed = quote_issue(issue, max(MIN_ISSUE_TOKENS, int(token_budget * ISSUE_SHARE)))
    terms = extract_terms(visible)
    test_terms = extract_terms(test_output or "")
    files = rg.list_files(repo)
    ranked = _rank(repo, files, terms, test_terms)
    candidates = _candidates(repo, files, ranked, rules, memory, test_output)
    left = token_budget - count_tokens(issue_block) - render_overhead()
    chosen = pack(candidates, max(left, 0), max_files)
    return ContextPackage(tuple(chosen), token_budget, removed, issue_block)


def quote_issue(issue: IssueText, max_tokens: int) -> tuple[str, str, dict[str, int]]:
    """(quoted block, visible text for term extraction, removals) of the issue and its comments."""
    title, body = strip_hidden(issue.title), strip_hidden(issue.body)
    comments = [(author, strip_hidden(text)) for author, text in issue.comments]
    main = f"# {title.text.strip()}\n\n{body.text.strip()}".strip()
    per_comment = max_tokens // (4 * max(len(comments), 1)) if comments else 0
    comment_budget = per_comment * len(comments)
    blocks = [quote_untrusted(_head_and_tail(main, max_tokens - comment_budget),
                              source=issue.origin, author=issue.author)]
    blocks += [quote_untrusted(_head_and_tail(c.text.strip(), per_comment), source=f"comment on {issue.origin}",
                               author=author) for author, c in comments]
    visible = "\n\n".join([main, *(c.text for _a, c in comments)])
    removed = merge_removed([title.removed, body.removed, *(c.removed for _a, c in comments)])
    return "\n".join(blocks), visible, removed


def _head_and_tail(text: str, tokens: int) -> str:
    limit = max(tokens - 20, 10) * CHARS_PER_TOKEN
    if len(text) <= limit:
        return text
    head, tail = text[: limit * 2 // 3], text[-(limit // 3 - 40):]
    return f"{head}\n[… {len(text) - len(head) - len(tail)} characters omitted …]\n{tail}"


def _rank(repo: Path, files: list[str], terms: IssueTerms, test_terms: IssueTerms) -> list[FileEvidence]:
    exact = [t.text for t in terms.terms if t.kind != "word"]
    # Words match inside identifiers too: "cookie" should find ``parse_cookie`` and ``CookieJar``.
    words = [t.text for t in terms.terms if t.kind == "word"]
    matches = rg.search(repo, exact, max_per_file=100) + rg.search(repo, words, ignore_case=True, max_per_file=30)
    return rank_files(files, terms, matches, test_terms.frames, _definitions(repo, terms))


def _definitions(repo: Path, terms: IssueTerms) -> list[rg.RgMatch]:
    """``def``/``class``/``function`` lines whose name contains one of the terms."""
    names = [re.escape(t.text) for t in terms.terms if t.kind != "error" and re.fullmatch(r"\w+", t.text)]
    if not names:
        return []
    pattern = (r"^\s*(?:export\s+|pub\s+|async\s+)*(?:def|class|function|func|fn)\s+\w*(?:"
               + "|".join(names) + r")\w*")
    return rg.search_regex(repo, pattern, ignore_case=True)


def _candidates(repo: Path, files: list[str], ranked: list[FileEvidence], rules: Sequence[str],
                memory: Sequence[str], test_output: str | None) -> list[Candidate]:
    found = [layers.rules_candidate(rules), layers.memory_candidate(memory),
             layers.tests_candidate(test_output), layers.tree_candidate(files)]
    found += layers.convention_candidates(repo)
    top = ranked[0].score if ranked and ranked[0].score > 0 else 1.0
    for evidence in ranked[:CANDIDATE_FILES]:
        source = _read(repo / evidence.path)
        if source is not None and evidence.score > 0:
            found.append(layers.file_candidate(evidence, evidence.score / top, source,
                                               outline(evidence.path, source)))
    return [c for c in found if c is not None]


def _read(path: Path) -> str | None:
    try:
        if path.stat().st_size > MAX_SOURCE_BYTES:
            return None
        return path.read_text(errors="replace")
    except OSError:
        return None
