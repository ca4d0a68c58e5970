"""The packer: under budget, under the file cap, most valuable first, and by search."""

from __future__ import annotations

from runner.context.package import Snippet
from runner.context.packer import Candidate, Option, pack, packed_tokens
from runner.context.tokens import count_tokens


def option(path: str | None, tokens: int, value: float, score: float, layer: str = "matches") -> Option:
    text = "x" * (tokens * 4)
    return Option((Snippet(layer, path, text, score, count_tokens(text)),), value)


def file(path: str, score: float, sizes: tuple[int, ...] = (50, 200, 800)) -> Candidate:
    quality = (0.5, 0.8, 1.0)
    return Candidate(path, path, tuple(option(path, size, score * q, score) for size, q in zip(sizes, quality, strict=True)))


def test_never_over_budget() -> None:
    chosen = pack([file(f"f{i}.py", 1.0 / (i + 1)) for i in range(30)], budget=1000, max_files=30)
    assert 0 < packed_tokens(chosen) <= 1000


def test_never_more_files_than_allowed() -> None:
    chosen = pack([file(f"f{i}.py", 1.0) for i in range(30)], budget=100_000, max_files=4)
    assert len({s.path for s in chosen}) == 4


def test_rank_order_is_by_score() -> None:
    chosen = pack([file("low.py", 0.2), file("high.py", 0.9), file("mid.py", 0.5)], 10_000, 10)
    assert [s.path for s in chosen] == ["high.py", "mid.py", "low.py"]


def test_tight_budget_prefers_many_terse_files_over_one_full_one() -> None:
    chosen = pack([file(f"f{i}.py", 1.0) for i in range(6)], budget=330, max_files=10)
    assert len({s.path for s in chosen}) == 6


def test_spare_budget_is_spent_on_detail() -> None:
    chosen = pack([file("a.py", 1.0), file("b.py", 0.5)], budget=2000, max_files=10)
    assert sorted(s.tokens for s in chosen) == [800, 800]


def test_a_cheap_crumb_does_not_crowd_out_a_valuable_large_item() -> None:
    # Greedy by value per token alone takes the crumb first and then cannot afford the big one.
    big = Candidate("tests", None, (option(None, 990, 5.0, 1.0, "tests"),))
    crumb = Candidate("c", "c.py", (option("c.py", 10, 0.1, 0.1),))
    chosen = pack([big, crumb], budget=1000, max_files=15)
    assert [s.layer for s in chosen] == ["tests"]


def test_nothing_fits_nothing_chosen() -> None:
    assert pack([file("a.py", 1.0)], budget=10, max_files=5) == []
