"""The intake job: the checks that need GitHub, then the task is queued.

Runs on the fast queue. Trust (the actor's permission), the 👀 reaction, the status comment
("queued"), the ``nightcrew:queued`` label, then the task goes to the fair scheduler, which
hands it to RQ (job id = task key) when a slot is free.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any, cast

import redis

from github_app import logs, trust, wiring
from github_app.github import GitHost, ReviewHost
from github_app.ingress.routing import STEERING, help_text, read_grant
from github_app.queue import controls, reviews
from github_app.queue.dispatch import advance
from github_app.queue.jobqueue import JobQueue
from github_app.queue.label_cache import remember_trigger_label
from github_app.queue.payloads import IntakeJob, ReviewJob, TaskJob
from github_app.queue.scheduler import TaskScheduler
from github_app.repo_config import RepoConfig, RepoConfigError, load_repo_config, render_config_error
from github_app.settings import load_settings
from github_app.tasks import TaskKey, issue_of_branch
from github_app.tracker import lifecycle
from github_app.tracker.issue import IssueTracker, empty_checkpoint
from github_app.tracker.lifecycle import Refusal, State
from github_app.tracker.status import StatusView
from github_app.tracker.stopped import stopped_view

PULL_KINDS = ("review", "revise")  # work on a pull request: a review round, or a revision
log = logs.get("nightcrew.intake")


def intake(raw: str | dict[str, Any]) -> str:
    """RQ entry point: wire adapters from settings, then ``handle``."""
    settings = load_settings()
    job = IntakeJob.from_json(raw)
    app = wiring.app(settings)
    installation = job.installation_id or app.installation_for(job.task.owner, job.task.repo)
    jobs = wiring.queue(settings)
    return handle(replace(job, installation_id=int(installation)), app.host(int(installation)),
                  jobs, wiring.scheduler_for(settings, jobs),
                  checkpoint_key=wiring.checkpoint_key(settings), stop_grace_s=settings.stop_grace_s)


def handle(job: IntakeJob, host: GitHost, queue: JobQueue, scheduler: TaskScheduler,
           checkpoint_key: bytes | None = None,
           stop_grace_s: float = controls.DEFAULT_STOP_GRACE_S) -> str:
    """Apply one routed command; returns what happened, for the job's result.

    ``stop_grace_s``: how long a running task has to honour a cancel or pause before a worker
    kills it and finishes it from outside (``github_app.queue.stopper``).
    """
    task, kind = job.task, job.kind
    if kind in ("unknown", "help"):
        _reply(host, job, help_text(job.args if kind == "unknown" else None))
        return kind
    if kind not in STEERING and kind not in ("start", *PULL_KINDS):
        _reply(host, job, f"`/nightcrew {kind}` is not available yet in this version.")
        return f"unsupported:{kind}"
    try:
        config = load_repo_config(host, task.owner, task.repo)
    except RepoConfigError as exc:
        _reply(host, job, render_config_error(exc))
        log.info("intake.config_error", task=str(task), error=str(exc))
        return "config-error"
    remember_trigger_label(scheduler.connection, task.full_name, config.trigger_label)
    if job.label and job.label != config.trigger_label:
        return "not-the-trigger-label"  # the repo renamed its trigger; this label means nothing
    if kind in PULL_KINDS:
        if not job.is_pull_request:
            _reply(host, job, f"`/nightcrew {kind}` works on pull requests; on an issue, say "
                              "`/nightcrew fix`.")
            return f"{kind}:not-a-pull-request"
        return _on_pull(job, cast(ReviewHost, host), queue, scheduler, config, checkpoint_key)
    refusal = trust.refusal(task, host, job.actor, config)
    if refusal is not None:
        _reply(host, job, f"{refusal.reason} Nothing was started.")
        log.info("intake.refused", task=str(task), actor=job.actor, reason=refusal.reason)
        return "refused"
    host.react(task, "eyes", job.comment_id)
    tracker = IssueTracker(host, task, checkpoint_key)
    if kind in STEERING:
        return steer(job, tracker, queue, scheduler, config, stop_grace_s=stop_grace_s)
    if scheduler.state(task) or queue.is_live(task.job_id):
        log.info("intake.already_queued", task=str(task))
        return "already-queued"
    # Nothing runs: a stop request left from an earlier run (it ended before reading it) must not
    # stop this one at its first step.
    controls.clear_stop(scheduler.connection, task)
    tracker.write(StatusView("queued", str(task)), empty_checkpoint(task, "queued"))
    return _enqueue(job, tracker, queue, scheduler, config)


def _enqueue(
    job: IntakeJob, tracker: IssueTracker, queue: JobQueue, scheduler: TaskScheduler,
    config: RepoConfig, *, resume: bool = False, fresh: bool = False,
) -> str:
    """Hand the task to the fair scheduler (a resume keeps its status comment and checkpoint)."""
    assert job.installation_id is not None and tracker.comment_id is not None
    tracker.set_state("queued")
    payload = TaskJob(task=job.task, installation_id=job.installation_id,
                      status_comment=tracker.comment_id, actor=job.actor, resume=resume, fresh=fresh)
    submitted = scheduler.submit(payload, repo_cap=config.caps.per_repository)
    advance(scheduler, queue)
    log.info("intake.queued", task=str(job.task), new=submitted.new,
             status_comment=tracker.comment_id, resume=resume)
    return "resumed" if resume else "queued"




def steer(
    job: IntakeJob, tracker: IssueTracker, queue: JobQueue, scheduler: TaskScheduler,
    config: RepoConfig, *, stop_grace_s: float = controls.DEFAULT_STOP_GRACE_S,
) -> str:
    """``cancel``, ``pause``, ``resume``, ``retry``, ``budget``, ``approve``, ``status``: the
    lifecycle says where the command takes the task; this does what that takes."""
    task, connection, text = job.task, scheduler.connection, job.args
    where = _where(task, tracker.host, queue, scheduler)
    command = lifecycle.command_for(job.kind, text)
    move = lifecycle.transition(where, command)
    shown = _shown(where)
    if job.kind == "status":
        if where in ("running", "publishing"):
            controls.request_render(connection, task)
        return f"status:{shown}"
    if command in ("budget", "approve") and not _granted(job, tracker.host, config, connection):
        return f"{job.kind}:unreadable" if command == "budget" else "approve:unknown"
    if isinstance(move, Refusal):
        if where in lifecycle.ACTIVE or command in ("budget", "approve"):
            return f"{job.kind}:noted"  # a grant reaches the task at its next start
        _reply(tracker.host, job, move.reason)
        return f"{job.kind}:nothing"
    if command in ("cancel", "pause"):
        kind: controls.StopKind = "cancel" if command == "cancel" else "pause"
        if move.deferred:
            controls.request_stop(connection, task, kind, job.actor, grace_s=stop_grace_s)
            return f"{kind}:requested"
        if where in lifecycle.STOPPED:
            return _cancel_stopped(job, tracker, where)
        return _stop_queued(job, kind, tracker, scheduler, stop_grace_s)
    if move.deferred:
        return f"{job.kind}:noted"
    controls.clear_stop(connection, task)
    if tracker.find() is None:
        tracker.write(StatusView("queued", str(task)))
    fresh = command == "retry_fresh"
    return _enqueue(job, tracker, queue, scheduler, config, resume=not fresh, fresh=fresh)


def _granted(job: IntakeJob, host: GitHost, config: RepoConfig, connection: redis.Redis) -> bool:
    """Record a budget grant or an approval (kept until the task's next start folds it in);
    False, with a reply saying why, when the request cannot be read."""
    grant = read_grant(job.kind, job.args, config.approval.require_for)
    if isinstance(grant, str):
        _reply(host, job, grant)
        return False
    if job.kind == "budget":
        controls.grant_budget(connection, job.task, grant.usd)
    else:
        controls.approve(connection, job.task, list(grant.kinds))
    return True


def _where(task: TaskKey, host: GitHost, queue: JobQueue, scheduler: TaskScheduler) -> State | None:
    """Where the task is: queued / running (from Redis), else the stopped or final state its
    label shows (None: no task on this issue)."""
    record = scheduler.state(task)
    if record.get("state") == "pending":
        return "queued"
    if record or queue.is_live(task.job_id):
        return "running"
    return lifecycle.state_of_labels(set(host.issue(task).labels))


def _shown(where: State | None) -> str:
    """How a ``status`` answer names the place (the job result; ``none`` for no task)."""
    return "none" if where is None else "running" if where == "publishing" else where


def _stop_queued(job: IntakeJob, kind: controls.StopKind, tracker: IssueTracker,
                 scheduler: TaskScheduler, grace_s: float) -> str:
    """A waiting task is taken off the queue at once; one dispatched meanwhile is asked to stop
    at its next step (within ``grace_s``, or a worker stops it from outside)."""
    task = job.task
    payload = scheduler.payload(task)
    if not scheduler.withdraw(task):  # dispatched since we looked: it is running now
        controls.request_stop(scheduler.connection, task, kind, job.actor, grace_s=grace_s)
        return f"{kind}:requested"
    state: State = "cancelled" if kind == "cancel" else "paused"
    verb = "Cancelled" if kind == "cancel" else "Paused"
    go_on = "retry" if kind == "cancel" else "resume"
    detail = f"{verb} by @{job.actor} while queued. Say `/nightcrew {go_on}` to go on."
    if payload is not None and payload.status_comment:
        # The signed checkpoint stays, in the final state: a resume continues from it, and the
        # reconciler does not bring the task back after a lost Redis.
        tracker.comment_id = payload.status_comment
        body = tracker.status_body()
        tracker.write(stopped_view(task, state, detail, body, tracker.key))
    tracker.set_state(state)
    return f"{kind}:dequeued"


def _cancel_stopped(job: IntakeJob, tracker: IssueTracker, where: State) -> str:
    """Cancel a task that is paused or waits for approval: nothing runs, so it ends at once;
    its signed checkpoint stays (re-signed as cancelled) for a later ``retry``."""
    detail = (f"Cancelled by @{job.actor} while {lifecycle.describe(where)}. "
              "Say `/nightcrew retry` to go on.")
    tracker.write(stopped_view(job.task, "cancelled", detail, tracker.status_body(), tracker.key))
    tracker.set_state("cancelled")
    return "cancel:cancelled"


def _on_pull(job: IntakeJob, host: ReviewHost, queue: JobQueue, scheduler: TaskScheduler,
             config: RepoConfig, checkpoint_key: bytes | None) -> str:
    """``review``: one round on the review queue; ``revise``: a revision task on the issue the PR
    fixes. Who may ask is checked as for any command; an automatic review of nightcrew's own PR
    is the repo's ``review.self_review``, of anyone else's ``review.on_open``."""
    task = job.task
    ask = trust.pull_request_ask(task, host, job.kind, job.trigger, job.actor, config)
    if ask.off:
        return "review:off"
    if ask.refusal is not None:
        if ask.answer:
            _reply(host, job, f"{ask.refusal.reason} Nothing was started.")
        log.info("intake.refused", task=str(task), actor=job.actor, reason=ask.refusal.reason)
        return "refused"
    if job.comment_id is not None:
        host.react(task, "eyes", job.comment_id)
    if job.kind == "review":
        assert job.installation_id is not None
        return reviews.enqueue_review(scheduler.connection, queue, ReviewJob(
            task=task, installation_id=job.installation_id, actor=job.actor,
            trigger=_review_trigger(job.trigger), delivery=job.delivery))
    issue = issue_of_branch(ask.head_ref) if ask.own else None
    if issue is None:
        _reply(host, job, "nightcrew revises only the pull requests it opened; say "
                          "`/nightcrew review` for a review of this one.")
        return "revise:not-ours"
    assert job.installation_id is not None
    tracker = IssueTracker(host, TaskKey(task.owner, task.repo, issue), checkpoint_key)
    why = "review comments" if job.trigger else f"@{job.actor} asked"
    return reviews.submit_revision(tracker, queue, scheduler, config, pull_number=task.number,
                                   actor=job.actor, installation_id=job.installation_id, why=why)


def _review_trigger(trigger: str) -> str:
    """The ReviewJob's trigger for an intake's (``pull_request.opened`` → ``opened``)."""
    return trigger.rpartition(".")[2] if trigger else "command"


def _reply(host: GitHost, job: IntakeJob, body: str) -> int:
    """Answer a delivery once: a retried intake job finds its earlier reply instead of writing again."""
    key = f"reply-{job.delivery}" if re.fullmatch(r"[A-Za-z0-9-]{1,64}", job.delivery) else None
    return host.create_comment(job.task, body, key=key)
