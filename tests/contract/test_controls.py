"""In-thread requests as the running task reads them (real Redis, and Redis gone)."""

from __future__ import annotations

from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from github_app.queue import controls
from github_app.tasks import TaskKey
from runner.wiring import RedisControls

TASK = TaskKey("octo", "calc", 3)


def test_requests_reach_the_running_task_and_grants_are_taken_once(connection: redis.Redis) -> None:
    read = RedisControls(connection, TASK)
    assert read.stop_requested() is None and read.take_budget() == 0.0 and read.approved() == set()
    controls.request_stop(connection, TASK, "pause", "alice")
    controls.grant_budget(connection, TASK, 5)
    controls.grant_budget(connection, TASK, 2.5)
    controls.approve(connection, TASK, ["dependencies"])
    controls.request_render(connection, TASK)
    assert read.stop_requested() == ("pause", "alice")
    assert read.take_budget() == 7.5 and read.take_budget() == 0.0  # folded in exactly once
    assert read.approved() == {"dependencies"}
    assert read.render_requested() is True and read.render_requested() is False
    read.clear_stop()
    assert read.stop_requested() is None


def test_a_redis_that_is_restarting_means_nothing_asked_not_a_failed_task(tmp_path: Path) -> None:
    gone = redis.Redis(unix_socket_path=str(tmp_path / "no-redis.sock"), socket_connect_timeout=0.2,
                       retry=Retry(NoBackoff(), 0))  # fail at once; production clients retry first
    read = RedisControls(gone, TASK)
    assert read.stop_requested() is None
    assert read.render_requested() is False
    assert read.take_budget() == 0.0
    assert read.approved() == set()
    read.clear_stop()  # no exception: the task goes on


def test_a_stop_request_has_a_deadline_a_repeat_never_moves(connection: redis.Redis) -> None:
    other = TaskKey("octo", "calc", 4)
    first = controls.request_stop(connection, TASK, "pause", "alice", grace_s=60, now=1000.0)
    assert first == 1060.0 == controls.stop_deadline(connection, TASK)
    # A second request (now a cancel) replaces the kind and actor, not the deadline.
    assert controls.request_stop(connection, TASK, "cancel", "bob", grace_s=60, now=1050.0) == 1060.0
    assert controls.stop_requested(connection, TASK) == controls.StopRequest("cancel", "bob")
    controls.request_stop(connection, other, "cancel", "bob", grace_s=5, now=1000.0)
    assert controls.overdue_stops(connection, now=1004.0) == []
    assert controls.overdue_stops(connection, now=1005.0) == [other]
    assert controls.overdue_stops(connection, now=1060.0) == [other, TASK]  # earliest first
    controls.clear_stop(connection, TASK)  # honoured: the request and its deadline go together
    assert controls.stop_requested(connection, TASK) is None
    assert controls.stop_deadline(connection, TASK) is None
    assert controls.overdue_stops(connection, now=9999.0) == [other]
    # Cleared and asked again: a new grace period from the new request.
    assert controls.request_stop(connection, TASK, "cancel", "bob", grace_s=60, now=2000.0) == 2060.0
