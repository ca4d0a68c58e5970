"""RQ job entry points: tiny, named by what they do, JSON-safe arguments."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any, TypeVar

from github_app import logs
from github_app.errors import Retryable
from github_app.queue import model_hold, reviews
from github_app.queue.dispatch import advance
from github_app.queue.jobqueue import beating
from github_app.queue.payloads import ReviewJob, TaskJob
from github_app.repo_config import RepoConfigError, load_repo_config
from github_app.tracker.issue import IssueTracker
from runner import wiring
from runner.pipeline.run import run
from runner.review.task import RoundResult, review_round

# GitHub throttling or failing beyond what the adapter waits out in-process (20 s): the job
# waits here, keeping its slot and heartbeat, and runs the task again from its checkpoint.
GITHUB_WAITS = 5  # runs again at most this often, then the job fails (the reconciler or a retry)
GITHUB_BACKOFF_S = 30.0  # the first wait when GitHub says nothing about how long; doubles
LONGEST_GITHUB_WAIT_S = 15 * 60.0
T = TypeVar("T")
log = logs.get("nightcrew.jobs")


def run_task(raw: str | dict[str, Any]) -> dict[str, Any]:
    """Work on one task (a ``TaskJob``: which task, its status comment, resume or fresh) and
    return its outcome.

    A task whose worker was killed is found by its missing heartbeat and run again; the new run
    resumes from the checkpoint in the status comment (``fresh`` starts over instead). A task
    that paused because the model API refused every key is parked until a key works again.
    """
    job = TaskJob.from_json(raw)
    deps = wiring.from_settings()
    task = job.task
    try:
        ttl = deps.settings.heartbeat_ttl_s
        with beating(deps.connection, task.job_id, ttl_s=ttl, every_s=ttl / 4):
            outcome = through_github_waits(lambda first: run(
                task, host=deps.host_for(task, job.installation_id),
                models=deps.models(), sandbox_for=deps.sandbox_for,
                config=deps.task_config(), status_comment=job.status_comment,
                controls=deps.controls_for(task), events=deps.events_for(task),
                # A second run after a wait continues from the checkpoint the first one wrote.
                resume=job.resume, fresh=first and job.fresh, revise_pr=job.revise_pr,
            ), what=str(task))
        if job.revise_pr is not None and outcome.state == "pr_opened":
            # The fix loop: the revised PR is reviewed again (the ledger decides what is new).
            reviews.enqueue_review(deps.connection, deps.scheduler()[1], ReviewJob(
                task=task.with_number(job.revise_pr), installation_id=job.installation_id,
                actor=job.actor, trigger="after_fix"))
        if outcome.waiting_for == "model_key":
            # The fleet holds task work until the maintenance pass finds a key that works;
            # then this task is submitted again and resumes (runner.worker.model_keys).
            model_hold.hold(deps.connection, "the model API refused every configured key")
            model_hold.park(deps.connection, str(task), replace(job, resume=True, fresh=False).to_json())
    finally:
        # The slot goes back to the fleet however the run ended; the next task starts.
        scheduler, queue = deps.scheduler()
        scheduler.finish(task)
        advance(scheduler, queue)
    return wiring.outcome_json(outcome)


def review_pull(raw: str | dict[str, Any]) -> dict[str, Any]:
    """One review round on a pull request (a ``ReviewJob``), then the fix loop's next step.

    A request that came while this round ran is served right after it (one running, one
    pending); so is a round that found the head moved under it.
    """
    job: ReviewJob | None = ReviewJob.from_json(raw)
    deps = wiring.from_settings()
    results: list[RoundResult] = []
    while job is not None and len(results) < 5:
        results.append(_one_round(deps, job))
        again = reviews.take_again(deps.connection, job.task)
        job = again or (replace(job, trigger="command") if results[-1].state == "stale" else None)
    last = results[-1]
    return {"rounds": len(results), "state": last.state, "reason": last.reason,
            "inline": last.inline, "cost_usd": round(sum(r.cost_usd for r in results), 6)}


def _one_round(deps: wiring.Dependencies, job: ReviewJob) -> RoundResult:
    pull = job.task
    host = deps.review_host_for(pull, job.installation_id)
    try:
        config = load_repo_config(host, pull.owner, pull.repo)
    except RepoConfigError as exc:
        log.info("review.config_error", pull=str(pull), error=str(exc))
        return RoundResult("skipped", f"the repository's config is broken: {exc}")
    task_config = deps.task_config()
    model = deps.models()(config.review.model or config.models.model_for(
        "summarizer", task_config.summarizer_model))
    key = task_config.checkpoint_key
    if key is None:
        return RoundResult("skipped", "no checkpoint key: the findings ledger cannot be signed")
    result = through_github_waits(lambda _first: review_round(
        host, pull, model=model, policy=config.review, key=key, trigger=job.trigger), what=str(pull))
    if result.decision.revise and result.issue is not None:
        scheduler, queue = deps.scheduler()
        tracker = IssueTracker(host, pull.with_number(result.issue), key)
        reviews.submit_revision(tracker, queue, scheduler, config, pull_number=pull.number,
                                actor=job.actor, installation_id=job.installation_id,
                                why=result.decision.reason)
    return result


def through_github_waits(attempt: Callable[[bool], T], *, what: str = "",
                         sleep: Callable[[float], None] = time.sleep,
                         waits: int = GITHUB_WAITS) -> T:
    """``attempt(first)``; after a ``Retryable`` wait as GitHub asked (else back off) and again.

    At most ``waits`` waits, each at most ``LONGEST_GITHUB_WAIT_S``; then the error goes to RQ.
    """
    for n in range(waits + 1):
        try:
            return attempt(n == 0)
        except Retryable as exc:
            if n == waits:
                raise
            delay = (exc.retry_after.total_seconds() if exc.retry_after is not None
                     else GITHUB_BACKOFF_S * 2 ** n)
            delay = min(max(delay, 1.0), LONGEST_GITHUB_WAIT_S)
            log.warning("task.github_wait", task=what, wait_s=delay, attempt=n + 1, error=str(exc)[:300])
            sleep(delay)
    raise AssertionError("unreachable")  # the loop returns or raises
