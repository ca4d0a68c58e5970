"""What one task may spend: tokens, dollars, wall time and loop steps.

The loop asks ``RunBudget.check`` before every model call with that call's worst case
(``worst_case``): the whole prompt billed at the cache-write rate plus every output token it may
produce. A call whose worst case does not fit is refused before it is made, so a task never
spends past a limit, even by one call. Wall time cannot be priced in advance; it is checked as
"already used up".

At 80 % of any dimension (or when only one more call of the last one's size fits)
``warning_due`` says so once, so the loop can tell the model to wrap up.
Pure: the clock is injected, and ``snapshot``/``from_snapshot`` carry a budget across a pause.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from github_app.repo_config import Budget
from runner.model import Usage
from runner.model.prices import PER_MILLION, price_for

WARN_AT = 0.8
Clock = Callable[[], float]


@dataclass(frozen=True)
class BudgetLimits:
    """The most a task may spend in each dimension."""

    tokens: int
    usd: float
    wall_s: float
    steps: int

    def __post_init__(self) -> None:
        for name in ("tokens", "usd", "wall_s", "steps"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ValueError(f"budget limit {name} must be a positive number, not {value!r}")

    @classmethod
    def from_config(cls, budget: Budget) -> BudgetLimits:
        """The limits a repository's ``budget:`` section sets."""
        return cls(tokens=budget.tokens, usd=budget.usd, wall_s=budget.wall_minutes * 60.0,
                   steps=budget.steps)


@dataclass(frozen=True)
class CallCost:
    """The worst case of one model call: what it can cost at most."""

    tokens: int
    usd: float


def worst_case(model: str, input_tokens: int, max_output_tokens: int) -> CallCost:
    """Upper bound of one call: input at the dearest input rate (a cache write), all output used.

    An unknown model is priced at the table's most expensive rate (``price_for``), so a guess
    can only stop a task early, never let it overspend.
    """
    price, _known = price_for(model)
    input_rate = max(price.input, price.cache_write)
    usd = (input_tokens * input_rate + max_output_tokens * price.output) / PER_MILLION
    return CallCost(tokens=input_tokens + max_output_tokens, usd=usd)


class BudgetExhausted(Exception):
    """The next call does not fit (or time or steps are used up): wind down, then pause.

    ``dimension`` is "tokens", "dollars", "wall time" or "steps"; ``reason`` is the sentence
    for the status comment, e.g. "dollars: $1.98 of $2.00 spent; the next call may cost up to
    $0.11".
    """

    def __init__(self, dimension: str, reason: str) -> None:
        super().__init__(reason)
        self.dimension = dimension
        self.reason = reason


