"""``nightcrew action``: the GitHub Actions step (``runner.action``), its outputs and summary."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Literal

from github_app.settings import load_settings
from runner.action.environment import ActionEnv, append_summary, write_outputs
from runner.action.run import Conclusion, Handled, finalize, intake, work
from runner.action.wiring import action_deps

Phase = Literal["run", "intake", "work", "finalize"]


def run_action(phase: Phase, *, job_status: str = "success", max_minutes: float = 300.0,
               clock: Callable[[], float] = time.monotonic) -> int:
    """Run one phase in the workflow job; the exit code is 1 when a task or the phase failed."""
    env = ActionEnv.from_environ()
    deps = action_deps(env, load_settings(github_api_url=env.api_url))
    deadline = clock() + max_minutes * 60.0
    handled: list[Handled] = []
    if phase == "finalize":
        handled = finalize(deps, job_status)
    if phase in ("run", "intake"):
        handled.append(intake(deps))
    if phase in ("run", "work"):
        handled += work(deps, more_time=lambda: clock() < deadline)
    deps.state.save(env.state_path)
    conclusion = conclusion_of(handled)
    pr_url = next((h.pr_url for h in reversed(handled) if h.pr_url), "")
    cost = sum(h.cost_usd for h in handled)
    write_outputs(env.output_path, {"conclusion": conclusion, "pr_url": pr_url,
                                    "cost_usd": f"{cost:.4f}"})
    append_summary(env.summary_path, summary(phase, handled, conclusion, cost))
    print(json.dumps({"phase": phase, "conclusion": conclusion, "pr_url": pr_url,
                      "cost_usd": round(cost, 6), "handled": [asdict(h) for h in handled]}))
    return 1 if conclusion == "failure" else 0


def conclusion_of(handled: list[Handled]) -> Conclusion:
    """failure if anything failed, success if anything was done, else skipped."""
    if any(h.conclusion == "failure" for h in handled):
        return "failure"
    return "success" if any(h.conclusion == "success" for h in handled) else "skipped"


def summary(phase: Phase, handled: list[Handled], conclusion: Conclusion, cost: float) -> str:
    """The job summary: one row per task or request."""
    lines = [f"### nightcrew · {phase} · {conclusion}", "",
             "| task | result | state | pull request | cost |", "|---|---|---|---|---|"]
    for h in handled:
        reason = h.reason.replace("|", "\\|").replace("\n", " ")[:200]
        lines.append(f"| {h.task or '—'} | {h.conclusion}: {reason} | {h.state or '—'} | "
                     f"{h.pr_url or '—'} | ${h.cost_usd:.4f} |")
    if not handled:
        lines.append("| — | nothing to do | — | — | — |")
    lines += ["", f"Total model cost: ${cost:.4f}"]
    return "\n".join(lines)
