"""The intake job: the checks that need GitHub, then the task is queued.

Runs on the fast queue. Trust (the actor's permission), the 👀 reaction, the status comment
("queued"), the ``nightcrew:queued`` label, then the task goes to the fair scheduler, which
hands it to RQ (job id = task key) when a slot is free.
"""

from __future__ import annotations

import json
import re
from typing import Any

from github_app import logs
from github_app.github import GitHost, GitHubApp
from github_app.ingress.routing import COMMANDS
from github_app.queue import controls
from github_app.queue.dispatch import advance, scheduler_for
from github_app.queue.jobqueue import JobQueue, RQJobQueue
from github_app.queue.label_cache import remember_trigger_label
from github_app.queue.scheduler import TaskScheduler
from github_app.queue.stopper import stopped_view
from github_app.redis_conn import connect
from github_app.repo_config import RepoConfig, RepoConfigError, load_repo_config, render_config_error
from github_app.settings import Settings, SettingsError, load_settings
from github_app.tasks import TaskKey
from github_app.tracker import status
from github_app.tracker.checkpoint import Checkpoint, render_block, utc_now
from github_app.trust import Refusal, check_actor, check_app_permissions

AUTOMATIC_KINDS = frozenset({"review", "revise"})
log = logs.get("nightcrew.intake")


def intake(args: dict[str, Any]) -> str:
    """RQ entry point: wire adapters from settings, then ``handle``."""
    settings = load_settings()
    app_id, key = settings.require_app()
    app = GitHubApp(app_id, key, settings.github_api_url)
    task = TaskKey.parse(args["task"])
    installation = args.get("installation_id") or app.installation_for(task.owner, task.repo)
    queue = RQJobQueue(connect(settings))
    return handle({**args, "installation_id": int(installation)}, app.host(int(installation)),
                  queue, scheduler_for(settings, queue), checkpoint_key=_key_or_none(settings),
                  stop_grace_s=settings.stop_grace_s)


def _key_or_none(settings: Settings) -> bytes | None:
    try:
        return settings.checkpoint_key()
    except SettingsError:
        return None


def handle(args: dict[str, Any], host: GitHost, queue: JobQueue, scheduler: TaskScheduler,
           checkpoint_key: bytes | None = None,
           stop_grace_s: float = controls.DEFAULT_STOP_GRACE_S) -> str:
    """Apply one routed command; returns what happened, for the job's result.

    ``stop_grace_s``: how long a running task has to honour a cancel or pause before a worker
    kills it and finishes it from outside (``github_app.queue.stopper``).
    """
    task = TaskKey.parse(args["task"])
    kind = str(args["kind"])
    if kind in ("unknown", "help"):
        _reply(host, task, args, _help_text(args["args"] if kind == "unknown" else None))
        return kind
    if kind in AUTOMATIC_KINDS:
        # Review and revision tasks come from nightcrew's own PRs, not from a person typing:
        # until they are built, log them; a comment on every push would be noise.
        log.info("intake.deferred", task=str(task), kind=kind)
        return f"deferred:{kind}"
    if kind not in STEERING and kind != "start":
        _reply(host, task, args, f"`/nightcrew {kind}` is not available yet in this version.")
        return f"unsupported:{kind}"
    try:
        config = load_repo_config(host, task.owner, task.repo)
    except RepoConfigError as exc:
        _reply(host, task, args, render_config_error(exc))
        log.info("intake.config_error", task=str(task), error=str(exc))
        return "config-error"
    remember_trigger_label(scheduler.connection, task.full_name, config.trigger_label)
    if args.get("label") and args["label"] != config.trigger_label:
        return "not-the-trigger-label"  # the repo renamed its trigger; this label means nothing
    refusal = _refusal(task, host, args["actor"], config)
    if refusal is not None:
        _reply(host, task, args, f"{refusal.reason} Nothing was started.")
        log.info("intake.refused", task=str(task), actor=args["actor"], reason=refusal.reason)
        return "refused"
    host.react(task, "eyes", args.get("comment_id"))
    if kind in STEERING:
        return steer(task, kind, str(args.get("args") or ""), args, host, queue, scheduler, config,
                     stop_grace_s=stop_grace_s, checkpoint_key=checkpoint_key)
    if scheduler.state(task) or queue.is_live(task.job_id):
        log.info("intake.already_queued", task=str(task))
        return "already-queued"
    # Nothing runs: a stop request left from an earlier run (it ended before reading it) must not
    # stop this one at its first step.
    controls.clear_stop(scheduler.connection, task)
    comment_id = host.create_comment(task, _queued_status(task, checkpoint_key),
                                     key=status.comment_key(task))
    return _enqueue(task, args, comment_id, host, queue, scheduler, config)