class RunBudget:
    """Spend so far against ``BudgetLimits``; resumable from a checkpoint's numbers."""

    def __init__(
        self, limits: BudgetLimits, *, clock: Clock = time.monotonic, spent_tokens: int = 0,
        spent_usd: float = 0.0, steps: int = 0, elapsed_s: float = 0.0, warned: bool = False,
    ) -> None:
        self.limits = limits
        self.spent_tokens = spent_tokens
        self.spent_usd = spent_usd
        self.steps = steps
        self._clock = clock
        self._started = clock()
        self._elapsed_before = elapsed_s  # wall time used before this process resumed the task
        self._warned = warned
        self._last_call: CallCost | None = None  # the worst case of the last call let through

    @property
    def elapsed_s(self) -> float:
        """Wall time used, including time used before a resume."""
        return self._elapsed_before + (self._clock() - self._started)

    def check(self, call: CallCost) -> None:
        """Raise ``BudgetExhausted`` unless ``call`` fits in every dimension even at its worst."""
        lim = self.limits
        if self.steps >= lim.steps:
            raise BudgetExhausted("steps", f"steps: {self.steps} of {lim.steps} used")
        elapsed = self.elapsed_s
        if elapsed >= lim.wall_s:
            raise BudgetExhausted(
                "wall time", f"wall time: {_minutes(elapsed)} of {_minutes(lim.wall_s)} used")
        if self.spent_tokens + call.tokens > lim.tokens:
            raise BudgetExhausted("tokens", (
                f"tokens: {self.spent_tokens:,} of {lim.tokens:,} used; "
                f"the next call may use up to {call.tokens:,}"))
        if self.spent_usd + call.usd > lim.usd:
            raise BudgetExhausted("dollars", (
                f"dollars: ${self.spent_usd:.2f} of ${lim.usd:.2f} spent; "
                f"the next call may cost up to ${call.usd:.2f}"))
        self._last_call = call

    def record(self, usage: Usage, cost_usd: float) -> None:
        """Add what a finished call actually used and cost."""
        self.spent_tokens += usage.total_tokens
        self.spent_usd += cost_usd

    def step(self) -> None:
        """One loop step is done."""
        self.steps += 1

    def fractions(self) -> dict[str, float]:
        """Share of each limit used (0..1, more if a limit was lowered), keyed like ``snapshot``."""
        lim = self.limits
        return {
            "tokens": self.spent_tokens / lim.tokens,
            "usd": self.spent_usd / lim.usd,
            "wall_s": self.elapsed_s / lim.wall_s,
            "steps": self.steps / lim.steps,
        }

    def fraction(self) -> float:
        """The most used dimension's share: 0.8 means some limit is 80 % used."""
        return max(self.fractions().values())

    def warning_due(self) -> bool:
        """True once when the end is near; again only after ``raise_limit`` moves it away.

        Near is 80 % of any dimension, or sooner when calls are big: once two more calls like the
        last one would not fit, the next call is the last, and the warning must ride on it to
        reach the model at all.
        """
        if self._warned or not self._near_end():
            return False
        self._warned = True
        return True

    def _near_end(self) -> bool:
        if self.fraction() >= WARN_AT:
            return True
        last, lim = self._last_call, self.limits
        return last is not None and (self.spent_usd + 2 * last.usd > lim.usd
                                     or self.spent_tokens + 2 * last.tokens > lim.tokens)

    def raise_limit(
        self, *, usd: float | None = None, tokens: int | None = None, steps: int | None = None,
        wall_s: float | None = None,
    ) -> None:
        """Add to limits (``/nightcrew budget +$N``): each argument is an increase, not a new total."""
        for name, extra in (("usd", usd), ("tokens", tokens), ("steps", steps), ("wall_s", wall_s)):
            if extra is not None and not (math.isfinite(extra) and extra > 0):
                raise ValueError(f"a budget increase must be positive: {name}={extra!r}")
        lim = self.limits
        self.limits = BudgetLimits(
            tokens=lim.tokens + (tokens or 0), usd=lim.usd + (usd or 0.0),
            wall_s=lim.wall_s + (wall_s or 0.0), steps=lim.steps + (steps or 0))
        if not self._near_end():
            self._warned = False  # nearing the new limit deserves its own warning

    def snapshot(self) -> dict[str, Any]:
        """JSON-safe spend and limits per dimension, for checkpoints and the status comment."""
        lim = self.limits
        return {
            "limits": {"tokens": lim.tokens, "usd": lim.usd, "wall_s": lim.wall_s, "steps": lim.steps},
            "spent": {"tokens": self.spent_tokens, "usd": self.spent_usd,
                      "wall_s": self.elapsed_s, "steps": self.steps},
            "warned": self._warned,
        }

    @classmethod
    def from_snapshot(cls, data: dict[str, Any], *, clock: Clock = time.monotonic) -> RunBudget:
        """The budget a checkpoint saved; wall time resumes counting from ``clock()`` now.

        Raises ``ValueError`` on a malformed snapshot rather than resuming with a wrong limit.
        """
        try:
            limits, spent = data["limits"], data["spent"]
            return cls(
                BudgetLimits(tokens=_int(limits["tokens"]), usd=_float(limits["usd"]),
                             wall_s=_float(limits["wall_s"]), steps=_int(limits["steps"])),
                clock=clock, spent_tokens=_int(spent["tokens"]), spent_usd=_float(spent["usd"]),
                steps=_int(spent["steps"]), elapsed_s=_float(spent["wall_s"]),
                warned=bool(data.get("warned", False)))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a budget snapshot: {exc!r}") from None


def _int(value: Any) -> int:
    """A JSON integer; bools and floats are refused (they mean the snapshot is not ours)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"expected a non-negative integer, got {value!r}")
    return value


def _float(value: Any) -> float:
    """A JSON number; an integer is fine too (a hand-edited checkpoint may say ``2``)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or value < 0:
        raise ValueError(f"expected a non-negative number, got {value!r}")
    return float(value)


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min"
