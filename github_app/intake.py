"""The intake job: the checks that need GitHub, then the task is queued.

Runs on the fast queue. Trust (the actor's permission), the 👀 reaction, the status comment
("queued"), the ``nightcrew:queued`` label, then the task goes to the fair scheduler, which
hands it to RQ (job id = task key) when a slot is free.
"""

from __future__ import annotations

from typing import Any

from github_app import logs, status
from github_app.dispatch import advance, scheduler_for
from github_app.github import GitHost, GitHubApp
from github_app.label_cache import remember_trigger_label
from github_app.queue import JobQueue, RQJobQueue
from github_app.redis_conn import connect
from github_app.repo_config import RepoConfig, RepoConfigError, load_repo_config, render_config_error
from github_app.routing import COMMANDS
from github_app.scheduler import TaskScheduler
from github_app.settings import load_settings
from github_app.tasks import TaskKey
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
                  queue, scheduler_for(settings, queue))


def handle(args: dict[str, Any], host: GitHost, queue: JobQueue, scheduler: TaskScheduler) -> str:
    """Apply one routed command; returns what happened, for the job's result."""
    task = TaskKey.parse(args["task"])
    kind = str(args["kind"])
    if kind in ("unknown", "help"):
        host.create_comment(task, _help_text(args["args"] if kind == "unknown" else None))
        return kind
    if kind in AUTOMATIC_KINDS:
        # Review and revision tasks come from nightcrew's own PRs, not from a person typing:
        # until they are built, log them; a comment on every push would be noise.
        log.info("intake.deferred", task=str(task), kind=kind)
        return f"deferred:{kind}"
    if kind != "start":
        # Steering commands arrive with later issues; say so instead of silence.
        host.create_comment(task, f"`/nightcrew {kind}` is not available yet in this version.")
        return f"unsupported:{kind}"
    try:
        config = load_repo_config(host, task.owner, task.repo)
    except RepoConfigError as exc:
        host.create_comment(task, render_config_error(exc))
        log.info("intake.config_error", task=str(task), error=str(exc))
        return "config-error"
    remember_trigger_label(scheduler.connection, task.full_name, config.trigger_label)
    if args.get("label") and args["label"] != config.trigger_label:
        return "not-the-trigger-label"  # the repo renamed its trigger; this label means nothing
    refusal = _refusal(task, host, args["actor"], config)
    if refusal is not None:
        host.create_comment(task, f"{refusal.reason} Nothing was started.")
        log.info("intake.refused", task=str(task), actor=args["actor"], reason=refusal.reason)
        return "refused"
    host.react(task, "eyes", args.get("comment_id"))
    if scheduler.state(task) or queue.is_live(task.job_id):
        log.info("intake.already_queued", task=str(task))
        return "already-queued"
    comment_id = host.create_comment(task, status.render(status.StatusView("queued", str(task))))
    host.add_labels(task, [status.LABELS["queued"]])
    job_args = {
        "task": str(task), "installation_id": args["installation_id"],
        "status_comment": comment_id, "actor": args["actor"],
    }
    submitted = scheduler.submit(task, int(args["installation_id"]), job_args,
                                 repo_cap=config.caps.per_repository)
    advance(scheduler, queue)
    log.info("intake.queued", task=str(task), new=submitted.new, status_comment=comment_id)
    return "queued"


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
