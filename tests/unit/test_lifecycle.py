"""The task lifecycle as data: every command in every state, the run's own happenings, labels.

The expected tables are written out here by hand, not derived from the module: a change to
``lifecycle.TRANSITIONS`` must be a change to this file too. They follow what intake has always
done with a person's command (tests/contract/test_intake.py): a stop of a queued task is at once,
of a running one a request; resume/retry/budget/approve take a stopped task up again; a grant to
a live task waits for its next step.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from github_app.tracker import lifecycle
from github_app.tracker.lifecycle import Command, Happening, Move, Refusal, State


@dataclass(frozen=True)
class Refused:
    """An expected refusal: its reason must say this (and be a sentence, see ``_a_sentence``)."""

    says: str


Expected = Move | Refused

GO_QUEUED = Move("queued")
NO_TASK = Refused("There is no nightcrew task on this issue")
NOTHING_STOPPED = Refused("There is no stopped nightcrew task on this issue")
ALREADY_LIVE = Refused("already queued or running")
NOTHING_TO_STOP = Refused("There is no queued or running nightcrew task")
NOTHING_TO_GRANT = Refused("there is nothing to")


def _stopped(state: State) -> dict[Command, Expected]:
    """A run that stopped and can be taken up again (resumable from its checkpoint)."""
    return {"start": GO_QUEUED, "cancel": NOTHING_TO_STOP, "pause": NOTHING_TO_STOP,
            "resume": GO_QUEUED, "retry": GO_QUEUED, "retry_fresh": GO_QUEUED,
            "budget": GO_QUEUED, "approve": GO_QUEUED, "status": Move(state)}


def _ended(state: State) -> dict[Command, Expected]:
    """A run that finished: a new start, or a status answer, is all there is."""
    return {"start": GO_QUEUED, "cancel": NOTHING_TO_STOP, "pause": NOTHING_TO_STOP,
            "resume": NOTHING_STOPPED, "retry": NOTHING_STOPPED, "retry_fresh": NOTHING_STOPPED,
            "budget": NOTHING_TO_GRANT, "approve": NOTHING_TO_GRANT, "status": Move(state)}


def _live(state: State) -> dict[Command, Expected]:
    """A task a worker runs: stops and grants reach it at its next step."""
    already = Refused(f"already {'opening its pull request' if state == 'publishing' else state}")
    return {"start": ALREADY_LIVE, "cancel": Move("cancelled", deferred=True),
            "pause": Move("paused", deferred=True), "resume": already, "retry": already,
            "retry_fresh": already, "budget": Move(state, deferred=True),
            "approve": Move(state, deferred=True), "status": Move(state, deferred=True)}


EXPECTED: dict[State | None, dict[Command, Expected]] = {
    None: {"start": GO_QUEUED, "cancel": NO_TASK, "pause": NO_TASK, "resume": NOTHING_STOPPED,
           "retry": NOTHING_STOPPED, "retry_fresh": NOTHING_STOPPED, "budget": NO_TASK,
           "approve": NO_TASK, "status": NO_TASK},
    "queued": {"start": ALREADY_LIVE, "cancel": Move("cancelled"), "pause": Move("paused"),
               "resume": Refused("already queued"), "retry": Refused("already queued"),
               "retry_fresh": Refused("already queued"), "budget": Move("queued", deferred=True),
               "approve": Move("queued", deferred=True), "status": Move("queued", deferred=True)},
    "running": _live("running"),
    "publishing": _live("publishing"),
    # Waiting for a person, nothing runs: a cancel ends the task at once.
    "needs_approval": {**_stopped("needs_approval"), "cancel": Move("cancelled")},
    "paused": {**_stopped("paused"), "cancel": Move("cancelled")},
    "failed": _stopped("failed"),
    "cancelled": _stopped("cancelled"),
    "pr_opened": _ended("pr_opened"),
    "done": _ended("done"),
    # Labelled nightcrew:failed and offered `/nightcrew retry` by its status comment.
    "no_change": {**_ended("no_change"), "retry": GO_QUEUED, "retry_fresh": GO_QUEUED},
}

PAIRS = [(state, command) for state, row in EXPECTED.items() for command in row]


def _a_sentence(reason: str) -> None:
    """A reason said to a person: one plain sentence, no internal names."""
    assert reason[:1].isupper() and reason.endswith("."), reason
    assert "_" not in reason and "None" not in reason, reason
    assert "task" in reason, reason


def test_the_expected_table_names_every_state_and_every_command() -> None:
    assert set(EXPECTED) == {None, *lifecycle.STATES}
    for row in EXPECTED.values():
        assert tuple(row) == lifecycle.COMMANDS


@pytest.mark.parametrize(("state", "command"), PAIRS)
def test_every_command_in_every_state(state: State | None, command: Command) -> None:
    expected = EXPECTED[state][command]
    got = lifecycle.transition(state, command)
    if isinstance(expected, Move):
        assert got == expected
    else:
        assert isinstance(got, Refusal), got
        assert expected.says in got.reason
        _a_sentence(got.reason)


@pytest.mark.parametrize("command", ["resume", "retry", "retry_fresh", "status"])
def test_a_command_on_an_issue_without_a_task_says_how_to_start_one(command: Command) -> None:
    refusal = lifecycle.transition(None, command)
    assert isinstance(refusal, Refusal) and "`/nightcrew fix`" in refusal.reason


def test_a_refused_stop_names_the_command_asked_for() -> None:
    for command in ("cancel", "pause"):
        for state in (None, "failed", "done"):
            refusal = lifecycle.transition(state, command)
            assert isinstance(refusal, Refusal) and refusal.reason.endswith(f"to {command}.")


def test_retry_fresh_is_said_as_retry() -> None:
    refusal = lifecycle.transition("done", "retry_fresh")
    assert isinstance(refusal, Refusal) and "to retry;" in refusal.reason


# The run's own progress and the stops from outside: for each happening, the states it applies
# in and where it leads; it is refused in every other state (and on an issue without a task).
ALLOWED: dict[Happening, dict[State, State]] = {
    "dispatched": {"queued": "running"},
    "pushed": {"running": "publishing"},
    "finished": {"running": "done"},
    "pr_opened": {"running": "pr_opened", "publishing": "pr_opened"},
    "no_change": {"running": "no_change"},
    "failed": {"running": "failed", "publishing": "failed"},
    "ask_approval": {"running": "needs_approval"},
    "paused": {"running": "paused", "publishing": "paused"},
    "cancelled": {"running": "cancelled", "publishing": "cancelled"},
    "lost": {"running": "queued", "publishing": "queued"},
    "stopped_cancel": {"queued": "cancelled", "running": "cancelled", "publishing": "cancelled"},
    "stopped_pause": {"queued": "paused", "running": "paused", "publishing": "paused"},
}


def test_the_happenings_table_names_every_happening() -> None:
    assert tuple(ALLOWED) == lifecycle.HAPPENINGS


@pytest.mark.parametrize("happening", list(ALLOWED))
def test_each_happening_moves_the_task_at_once_only_where_it_applies(happening: Happening) -> None:
    for state in (None, *lifecycle.STATES):
        got = lifecycle.transition(state, happening)
        target = ALLOWED[happening].get(state) if state is not None else None
        if target is None:
            assert isinstance(got, Refusal), (state, got)
            _a_sentence(got.reason)
        else:
            assert got == Move(target), (state, got)  # never deferred: it has happened


def test_a_refused_happening_says_what_could_not_happen_in_which_state() -> None:
    refusal = lifecycle.transition("queued", "pushed")
    assert isinstance(refusal, Refusal)
    assert refusal.reason == "A task that is queued cannot be pushed."
    refusal = lifecycle.transition("publishing", "ask_approval")
    assert isinstance(refusal, Refusal) and "opening its pull request" in refusal.reason


def test_a_run_goes_from_queued_through_publishing_to_its_pull_request() -> None:
    state: State | None = None
    for event in ("start", "dispatched", "pushed", "pr_opened"):
        move = lifecycle.transition(state, event)
        assert isinstance(move, Move) and not move.deferred
        state = move.to
    assert state == "pr_opened"


def test_the_table_holds_no_happening_or_command_it_does_not_declare() -> None:
    events = {*lifecycle.COMMANDS, *lifecycle.HAPPENINGS}
    for state, event in lifecycle.TRANSITIONS:
        assert state is None or state in lifecycle.STATES
        assert event in events


# -- labels ----------------------------------------------------------------------------------


def test_each_state_carries_its_label_publishing_shows_as_running() -> None:
    assert {state: lifecycle.label(state) for state in lifecycle.STATES} == {
        "queued": "nightcrew:queued",
        "running": "nightcrew:running",
        "publishing": "nightcrew:running",
        "needs_approval": "nightcrew:needs-approval",
        "paused": "nightcrew:paused",
        "pr_opened": "nightcrew:done",
        "done": "nightcrew:done",
        "no_change": "nightcrew:failed",
        "failed": "nightcrew:failed",
        "cancelled": "nightcrew:cancelled",
    }


def test_all_labels_is_each_distinct_label_once_sorted() -> None:
    assert lifecycle.ALL_LABELS == ("nightcrew:cancelled", "nightcrew:done", "nightcrew:failed",
                                    "nightcrew:needs-approval", "nightcrew:paused",
                                    "nightcrew:queued", "nightcrew:running")
    assert set(lifecycle.LABELS.values()) == set(lifecycle.ALL_LABELS)
    assert "nightcrew" not in lifecycle.ALL_LABELS  # the trigger label is not a state label


@pytest.mark.parametrize(("labels", "state"), [
    (set(), None),
    ({"nightcrew", "bug"}, None),
    ({"nightcrew:paused"}, "paused"),
    ({"nightcrew:needs-approval"}, "needs_approval"),
    ({"nightcrew:failed"}, "failed"),
    ({"nightcrew:cancelled"}, "cancelled"),
    ({"nightcrew:done"}, "done"),
    # Queued and running are told by Redis: anyone with triage rights can set a label.
    ({"nightcrew:queued"}, None),
    ({"nightcrew:running"}, None),
    # A stale done label beside a stopped one: the stopped one can still be taken up.
    ({"nightcrew:done", "nightcrew:failed"}, "failed"),
    ({"nightcrew:cancelled", "nightcrew:paused"}, "paused"),
])
def test_state_of_labels_reads_only_stopped_and_final_states(
    labels: set[str], state: State | None,
) -> None:
    assert lifecycle.state_of_labels(labels) == state
    assert lifecycle.state_of_labels(frozenset(labels)) == state


def test_the_state_a_label_shows_takes_a_resume_where_the_label_says() -> None:
    # intake reads the label, then asks the table: a failed label can be retried, a done one not.
    assert lifecycle.transition(lifecycle.state_of_labels({"nightcrew:failed"}), "retry") == GO_QUEUED
    assert isinstance(lifecycle.transition(lifecycle.state_of_labels({"nightcrew:done"}), "retry"),
                      Refusal)


# -- state groups ----------------------------------------------------------------------------


def test_active_stopped_and_ended_partition_the_states() -> None:
    assert lifecycle.ACTIVE == {"queued", "running", "publishing"}
    assert lifecycle.STOPPED == {"needs_approval", "paused", "failed", "cancelled"}
    assert lifecycle.ENDED == {"pr_opened", "done", "no_change"}
    groups = (lifecycle.ACTIVE, lifecycle.STOPPED, lifecycle.ENDED)
    for state in lifecycle.STATES:
        assert sum(state in group for group in groups) == 1, state
    assert lifecycle.FINAL == lifecycle.STOPPED | lifecycle.ENDED
    assert not lifecycle.FINAL & lifecycle.ACTIVE
    assert lifecycle.FINAL | lifecycle.ACTIVE == set(lifecycle.STATES)


def test_work_in_progress_is_taken_up_after_a_crash_pause_or_approval_not_a_failure() -> None:
    assert lifecycle.WIP_RESUMES == {"queued", "running", "paused", "needs_approval"}


# -- parsing ---------------------------------------------------------------------------------


def test_parse_state_reads_every_state() -> None:
    assert [lifecycle.parse_state(state) for state in lifecycle.STATES] == list(lifecycle.STATES)


@pytest.mark.parametrize("text", ["", "Queued", "finished", "nightcrew:queued", " running"])
def test_parse_state_names_the_text_it_cannot_read(text: str) -> None:
    with pytest.raises(ValueError, match="not a task state") as caught:
        lifecycle.parse_state(text)
    assert repr(text) in str(caught.value)
