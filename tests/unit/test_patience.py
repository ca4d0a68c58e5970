"""PatientModel waits out a model API outage and sends the same request again; no real waiting."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest

from github_app.errors import NeedsHuman
from runner.model import Message, ModelError, ModelKeyRefused, ModelReply, ToolSpec
from runner.model.patience import ModelUnavailable, ModelWait, PatientModel, WaitPolicy, WaitStopped

SYSTEM = "You fix issues."
MESSAGES: list[Message] = [{"role": "user", "content": [{"type": "text", "text": "Fix #3"}]}]
TOOLS: list[ToolSpec] = [{"name": "edit", "input_schema": {"type": "object"}}]
REPLY = ModelReply("claude-test", "done")


def overloaded(retry_after_s: float | None = None) -> ModelError:
    return ModelError("529 overloaded", retryable=True, reason="overloaded",
                      retry_after_s=retry_after_s)


class FakeClock:
    """Time that passes only when the model under test sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.sleeps.append(seconds)
        self.now += seconds

    @property
    def slept(self) -> float:
        return sum(self.sleeps)


class FakeModel:
    """A ``ModelClient`` that answers from a script: an exception is raised, a reply returned."""

    model = "claude-test"

    def __init__(self, *script: ModelReply | Exception) -> None:
        self.script = list(script)
        self.calls: list[dict[str, object]] = []

    def complete(self, *, system: str, messages: Sequence[Message], tools: Sequence[ToolSpec],
                 max_tokens: int = 4096) -> ModelReply:
        self.calls.append({"system": system, "messages": messages, "tools": tools,
                           "max_tokens": max_tokens})
        step = self.script.pop(0)
        if isinstance(step, Exception):
            raise step
        return step


def patient(inner: FakeModel, clock: FakeClock, policy: WaitPolicy | None = None, *,
            on_wait: Callable[[ModelWait | None], None] = lambda _wait: None,
            stop: Callable[[], bool] = lambda: False) -> PatientModel:
    return PatientModel(inner, policy, on_wait=on_wait, stop=stop, sleep=clock.sleep, clock=clock)


def ask(model: PatientModel) -> ModelReply:
    return model.complete(system=SYSTEM, messages=MESSAGES, tools=TOOLS, max_tokens=1234)


def test_an_outage_is_waited_out_and_the_same_request_sent_again() -> None:
    inner, clock = FakeModel(overloaded(), overloaded(), REPLY), FakeClock()
    model = patient(inner, clock)
    assert ask(model) is REPLY
    assert len(inner.calls) == 3  # the request, and the same request twice more: nothing re-asked
    for call in inner.calls:
        assert call == {"system": SYSTEM, "messages": MESSAGES, "tools": TOOLS, "max_tokens": 1234}
        assert call["messages"] is MESSAGES  # not a rebuilt conversation
    assert MESSAGES == [{"role": "user", "content": [{"type": "text", "text": "Fix #3"}]}]
    assert clock.slept == 15 + 30


def test_without_retry_after_the_wait_doubles_from_the_first_and_stops_at_the_longest() -> None:
    inner, clock = FakeModel(*[overloaded() for _ in range(6)], REPLY), FakeClock()
    model = patient(inner, clock, WaitPolicy(max_total_s=3600, first_s=10, longest_s=100))
    ask(model)
    assert [w.next_try_s for w in model.waits] == [10, 20, 40, 80, 100, 100]
    assert [w.attempt for w in model.waits] == [1, 2, 3, 4, 5, 6]
    assert clock.slept == 350


def test_the_apis_retry_after_is_honoured_within_the_shortest_and_longest_wait() -> None:
    inner = FakeModel(overloaded(retry_after_s=7), overloaded(retry_after_s=0.1),
                      overloaded(retry_after_s=9999), REPLY)
    clock = FakeClock()
    model = patient(inner, clock, WaitPolicy(max_total_s=3600, first_s=15, longest_s=300,
                                             shortest_s=1))
    ask(model)
    assert [w.next_try_s for w in model.waits] == [7, 1, 300]
    assert clock.slept == 308


def test_a_wait_polls_for_a_stop_and_sleeps_no_longer_than_it_said() -> None:
    inner, clock = FakeModel(overloaded(retry_after_s=3.5), REPLY), FakeClock()
    ask(patient(inner, clock, WaitPolicy(poll_s=1)))
    assert clock.sleeps == [1, 1, 1, 0.5]


def test_each_wait_is_reported_and_the_recovery_once() -> None:
    reports: list[ModelWait | None] = []
    inner, clock = FakeModel(overloaded(), overloaded(), REPLY), FakeClock()
    ask(patient(inner, clock, on_wait=reports.append))
    assert reports == [ModelWait("overloaded", 15, 0, 1), ModelWait("overloaded", 30, 15, 2), None]


