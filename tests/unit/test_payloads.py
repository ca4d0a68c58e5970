"""Job payloads: what crosses the queue is read back exactly, or refused with the field named."""

from __future__ import annotations

import json
from typing import Any

import pytest

from github_app.queue.payloads import PAYLOAD_VERSION, IntakeJob, PayloadError, ReviewJob, TaskJob
from github_app.tasks import TaskKey

TASK = TaskKey.parse("octo/hello#3")


def task_job(**changes: Any) -> dict[str, Any]:
    """A version-1 task job argument, as a worker of the previous release wrote it."""
    return {"task": "octo/hello#3", "installation_id": 9, "status_comment": 1001, "actor": "alice",
            "resume": False, "fresh": False, **changes}


def intake_job(**changes: Any) -> dict[str, Any]:
    return {"task": "octo/hello#3", "kind": "start", "actor": "alice", "installation_id": 9,
            "comment_id": None, "delivery": "d-1", "label": None, "args": "", "is_pull_request": False,
            **changes}


def test_a_task_job_round_trips_through_its_json() -> None:
    job = TaskJob(task=TASK, installation_id=9, status_comment=1001, actor="alice", resume=True)
    again = TaskJob.from_json(job.to_json())
    assert again == job
    assert again.task == TASK and again.resume is True and again.fresh is False


def test_an_intake_job_round_trips_through_its_json() -> None:
    job = IntakeJob(task=TASK, kind="retry", actor="bob", installation_id=None, comment_id=77,
                    delivery="d-2", label="nightcrew", args="fresh", is_pull_request=True)
    assert IntakeJob.from_json(job.to_json()) == job
    assert IntakeJob.from_json(job.to_json().encode()) == job  # RQ may hand back bytes


def test_a_review_job_round_trips_and_refuses_a_mistyped_installation() -> None:
    job = ReviewJob(task=TASK, installation_id=9, actor="carol", trigger="opened", delivery="d-9")
    assert ReviewJob.from_json(job.to_json()) == job
    with pytest.raises(PayloadError, match="installation_id must be int"):
        ReviewJob.from_json({**json.loads(job.to_json()), "installation_id": "9"})


def test_the_json_is_canonical_sorted_compact_and_versioned() -> None:
    job = TaskJob(task=TASK, installation_id=9, status_comment=None, actor="alice")
    assert job.to_json() == ('{"actor":"alice","fresh":false,"installation_id":9,"resume":false,'
                             '"revise_pr":null,"status_comment":null,"task":"octo/hello#3","version":1}')
    same = TaskJob(actor="alice", status_comment=None, installation_id=9, task=TASK)
    assert same.to_json() == job.to_json()  # equal jobs, equal text


def test_a_legacy_argument_without_a_version_is_read_as_version_1() -> None:
    legacy = task_job()
    job = TaskJob.from_json(legacy)
    assert job.version == 1 == PAYLOAD_VERSION
    assert job == TaskJob(task=TASK, installation_id=9, status_comment=1001, actor="alice")
    assert legacy == task_job()  # the caller's dict is left as it was
    assert IntakeJob.from_json(json.dumps(intake_job())).kind == "start"


@pytest.mark.parametrize("version", [2, 0, "1", None, True, 1.5])
def test_a_version_this_nightcrew_does_not_read_is_refused_naming_it(version: object) -> None:
    with pytest.raises(PayloadError) as caught:
        TaskJob.from_json(task_job(version=version))
    message = str(caught.value)
    assert f"version {version!r}" in message and "TaskJob" in message and "upgrade" in message


def test_version_1_said_explicitly_is_read() -> None:
    assert TaskJob.from_json(task_job(version=1)).version == 1


def test_unknown_fields_are_refused_by_name() -> None:
    with pytest.raises(PayloadError, match=r"IntakeJob: unknown fields: priority, zone"):
        IntakeJob.from_json(intake_job(zone="eu", priority=1))


@pytest.mark.parametrize("field", ["task", "installation_id", "status_comment", "actor"])
def test_a_missing_field_is_refused_by_name(field: str) -> None:
    data = task_job()
    del data[field]
    with pytest.raises(PayloadError, match=rf"TaskJob: missing fields: {field}$"):
        TaskJob.from_json(data)


def test_fields_with_a_default_may_be_left_out() -> None:
    job = IntakeJob.from_json({"task": "octo/hello#3", "kind": "start", "actor": "alice",
                               "installation_id": None})
    assert (job.comment_id, job.delivery, job.label, job.args, job.is_pull_request) == (
        None, "", None, "", False)


@pytest.mark.parametrize(("cls", "field", "value"), [
    (TaskJob, "installation_id", "9"),
    (TaskJob, "installation_id", None),  # a task job always knows its installation
    (TaskJob, "status_comment", "1001"),
    (TaskJob, "actor", 7),
    (TaskJob, "resume", "yes"),
    (TaskJob, "fresh", 0),
    (IntakeJob, "kind", None),
    (IntakeJob, "label", 3),
    (IntakeJob, "comment_id", 7.0),
    (IntakeJob, "args", ["fresh"]),
    (IntakeJob, "is_pull_request", "false"),
])
def test_a_mistyped_field_is_refused_naming_the_field_and_the_value(
    cls: type[TaskJob] | type[IntakeJob], field: str, value: object,
) -> None:
    data = task_job() if cls is TaskJob else intake_job()
    with pytest.raises(PayloadError) as caught:
        cls.from_json({**data, field: value})
    message = str(caught.value)
    assert message.startswith(f"{cls.__name__}: {field} must be") and repr(value) in message


@pytest.mark.parametrize(("cls", "field"), [
    (TaskJob, "installation_id"), (TaskJob, "status_comment"), (IntakeJob, "installation_id"),
    (IntakeJob, "comment_id"),
])
def test_a_bool_is_not_taken_for_an_int(cls: type[TaskJob] | type[IntakeJob], field: str) -> None:
    data = task_job() if cls is TaskJob else intake_job()
    with pytest.raises(PayloadError, match=rf"{field} must be int"):
        cls.from_json({**data, field: True})


def test_an_int_is_not_taken_for_a_bool() -> None:
    with pytest.raises(PayloadError, match="resume must be bool"):
        TaskJob.from_json(task_job(resume=1))


@pytest.mark.parametrize("task", ["octo/hello", "octo/hello#0", "hello#3", "octo/hello#x", 42, None])
def test_a_bad_task_key_is_refused_quoting_it(task: object) -> None:
    with pytest.raises(PayloadError, match="not a task key") as caught:
        TaskJob.from_json(task_job(task=task))
    assert repr(str(task)) in str(caught.value)


@pytest.mark.parametrize(("raw", "says"), [
    ("not json", "not JSON"), (b"\xff\xfe", "not JSON"), ("[1, 2]", "not a JSON object"),
    ('"octo/hello#3"', "not a JSON object"),
])
def test_text_that_is_not_a_json_object_is_refused(raw: str | bytes, says: str) -> None:
    with pytest.raises(PayloadError, match=says):
        TaskJob.from_json(raw)


def test_a_payload_error_is_a_value_error() -> None:
    # Callers that already caught ValueError for a bad argument keep catching it.
    assert issubclass(PayloadError, ValueError)
