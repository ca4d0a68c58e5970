"""RunBudget: a task never spends past a limit, warns once at 80 %, and resumes from a snapshot."""

from __future__ import annotations

import json

import pytest

from github_app.repo_config import Budget
from runner.gates.budget import BudgetExhausted, BudgetLimits, CallCost, RunBudget, worst_case
from runner.model import Usage
from runner.model.prices import PRICES, most_expensive


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


LIMITS = BudgetLimits(tokens=10_000, usd=1.0, wall_s=600.0, steps=10)


def budget(spent_usd: float = 0.0) -> tuple[RunBudget, FakeClock]:
    clock = FakeClock()
    return RunBudget(LIMITS, clock=clock, spent_usd=spent_usd), clock


def test_limits_come_from_the_repo_config() -> None:
    limits = BudgetLimits.from_config(Budget(usd=3.5, tokens=100, wall_minutes=2, steps=7))
    assert limits == BudgetLimits(tokens=100, usd=3.5, wall_s=120.0, steps=7)


def test_non_positive_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="usd"):
        BudgetLimits(tokens=1, usd=0.0, wall_s=1.0, steps=1)


def test_worst_case_prices_input_as_cache_writes_and_all_output() -> None:
    cost = worst_case("claude-sonnet-4-5", input_tokens=1_000_000, max_output_tokens=1_000_000)
    assert cost.tokens == 2_000_000
    assert cost.usd == pytest.approx(3.75 + 15.0)  # cache write 1.25 x $3, output $15


def test_unknown_model_is_priced_at_the_most_expensive_rate() -> None:
    dearest = most_expensive(PRICES)
    cost = worst_case("some-future-model", input_tokens=1_000_000, max_output_tokens=1_000_000)
    assert cost.usd == pytest.approx(dearest.cache_write + dearest.output)
    assert cost.usd > worst_case("claude-opus-4-6", 1_000_000, 1_000_000).usd


def test_a_call_that_fits_passes() -> None:
    b, _ = budget()
    b.check(CallCost(tokens=10_000, usd=1.0))  # exactly the limit still fits


def test_a_call_whose_worst_case_would_cross_the_dollar_limit_is_refused_before_it_is_made() -> None:
    b, _ = budget()
    b.record(Usage(input_tokens=100), cost_usd=0.98)
    with pytest.raises(BudgetExhausted) as exc:
        b.check(CallCost(tokens=100, usd=0.11))
    assert exc.value.dimension == "dollars"
    assert exc.value.reason == "dollars: $0.98 of $1.00 spent; the next call may cost up to $0.11"
    assert b.spent_usd == 0.98  # refusing spends nothing


def test_token_limit_counts_every_kind_of_token() -> None:
    b, _ = budget()
    b.record(Usage(input_tokens=4000, output_tokens=1000, cache_write_tokens=2000,
                   cache_read_tokens=2000), cost_usd=0.0)
    assert b.spent_tokens == 9000
    b.check(CallCost(tokens=1000, usd=0.0))
    with pytest.raises(BudgetExhausted, match="tokens: 9,000 of 10,000 used; the next call may use up to 1,001"):
        b.check(CallCost(tokens=1001, usd=0.0))


def test_steps_used_up_refuse_the_next_call() -> None:
    b, _ = budget()
    for _ in range(9):
        b.step()
    b.check(CallCost(0, 0.0))
    b.step()
    with pytest.raises(BudgetExhausted, match="steps: 10 of 10 used") as exc:
        b.check(CallCost(0, 0.0))
    assert exc.value.dimension == "steps"


def test_wall_time_used_up_refuses_the_next_call() -> None:
    b, clock = budget()
    clock.now += 599
    b.check(CallCost(0, 0.0))
    clock.now += 1
    with pytest.raises(BudgetExhausted, match="wall time: 10 min of 10 min used"):
        b.check(CallCost(0, 0.0))


