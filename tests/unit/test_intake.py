"""Intake: trust check, reaction, status comment, label, then the task job."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from github_app.intake import handle
from github_app.queue import TASK_JOB, TASK_QUEUE
from github_app.settings import Settings
from github_app.status import MARKER
from github_app.tasks import TaskKey
from tests.unit.fakes import FakeHost, FakeQueue


def args(**overrides: Any) -> dict[str, Any]:
    base = {"task": "octo/hello#3", "kind": "start", "actor": "alice", "installation_id": 9,
            "comment_id": None, "args": "", "delivery": "d1", "is_pull_request": False}
    return {**base, **overrides}


def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path)


def test_writer_gets_a_queued_task(tmp_path: Path) -> None:
    host, queue = FakeHost("write"), FakeQueue()
    assert handle(args(), host, queue, settings(tmp_path)) == "queued"
    [(func, (job_args,), queue_name, job_id)] = queue.jobs
    assert (func, queue_name, job_id) == (TASK_JOB, TASK_QUEUE, TaskKey.parse("octo/hello#3").job_id)
    [(comment_id, body)] = host.comments.items()
    assert MARKER in body and "queued" in body
    assert job_args["status_comment"] == comment_id
    assert host.labels == {"nightcrew:queued"}
    assert host.reactions == [("eyes", None)]


def test_reader_is_refused_politely_and_nothing_runs(tmp_path: Path) -> None:
    host, queue = FakeHost("read"), FakeQueue()
    assert handle(args(), host, queue, settings(tmp_path)) == "refused"
    assert queue.jobs == [] and host.labels == set()
    [body] = host.comments.values()
    assert "@alice" in body and "write access" in body and "Nothing was started" in body


def test_second_trigger_for_a_live_task_starts_nothing_new(tmp_path: Path) -> None:
    host = FakeHost("admin")
    queue = FakeQueue(live={TaskKey.parse("octo/hello#3").job_id})
    assert handle(args(comment_id=77), host, queue, settings(tmp_path)) == "already-running"
    assert queue.jobs == [] and host.comments == {}
    assert host.reactions == [("eyes", 77)]  # the person still sees they were heard


def test_commands_not_built_yet_are_answered(tmp_path: Path) -> None:
    host, queue = FakeHost(), FakeQueue()
    assert handle(args(kind="pause"), host, queue, settings(tmp_path)) == "unsupported:pause"
    assert "not available yet" in next(iter(host.comments.values()))
    assert queue.jobs == []


def test_unknown_command_gets_the_list_of_valid_ones(tmp_path: Path) -> None:
    host, queue = FakeHost(), FakeQueue()
    assert handle(args(kind="unknown", args="frobnicate"), host, queue, settings(tmp_path)) == "unknown"
    [body] = host.comments.values()
    assert "`/nightcrew frobnicate`" in body and "`fix`" in body and "`cancel`" in body
    assert queue.jobs == []
