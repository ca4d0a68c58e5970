"""The reconciler: rebuild the queue from the tracker, so a wiped Redis loses no task.

The issue is the task store. Every task waiting or running carries a state label
(``nightcrew:queued`` / ``nightcrew:running``) and, under its status comment, a checkpoint
signed by nightcrew. The reconciler walks every installation's repositories, and each such
issue that Redis knows nothing about is submitted to the scheduler again — its next run resumes
from the checkpoint. Labels alone are not trusted (anyone with triage rights can set one): only
a valid signed checkpoint brings a task back. Paused and approval-waiting tasks need nothing
from the queue; a person's ``/nightcrew resume`` or ``approve`` brings them back.

A wiped Redis also takes the heartbeats of the runs still going; each comes back at its run's
next beat. So a task Redis does not know is looked at again after one heartbeat TTL
(``settle_s``) before it is brought back: a run that still beats is not started a second time
next to itself just because the reconciler looked in the gap between two beats.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import redis

from github_app import logs, wiring
from github_app.github import Comment
from github_app.queue.dispatch import advance
from github_app.queue.jobqueue import JobQueue
from github_app.queue.payloads import TaskJob
from github_app.queue.scheduler import TaskScheduler
from github_app.settings import Settings
from github_app.tasks import TaskKey
from github_app.tracker import lifecycle, status
from github_app.tracker.checkpoint import read_block

log = logs.get("nightcrew.reconcile")


class InstallationView(Protocol):
    def repositories(self) -> list[str]: ...
    def issues_with_label(self, owner: str, repo: str, label: str) -> list[int]: ...
    def list_comments(self, task: TaskKey) -> list[Comment]: ...


class AppView(Protocol):
    def installations(self) -> list[int]: ...
    def host(self, installation_id: int) -> InstallationView: ...


@dataclass
class Report:
    seen: int = 0  # issues labeled queued or running
    known: int = 0  # already in Redis (scheduler or a live job)
    resubmitted: list[str] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)  # (task, why)


def reconcile(
    app: AppView, scheduler: TaskScheduler, queue: JobQueue, key: bytes,
    *, bot_login: Callable[[str, str], str] | None = None, settle_s: float = 0.0,
    sleep: Callable[[float], None] = time.sleep,
) -> Report:
    """Submit every active task on the tracker that Redis lost; report what was found.

    ``settle_s``: how long a run that still goes may take to beat again (the heartbeat TTL); a
    task Redis does not know is looked at again after it, once for all such tasks.
    """
    report = Report()
    unknown: list[tuple[TaskKey, int, InstallationView, str | None]] = []
    for installation in app.installations():
        host = app.host(installation)
        for full_name in host.repositories():
            owner, repo = full_name.split("/", 1)
            for task in _active_tasks(host, owner, repo):
                report.seen += 1
                if _known(task, scheduler, queue):
                    report.known += 1
                else:
                    unknown.append((task, installation, host,
                                    bot_login(owner, repo) if bot_login else None))
    if unknown and settle_s > 0:
        sleep(settle_s)
    for task, installation, host, bot in unknown:
        if _known(task, scheduler, queue):  # it beat again (or intake brought it back meanwhile)
            report.known += 1
            continue
        why = _bring_back(task, installation, host, scheduler, key, bot)
        if why is None:
            report.resubmitted.append(str(task))
        else:
            report.refused.append((str(task), why))
    log.info("reconcile.done", seen=report.seen, known=report.known,
             resubmitted=len(report.resubmitted), refused=len(report.refused))
    return report


def _known(task: TaskKey, scheduler: TaskScheduler, queue: JobQueue) -> bool:
    """Redis has the task: in the scheduler, or a live (beating) job."""
    return bool(scheduler.state(task)) or queue.is_live(task.job_id)


RECONCILED_KEY = "nc:reconciled"  # gone with a wiped Redis: the next worker reconciles at once
RECONCILE_EVERY_S = 600


def due(connection: redis.Redis) -> bool:
    """True for the one worker that should reconcile now (at most every RECONCILE_EVERY_S)."""
    return bool(connection.set(RECONCILED_KEY, "1", nx=True, ex=RECONCILE_EVERY_S))


def reconcile_from_settings(settings: Settings) -> Report:
    """``nightcrew reconcile`` and the workers' periodic pass: the adapters from settings."""
    app = wiring.app(settings)
    queue = wiring.queue(settings)
    scheduler = wiring.scheduler_for(settings, queue)
    report = reconcile(app, scheduler, queue, settings.checkpoint_key(), bot_login=app.bot_login,
                       settle_s=float(settings.heartbeat_ttl_s))
    advance(scheduler, queue)
    return report


def _active_tasks(host: InstallationView, owner: str, repo: str) -> list[TaskKey]:
    numbers: set[int] = set()
    for label in sorted({lifecycle.label(state) for state in lifecycle.ACTIVE}):
        numbers.update(host.issues_with_label(owner, repo, label))
    return [TaskKey(owner, repo, n) for n in sorted(numbers)]


def _bring_back(
    task: TaskKey, installation: int, host: InstallationView, scheduler: TaskScheduler,
    key: bytes, bot: str | None,
) -> str | None:
    """Resubmit the task from its signed status comment; the reason when it cannot be."""
    comments = [c for c in host.list_comments(task)
                if status.MARKER in c.body and (bot is None or c.author == bot)]
    if not comments:
        return "no status comment by nightcrew"
    comment = comments[0]
    read = read_block(comment.body, key, task=str(task))
    if read.checkpoint is None:
        return f"checkpoint {read.problem or 'missing'}"
    if read.checkpoint.state not in lifecycle.ACTIVE:
        return f"checkpoint says {read.checkpoint.state}"
    scheduler.submit(TaskJob(task=task, installation_id=installation, status_comment=comment.id,
                             actor="nightcrew-reconciler"))
    return None
