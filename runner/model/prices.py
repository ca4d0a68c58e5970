"""What a model call costs: the price table as data and the arithmetic on ``Usage``.

Prices are Anthropic's published list prices in USD per million tokens, standard tier,
5-minute cache writes, prompts under 200k tokens. Keys are model-id families; a model id is
priced by the longest key it starts with, so dated ids (``claude-sonnet-4-5-20250929``)
and newer point releases of a known family are covered without edits.

A model that matches no key is priced at the table's most expensive rate, never at zero: a
budget that undercounts lets a task overspend, one that overcounts only stops early. The
caller learns about the guess through ``price_for(...)[1]`` (``False`` = not in the table).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from runner.model import Usage

PER_MILLION = 1_000_000


@dataclass(frozen=True)
class Price:
    """USD per million tokens for each kind of token a call is billed for."""

    input: float
    output: float
    cache_write: float
    cache_read: float


def _list_price(input_usd: float, output_usd: float) -> Price:
    """A price with Anthropic's cache multipliers: writes 1.25x input, reads 0.1x input."""
    return Price(input_usd, output_usd, round(input_usd * 1.25, 4), round(input_usd * 0.1, 4))


PRICES: dict[str, Price] = {
    # Opus 4 and 4.1 cost $15/$75; 4.5 and 4.6 dropped to $5/$25. Later 4.x point releases
    # fall back to the family key, the higher price, until someone adds them here.
    "claude-opus-4": _list_price(15.0, 75.0),
    "claude-opus-4-5": _list_price(5.0, 25.0),
    "claude-opus-4-6": _list_price(5.0, 25.0),
    "claude-sonnet-4": _list_price(3.0, 15.0),
    "claude-haiku-4": _list_price(1.0, 5.0),
    "claude-3-opus": _list_price(15.0, 75.0),
    "claude-3-7-sonnet": _list_price(3.0, 15.0),
    "claude-3-5-sonnet": _list_price(3.0, 15.0),
    "claude-3-5-haiku": _list_price(0.8, 4.0),
    "claude-3-haiku": _list_price(0.25, 1.25),
}


def _matches(model: str, key: str) -> bool:
    """True when ``key`` is ``model`` or a whole-segment prefix of it."""
    # A bare startswith would price "claude-opus-4-50" as "claude-opus-4-5".
    return model == key or (model.startswith(key) and model[len(key)] in "-@:")


def most_expensive(prices: Mapping[str, Price]) -> Price:
    """The table's highest rate for every kind of token, the price of an unknown model."""
    return Price(
        input=max(p.input for p in prices.values()),
        output=max(p.output for p in prices.values()),
        cache_write=max(p.cache_write for p in prices.values()),
        cache_read=max(p.cache_read for p in prices.values()),
    )


def price_for(model: str, prices: Mapping[str, Price] = PRICES) -> tuple[Price, bool]:
    """The price of ``model`` and whether it came from the table (``False`` = a guess)."""
    keys = [key for key in prices if _matches(model, key)]
    if not keys:
        return most_expensive(prices), False
    return prices[max(keys, key=len)], True


def cost_usd(model: str, usage: Usage, prices: Mapping[str, Price] = PRICES) -> float:
    """Dollars billed for ``usage`` on ``model``; unknown models cost the table's maximum."""
    price, _known = price_for(model, prices)
    dollars = (
        usage.input_tokens * price.input
        + usage.output_tokens * price.output
        + usage.cache_write_tokens * price.cache_write
        + usage.cache_read_tokens * price.cache_read
    )
    return dollars / PER_MILLION
