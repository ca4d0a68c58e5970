"""Intake: trust check, reaction, status comment, label, then the fair scheduler (real Redis)."""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis

from github_app.queue import controls
from github_app.queue.intake import handle
from github_app.queue.jobqueue import POSITIONS_JOB, TASK_JOB, TASK_QUEUE
from github_app.queue.label_cache import trigger_label_for
from github_app.queue.payloads import IntakeJob, TaskJob
from github_app.queue.scheduler import Caps, TaskScheduler
from github_app.tasks import TaskKey
from github_app.tracker.checkpoint import checkpoint_key, read_block
from github_app.tracker.status import MARKER
from tests.unit.fakes import FakeHost, FakeQueue

TASK = TaskKey.parse("octo/hello#3")


def args(**overrides: Any) -> IntakeJob:
    base = {"task": str(TASK), "kind": "start", "actor": "alice", "installation_id": 9,
            "comment_id": None, "args": "", "delivery": "d1", "is_pull_request": False}
    return IntakeJob.from_json({**base, **overrides})


@pytest.fixture
def scheduler(connection: redis.Redis) -> TaskScheduler:
    return TaskScheduler(connection, Caps(slots=1))


def task_jobs(queue: FakeQueue) -> list[tuple[str, tuple[Any, ...], str, str | None]]:
    return [job for job in queue.jobs if job[0] == TASK_JOB]


def test_writer_gets_a_queued_task_dispatched_to_rq(scheduler: TaskScheduler) -> None:
    host, queue = FakeHost("write"), FakeQueue()
    assert handle(args(), host, queue, scheduler) == "queued"
    [(func, (job_args,), queue_name, job_id)] = task_jobs(queue)
    assert (func, queue_name, job_id) == (TASK_JOB, TASK_QUEUE, TASK.job_id)
    [(comment_id, body)] = host.comments.items()
    assert MARKER in body and "queued" in body
    job = TaskJob.from_json(job_args)
    assert job.status_comment == comment_id and job.installation_id == 9 and job.task == TASK
    assert host.labels == {"nightcrew:queued"}
    assert host.reactions == [("eyes", None)]
    assert any(job[0] == POSITIONS_JOB for job in queue.jobs)
    assert scheduler.state(TASK)["state"] == "dispatched"


def test_over_capacity_the_task_waits_in_the_scheduler(scheduler: TaskScheduler) -> None:
    host, queue = FakeHost("write"), FakeQueue()
    handle(args(), host, queue, scheduler)
    other = TaskKey.parse("octo/hello#4")
    assert handle(args(task=str(other)), host, queue, scheduler) == "queued"
    assert [job[3] for job in task_jobs(queue)] == [TASK.job_id]  # one slot: #4 waits
    assert scheduler.state(other)["state"] == "pending"
    assert scheduler.positions() == {other: 1}


def test_reader_is_refused_politely_and_nothing_runs(scheduler: TaskScheduler) -> None:
    host, queue = FakeHost("read"), FakeQueue()
    assert handle(args(), host, queue, scheduler) == "refused"
    assert queue.jobs == [] and host.labels == set() and scheduler.state(TASK) == {}
    [body] = host.comments.values()
    assert "@alice" in body and "write access" in body and "Nothing was started" in body


def test_second_trigger_for_a_queued_task_starts_nothing_new(scheduler: TaskScheduler) -> None:
    host, queue = FakeHost("admin"), FakeQueue()
    handle(args(), host, queue, scheduler)
    comments = dict(host.comments)
    assert handle(args(comment_id=77), host, queue, scheduler) == "already-queued"
    assert len(task_jobs(queue)) == 1 and host.comments == comments
    assert host.reactions[-1] == ("eyes", 77)  # the person still sees they were heard


def test_pause_takes_a_waiting_task_off_the_queue(scheduler: TaskScheduler) -> None:
    host, queue = FakeHost("write"), FakeQueue()
    handle(args(), host, queue, scheduler)  # #3 takes the one slot
    other = TaskKey.parse("octo/hello#4")
    handle(args(task=str(other)), host, queue, scheduler)
    assert handle(args(task=str(other), kind="pause"), host, queue, scheduler) == "pause:dequeued"
    assert scheduler.state(other) == {} and scheduler.positions() == {}
    assert "nightcrew:paused" in host.labels
    status_body = [b for b in host.comments.values() if "Paused by @alice while queued" in b]
    assert len(status_body) == 1


def test_cancel_of_a_running_task_is_a_request_it_honours_between_steps(
    scheduler: TaskScheduler, connection: redis.Redis,
) -> None:
    host, queue = FakeHost("write"), FakeQueue()
    handle(args(), host, queue, scheduler)  # dispatched: running as far as intake can tell
    assert handle(args(kind="cancel", actor="bob"), host, queue, scheduler) == "cancel:requested"
    request = controls.stop_requested(connection, TASK)
    assert request is not None and (request.kind, request.actor) == ("cancel", "bob")


