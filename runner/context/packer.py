"""Fit the most valuable context into a token budget — by search, not by cutting the end.

Each ``Candidate`` is one thing that can be quoted (a file, the conventions, the test output)
at several granularities (``Option``s: a few lines around a match, the matching symbols, the
whole outline, ...), each with a value and a cost. Choosing at most one option per candidate,
at most ``max_files`` distinct paths, within ``budget`` tokens, is a multiple-choice knapsack.
We run two greedy searches — by marginal value per token (many files, tersely) and by
marginal value (few files, in depth) — and keep whichever is worth more; the first is the
textbook approximation for this problem, the second covers its known blind spot (one very
valuable, expensive item).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from runner.context.package import Snippet

# Rendering joins snippets with a blank line; charge each one token for it.
SEPARATOR_TOKENS = 1


@dataclass(frozen=True)
class Option:
    """One way of quoting a candidate: the snippets it adds and what that is worth."""

    snippets: tuple[Snippet, ...]
    value: float

    @property
    def tokens(self) -> int:
        return sum(s.tokens + SEPARATOR_TOKENS for s in self.snippets)


@dataclass(frozen=True)
class Candidate:
    """Something worth quoting, and its options from tersest to fullest."""

    key: str
    path: str | None
    options: tuple[Option, ...]


Choice = dict[str, Option]
_Rate = Callable[[float, int], float]


def pack(candidates: Sequence[Candidate], budget: int, max_files: int) -> list[Snippet]:
    """The chosen snippets, most valuable candidate first."""
    by_ratio = _greedy(candidates, budget, max_files, lambda value, tokens: value / max(tokens, 1))
    by_value = _greedy(candidates, budget, max_files, lambda value, tokens: value)
    best = max((by_ratio, by_value), key=_total_value)
    ranked = sorted(best.values(), key=lambda option: -max(s.score for s in option.snippets))
    return [snippet for option in ranked for snippet in option.snippets]


def _greedy(candidates: Sequence[Candidate], budget: int, max_files: int, rate: _Rate) -> Choice:
    """Repeatedly take the best-rated affordable step: add a candidate or upgrade its option."""
    chosen: Choice = {}
    left = budget
    while True:
        step = _best_step(candidates, chosen, left, max_files, rate)
        if step is None:
            return chosen
        key, option = step
        left -= option.tokens - (chosen[key].tokens if key in chosen else 0)
        chosen[key] = option


def _best_step(candidates: Sequence[Candidate], chosen: Choice, left: int, max_files: int,
               rate: _Rate) -> tuple[str, Option] | None:
    files = {c.path for c in candidates if c.key in chosen and c.path is not None}
    best: tuple[float, str, Option] | None = None
    for candidate in candidates:
        current = chosen.get(candidate.key)
        if current is None and candidate.path is not None and candidate.path not in files \
                and len(files) >= max_files:
            continue
        base_value, base_tokens = (current.value, current.tokens) if current else (0.0, 0)
        for option in candidate.options:
            gain, cost = option.value - base_value, option.tokens - base_tokens
            if gain <= 0 or cost > left:
                continue
            score = rate(gain, cost)
            if best is None or score > best[0]:
                best = (score, candidate.key, option)
    return None if best is None else (best[1], best[2])


def _total_value(choice: Choice) -> float:
    return sum(option.value for option in choice.values())


def packed_tokens(snippets: Sequence[Snippet]) -> int:
    """What ``pack`` charged for these snippets (their tokens plus separators)."""
    return sum(s.tokens + SEPARATOR_TOKENS for s in snippets)
