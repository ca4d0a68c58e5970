"""The status comment of a task stopped from outside its run (a cancel while queued, a killed
run, a workflow run that ended first): the last signed checkpoint re-signed in the new state,
so a ``/nightcrew retry`` or ``resume`` continues from it."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from github_app import logs
from github_app.tasks import TaskKey
from github_app.tracker import status
from github_app.tracker.checkpoint import Checkpoint, read_block, render_block, utc_now
from github_app.tracker.issue import empty_checkpoint
from github_app.tracker.lifecycle import State

log = logs.get("nightcrew.stopped")


def resigned(task: TaskKey, body: str, state: State, key: bytes | None) -> Checkpoint | None:
    """The status comment's last signed checkpoint, now in ``state`` (None without a key).

    Everything else (branch head, plan, spend, approvals, PR) is kept, so a ``/nightcrew
    retry`` or ``resume`` continues from it; a missing or unusable block gives an empty one.
    """
    if key is None:
        return None
    read = read_block(body, key, task=str(task))
    if read.checkpoint is not None:
        return replace(read.checkpoint, state=state, updated_at=utc_now())
    if read.problem is not None:
        log.warning("stopped.checkpoint_unusable", task=str(task), problem=read.problem)
    return empty_checkpoint(task, state)


def stopped_view(task: TaskKey, state: status.State, detail: str, body: str,
                 key: bytes | None) -> status.StatusView:
    """The status comment of a task stopped from outside its run, from the comment it had."""
    return final_view(task, state, detail, resigned(task, body, state, key), key)


def final_view(task: TaskKey, state: status.State, detail: str, checkpoint: Checkpoint | None,
               key: bytes | None) -> status.StatusView:
    """The status comment of the stopped task: the checkpoint's plan, step, commit and spend."""
    if checkpoint is None or key is None:
        return status.StatusView(state, str(task), detail=detail)
    spent, limits = _budget_part(checkpoint, "spent"), _budget_part(checkpoint, "limits")
    return status.StatusView(
        state, str(task), detail=detail, step=checkpoint.step,
        plan=tuple(status.PlanStep(text, done) for text, done in checkpoint.plan),
        commits=(checkpoint.head_sha,) if checkpoint.head_sha else (),
        tokens=int(spent.get("tokens") or 0), cost_usd=float(spent.get("usd") or 0.0),
        budget_usd=float(limits["usd"]) if isinstance(limits.get("usd"), int | float) else None,
        elapsed_s=float(spent["wall_s"]) if isinstance(spent.get("wall_s"), int | float) else None,
        checkpoint_block=render_block(checkpoint, key))


def _budget_part(checkpoint: Checkpoint, name: str) -> dict[str, Any]:
    part = checkpoint.budget.get(name) if isinstance(checkpoint.budget, dict) else None
    return part if isinstance(part, dict) else {}