def test_a_reader_cannot_steer(scheduler: TaskScheduler, connection: redis.Redis) -> None:
    host, queue = FakeHost("read"), FakeQueue()
    assert handle(args(kind="cancel"), host, queue, scheduler) == "refused"
    assert controls.stop_requested(connection, TASK) is None


def test_budget_raise_on_a_budget_paused_task_resumes_it_with_its_status_comment(
    scheduler: TaskScheduler, connection: redis.Redis,
) -> None:
    host, queue = FakeHost("write"), FakeQueue()
    status_id = host.create_comment(TASK, MARKER + "\n⏸️ paused")
    host.labels = {"nightcrew", "nightcrew:paused"}
    assert handle(args(kind="budget", args="+$5"), host, queue, scheduler) == "resumed"
    assert controls.take_budget(connection, TASK) == 5.0
    [(_, (job_args,), _, _)] = task_jobs(queue)
    job = TaskJob.from_json(job_args)
    assert job.resume is True and job.status_comment == status_id
    assert "nightcrew:queued" in host.labels and "nightcrew:paused" not in host.labels


def test_approve_names_kinds_and_resumes_a_task_waiting_for_approval(
    scheduler: TaskScheduler, connection: redis.Redis,
) -> None:
    host, queue = FakeHost("maintain"), FakeQueue()
    host.create_comment(TASK, MARKER)
    host.labels = {"nightcrew:needs-approval"}
    assert handle(args(kind="approve", args="dependencies"), host, queue, scheduler) == "resumed"
    assert controls.approved(connection, TASK) == {"dependencies"}
    assert handle(args(kind="approve", args="everything"), host, queue, scheduler) == "approve:unknown"
    assert "Nothing to approve called everything" in list(host.comments.values())[-1]


@pytest.mark.parametrize(("kind", "text", "answer"), [
    ("resume", "", "resume:nothing"), ("retry", "", "retry:nothing"),
    ("budget", "lots", "budget:unreadable"), ("pause", "", "pause:nothing"),
])
def test_steering_with_nothing_to_steer_is_answered(
    scheduler: TaskScheduler, kind: str, text: str, answer: str,
) -> None:
    host, queue = FakeHost("write"), FakeQueue()
    assert handle(args(kind=kind, args=text), host, queue, scheduler) == answer
    assert len(host.comments) == 1 and task_jobs(queue) == []


def test_retry_of_a_failed_task_queues_it_again(scheduler: TaskScheduler) -> None:
    host, queue = FakeHost("write"), FakeQueue()
    host.labels = {"nightcrew:failed"}
    assert handle(args(kind="retry", args="fresh"), host, queue, scheduler) == "queued"
    [(_, (job_args,), _, _)] = task_jobs(queue)
    job = TaskJob.from_json(job_args)
    assert job.fresh is True and job.resume is False


def test_unknown_command_gets_the_list_of_valid_ones(scheduler: TaskScheduler) -> None:
    host, queue = FakeHost(), FakeQueue()
    assert handle(args(kind="unknown", args="frobnicate"), host, queue, scheduler) == "unknown"
    [body] = host.comments.values()
    assert "`/nightcrew frobnicate`" in body and "`fix`" in body and "`cancel`" in body
    assert queue.jobs == []


def test_broken_repo_config_gets_one_comment_naming_field_and_line(scheduler: TaskScheduler) -> None:
    host, queue = FakeHost("write"), FakeQueue()
    host.files[".github/nightcrew.yml"] = "trigger_label: robot\nbudget:\n  usd: -1\n"
    assert handle(args(), host, queue, scheduler) == "config-error"
    [body] = host.comments.values()
    assert "line 3" in body and "budget.usd" in body
    assert queue.jobs == [] and scheduler.state(TASK) == {} and host.labels == set()


def test_repo_policy_deny_list_and_min_permission(scheduler: TaskScheduler) -> None:
    host, queue = FakeHost("admin"), FakeQueue()
    host.files[".github/nightcrew.yml"] = "allowed:\n  deny_users: [alice]\n"
    assert handle(args(), host, queue, scheduler) == "refused"
    host = FakeHost("triage")
    host.files[".github/nightcrew.yml"] = "allowed:\n  min_permission: triage\n"
    assert handle(args(), host, queue, scheduler) == "queued"


def test_missing_app_permissions_are_explained(scheduler: TaskScheduler) -> None:
    host, queue = FakeHost("admin"), FakeQueue()
    host.granted["pull_requests"] = "read"
    assert handle(args(), host, queue, scheduler) == "refused"
    [body] = host.comments.values()
    assert "pull_requests: write" in body and queue.jobs == []


