"""Folding events into the status comment: pure, so built from hand-written events."""

from __future__ import annotations

from typing import Any

from github_app.tracker.eventlog import (
    Event,
    Kind,
    Progress,
    fold,
    latest_run,
    open_runs,
)
from github_app.tracker.status import PlanStep, StatusView, render

TASK = "octo/widgets#7"


def events(run: str, *specs: tuple[Kind, dict[str, Any]], start_s: int = 0) -> list[Event]:
    """Events of one run, one second apart from ``start_s``."""
    return [Event(TASK, run, n, f"2025-01-02T03:{(start_s + n) // 60:02d}:{(start_s + n) % 60:02d}"
                  ".000+00:00", kind, data) for n, (kind, data) in enumerate(specs, 1)]


REALISTIC: list[Event] = events(
    "run-1",
    ("run_started", {"max_steps": 40, "budget_usd": 3.0}),
    ("state", {"state": "running", "detail": "Checking out the repository…"}),
    ("test_result", {"phase": "before", "passed": 12, "failed": 1}),
    ("state", {"state": "running", "detail": "Planning the fix…",
               "plan": ["Find the parser bug", "Fix it", "Add a test"]}),
    ("step_started", {"step": 1, "plan_item": "Find the parser bug"}),
    ("tool_call", {"name": "read_file", "summary": "src/parse.py"}),
    ("spend", {"tokens": 4_000, "cost_usd": 0.04}),
    ("step_finished", {"step": 1}),
    ("step_started", {"plan_item": "Fix it", "plan": [{"text": "Find the parser bug", "done": True},
                                                       "Fix it", "Add a test"]}),
    ("tool_call", {"name": "edit_file", "summary": "src/parse.py"}),
    ("error", {"message": "edit did not apply: no match"}),  # not fatal: the agent retries
    ("tool_call", {"name": "run_tests", "summary": ""}),
    ("spend", {"tokens": 9_500, "cost_usd": 0.1234}),
    ("step_finished", {"step": 2, "commit": "abc1234def5678"}),
    ("test_result", {"phase": "after", "summary": "13 passed, 0 failed"}),
    ("state", {"state": "pr_opened", "pr_url": "https://github.com/octo/widgets/pull/8",
               "detail": "Opened a pull request."}),
    ("run_finished", {"state": "pr_opened"}),
)


def test_a_realistic_run_folds_to_what_the_comment_shows() -> None:
    progress = fold(REALISTIC)

    assert progress == Progress(
        task=TASK, run="run-1", state="pr_opened", step=2, max_steps=40, action="", plan_item="Fix it",
        detail="Opened a pull request.", tokens=9_500, cost_usd=0.1234, budget_usd=3.0,
        elapsed_s=16.0, tests_before="12 passed, 1 failed", tests_after="13 passed, 0 failed",
        commits=("abc1234def5678",), pr_url="https://github.com/octo/widgets/pull/8",
        plan=(PlanStep("Find the parser bug", True), PlanStep("Fix it"), PlanStep("Add a test")),
        error="edit did not apply: no match", finished=True, last_seq=17)


def test_mid_run_shows_the_current_step_and_action() -> None:
    progress = fold(REALISTIC[:10])

    assert (progress.state, progress.step, progress.action) == ("running", 2, "edit_file src/parse.py")
    assert progress.finished is False and progress.tokens == 4_000
    body = render(progress)  # the fold is the record the comment renders
    assert "step 2/~40 · 4,000 tokens · $0.0400 of $3.00" in body
    assert "Now: Fix it · edit_file src/parse.py" in body
    assert "- [x] Find the parser bug" in body and "- [ ] Fix it" in body
    assert "Tests: before 12 passed, 1 failed · after —" in body


def test_the_folded_record_is_what_the_comment_renders() -> None:
    record = fold(REALISTIC)

    assert isinstance(record, StatusView) and record.task == TASK
    body = render(record)
    assert "✅ **pull request opened**" in body
    assert "Pull request: https://github.com/octo/widgets/pull/8" in body
    assert "Commits: `abc1234`" in body
    assert "Now:" not in body  # only a running task says what it is on


