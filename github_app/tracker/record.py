"""The one record of a task's run, and the typed change that moves it.

``RunRecord`` is what the issue shows about a run: the event log folds into it
(``eventlog.fold``), the status comment renders it (``status.render``; ``StatusView`` is this
record), and the running task's reporter keeps one current. ``RunUpdate`` is what a part of
the pipeline says changed; every field left ``None`` is unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from github_app.tracker.lifecycle import State


@dataclass(frozen=True)
class PlanStep:
    text: str
    done: bool = False


@dataclass(frozen=True)
class RunRecord:
    """Everything the status comment shows about a task's latest run, as plain values.

    ``state`` is ``None`` only for a fold of no events (no run yet); the comment then shows
    the task as running. ``plan_item`` and ``action`` together are its "Now:" line; a failed run
    without a ``detail`` shows its last ``error``.
    """

    state: State | None = None
    task: str = ""
    detail: str = ""
    plan: tuple[PlanStep, ...] = ()
    step: int = 0
    max_steps: int = 0
    tokens: int = 0
    cost_usd: float = 0.0
    budget_usd: float | None = None
    tests_before: str | None = None
    tests_after: str | None = None
    pr_url: str | None = None
    commits: tuple[str, ...] = field(default_factory=tuple)
    queue_position: int | None = None
    plan_item: str = ""  # the plan item the agent is on
    action: str = ""  # its latest tool call or step action
    elapsed_s: float | None = None  # wall time of the task so far (resumed runs included)
    note: str = ""  # e.g. the budget warning, or that hidden text was removed from the issue
    error: str | None = None  # the run's last error
    finished: bool = False  # the run ended (``run_finished``)
    interrupted: str | None = None  # closed by the fleet, not by itself: "lost" or "killed"
    run: str | None = None  # the run's id in the event log
    run_url: str | None = None  # where the run can be watched (its GitHub Actions run)
    last_seq: int = 0
    checkpoint_block: str = ""  # checkpoint.render_block(...): hidden, last line of the comment

    @property
    def shown_state(self) -> State:
        return self.state or "running"

    @property
    def now(self) -> str:
        """The "Now:" line: the plan item and the latest action."""
        return " · ".join(part for part in (self.plan_item, self.action) if part)

    @property
    def shown_detail(self) -> str:
        if not self.detail and self.state == "failed" and self.error:
            return self.error
        return self.detail


@dataclass(frozen=True)
class RunUpdate:
    """What changed in a run, as the pipeline says it; ``None`` means unchanged.

    ``budget_snapshot`` and ``approved_kinds`` are not shown but kept in the signed checkpoint,
    so a resumed run (or one after a lost Redis) spends from the same budget and keeps approvals.
    """

    state: State | None = None
    detail: str | None = None
    note: str | None = None
    plan: tuple[PlanStep, ...] | None = None
    plan_item: str | None = None
    step: int | None = None
    max_steps: int | None = None
    tokens: int | None = None
    cost_usd: float | None = None
    budget_usd: float | None = None
    tests_before: str | None = None
    tests_after: str | None = None
    commits: tuple[str, ...] | None = None
    pr_url: str | None = None
    budget_snapshot: dict[str, Any] | None = None
    approved_kinds: tuple[str, ...] | None = None

    def changes(self) -> dict[str, Any]:
        """The fields that say something, by name."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}
