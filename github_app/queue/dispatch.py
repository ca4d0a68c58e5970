"""Moving the queue: dispatch free slots to RQ, and keep queue positions on the issues current.

Called when a task is submitted, when one finishes, and from the workers' maintenance loop.
"""

from __future__ import annotations

from collections.abc import Callable

from github_app import logs, wiring
from github_app.queue import controls, model_hold
from github_app.queue.jobqueue import (
    INTAKE_QUEUE,
    POSITIONS_JOB,
    TASK_JOB,
    TASK_QUEUE,
    JobQueue,
)
from github_app.queue.scheduler import Dispatched, TaskScheduler
from github_app.settings import load_settings
from github_app.tasks import TaskKey
from github_app.tracker.issue import IssueTracker
from github_app.tracker.status import StatusView

TASK_TIMEOUT_S = 3 * 3600
POSITIONS_SHOWN = 30  # positions further back are not worth a comment edit each time
log = logs.get("nightcrew.dispatch")


def advance(scheduler: TaskScheduler, queue: JobQueue) -> list[Dispatched]:
    """Give free slots to waiting tasks, enqueue them in RQ, and refresh positions.

    While the model API refuses every key (``model_hold``) no slot is given: the tasks wait in
    order, and the first pass after a key works again starts them.
    """
    picked = [] if model_hold.held(scheduler.connection) else scheduler.dispatch()
    for item in picked:
        enqueued = queue.enqueue(TASK_JOB, item.payload.to_json(), queue=TASK_QUEUE,
                                 job_id=item.task.job_id,
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
    close: Callable[[TaskKey], object] | None = None,
) -> list[TaskKey]:
    """Take slots back from tasks whose job vanished (a killed worker); they wait again.

    A task somebody asked to cancel or pause is not run again: ``drop`` (the worker's
    ``Stopper.drop_lost``) finishes it as stopped. Without ``drop`` such a task keeps its slot
    until a worker's sweep that has one gets to it. A task that waits again first has its lost
    run's event log closed by ``close`` (``Stopper.close_lost``): that run will never close it
    itself. Returns the tasks requeued.
    """
    lost = scheduler.stale(queue.is_live) if grace_s is None else scheduler.stale(queue.is_live, grace_s)
    requeued = []
    for task in lost:
        if drop is not None and drop(task):
            log.warning("dispatch.dropped_stopped", task=str(task))
            continue
        if drop is None and controls.stop_requested(scheduler.connection, task) is not None:
            continue
        if close is not None:  # before the requeue: the lost run ends before a new one starts
            close(task)
        scheduler.requeue(task)
        requeued.append(task)
        log.warning("dispatch.requeued", task=str(task))
    return requeued


def refresh_positions() -> int:
    """RQ entry point: edit the status comment of every waiting task whose position changed."""
    settings = load_settings()
    hosts = wiring.hosts(settings)
    scheduler = wiring.scheduler_for(settings, wiring.queue(settings))
    edits = 0
    for _ in range(3):  # the queue may move while we edit; a few passes settle it
        changed = position_changes(scheduler)
        for task, installation, comment_id, position in changed:
            tracker = IssueTracker(hosts(task, installation), task, None, comment_id=comment_id)
            tracker.write_keeping_checkpoint(StatusView("queued", str(task), queue_position=position))
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
        payload = scheduler.payload(task)
        comment_id = payload.status_comment if payload is not None else None
        if payload is not None and comment_id and scheduler.mark_shown(task, position):
            changes.append((task, payload.installation_id, comment_id, position))
    return changes
