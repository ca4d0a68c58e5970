"""Moving the queue: dispatch free slots to RQ, and keep queue positions on the issues current.

Called when a task is submitted, when one finishes, and from the workers' maintenance loop.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from github_app import logs
from github_app.github import GitHubApp
from github_app.queue import controls
from github_app.queue.jobqueue import (
    INTAKE_QUEUE,
    POSITIONS_JOB,
    TASK_JOB,
    TASK_QUEUE,
    JobQueue,
    RQJobQueue,
)
from github_app.queue.scheduler import Caps, Dispatched, TaskScheduler
from github_app.redis_conn import connect
from github_app.settings import Settings, load_settings
from github_app.tasks import TaskKey
from github_app.tracker import status

TASK_TIMEOUT_S = 3 * 3600
POSITIONS_SHOWN = 30  # positions further back are not worth a comment edit each time
log = logs.get("nightcrew.dispatch")


def scheduler_for(settings: Settings, queue: RQJobQueue) -> TaskScheduler:
    """The fleet's scheduler; slots follow the live workers unless NIGHTCREW_MAX_RUNNING caps them."""
    caps = Caps(per_installation=settings.cap_per_installation, slots=settings.max_running)
    return TaskScheduler(queue.connection, caps, live_slots=lambda: queue.worker_count(TASK_QUEUE))


def advance(scheduler: TaskScheduler, queue: JobQueue) -> list[Dispatched]:
    """Give free slots to waiting tasks, enqueue them in RQ, and refresh positions."""
    picked = scheduler.dispatch()
    for item in picked:
        enqueued = queue.enqueue(TASK_JOB, item.args, queue=TASK_QUEUE, job_id=item.task.job_id,
                                 timeout_s=TASK_TIMEOUT_S, heartbeat=True)
        if not enqueued:  # its previous run is still winding down: wait for the next round
            scheduler.requeue(item.task)
    queue.enqueue(POSITIONS_JOB, queue=INTAKE_QUEUE, job_id="nightcrew-positions", timeout_s=300)
    if picked:
        log.info("dispatch", tasks=[str(i.task) for i in picked])
    return picked


def sweep(
    scheduler: TaskScheduler, queue: JobQueue, *, grace_s: float | None = None,
    drop: Callable[[TaskKey], bool] | None = None,
) -> list[TaskKey]:
    """Take slots back from tasks whose job vanished (a killed worker); they wait again.

    A task somebody asked to cancel or pause is not run again: ``drop`` (the worker's
    ``Stopper.drop_lost``) finishes it as stopped. Without ``drop`` such a task keeps its slot
    until a worker's sweep that has one gets to it. Returns the tasks requeued.
    """
    lost = scheduler.stale(queue.is_live) if grace_s is None else scheduler.stale(queue.is_live, grace_s)
    requeued = []
    for task in lost:
        if drop is not None and drop(task):
            log.warning("dispatch.dropped_stopped", task=str(task))
            continue
        if drop is None and controls.stop_requested(scheduler.connection, task) is not None:
            continue
        scheduler.requeue(task)
        requeued.append(task)
        log.warning("dispatch.requeued", task=str(task))
    return requeued


def refresh_positions() -> int:
    """RQ entry point: edit the status comment of every waiting task whose position changed."""
    settings = load_settings()
    app_id, key = settings.require_app()
    app = GitHubApp(app_id, key, settings.github_api_url)
    scheduler = scheduler_for(settings, RQJobQueue(connect(settings)))
    edits = 0
    for _ in range(3):  # the queue may move while we edit; a few passes settle it
        changed = position_changes(scheduler)
        for task, installation, comment_id, position in changed:
            host = app.host(installation)
            # Keep the signed checkpoint: after a lost Redis it is what brings the task back.
            body = next((c.body for c in host.list_comments(task) if c.id == comment_id), "")
            view = status.StatusView("queued", str(task), queue_position=position,
                                     checkpoint_block=status.checkpoint_line(body))
            host.update_comment(task, comment_id, status.render(view), key=status.comment_key(task))
        edits += len(changed)
        if not changed:
            break
    return edits


def position_changes(scheduler: TaskScheduler) -> list[tuple[TaskKey, int, int, int]]:
    """(task, installation, status comment, new position) for positions that changed."""
    changes = []
    for task, position in scheduler.positions().items():
        if position > POSITIONS_SHOWN:
            continue
        record = scheduler.state(task)
        comment_id = json.loads(record.get("args", "{}")).get("status_comment")
        if comment_id and scheduler.mark_shown(task, position):
            changes.append((task, int(record["installation"]), int(comment_id), position))
    return changes