def _enqueue(
    task: TaskKey, args: dict[str, Any], comment_id: int, host: GitHost, queue: JobQueue,
    scheduler: TaskScheduler, config: RepoConfig, *, resume: bool = False, fresh: bool = False,
) -> str:
    """Hand the task to the fair scheduler (a resume keeps its status comment and checkpoint)."""
    _set_state_label(host, task, "queued")
    job_args = {
        "task": str(task), "installation_id": args["installation_id"],
        "status_comment": comment_id, "actor": args["actor"], "resume": resume, "fresh": fresh,
    }
    submitted = scheduler.submit(task, int(args["installation_id"]), job_args,
                                 repo_cap=config.caps.per_repository)
    advance(scheduler, queue)
    log.info("intake.queued", task=str(task), new=submitted.new, status_comment=comment_id,
             resume=resume)
    return "resumed" if resume else "queued"


STEERING = frozenset({"cancel", "pause", "resume", "retry", "budget", "approve", "status"})
_BUDGET = re.compile(r"^\s*(\+)?\s*\$?\s*(\d+(?:\.\d{1,2})?)\s*$")
_RESUMABLE = {"paused", "needs_approval", "failed", "cancelled"}


def steer(
    task: TaskKey, kind: str, text: str, args: dict[str, Any], host: GitHost, queue: JobQueue,
    scheduler: TaskScheduler, config: RepoConfig,
    *, stop_grace_s: float = controls.DEFAULT_STOP_GRACE_S, checkpoint_key: bytes | None = None,
) -> str:
    """``cancel``, ``pause``, ``resume``, ``retry``, ``budget``, ``approve``, ``status``."""
    connection = scheduler.connection
    where = _where(task, host, queue, scheduler)
    if kind in ("cancel", "pause"):
        return _stop(task, "cancel" if kind == "cancel" else "pause", args, host, scheduler, where,
                     grace_s=stop_grace_s, checkpoint_key=checkpoint_key)
    if kind == "status":
        if where == "running":
            controls.request_render(connection, task)
        return f"status:{where}"
    if kind == "budget":
        match = _BUDGET.match(text)
        if match is None:
            _reply(host, task, args, "Say `/nightcrew budget +$5` (add five dollars) or "
                                      "`/nightcrew budget $5` (the same: budgets only grow).")
            return "budget:unreadable"
        controls.grant_budget(connection, task, float(match.group(2)))
    if kind == "approve":
        wanted = [w for w in re.split(r"[\s,]+", text.strip()) if w] or list(config.approval.require_for)
        unknown = [w for w in wanted if w not in config.approval.require_for]
        if unknown:
            kinds = ", ".join(f"`{k}`" for k in config.approval.require_for)
            _reply(host, task, args, f"Nothing to approve called {', '.join(unknown)}; the kinds "
                                      f"that wait for approval here are {kinds}.")
            return "approve:unknown"
        controls.approve(connection, task, wanted)
    if where in ("queued", "running"):
        return f"{kind}:noted"  # a grant reaches the running task at its next start; nothing else to do
    if where not in _RESUMABLE and kind in ("resume", "retry"):
        _reply(host, task, args, "There is no stopped nightcrew task on this issue to "
                                  f"{kind}; label it or say `/nightcrew fix` to start one.")
        return f"{kind}:nothing"
    if kind in ("budget", "approve") and where not in _RESUMABLE:
        return f"{kind}:noted"
    controls.clear_stop(connection, task)
    comment_id = host.find_comment(task, status.MARKER) or host.create_comment(
        task, _queued_status(task, None), key=status.comment_key(task))
    fresh = kind == "retry" and text.strip().lower() == "fresh"
    return _enqueue(task, args, comment_id, host, queue, scheduler, config, resume=not fresh,
                    fresh=fresh)


