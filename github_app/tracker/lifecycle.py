"""The task lifecycle, as data: the states, their labels, and every allowed transition.

An issue is a task; its ``nightcrew:*`` label is the coarse state and the signed checkpoint
under the status comment the exact one. Every part that moves a task — intake (a person's
command), the pipeline (the run's own progress), the stopper (a stop from outside), the sweep (a
lost worker) and the reconciler (a lost Redis) — asks ``transition`` here instead of deciding on
strings of its own::

    (none) ──start──▶ queued ──dispatch──▶ running ──pushed──▶ publishing ──pr_opened──▶ pr_opened
                        ▲  ▲                 │  │                  │
                        │  └─────lost────────┘  ├─▶ needs_approval / paused / cancelled / failed
                        └──resume / retry───────┘   (and no_change, done)

``docs/architecture.md`` draws the whole table; a test keeps the drawing and the table equal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

State = Literal["queued", "running", "publishing", "needs_approval", "paused", "pr_opened", "done",
                "no_change", "failed", "cancelled"]
STATES: tuple[State, ...] = get_args(State)

# What a person types (``/nightcrew <command>``, or the trigger label for ``start``).
Command = Literal["start", "cancel", "pause", "resume", "retry", "retry_fresh", "budget", "approve",
                  "status"]
COMMANDS: tuple[Command, ...] = get_args(Command)
# What happens to a task without anyone typing.
Happening = Literal["dispatched", "pushed", "finished", "pr_opened", "no_change", "failed",
                    "ask_approval", "paused", "cancelled", "lost", "stopped_cancel", "stopped_pause"]
HAPPENINGS: tuple[Happening, ...] = get_args(Happening)
Event = Command | Happening

LABELS: dict[State, str] = {
    "queued": "nightcrew:queued",
    "running": "nightcrew:running",
    "publishing": "nightcrew:running",  # pushed, opening the PR: to a person it is still running
    "needs_approval": "nightcrew:needs-approval",
    "paused": "nightcrew:paused",
    "pr_opened": "nightcrew:done",
    "done": "nightcrew:done",
    "no_change": "nightcrew:failed",
    "failed": "nightcrew:failed",
    "cancelled": "nightcrew:cancelled",
}
ALL_LABELS: tuple[str, ...] = tuple(sorted(set(LABELS.values())))

# States with a live queue entry: a lost Redis must bring them back (the reconciler), a lost
# worker must run them again (the sweep), and a crash resumes into them.
ACTIVE: frozenset[State] = frozenset({"queued", "running", "publishing"})
# States a run ended in; a person's resume/retry takes the task up again from its checkpoint.
STOPPED: frozenset[State] = frozenset({"needs_approval", "paused", "failed", "cancelled"})
ENDED: frozenset[State] = frozenset({"pr_opened", "done", "no_change"})
FINAL: frozenset[State] = ENDED | STOPPED
# A resumed run takes up the untested work in progress of a run in these states; after a
# failure or a cancel the retry starts from the last green commit.
WIP_RESUMES: frozenset[State] = frozenset({"queued", "running", "paused", "needs_approval"})


@dataclass(frozen=True)
class Refusal:
    """Why the event does not apply to the task in its state (said to the person who asked)."""

    reason: str


@dataclass(frozen=True)
class Move:
    """The state the event leads to; ``deferred``: the running task gets there itself, at its
    next step (a stop request, a grant it folds in), so nothing changes on the issue now."""

    to: State
    deferred: bool = False


_ENDINGS: dict[Happening, State] = {
    "finished": "done", "pr_opened": "pr_opened", "no_change": "no_change", "failed": "failed",
    "ask_approval": "needs_approval", "paused": "paused", "cancelled": "cancelled",
}


def _table() -> dict[tuple[State | None, Event], Move]:
    table: dict[tuple[State | None, Event], Move] = {}
    live: tuple[State, ...] = ("running", "publishing")
    for ended in (None, *sorted(FINAL)):
        table[(ended, "start")] = Move("queued")
    for stopped in sorted(STOPPED):
        for again in _AGAIN:
            table[(stopped, again)] = Move("queued")
    # A run that changed nothing carries the failed label and its status comment offers a retry
    # (from the branch: its checkpoint is not one a resume takes up).
    retries: tuple[Command, ...] = ("retry", "retry_fresh")
    for again in retries:
        table[("no_change", again)] = Move("queued")
    for active in sorted(ACTIVE):
        for grant in _GRANTS:
            table[(active, grant)] = Move(active, deferred=True)
    table[("queued", "cancel")] = Move("cancelled")
    table[("queued", "pause")] = Move("paused")
    # A paused task, or one waiting for approval, is offered `cancel` too: it ends cancelled
    # at once (nothing runs), its checkpoint kept for a later `retry`.
    table[("paused", "cancel")] = Move("cancelled")
    table[("needs_approval", "cancel")] = Move("cancelled")
    table[("queued", "dispatched")] = Move("running")
    table[("queued", "stopped_cancel")] = Move("cancelled")
    table[("queued", "stopped_pause")] = Move("paused")
    for state in live:
        table[(state, "cancel")] = Move("cancelled", deferred=True)
        table[(state, "pause")] = Move("paused", deferred=True)
        table[(state, "stopped_cancel")] = Move("cancelled")
        table[(state, "stopped_pause")] = Move("paused")
        table[(state, "lost")] = Move("queued")
    table[("running", "pushed")] = Move("publishing")
    for ending, target in _ENDINGS.items():
        table[("running", ending)] = Move(target)
    for ending in _PUBLISHING_ENDS:
        table[("publishing", ending)] = Move(_ENDINGS[ending])
    for final in sorted(FINAL):
        table[(final, "status")] = Move(final)
    return table


_AGAIN: tuple[Command, ...] = ("resume", "retry", "retry_fresh", "budget", "approve")
_GRANTS: tuple[Command, ...] = ("budget", "approve", "status")
_PUBLISHING_ENDS: tuple[Happening, ...] = ("pr_opened", "failed", "paused", "cancelled")


TRANSITIONS: dict[tuple[State | None, Event], Move] = _table()


def transition(state: State | None, event: Event) -> Move | Refusal:
    """Where ``event`` takes a task in ``state`` (``None``: the issue has no task yet)."""
    move = TRANSITIONS.get((state, event))
    if move is not None:
        return move
    return Refusal(_why_not(state, event))


def _why_not(state: State | None, event: Event) -> str:
    if state is None:
        if event == "status":
            return ("There is no nightcrew task on this issue yet; label it or say "
                    "`/nightcrew fix` to start one.")
        if event in ("resume", "retry", "retry_fresh"):
            return (f"There is no stopped nightcrew task on this issue to {_verb(event)}; label it "
                    "or say `/nightcrew fix` to start one.")
        return f"There is no nightcrew task on this issue to {_verb(event)}."
    if event == "start":
        return "A nightcrew task is already queued or running on this issue."
    if state in ACTIVE and event in ("resume", "retry", "retry_fresh"):
        # Intake only notes these (the task goes on by itself), but the reason must still be true.
        return (f"The task on this issue is already {describe(state)}; there is nothing to "
                f"{_verb(event)}.")
    if event in ("cancel", "pause"):
        return f"There is no queued or running nightcrew task on this issue to {event}."
    if event in ("resume", "retry", "retry_fresh"):
        return (f"There is no stopped nightcrew task on this issue to {_verb(event)}; label it "
                "or say `/nightcrew fix` to start one.")
    if event in ("budget", "approve"):
        return f"The task on this issue is {describe(state)}; there is nothing to {event}."
    return f"A task that is {describe(state)} cannot be {event.replace('_', ' ')}."


def _verb(event: Event) -> str:
    return "retry" if event == "retry_fresh" else event.replace("_", " ")


def label(state: State) -> str:
    """The ``nightcrew:*`` label a task in ``state`` carries."""
    return LABELS[state]


def state_of_labels(labels: set[str] | frozenset[str]) -> State | None:
    """The stopped or final state an issue's labels show (``None``: no such label).

    Only for states with no queue entry: queued and running are told by Redis, never by a
    label, which anyone with triage rights can set.
    """
    for state in ("paused", "needs_approval", "failed", "cancelled", "done"):
        if LABELS[state] in labels:
            return state
    return None


def describe(state: State) -> str:
    """The state in words, for messages to people."""
    return {"needs_approval": "waiting for approval", "pr_opened": "done (pull request opened)",
            "no_change": "stopped without a change",
            "publishing": "opening its pull request"}.get(state, state)


def parse_state(text: str) -> State:
    """``text`` as a state; ``ValueError`` names it otherwise (a checkpoint from a newer writer)."""
    for state in STATES:
        if state == text:
            return state
    raise ValueError(f"not a task state: {text!r}")


def command_for(kind: str, args: str = "") -> Command:
    """The lifecycle command a steering verb is (``retry fresh`` is its own)."""
    if kind == "retry" and args.strip().lower() == "fresh":
        return "retry_fresh"
    for command in COMMANDS:
        if command == kind:
            return command
    raise ValueError(f"not a steering command: {kind!r}")