def test_fraction_is_the_most_used_dimension() -> None:
    b, clock = budget()
    b.record(Usage(input_tokens=1000), cost_usd=0.5)
    clock.now += 60
    assert b.fraction() == pytest.approx(0.5)
    assert b.fractions() == pytest.approx({"tokens": 0.1, "usd": 0.5, "wall_s": 0.1, "steps": 0.0})


def test_the_80_percent_warning_fires_once() -> None:
    b, _ = budget()
    b.record(Usage(), cost_usd=0.79)
    assert not b.warning_due()
    b.record(Usage(), cost_usd=0.01)
    assert b.warning_due()
    assert not b.warning_due()
    b.record(Usage(input_tokens=9000), cost_usd=0.1)  # another dimension crosses: still once
    assert not b.warning_due()


def test_raise_limit_lets_a_paused_budget_continue_and_warn_again() -> None:
    b, _ = budget()
    b.record(Usage(), cost_usd=0.95)
    assert b.warning_due()
    with pytest.raises(BudgetExhausted):
        b.check(CallCost(0, 0.10))
    b.raise_limit(usd=1.0)
    assert b.limits.usd == 2.0
    b.check(CallCost(0, 0.10))
    assert not b.warning_due()  # 0.95 of 2.00 is below 80 %
    b.record(Usage(), cost_usd=0.70)
    assert b.warning_due()  # a new crossing, a new warning


def test_raise_limit_refuses_a_decrease() -> None:
    b, _ = budget()
    with pytest.raises(ValueError, match="positive"):
        b.raise_limit(usd=-1.0)
    assert b.limits == LIMITS


def test_snapshot_round_trips_through_json() -> None:
    b, clock = budget()
    b.record(Usage(input_tokens=1234, output_tokens=66), cost_usd=0.42)
    b.step()
    b.step()
    clock.now += 90
    b.raise_limit(steps=5)
    data = json.loads(json.dumps(b.snapshot()))
    later = FakeClock()
    resumed = RunBudget.from_snapshot(data, clock=later)
    assert resumed.snapshot() == data
    assert (resumed.spent_tokens, resumed.spent_usd, resumed.steps) == (1300, 0.42, 2)
    assert resumed.limits.steps == 15
    later.now += 30  # wall time keeps counting from where it stopped
    assert resumed.elapsed_s == pytest.approx(120.0)


def test_a_resumed_budget_remembers_that_it_warned() -> None:
    b, _ = budget(spent_usd=0.9)
    assert b.warning_due()
    resumed = RunBudget.from_snapshot(b.snapshot(), clock=FakeClock())
    assert not resumed.warning_due()


@pytest.mark.parametrize("broken", [
    {},
    {"limits": {"tokens": 1, "usd": 1, "wall_s": 1, "steps": 1}},
    {"limits": {"tokens": "1", "usd": 1, "wall_s": 1, "steps": 1},
     "spent": {"tokens": 0, "usd": 0, "wall_s": 0, "steps": 0}},
    {"limits": {"tokens": 1, "usd": 1, "wall_s": 1, "steps": 1},
     "spent": {"tokens": -5, "usd": 0, "wall_s": 0, "steps": 0}},
])
def test_a_malformed_snapshot_is_an_error_not_a_wrong_budget(broken: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        RunBudget.from_snapshot(broken)


def test_big_calls_warn_before_80_percent_so_the_warning_still_reaches_the_model() -> None:
    b, _ = budget()
    big = CallCost(tokens=100, usd=0.3)
    b.check(big)
    b.record(Usage(), cost_usd=0.3)
    assert not b.warning_due()  # two more such calls still fit
    b.check(big)
    b.record(Usage(), cost_usd=0.3)
    assert b.fraction() == pytest.approx(0.6)
    assert b.warning_due()  # only one more fits: it must carry the warning
    b.check(big)  # that call is still allowed
    b.record(Usage(), cost_usd=0.3)
    with pytest.raises(BudgetExhausted):
        b.check(big)
