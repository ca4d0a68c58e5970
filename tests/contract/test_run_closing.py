"""A run that did not end by itself is closed in the event log by the fleet, once (real Redis, the
stand-in): the sweep closes a lost run before it queues the task again, the stopper closes the
run it finished from outside, and a run whose events only the Redis stream holds (it ran on
another machine) is closed too, numbered after what it wrote."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis

from devhub import DevHub
from github_app.queue import controls
from github_app.queue.dispatch import sweep
from github_app.queue.jobqueue import TASK_QUEUE
from github_app.queue.stopper import LOST_DETAIL, Stopper
from github_app.tasks import TaskKey
from github_app.tracker.eventlog import Event, EventLog, fold, open_runs, read_events, tail
from tests.contract.test_stopper import GRACE_S, HANG, KEY, World


@pytest.fixture
def world(devhub: DevHub, app_private_key: str, connection: redis.Redis) -> World:
    return World(devhub, app_private_key, connection)


def stopper(world: World, data_dir: Path, *, now: float | None = None) -> Stopper:
    """A worker's stopper that writes events to ``data_dir`` (the worker's own machine)."""
    return Stopper(world.connection, world.scheduler, world.queue, world.host_for,
                   checkpoint_key=KEY, grace_s=GRACE_S, name="w1", data_dir=data_dir,
                   clock=time.time if now is None else lambda: now)


def start_run(data_dir: Path, task: TaskKey, run: str, connection: redis.Redis) -> EventLog:
    """A run that got under way (started, one step, a tool call) and then lost its worker."""
    log = EventLog(data_dir, task, run, redis=connection)
    log.emit("run_started", max_steps=30)
    log.emit("step_started", action="plan")
    log.emit("tool_call", name="read_file", summary="calc.py")
    return log


def closings(events: list[Event], run: str) -> list[Event]:
    return [e for e in events if e.run == run and e.kind == "run_finished"]


def test_the_sweep_closes_a_lost_run_before_it_queues_the_task_again(
    world: World, tmp_path: Path,
) -> None:
    task = world.running_task()
    start_run(tmp_path, task, "run-1", world.connection)
    s = stopper(world, tmp_path)
    state_at_close: list[str] = []

    def close(lost: TaskKey) -> list[str]:
        state_at_close.append(world.scheduler.state(lost)["state"])
        return s.close_lost(lost)

    # No RQ job and no heartbeat: its worker was SIGKILLed.
    assert sweep(world.scheduler, world.queue, grace_s=0, drop=s.drop_lost, close=close) == [task]
    assert state_at_close == ["dispatched"]  # closed while it still held the lost run's slot
    assert world.scheduler.state(task)["state"] == "pending"
    events = read_events(tmp_path, task)
    [end] = closings(events, "run-1")
    assert (end.seq, end.data) == (4, {"state": "queued", "detail": LOST_DETAIL,
                                       "interrupted": "lost"})
    assert open_runs(events) == {}
    progress = fold(events)
    assert (progress.run, progress.state, progress.finished, progress.interrupted) == (
        "run-1", "queued", True, "lost")
    # The stream has the closing too, for live readers.
    streamed, _ = tail(world.connection, task, "0-0", block_ms=None)
    assert [e.kind for e in streamed][-1] == "run_finished"

    # Waiting again, the task is not stale: a second sweep closes nothing twice.
    assert sweep(world.scheduler, world.queue, grace_s=0, drop=s.drop_lost, close=close) == []
    assert s.close_lost(task) == [] and len(closings(read_events(tmp_path, task), "run-1")) == 1


def test_a_requeued_task_whose_next_run_is_stopped_closes_each_run_once(
    world: World, tmp_path: Path,
) -> None:
    task = world.running_task()
    start_run(tmp_path, task, "run-1", world.connection)
    s = stopper(world, tmp_path)
    assert sweep(world.scheduler, world.queue, grace_s=0, drop=s.drop_lost, close=s.close_lost) == [task]
    # It runs again, and that run's worker dies too, while a cancel waits for it.
    assert task in [d.task for d in world.scheduler.dispatch()]
    start_run(tmp_path, task, "run-2", world.connection)
    controls.request_stop(world.connection, task, "cancel", "carol", grace_s=GRACE_S)
    assert sweep(world.scheduler, world.queue, grace_s=0, drop=s.drop_lost, close=s.close_lost) == []
    assert "nightcrew:cancelled" in world.issue(task)["labels"]
    events = read_events(tmp_path, task)
    [first], [second] = closings(events, "run-1"), closings(events, "run-2")
    assert first.data["state"] == "queued" and first.data["interrupted"] == "lost"
    assert second.data["state"] == "cancelled" and second.data["interrupted"] == "lost"
    assert "its worker was lost before it could stop" in second.data["detail"]
    assert open_runs(events) == {}
    progress = fold(events)
    assert (progress.run, progress.state, progress.interrupted) == ("run-2", "cancelled", "lost")


def test_a_run_known_only_from_the_stream_is_closed_after_its_own_events(
    world: World, tmp_path: Path,
) -> None:
    task = world.running_task()
    elsewhere, here = tmp_path / "machine-a", tmp_path / "machine-b"
    start_run(elsewhere, task, "run-far", world.connection)  # its file stays on machine A
    s = stopper(world, here)
    assert sweep(world.scheduler, world.queue, grace_s=0, drop=s.drop_lost, close=s.close_lost) == [task]
    [end] = closings(read_events(here, task), "run-far")
    assert end.seq == 4 and end.data["interrupted"] == "lost"  # after seq 1..3, not a duplicate
    streamed, _ = tail(world.connection, task, "0-0", block_ms=None)
    assert [(e.run, e.seq, e.kind) for e in streamed][-1] == ("run-far", 4, "run_finished")
    progress = fold(streamed)
    assert (progress.state, progress.finished, progress.interrupted) == ("queued", True, "lost")


def test_a_run_killed_after_its_grace_is_closed_as_killed(world: World, tmp_path: Path) -> None:
    task = world.running_task()
    start_run(tmp_path, task, "run-1", world.connection)
    # Its job has not started yet, so RQ's stop command cancels it: RQ says it was stopped.
    assert world.queue.enqueue(HANG, {"n": 1}, queue=TASK_QUEUE, job_id=task.job_id, heartbeat=True)
    now = time.time()
    controls.request_stop(world.connection, task, "cancel", "bob", grace_s=GRACE_S, now=now)
    assert stopper(world, tmp_path, now=now + GRACE_S + 1).tick() == ([task], [task])
    events = read_events(tmp_path, task)
    [end] = closings(events, "run-1")
    assert end.data["state"] == "cancelled" and end.data["interrupted"] == "killed"
    assert "did not stop within 60s" in end.data["detail"]
    assert open_runs(events) == {} and fold(events).interrupted == "killed"


def test_a_task_stopped_with_no_run_in_its_log_still_records_the_final_state(
    world: World, tmp_path: Path,
) -> None:
    task = world.running_task()  # lost before its run started: nothing in the log
    controls.request_stop(world.connection, task, "pause", "carol", grace_s=GRACE_S)
    s = stopper(world, tmp_path)
    assert sweep(world.scheduler, world.queue, grace_s=0, drop=s.drop_lost, close=s.close_lost) == []
    [end] = read_events(tmp_path, task)
    assert (end.kind, end.data["state"], end.data["interrupted"]) == ("run_finished", "paused", "lost")
