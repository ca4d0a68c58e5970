"""The fair scheduler on a real Redis: dedupe, caps, fairness, positions, crash and restart."""

from __future__ import annotations

import threading
from pathlib import Path

import redis

from github_app.queue import controls
from github_app.queue.dispatch import sweep
from github_app.queue.payloads import TaskJob
from github_app.queue.scheduler import Caps, TaskScheduler
from github_app.redis_conn import EmbeddedRedis
from github_app.tasks import TaskKey
from tests.unit.fakes import FakeQueue

A, B, C = 1, 2, 3  # installations


def key(repo: str, n: int) -> TaskKey:
    owner, name = repo.split("/")
    return TaskKey(owner, name, n)


def job(task: TaskKey, installation: int, *, status_comment: int | None = None) -> TaskJob:
    return TaskJob(task=task, installation_id=installation, status_comment=status_comment,
                   actor="alice")


def submit(s: TaskScheduler, installation: int, repo: str, *numbers: int) -> list[TaskKey]:
    keys = [key(repo, n) for n in numbers]
    for k in keys:
        s.submit(job(k, installation))
    return keys


def dispatched_keys(s: TaskScheduler) -> list[TaskKey]:
    return [d.task for d in s.dispatch()]


def test_a_task_is_submitted_once_and_args_come_back(connection: redis.Redis) -> None:
    s = TaskScheduler(connection, Caps(slots=1))
    k = key("octo/a", 1)
    assert s.submit(job(k, A, status_comment=5)).new
    again = s.submit(job(k, A, status_comment=6))
    assert not again.new and again.state == "pending"
    [item] = s.dispatch()
    assert item.task == k and item.payload == job(k, A, status_comment=5)
    assert s.payload(k) == job(k, A, status_comment=5)
    assert not s.submit(job(k, A)).new  # still running: a second trigger adds nothing
    assert s.dispatch() == []


def test_a_flood_from_one_installation_delays_another_by_at_most_one_slot(connection: redis.Redis) -> None:
    s = TaskScheduler(connection, Caps(per_installation=10, slots=2))
    flood = submit(s, A, "big/repo1", *range(1, 51)) + submit(s, A, "big/repo2", *range(1, 51))
    first = dispatched_keys(s)
    assert len(first) == 2 and set(first) <= set(flood)
    [late] = submit(s, B, "small/repo", 1)
    assert s.positions()[late] == 1  # shown on the issue: next in line
    s.finish(first[0])  # one slot frees up…
    assert dispatched_keys(s) == [late]  # …and it goes to the other installation


def test_round_robin_positions_match_the_dispatch_order(connection: redis.Redis) -> None:
    s = TaskScheduler(connection, Caps(per_installation=10, per_repository=10, slots=0))
    a = submit(s, A, "a/r", 1, 2, 3)
    b = submit(s, B, "b/r", 1, 2)
    c = submit(s, C, "c/r", 1)
    positions = s.positions()
    expected = [a[0], b[0], c[0], a[1], b[1], a[2]]
    assert sorted(positions, key=positions.__getitem__) == expected
    s.caps = Caps(per_installation=10, per_repository=10, slots=6)
    assert dispatched_keys(s) == expected


def test_per_installation_cap_is_fleet_wide(connection: redis.Redis) -> None:
    first = TaskScheduler(connection, Caps(per_installation=2, per_repository=5, slots=10))
    second = TaskScheduler(connection, Caps(per_installation=2, per_repository=5, slots=10))
    submit(first, A, "a/r", 1, 2, 3, 4)
    assert len(dispatched_keys(first)) == 2
    assert dispatched_keys(second) == []  # another machine sees the same cap
    first.finish(key("a/r", 1))
    assert dispatched_keys(second) == [key("a/r", 3)]


def test_per_repository_cap_lets_other_repos_through(connection: redis.Redis) -> None:
    s = TaskScheduler(connection, Caps(per_installation=5, per_repository=1, slots=10))
    submit(s, A, "a/busy", 1, 2, 3)
    submit(s, A, "a/quiet", 1)
    assert set(dispatched_keys(s)) == {key("a/busy", 1), key("a/quiet", 1)}
    assert s.positions() == {key("a/busy", 2): 1, key("a/busy", 3): 2}


def test_repo_cap_from_repo_config_overrides_the_default(connection: redis.Redis) -> None:
    s = TaskScheduler(connection, Caps(per_installation=5, per_repository=1, slots=10))
    for n in (1, 2, 3):
        s.submit(job(key("a/wide", n), A), repo_cap=3)
    assert len(dispatched_keys(s)) == 3


