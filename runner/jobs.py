"""RQ job entry points: tiny, named by what they do, JSON-safe arguments."""

from __future__ import annotations

from typing import Any

from github_app.dispatch import advance
from github_app.queue import beating
from runner import wiring
from runner.task import run


def run_task(args: dict[str, Any]) -> dict[str, Any]:
    """Work on one task (``args["task"]`` = ``owner/repo#N``) and return its outcome.

    A task whose worker was killed is found by its missing heartbeat and run again; the new run
    resumes from the checkpoint in the status comment (``args["fresh"]`` starts over instead).
    """
    deps = wiring.from_settings()
    task = wiring.task_key(args["task"])
    try:
        ttl = deps.settings.heartbeat_ttl_s
        with beating(deps.connection, task.job_id, ttl_s=ttl, every_s=ttl / 4):
            host = deps.host_for(task, args.get("installation_id"))
            outcome = run(
                task, host=host, models=deps.models(), sandbox_for=deps.sandbox_for,
                config=deps.task_config(), status_comment=args.get("status_comment"),
                controls=deps.controls_for(task), events=deps.events_for(task),
                resume=bool(args.get("resume")), fresh=bool(args.get("fresh")),
            )
    finally:
        # The slot goes back to the fleet however the run ended; the next task starts.
        scheduler, queue = deps.scheduler()
        scheduler.finish(task)
        advance(scheduler, queue)
    return wiring.outcome_json(outcome)
