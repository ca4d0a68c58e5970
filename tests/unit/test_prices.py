"""The price table: which price a model id gets, and what a call costs."""

from __future__ import annotations

import pytest

from runner.model import Usage
from runner.model.prices import PRICES, Price, cost_usd, most_expensive, price_for

MILLION = 1_000_000


@pytest.mark.parametrize(
    ("model", "input_usd", "output_usd"),
    [
        ("claude-sonnet-4-6", 3.0, 15.0),
        ("claude-sonnet-4-5-20250929", 3.0, 15.0),
        ("claude-haiku-4-5", 1.0, 5.0),
        ("claude-opus-4-1", 15.0, 75.0),
        ("claude-opus-4-20250514", 15.0, 75.0),
        # The longer key wins over the family: Opus 4.5 is a third of Opus 4's price.
        ("claude-opus-4-5-20251101", 5.0, 25.0),
        ("claude-opus-4-6", 5.0, 25.0),
        ("claude-3-5-haiku-20241022", 0.8, 4.0),
    ],
)
def test_known_models_get_their_list_price(model: str, input_usd: float, output_usd: float) -> None:
    price, known = price_for(model)
    assert known
    assert (price.input, price.output) == (input_usd, output_usd)


def test_a_prefix_matches_whole_segments_only() -> None:
    # "claude-opus-4-50" is not Opus 4.5; it falls back to the (dearer) Opus 4 family price.
    price, known = price_for("claude-opus-4-50")
    assert known
    assert price == PRICES["claude-opus-4"]


def test_unknown_model_is_priced_at_the_table_maximum_and_flagged() -> None:
    price, known = price_for("claude-fable-5")
    assert not known
    assert price == Price(
        input=max(p.input for p in PRICES.values()),
        output=max(p.output for p in PRICES.values()),
        cache_write=max(p.cache_write for p in PRICES.values()),
        cache_read=max(p.cache_read for p in PRICES.values()),
    )
    assert price_for("gpt-4o")[1] is False


def test_unknown_model_never_costs_less_than_a_known_one() -> None:
    usage = Usage(
        input_tokens=1200, output_tokens=300, cache_write_tokens=800, cache_read_tokens=5000
    )
    guessed = cost_usd("some-future-model", usage)
    assert guessed > 0
    assert all(guessed >= cost_usd(model, usage) for model in PRICES)


def test_cost_adds_every_kind_of_token_at_its_rate() -> None:
    usage = Usage(
        input_tokens=MILLION,
        output_tokens=MILLION,
        cache_write_tokens=MILLION,
        cache_read_tokens=MILLION,
    )
    assert cost_usd("claude-sonnet-4-6", usage) == pytest.approx(3.0 + 15.0 + 3.75 + 0.30)


def test_a_typical_agent_turn_costs_cents() -> None:
    usage = Usage(input_tokens=2_000, output_tokens=500, cache_read_tokens=10_000)
    # 2k * $3/M + 500 * $15/M + 10k * $0.30/M
    assert cost_usd("claude-sonnet-4-6", usage) == pytest.approx(0.006 + 0.0075 + 0.003)


def test_no_tokens_cost_nothing() -> None:
    assert cost_usd("claude-haiku-4-5", Usage()) == 0.0


def test_cache_rates_follow_anthropics_multipliers() -> None:
    for key, price in PRICES.items():
        assert price.cache_write == pytest.approx(price.input * 1.25), key
        assert price.cache_read == pytest.approx(price.input * 0.1), key


def test_a_custom_table_overrides_the_default() -> None:
    table = {"local-llm": Price(0.0, 0.0, 0.0, 0.0), "claude-sonnet-4": Price(3.0, 15.0, 3.75, 0.3)}
    assert cost_usd("local-llm-7b", Usage(input_tokens=10**6), table) == 0.0
    assert price_for("mystery", table) == (most_expensive(table), False)
    assert most_expensive(table).output == 15.0
