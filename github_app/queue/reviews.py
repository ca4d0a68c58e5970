"""Review rounds and revision tasks on the queue.

A pull request has at most one review round running and one waiting: the round's RQ job id is
the PR, so a second request while one is queued is the same job; one arriving while a round runs
leaves a mark that makes the running job go once more when it ends (a newer request replaces the
waiting one — there is only ever one mark). Reviewing on every push is what floods people and
costs money, so pushes never ask; people, an opened or ready PR, and the fix loop do.

A revision is a task on the issue the PR fixes (its branch ``nightcrew/issue-N`` says which): the
same status comment, budget rules, checkpoints and fair scheduling as the first run, with the PR
to revise in its ``TaskJob``.
"""

from __future__ import annotations

import re

import redis

from github_app import logs
from github_app.queue import controls
from github_app.queue.dispatch import advance
from github_app.queue.jobqueue import REVIEW_JOB, REVIEW_QUEUE, JobQueue
from github_app.queue.payloads import ReviewJob, TaskJob
from github_app.queue.scheduler import TaskScheduler
from github_app.repo_config import RepoConfig
from github_app.tasks import TaskKey
from github_app.tracker.issue import IssueTracker, empty_checkpoint
from github_app.tracker.status import StatusView

REVIEW_TIMEOUT_S = 30 * 60
AGAIN_TTL_S = 6 * 3600
log = logs.get("nightcrew.reviews")


def review_job_id(pull: TaskKey) -> str:
    return "review-" + re.sub(r"[^A-Za-z0-9._-]", "-", str(pull))


def _again_key(pull: TaskKey) -> str:
    return f"nightcrew:review:again:{str(pull).lower()}"


def enqueue_review(connection: redis.Redis, queue: JobQueue, job: ReviewJob) -> str:
    """Queue a round for the PR; while one runs, mark that it should go once more."""
    if queue.enqueue(REVIEW_JOB, job.to_json(), queue=REVIEW_QUEUE,
                     job_id=review_job_id(job.task), timeout_s=REVIEW_TIMEOUT_S):
        return "review:queued"
    connection.set(_again_key(job.task), job.to_json(), ex=AGAIN_TTL_S)
    return "review:pending"


def take_again(connection: redis.Redis, pull: TaskKey) -> ReviewJob | None:
    """The request that arrived while this PR's round ran, if one did (taken: at most once)."""
    raw = connection.getdel(_again_key(pull))
    return None if raw is None else ReviewJob.from_json(raw)


def submit_revision(
    tracker: IssueTracker, queue: JobQueue, scheduler: TaskScheduler, config: RepoConfig, *,
    pull_number: int, actor: str, installation_id: int, why: str,
) -> str:
    """Queue a revision of PR ``pull_number`` as a task on the tracker's issue."""
    task = tracker.task
    if scheduler.state(task) or queue.is_live(task.job_id):
        log.info("revision.busy", task=str(task), pull=pull_number)
        return "revise:busy"
    controls.clear_stop(scheduler.connection, task)
    tracker.find()
    tracker.write(StatusView("queued", str(task), detail=f"Revising #{pull_number}: {why}"),
                  empty_checkpoint(task, "queued"))
    assert tracker.comment_id is not None
    tracker.set_state("queued")
    payload = TaskJob(task=task, installation_id=installation_id, status_comment=tracker.comment_id,
                      actor=actor, revise_pr=pull_number)
    scheduler.submit(payload, repo_cap=config.caps.per_repository)
    advance(scheduler, queue)
    log.info("revision.queued", task=str(task), pull=pull_number, why=why)
    return "revise:queued"
