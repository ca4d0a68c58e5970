"""The fleet's hold on refused model API keys, on a real Redis: refusals shared by every worker,
dispatch held while no key works, parked tasks resumed by the probe once one does."""

from __future__ import annotations

import pytest
import redis

from github_app.queue import model_hold
from github_app.queue.dispatch import advance
from github_app.queue.jobqueue import TASK_JOB
from github_app.queue.payloads import TaskJob
from github_app.queue.scheduler import Caps, TaskScheduler
from github_app.settings import Settings
from github_app.tasks import TaskKey
from runner.model.keys import KeyRing, fingerprint
from runner.worker.model_keys import probe
from tests.unit.fakes import FakeHost, FakeQueue

GOOD, BAD = "sk-ant-" + "good-000111222333", "sk-ant-" + "bad-444555666777"
TASK = TaskKey("octo", "hello", 7)


def settings(keys: str) -> Settings:
    return Settings(ANTHROPIC_API_KEY=keys, NIGHTCREW_MODEL_PROBE_INTERVAL=1)


def job(number: int, **changes: bool) -> TaskJob:
    return TaskJob(task=TaskKey("octo", "hello", number), installation_id=9, status_comment=100 + number,
                   actor="alice", **changes)


def test_a_refusal_recorded_by_one_worker_is_skipped_by_every_other(connection: redis.Redis) -> None:
    one = KeyRing([BAD, GOOD], model_hold.RedisRefusals(connection))
    other = KeyRing([BAD, GOOD], model_hold.RedisRefusals(connection))
    assert one.refuse(BAD, "401 authentication_error") is True
    assert other.refuse(BAD, "401 authentication_error") is False  # logged once, fleet-wide
    assert other.current() == GOOD
    [refusal] = model_hold.refusals(connection)
    assert refusal.fingerprint == fingerprint(BAD) and refusal.why == "401 authentication_error"
    assert BAD not in str(connection.hgetall(model_hold.REFUSED))  # only the fingerprint


def test_while_the_fleet_holds_no_slot_is_given_and_queued_tasks_keep_their_place(
    connection: redis.Redis,
) -> None:
    scheduler, queue = TaskScheduler(connection, Caps(slots=2)), FakeQueue()
    model_hold.hold(connection, "the model API refused every configured key")
    for n in (1, 2):
        scheduler.submit(job(n))
    assert advance(scheduler, queue) == []
    assert [j for j in queue.jobs if j[0] == TASK_JOB] == []
    assert list(scheduler.positions()) == [TaskKey("octo", "hello", 1), TaskKey("octo", "hello", 2)]
    model_hold.release(connection)
    assert [d.task.number for d in advance(scheduler, queue)] == [1, 2]


def test_the_probe_resumes_parked_tasks_once_a_refused_key_works_again(connection: redis.Redis) -> None:
    scheduler, queue, host = TaskScheduler(connection, Caps(slots=1)), FakeQueue(), FakeHost()
    host.labels = {"nightcrew", "nightcrew:paused"}
    model_hold.RedisRefusals(connection).refuse(fingerprint(GOOD), "401 authentication_error")
    model_hold.hold(connection, "no key works")
    model_hold.park(connection, str(TASK), job(7, resume=True).to_json())
    answers = iter([False, True])  # still refused at the first probe, accepted at the next
    tried: list[str] = []

    def works(key: str) -> bool:
        tried.append(key)
        return next(answers)

    assert probe(settings(GOOD), connection, scheduler, queue, works=works,
                 hosts=lambda task, installation: host) == []
    assert model_hold.held(connection) is not None and host.labels == {"nightcrew", "nightcrew:paused"}
    connection.delete(model_hold.PROBE_LOCK)  # the next interval
    assert probe(settings(GOOD), connection, scheduler, queue, works=works,
                 hosts=lambda task, installation: host) == [str(TASK)]
    assert tried == [GOOD, GOOD]
    assert model_hold.held(connection) is None and model_hold.refusals(connection) == []
    assert host.labels == {"nightcrew", "nightcrew:queued"}
    [(func, (raw,), _, job_id)] = [j for j in queue.jobs if j[0] == TASK_JOB]
    assert job_id == TASK.job_id and TaskJob.from_json(raw).resume is True


def test_the_probe_lets_work_go_on_when_another_configured_key_was_never_refused(
    connection: redis.Redis,
) -> None:
    scheduler, queue = TaskScheduler(connection, Caps(slots=1)), FakeQueue()
    model_hold.RedisRefusals(connection).refuse(fingerprint(BAD), "403 permission_error")
    model_hold.hold(connection, "no key works")
    resumed = probe(settings(f"{BAD},{GOOD}"), connection, scheduler, queue,
                    works=lambda key: False, hosts=lambda task, installation: FakeHost())
    assert resumed == [] and model_hold.held(connection) is None  # GOOD works: the hold is lifted
    assert [r.fingerprint for r in model_hold.refusals(connection)] == [fingerprint(BAD)]


@pytest.mark.parametrize("broken", [b"not json", b'{"version": 9}'])
def test_an_unreadable_parked_task_is_skipped_not_fatal(connection: redis.Redis, broken: bytes) -> None:
    scheduler, queue = TaskScheduler(connection, Caps(slots=1)), FakeQueue()
    model_hold.hold(connection, "no key works")
    connection.hset(model_hold.PARKED, "octo/hello#8", broken)
    model_hold.park(connection, str(TASK), job(7, resume=True).to_json())
    assert probe(settings(GOOD), connection, scheduler, queue, works=lambda key: True,
                 hosts=lambda task, installation: FakeHost()) == [str(TASK)]