def _where(task: TaskKey, host: GitHost, queue: JobQueue, scheduler: TaskScheduler) -> str:
    """Where the task is: queued / running (from Redis), else its state label on the issue."""
    record = scheduler.state(task)
    if record.get("state") == "pending":
        return "queued"
    if record or queue.is_live(task.job_id):
        return "running"
    labels = set(host.issue(task).labels)
    states: tuple[status.State, ...] = ("paused", "needs_approval", "failed", "cancelled", "done")
    for state in states:
        if status.LABELS[state] in labels:
            return state
    return "none"


def _stop(
    task: TaskKey, kind: controls.StopKind, args: dict[str, Any], host: GitHost,
    scheduler: TaskScheduler, where: str, *, grace_s: float = controls.DEFAULT_STOP_GRACE_S,
    checkpoint_key: bytes | None = None,
) -> str:
    """A running task is asked to stop at its next step (within ``grace_s``, or a worker stops
    it from outside); a waiting one is taken off the queue at once."""
    if where == "running":
        controls.request_stop(scheduler.connection, task, kind, str(args["actor"]), grace_s=grace_s)
        return f"{kind}:requested"
    if where != "queued":
        _reply(host, task, args, f"There is no queued or running nightcrew task on this issue to {kind}.")
        return f"{kind}:nothing"
    record = scheduler.state(task)
    if not scheduler.withdraw(task):  # dispatched since we looked: it is running now
        controls.request_stop(scheduler.connection, task, kind, str(args["actor"]), grace_s=grace_s)
        return f"{kind}:requested"
    state: status.State = "cancelled" if kind == "cancel" else "paused"
    verb = "Cancelled" if kind == "cancel" else "Paused"
    go_on = "retry" if kind == "cancel" else "resume"
    comment_id = json.loads(record.get("args") or "{}").get("status_comment")
    detail = f"{verb} by @{args['actor']} while queued. Say `/nightcrew {go_on}` to go on."
    if comment_id:
        # The signed checkpoint stays, in the final state: a resume continues from it, and the
        # reconciler does not bring the task back after a lost Redis.
        body = next((c.body for c in host.list_comments(task) if c.id == int(comment_id)), "")
        view = stopped_view(task, state, detail, body, checkpoint_key)
        host.update_comment(task, int(comment_id), status.render(view), key=status.comment_key(task))
    _set_state_label(host, task, state)
    return f"{kind}:dequeued"


def _queued_status(task: TaskKey, key: bytes | None) -> str:
    """The first status comment; its signed block lets the reconciler trust it after Redis loss."""
    block = "" if key is None else render_block(Checkpoint(
        task=str(task), state="queued", step=0, branch=task.branch, head_sha=None, base_sha=None,
        plan=(), budget={}, approved=(), pr_number=None, writes=(), updated_at=utc_now()), key)
    return status.render(status.StatusView("queued", str(task), checkpoint_block=block))


def _reply(host: GitHost, task: TaskKey, args: dict[str, Any], body: str) -> int:
    """Answer a delivery once: a retried intake job finds its earlier reply instead of writing again."""
    delivery = str(args.get("delivery") or "")
    key = f"reply-{delivery}" if re.fullmatch(r"[A-Za-z0-9-]{1,64}", delivery) else None
    return host.create_comment(task, body, key=key)


def _set_state_label(host: GitHost, task: TaskKey, state: status.State) -> None:
    wanted = status.LABELS[state]
    for label in status.ALL_STATE_LABELS:
        if label != wanted:
            host.remove_label(task, label)
    host.add_labels(task, [wanted])


def _refusal(task: TaskKey, host: GitHost, actor: str, config: RepoConfig) -> Refusal | None:
    """The actor's permission (per the repo's policy), then the App's own permissions."""
    policy = config.allowed
    refusal = check_actor(
        actor, host.permission(task.owner, task.repo, actor), min_permission=policy.min_permission,
        allow_users=policy.users, deny_users=policy.deny_users,
    )
    return refusal or check_app_permissions(host.app_permissions(task.owner, task.repo))


def _help_text(unknown_verb: str | None) -> str:
    """The reply to `/nightcrew help` or to a command nightcrew does not know."""
    verbs = ", ".join(f"`{verb}`" for verb in ("fix", *COMMANDS[1:]))
    lead = f"I don't know `/nightcrew {unknown_verb}`. " if unknown_verb else ""
    return f"{lead}Commands: {verbs} — e.g. `/nightcrew fix keep the change small`."