def test_a_fatal_error_fails_the_run_and_becomes_the_detail() -> None:
    progress = fold(events("run-1", ("run_started", {}), ("step_started", {}),
                           ("error", {"message": "sandbox died", "fatal": True})))

    assert progress.state == "failed" and progress.error == "sandbox died" and progress.step == 1
    assert progress.shown_detail == "sandbox died" and "sandbox died" in render(progress)


def test_the_latest_run_wins_and_a_resume_carries_its_numbers() -> None:
    first = events("run-a", ("run_started", {"max_steps": 10}), ("spend", {"tokens": 100}),
                   ("run_finished", {"state": "paused"}))
    second = events("run-b", ("run_started", {"step": 5, "tokens": 100, "cost_usd": 0.2,
                                              "elapsed_s": 30.0, "commits": ["c1"]}),
                    ("step_started", {}), start_s=100)
    mixed = [first[0], second[0], first[1], second[1], first[2]]  # a straggler from run-a last

    assert latest_run(mixed) == "run-b"
    progress = fold(mixed)
    assert (progress.run, progress.state, progress.step) == ("run-b", "running", 6)
    assert (progress.tokens, progress.cost_usd, progress.commits) == (100, 0.2, ("c1",))
    assert progress.elapsed_s == 31.0  # 30 s before the resume + 1 s since


def test_duplicates_and_out_of_order_events_fold_once_in_seq_order() -> None:
    run = events("r", ("run_started", {}), ("step_started", {}), ("step_started", {}))
    assert fold([run[2], run[0], run[1], run[1]]).step == 2


def test_garbage_fields_leave_the_previous_values() -> None:
    progress = fold(events("r", ("run_started", {"max_steps": 5, "budget_usd": 1.0}),
                           ("spend", {"tokens": 10, "cost_usd": 0.5}),
                           ("spend", {"tokens": "many", "cost_usd": float("inf")}),
                           ("state", {"state": "exploded", "max_steps": -1, "budget_usd": True}),
                           ("state", {"plan": ["ok", {"done": True}, 3, {"text": "t"}]})))

    assert (progress.tokens, progress.cost_usd, progress.state) == (10, 0.5, "running")
    assert (progress.max_steps, progress.budget_usd) == (5, 1.0)
    assert progress.plan == (PlanStep("ok"), PlanStep("t"))


def test_no_dollar_budget_is_none() -> None:
    progress = fold(events("r", ("run_started", {"budget_usd": 2.0}), ("spend", {"budget_usd": None})))
    assert progress.budget_usd is None


def test_no_events_fold_to_an_empty_progress_without_a_state() -> None:
    assert fold([]) == Progress() and Progress().state is None
    assert "🛠️ **working**" in render(Progress())  # no run yet reads as running


def test_open_runs_are_those_started_and_never_closed_with_their_last_seq() -> None:
    lost = events("run-1", ("run_started", {}), ("step_started", {}), ("tool_call", {"name": "x"}))
    done = events("run-2", ("run_started", {}), ("run_finished", {"state": "done"}))
    reopened = events("run-3", ("run_started", {}), ("run_finished", {"state": "paused"}),
                      ("run_started", {}))
    stray = events("run-4", ("progress", {}))  # never started: nothing to close
    assert open_runs([*lost, *done, *reopened, *stray]) == {"run-1": 3, "run-3": 3}


def test_a_run_closed_by_the_fleet_folds_to_the_task_state_and_says_how_it_ended() -> None:
    closed = events("run-1", ("run_started", {}), ("tool_call", {"name": "edit_file"}),
                    ("run_finished", {"state": "queued", "interrupted": "lost"}))
    progress = fold(closed)
    assert (progress.state, progress.finished, progress.interrupted, progress.action) == (
        "queued", True, "lost", "")
    assert fold(closed[:2]).interrupted is None and fold(REALISTIC).interrupted is None
