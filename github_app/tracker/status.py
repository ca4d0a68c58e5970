"""The status comment: one per task, rendered from plain data, edited in place."""

from __future__ import annotations

import re

from github_app.tracker import lifecycle
from github_app.tracker.checkpoint import BLOCK_PREFIX
from github_app.tracker.record import PlanStep, RunRecord

__all__ = ["PlanStep", "RunRecord", "StatusView", "render"]

MARKER = "<!-- nightcrew:status -->"
# The states and their labels belong to the lifecycle; re-exported for the renderers' readers.
State = lifecycle.State
LABELS = lifecycle.LABELS
ALL_STATE_LABELS = lifecycle.ALL_LABELS
_HEADLINES: dict[State, str] = {
    "queued": "⏳ **queued**",
    "running": "🛠️ **working**",
    "publishing": "🛠️ **working** · opening the pull request",
    "pr_opened": "✅ **pull request opened**",
    "done": "✅ **done**",
    "no_change": "⚠️ **stopped without a change**",
    "failed": "❌ **failed**",
    "needs_approval": "✋ **needs approval**",
    "paused": "⏸️ **paused**",
    "cancelled": "🛑 **cancelled**",
}


def comment_key(task: object) -> str:
    """The idempotency key of a task's status comment (``GitHost.create_comment(key=…)``)."""
    return "status-" + re.sub(r"[^A-Za-z0-9._-]", "-", str(task))


# What a person can usefully type in each state (shown under the status).
COMMANDS_BY_STATE: dict[State, tuple[str, ...]] = {
    "queued": ("status", "pause", "cancel"),
    "running": ("status", "pause", "cancel", "budget +$5"),
    "publishing": ("status",),
    "paused": ("resume", "budget +$5", "retry fresh", "cancel"),
    "needs_approval": ("approve", "cancel"),
    "failed": ("retry", "retry fresh"),
    "cancelled": ("retry", "retry fresh"),
    "no_change": ("retry", "retry fresh"),
}


# The status comment renders the run's one record (``record.RunRecord``).
StatusView = RunRecord


def render(view: StatusView) -> str:
    """The markdown body of the status comment."""
    state = view.shown_state
    lines = [MARKER, f"### nightcrew · {_HEADLINES[state]}", ""]
    if state == "queued" and view.queue_position is not None:
        lines.append(f"Queued · position {view.queue_position}.")
    if view.shown_detail:
        lines.append(view.shown_detail)
    if view.note:
        lines.append(f"> {view.note}")
    if view.plan:
        lines += ["", "**Plan**"]
        lines += [f"- [{'x' if s.done else ' '}] {s.text}" for s in view.plan]
    if state != "queued":
        lines += ["", _progress_line(view)]
    if view.now and state in ("running", "publishing"):
        lines.append(f"Now: {view.now}")
    if view.tests_before or view.tests_after:
        lines.append(f"Tests: before {view.tests_before or '—'} · after {view.tests_after or '—'}")
    if view.commits:
        lines.append("Commits: " + ", ".join(f"`{sha[:7]}`" for sha in view.commits))
    if view.pr_url:
        lines.append(f"Pull request: {view.pr_url}")
    if view.run_url:
        lines.append(f"Run: [GitHub Actions]({view.run_url})")
    commands = COMMANDS_BY_STATE.get(state, ())
    if commands:
        lines += ["", "<sub>Commands: " + " · ".join(f"`/nightcrew {c}`" for c in commands) + "</sub>"]
    if view.checkpoint_block:
        _check_hidden(view.checkpoint_block)
        # Its own line after a blank one: markdown then reads it as an HTML block, which GitHub
        # drops from the rendered comment.
        lines += ["", view.checkpoint_block]
    return "\n".join(lines)


def split_block(body: str) -> tuple[str, str]:
    """The status comment's visible text and its checkpoint block (``""`` if none).

    For showing or quoting the status without the block; to *use* the block, pass the whole
    body to ``checkpoint.read_block``, which verifies it and refuses duplicates.
    """
    if body.startswith(BLOCK_PREFIX):
        return "", body
    cut = body.rfind("\n" + BLOCK_PREFIX)
    if cut == -1:
        return body, ""
    return body[:cut].rstrip(), body[cut + 1:]


def checkpoint_line(body: str) -> str:
    """The checkpoint block of a status comment, to carry into a rewrite of it ("" if none)."""
    _, block = split_block(body)
    return block.splitlines()[0] if block else ""


def _check_hidden(block: str) -> None:
    """Refuse a block GitHub would show: it must be one HTML comment on one line."""
    if not (block.startswith(BLOCK_PREFIX) and block.endswith("-->") and "\n" not in block
            and "\r" not in block and block.count("-->") == 1):
        raise ValueError("checkpoint_block must be one line from checkpoint.render_block")


def _progress_line(view: StatusView) -> str:
    step = f"step {view.step}/~{view.max_steps}" if view.max_steps else f"step {view.step}"
    budget = f" of ${view.budget_usd:.2f}" if view.budget_usd is not None else ""
    elapsed = f" · {_duration(view.elapsed_s)}" if view.elapsed_s is not None else ""
    return f"{step} · {view.tokens:,} tokens · ${view.cost_usd:.4f}{budget}{elapsed}"


def _duration(seconds: float) -> str:
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"