def test_a_waiting_task_is_never_dropped_it_just_waits(connection: redis.Redis) -> None:
    s = TaskScheduler(connection, Caps(slots=1))
    running, waiting = submit(s, A, "a/r", 1, 2)
    assert dispatched_keys(s) == [running]
    for _ in range(3):
        assert s.dispatch() == []
    assert s.state(waiting)["state"] == "pending"
    s.finish(running)
    assert dispatched_keys(s) == [waiting]


def test_cancelled_waiting_task_leaves_the_queue(connection: redis.Redis) -> None:
    s = TaskScheduler(connection, Caps(slots=0))
    first, second = submit(s, A, "a/r", 1, 2)
    assert s.finish(first)
    assert s.positions() == {second: 1} and s.state(first) == {}


def test_lost_job_gives_its_slot_back_and_runs_again_first(connection: redis.Redis) -> None:
    s = TaskScheduler(connection, Caps(slots=1))
    crashed, waiting = submit(s, A, "a/r", 1, 2)
    assert dispatched_keys(s) == [crashed]
    assert s.stale(lambda job_id: True, grace_s=0) == []  # its RQ job is alive: keep it
    assert s.stale(lambda job_id: False, grace_s=3600) == []  # too recent to judge
    [lost] = s.stale(lambda job_id: False, grace_s=0)
    assert lost == crashed and s.requeue(lost)
    assert dispatched_keys(s) == [crashed]  # resumes before the one behind it
    assert s.state(waiting)["state"] == "pending"


def test_concurrent_dispatchers_never_exceed_the_slots(connection: redis.Redis, redis_server: str) -> None:
    submit(TaskScheduler(connection, Caps(per_repository=100)), A, "a/r", *range(1, 41))
    got: list[TaskKey] = []
    lock = threading.Lock()

    def dispatcher() -> None:
        s = TaskScheduler(redis.Redis.from_url(redis_server),
                          Caps(per_installation=100, per_repository=100, slots=7))
        for _ in range(20):
            picked = dispatched_keys(s)
            with lock:
                got.extend(picked)

    threads = [threading.Thread(target=dispatcher) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == len(set(got)) == 7


def test_a_queued_task_survives_a_redis_restart(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "redis")
    url = server.ensure_started()
    try:
        s = TaskScheduler(redis.Redis.from_url(url), Caps(slots=0))
        [waiting] = submit(s, A, "a/r", 1)
        server.stop()
        assert not server.is_running()
        server.ensure_started()
        s = TaskScheduler(redis.Redis.from_url(url), Caps(slots=1))
        assert s.positions() == {waiting: 1}
        assert dispatched_keys(s) == [waiting]
    finally:
        server.stop()


def test_withdraw_takes_only_a_waiting_task_never_one_being_dispatched(connection: redis.Redis) -> None:
    s = TaskScheduler(connection, Caps(slots=1))
    running, waiting = submit(s, A, "a/r", 1, 2)
    assert dispatched_keys(s) == [running]
    assert not s.withdraw(running)  # dispatched: a cancel must become a stop request instead
    assert s.state(running)["state"] == "dispatched"
    assert s.withdraw(waiting) and s.state(waiting) == {} and s.positions() == {}
    assert not s.withdraw(waiting)  # gone already


def test_the_sweep_does_not_run_again_a_lost_task_someone_asked_to_stop(connection: redis.Redis) -> None:
    s = TaskScheduler(connection, Caps(slots=2))
    stopped, lost = submit(s, A, "a/r", 1, 2)
    assert dispatched_keys(s) == [stopped, lost]
    controls.request_stop(connection, stopped, "cancel", "bob")
    # Neither job is live (their worker died). Without a stopper to finish it, the one with the
    # cancel keeps its slot rather than run again; the other waits again, first in line.
    assert sweep(s, FakeQueue(), grace_s=0) == [lost]
    assert s.state(stopped)["state"] == "dispatched" and s.state(lost)["state"] == "pending"
    dropped: list[TaskKey] = []

    def drop(task: TaskKey) -> bool:  # the worker's Stopper.drop_lost: finishes it as stopped
        dropped.append(task)
        return task == stopped

    assert sweep(s, FakeQueue(), grace_s=0, drop=drop) == []  # `lost` was requeued already
    assert dropped == [stopped]