def test_a_call_that_succeeds_at_once_reports_nothing() -> None:
    reports: list[ModelWait | None] = []
    inner, clock = FakeModel(REPLY), FakeClock()
    assert ask(patient(inner, clock, on_wait=reports.append)) is REPLY
    assert reports == [] and clock.sleeps == [] and len(inner.calls) == 1


def test_an_outage_longer_than_the_policy_waits_pauses_the_task_with_its_reason() -> None:
    limited = ModelError("429 too many requests", retryable=True, reason="rate limited")
    inner, clock = FakeModel(*[limited for _ in range(10)]), FakeClock()
    model = patient(inner, clock, WaitPolicy(max_total_s=60, first_s=15, longest_s=300))
    with pytest.raises(ModelUnavailable) as caught:
        ask(model)
    error = caught.value
    assert isinstance(error, NeedsHuman) and error.reason == "model_unavailable"
    assert error.cause == "rate limited"
    assert "rate limited" in str(error) and "60 s" in str(error) and "429" in str(error)
    assert error.__cause__ is limited
    assert clock.slept == 60  # 15 + 30, then the 15 s that were left: never past the limit
    assert len(inner.calls) == 4


def test_a_non_retryable_error_passes_through_at_once() -> None:
    reports: list[ModelWait | None] = []
    bad_request = ModelError("400 prompt too long", retryable=False, reason="bad request")
    for error in (bad_request, ModelKeyRefused("every key was refused")):
        inner, clock = FakeModel(error), FakeClock()
        with pytest.raises(ModelError) as caught:
            ask(patient(inner, clock, on_wait=reports.append))
        assert caught.value is error
        assert len(inner.calls) == 1 and clock.sleeps == []
    assert reports == []


def test_a_stop_during_a_wait_ends_it_within_one_poll() -> None:
    clock = FakeClock()
    asked: list[float] = []

    def stop() -> bool:
        asked.append(clock.now)
        return clock.now - 1000.0 >= 3  # a person's cancel arrives 3 s into a 15 s wait

    inner = FakeModel(overloaded(), REPLY)
    model = patient(inner, clock, WaitPolicy(poll_s=1), stop=stop)
    with pytest.raises(WaitStopped) as caught:
        ask(model)
    assert isinstance(caught.value, NeedsHuman) and caught.value.reason == "stop_requested"
    assert clock.slept == 3 and len(inner.calls) == 1  # stopped, not asked again


def test_a_recovered_outage_does_not_count_against_the_next() -> None:
    policy = WaitPolicy(max_total_s=50, first_s=15, longest_s=300)
    reports: list[ModelWait | None] = []
    inner = FakeModel(overloaded(), overloaded(), REPLY, overloaded(), overloaded(), REPLY)
    clock = FakeClock()
    model = patient(inner, clock, policy, on_wait=reports.append)
    assert ask(model) is REPLY  # 45 s of a 50 s allowance
    assert ask(model) is REPLY  # another 45 s: a new outage, a new allowance and backoff
    assert [w.next_try_s for w in model.waits] == [15, 30, 15, 30]
    assert [w.waited_s for w in model.waits] == [0, 15, 0, 15]
    assert reports.count(None) == 2


def test_the_wrapped_models_id_is_kept_for_the_budget() -> None:
    assert patient(FakeModel(), FakeClock()).model == "claude-test"


@pytest.mark.parametrize(("wait", "text"), [
    (ModelWait("overloaded", 15, 0, 1),
     "Waiting for the model API (overloaded), next try in 15 s (waited 0 s so far)."),
    (ModelWait("rate limited", 29.6, 119.9, 3),
     "Waiting for the model API (rate limited), next try in 30 s (waited 119 s so far)."),
    (ModelWait("server error", 300, 1500, 9),
     "Waiting for the model API (server error), next try in 300 s (waited 25 min so far)."),
])
def test_a_wait_describes_itself_for_the_status_comment(wait: ModelWait, text: str) -> None:
    assert wait.describe() == text


def test_a_failure_without_a_hint_after_many_hinted_ones_backs_off_from_the_start() -> None:
    # Many "retry after 5 s" answers, then a dropped connection: its wait is first_s, not the cap
    # (the full suite once waited 5 min here while the API was already back).
    clock = FakeClock()
    dropped = ModelError("connection reset", retryable=True, reason="unreachable")
    inner = FakeModel(*[overloaded(5.0)] * 8, dropped, dropped, REPLY)
    model = PatientModel(inner, WaitPolicy(first_s=15.0, longest_s=300.0), sleep=clock.sleep,
                         clock=clock)
    assert model.complete(system=SYSTEM, messages=MESSAGES, tools=TOOLS) == REPLY
    assert [w.next_try_s for w in model.waits] == [5.0] * 8 + [15.0, 30.0]