def test_the_repo_trigger_label_is_cached_for_ingress_and_enforced(
    scheduler: TaskScheduler, connection: redis.Redis,
) -> None:
    host, queue = FakeHost("write"), FakeQueue()
    host.files[".github/nightcrew.yml"] = "trigger_label: robot\n"
    assert handle(args(label="nightcrew"), host, queue, scheduler) == "not-the-trigger-label"
    assert trigger_label_for(connection, "Octo/Hello", "nightcrew") == "robot"
    assert handle(args(label="robot"), host, queue, scheduler) == "queued"


def test_repo_cap_from_config_reaches_the_scheduler(connection: redis.Redis) -> None:
    scheduler = TaskScheduler(connection, Caps(slots=10, per_installation=10))
    host, queue = FakeHost("write"), FakeQueue()
    host.files[".github/nightcrew.yml"] = "caps:\n  per_repository: 1\n"
    for n in (3, 4):
        handle(args(task=f"octo/hello#{n}"), host, queue, scheduler)
    assert [job[3] for job in task_jobs(queue)] == [TASK.job_id]  # the repo allows one at a time


def test_review_and_revise_on_a_plain_issue_are_answered_and_queue_nothing(
    scheduler: TaskScheduler,
) -> None:
    # On pull requests they are tested against the stand-in (tests/e2e/test_review_jobs.py).
    host, queue = FakeHost(), FakeQueue()
    for n, kind in enumerate(("review", "revise")):
        assert handle(args(kind=kind, delivery=f"d{n}"), host, queue, scheduler) == f"{kind}:not-a-pull-request"
    assert len(host.comments) == 2 and all("works on pull requests" in b for b in host.comments.values())
    assert queue.jobs == [] and host.labels == set()


def test_a_cancel_gives_the_running_task_the_configured_grace_period(
    scheduler: TaskScheduler, connection: redis.Redis,
) -> None:
    host, queue = FakeHost("write"), FakeQueue()
    handle(args(), host, queue, scheduler)  # dispatched: running as far as intake can tell
    before = time.time()
    assert handle(args(kind="pause", actor="bob"), host, queue, scheduler,
                  stop_grace_s=7) == "pause:requested"
    deadline = controls.stop_deadline(connection, TASK)
    assert deadline is not None and before + 7 <= deadline <= time.time() + 7


def test_a_new_start_forgets_a_stop_request_its_earlier_run_never_read(
    scheduler: TaskScheduler, connection: redis.Redis,
) -> None:
    controls.request_stop(connection, TASK, "cancel", "bob")  # asked as the last run was ending
    host, queue = FakeHost("write"), FakeQueue()
    assert handle(args(), host, queue, scheduler) == "queued"
    assert controls.stop_requested(connection, TASK) is None  # would stop the run at its first step
    assert controls.stop_deadline(connection, TASK) is None


def test_cancel_while_queued_keeps_the_signed_checkpoint_in_the_final_state(
    scheduler: TaskScheduler,
) -> None:
    key = checkpoint_key("intake-test-secret-not-real")
    host, queue = FakeHost("write"), FakeQueue()
    handle(args(), host, queue, scheduler, checkpoint_key=key)  # #3 takes the one slot
    other = TaskKey.parse("octo/hello#4")
    handle(args(task=str(other)), host, queue, scheduler, checkpoint_key=key)
    assert handle(args(task=str(other), kind="cancel", actor="bob"), host, queue, scheduler,
                  checkpoint_key=key) == "cancel:dequeued"
    [body] = [b for b in host.comments.values() if "Cancelled by @bob while queued" in b]
    assert "`/nightcrew retry`" in body
    read = read_block(body, key, task=str(other))
    assert read.checkpoint is not None and read.checkpoint.state == "cancelled"
    assert scheduler.state(other) == {}


@pytest.mark.parametrize("label", ["nightcrew:paused", "nightcrew:needs-approval"])
def test_cancel_of_a_task_waiting_for_a_person_ends_it_at_once_keeping_its_checkpoint(
    scheduler: TaskScheduler, label: str,
) -> None:
    host, queue, key = FakeHost("write"), FakeQueue(), checkpoint_key("s")
    host.labels = {"nightcrew", label}
    handle(args(), host, queue, scheduler, checkpoint_key=key)  # a status comment with a block
    scheduler.finish(TASK)  # the run ended, paused or waiting: nothing in Redis, nothing live
    queue.live.discard(TASK.job_id)
    host.labels = {"nightcrew", label}
    assert handle(args(kind="cancel", actor="bob"), host, queue, scheduler, checkpoint_key=key) \
        == "cancel:cancelled"
    assert host.labels == {"nightcrew", "nightcrew:cancelled"}
    [body] = [b for b in host.comments.values() if MARKER in b]
    assert "Cancelled by @bob" in body and "/nightcrew retry" in body
    read = read_block(body, key, task=str(TASK))
    assert read.checkpoint is not None and read.checkpoint.state == "cancelled"
