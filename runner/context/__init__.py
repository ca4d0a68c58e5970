"""The initial context: layered retrieval from a checkout and an issue, fitted to a budget.

Layers — conventions (AGENTS.md, CLAUDE.md, CONTRIBUTING, config rules), memory (earlier
failures), tree, matches (ripgrep hits for what the issue names), repo_map (tree-sitter
outlines) and tests (failing output) — become candidates at several granularities, and a
knapsack search picks the most valuable mix within ``token_budget`` and ``max_files``. The
issue is sanitized (hidden text removed and counted) and quoted as untrusted data.
"""

from __future__ import annotations

from runner.context.build import build_context
from runner.context.package import ContextPackage, IssueText, Snippet
from runner.context.tokens import count_tokens

__all__ = ["ContextPackage", "IssueText", "Snippet", "build_context", "count_tokens"]
