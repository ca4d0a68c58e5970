"""The status comment of a running task: one comment, edited in place, throttled, and the
signed checkpoint under it."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from github_app import status
from github_app.checkpoint import MAX_SUMMARY_CHARS, Checkpoint, render_block, utc_now
from github_app.eventlog import EventLog, Kind
from github_app.github import GitHost
from github_app.status import StatusView
from github_app.tasks import TaskKey

STATUS_MIN_INTERVAL_S = 3.0  # GitHub's secondary rate limits dislike rapid edits



class StatusReporter:
    """Keeps the one status comment current: throttled, but every state change is written."""

    def __init__(self, host: GitHost, task: TaskKey, comment_id: int | None,
                 checkpoint_key: bytes | None = None, events: EventLog | None = None) -> None:
        self.host = host
        self.events = events
        self.task = task
        self.view = StatusView("running", str(task))
        self.comment_id = comment_id if comment_id else host.create_comment(
            task, status.render(self.view), key=status.comment_key(task)
        )
        self._last_write = 0.0
        self._key = checkpoint_key
        self.base_sha: str | None = None
        self.budget: dict[str, Any] = {}
        self.pr_number: int | None = None
        self.approved: set[str] = set()
        self.phase: str | None = None  # checkpoint state beyond the view's, e.g. "publishing"
        self._started = time.monotonic()
        self.elapsed_before = 0.0  # wall time of earlier runs of this task (from the checkpoint)
        self._label: str | None = None  # the state label this run last set
        self.summary = ""

    def update(self, *, force: bool = False, **changes: Any) -> None:
        """Change the view; write it when forced, on a state change, or after the interval."""
        if "budget_snapshot" in changes:
            self.budget = changes.pop("budget_snapshot")
        if "approved_kinds" in changes:
            self.approved = set(changes.pop("approved_kinds"))
        previous = self.view
        elapsed = self.elapsed_before + time.monotonic() - self._started
        self.view = replace(self.view, elapsed_s=elapsed, **changes)
        self._log(previous, changes)
        due = time.monotonic() - self._last_write >= STATUS_MIN_INTERVAL_S
        # State and plan progress are what a resume needs: written at once, never throttled.
        if force or due or previous.state != self.view.state or previous.plan != self.view.plan:
            view = replace(self.view, checkpoint_block=self._block()) if self._key else self.view
            self.host.update_comment(self.task, self.comment_id, status.render(view),
                                     key=status.comment_key(self.task))
            self._last_write = time.monotonic()

    def _log(self, previous: StatusView, changes: dict[str, Any]) -> None:
        """Every change also goes to the task's event log (JSONL file + Redis stream)."""
        if self.events is None:
            return
        view = self.view
        if view.state != previous.state:
            kind: Kind = "run_finished" if view.state not in ("running", "queued") else "state"
            self.events.emit(kind, state=view.state, detail=view.detail)
        if "step" in changes and view.step != previous.step:
            self.events.emit("step_finished", step=view.step, action=view.detail,
                             plan_item=view.plan_item)
            self.events.emit("spend", tokens=view.tokens, cost_usd=view.cost_usd,
                             budget_usd=view.budget_usd)
        for phase in ("before", "after"):
            summary = changes.get(f"tests_{phase}")
            if summary and summary != getattr(previous, f"tests_{phase}"):
                self.events.emit("test_result", phase=phase, summary=summary)
        if "commits" in changes and view.commits != previous.commits:
            self.events.emit("state", state=view.state, commits=list(view.commits))

    def _block(self) -> str:
        """The signed checkpoint of what the issue shows: state, step, plan, commits, budget."""
        assert self._key is not None
        view = self.view
        checkpoint = Checkpoint(
            task=str(self.task), state=self.phase or view.state, step=view.step,
            branch=self.task.branch, summary=self.summary[:MAX_SUMMARY_CHARS],
            head_sha=view.commits[-1] if view.commits else None, base_sha=self.base_sha,
            plan=tuple((s.text, s.done) for s in view.plan), budget=self.budget,
            approved=tuple(sorted(self.approved)),
            pr_number=self.pr_number, writes=(), updated_at=utc_now(),
        )
        return render_block(checkpoint, self._key)

    def set_state_label(self, state: status.State) -> None:
        """Swap the ``nightcrew:*`` state label (all others the first time, then the last one)."""
        wanted = status.LABELS[state]
        stale = status.ALL_STATE_LABELS if self._label is None else (self._label,)
        for label in stale:
            if label != wanted:
                self.host.remove_label(self.task, label)
        self.host.add_labels(self.task, [wanted])
        self._label = wanted
