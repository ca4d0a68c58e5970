"""The status comment of a running task: one comment, edited in place, throttled, and the
signed checkpoint under it."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from github_app.github import GitHost
from github_app.tasks import TaskKey
from github_app.tracker import lifecycle
from github_app.tracker.checkpoint import MAX_SUMMARY_CHARS, Checkpoint, utc_now
from github_app.tracker.eventlog import EventLog, Kind, RunFold
from github_app.tracker.issue import IssueTracker
from github_app.tracker.lifecycle import State
from github_app.tracker.record import PlanStep, RunRecord, RunUpdate
from github_app.tracker.status import StatusView

STATUS_MIN_INTERVAL_S = 3.0  # GitHub's secondary rate limits dislike rapid edits


class StatusReporter:
    """Keeps the one status comment current: throttled, but every state change is written.

    The comment is rendered from the run's event log: ``update`` records what changed as events
    (``EventLog``), every event the run records (these and anyone else's, e.g. an error) is
    folded by ``eventlog.RunFold``, and the comment shows that fold. Before ``start`` the view is
    what the constructor and a restored checkpoint set; ``start`` records it as ``run_started``.
    """

    def __init__(self, host: GitHost, task: TaskKey, comment_id: int | None,
                 checkpoint_key: bytes | None, events: EventLog) -> None:
        self.host = host
        self.events = events
        self.task = task
        self.view = StatusView("running", str(task))
        self.tracker = IssueTracker(host, task, checkpoint_key, comment_id=comment_id or None)
        # An existing status comment is taken as it is: its checkpoint is what this run resumes
        # from, so nothing is written over it before it was read.
        if self.tracker.find() is None:
            self.tracker.write(self.view)
        self.comment_id: int = self.tracker.comment_id or 0
        self._last_write = 0.0
        self._key = checkpoint_key
        self.base_sha: str | None = None
        self.budget: dict[str, Any] = {}
        self.pr_number: int | None = None
        self.approved: set[str] = set()
        self.elapsed_before = 0.0  # wall time of earlier runs of this task (from the checkpoint)
        self.summary = ""
        self._fold: RunFold | None = None  # set by ``start``

    def start(self, **data: Any) -> None:
        """Record ``run_started`` with what the view holds so far (a resumed task's step, plan,
        commits, spend and time); from here on the view is the fold of the run's events."""
        view = self.view
        self._fold = RunFold(run=self.events.run)
        self.events.listeners.append(self._fold.apply)
        self.events.emit("run_started", **data, step=view.step, tokens=view.tokens,
                         cost_usd=view.cost_usd, elapsed_s=self.elapsed_before,
                         commits=list(view.commits), plan=_plan_json(view.plan), note=view.note)
        self.view = self._folded()

    def update(self, change: RunUpdate | None = None, *, force: bool = False) -> None:
        """Record the change as events; write the folded view when forced, on a state or plan
        change, or after the interval."""
        change = change or RunUpdate()
        if change.budget_snapshot is not None:
            self.budget = dict(change.budget_snapshot)
        if change.approved_kinds is not None:
            self.approved = set(change.approved_kinds)
        previous = self.view
        if self._fold is None:  # not started: nothing to fold yet (e.g. a failure before start)
            self.view = replace(self.view, **_shown(change))
        else:
            for kind, data in _events(previous, change):
                self.events.emit(kind, **data)
            self.view = self._folded()
        due = time.monotonic() - self._last_write >= STATUS_MIN_INTERVAL_S
        # State and plan progress are what a resume needs: written at once, never throttled.
        if force or due or previous.state != self.view.state or previous.plan != self.view.plan:
            self.tracker.write(self.view, self._checkpoint() if self._key else None)
            self._last_write = time.monotonic()

    def _folded(self) -> StatusView:
        assert self._fold is not None
        return status_view(self._fold.freeze(), str(self.task))

    def _checkpoint(self) -> Checkpoint:
        """The checkpoint of what the issue shows: state, step, plan, commits, budget."""
        view = self.view
        return Checkpoint(
            task=str(self.task), state=view.shown_state, step=view.step,
            branch=self.task.branch, summary=self.summary[:MAX_SUMMARY_CHARS],
            head_sha=view.commits[-1] if view.commits else None, base_sha=self.base_sha,
            plan=tuple((s.text, s.done) for s in view.plan), budget=self.budget,
            approved=tuple(sorted(self.approved)),
            pr_number=self.pr_number, writes=(), updated_at=utc_now(),
        )

    def advance(self, event: lifecycle.Happening, change: RunUpdate | None = None) -> State:
        """Move the task along the lifecycle (``lifecycle.transition``): the label, then the
        comment, written at once. A move the table does not allow is a bug and raises."""
        move = lifecycle.transition(self.view.shown_state, event)
        if isinstance(move, lifecycle.Refusal):
            raise LifecycleError(f"{self.task}: {event} in state {self.view.state}: {move.reason}")
        self.set_state_label(move.to)
        self.update(replace(change or RunUpdate(), state=move.to), force=True)
        return move.to

    def set_state_label(self, state: State) -> None:
        """The state's ``nightcrew:*`` label on the issue (``IssueTracker.set_state``)."""
        self.tracker.set_state(state)


class LifecycleError(RuntimeError):
    """The pipeline asked for a move the lifecycle table does not allow (a bug)."""


def status_view(record: RunRecord, task: str) -> StatusView:
    """What the status comment shows for a run folded from its events (``eventlog.fold``)."""
    return replace(record, task=task, state=record.shown_state)


# What an update's fields become in the log: the kinds that have rules, the rest as common keys.
_COMMON = ("detail", "note", "plan_item", "max_steps", "budget_usd", "pr_url")
_NOT_SHOWN = ("budget_snapshot", "approved_kinds")


def _shown(change: RunUpdate) -> dict[str, Any]:
    """The change's fields the status comment shows, by name (for a view not yet folded)."""
    return {k: v for k, v in change.changes().items() if k not in _NOT_SHOWN}


def _events(view: StatusView, change: RunUpdate) -> list[tuple[Kind, dict[str, Any]]]:
    """The events that take ``view`` to ``view`` + ``change``."""
    changes = _shown(change)
    common: dict[str, Any] = {k: changes[k] for k in _COMMON if k in changes}
    if change.commits is not None:
        common["commits"] = list(change.commits)
    if change.plan is not None:
        common["plan"] = _plan_json(change.plan)
    out: list[tuple[Kind, dict[str, Any]]] = []
    if change.state is not None and change.state != view.state:
        out.append(("state" if change.state in lifecycle.ACTIVE else "run_finished",
                    {"state": change.state}))
    if change.step is not None and change.step != view.step:
        out.append(("step_finished", {"step": change.step}))
    if change.tokens is not None or change.cost_usd is not None:
        out.append(("spend", {"tokens": view.tokens if change.tokens is None else change.tokens,
                              "cost_usd": view.cost_usd if change.cost_usd is None else change.cost_usd}))
    for phase, summary in (("before", change.tests_before), ("after", change.tests_after)):
        if summary and summary != getattr(view, f"tests_{phase}"):
            out.append(("test_result", {"phase": phase, "summary": summary}))
    if not out:
        out.append(("progress", {}))
    out[0][1].update(common)
    return out


def _plan_json(plan: tuple[PlanStep, ...]) -> list[dict[str, Any]]:
    return [{"text": step.text, "done": step.done} for step in plan]
