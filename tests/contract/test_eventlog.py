"""Event log: the JSONL file is the record, the Redis stream a best-effort copy for live readers.

Real Redis (the embedded server) and a real data dir; Redis being down must never fail a run.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis

from github_app.tracker.eventlog import (
    DATA_LIMIT_BYTES,
    STREAM_MAXLEN,
    Event,
    EventLog,
    fold,
    log_path,
    read_events,
    stream_key,
    tail,
)

TASK = "octo/widgets#7"


class TickClock:
    """A clock that moves one second per reading, so ``at`` values are distinct and known."""

    def __init__(self) -> None:
        self.now = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


def stream_events(client: redis.Redis, task: str = TASK) -> list[Event]:
    """Everything on the task's stream, oldest first."""
    entries: Any = client.xrange(stream_key(task))
    events = [Event.from_json(fields[b"event"]) for _id, fields in entries]
    assert all(e is not None for e in events)
    return [e for e in events if e is not None]


def test_emit_then_read_round_trips_and_numbers_from_one(tmp_path: Path,
                                                         connection: redis.Redis) -> None:
    log = EventLog(tmp_path, TASK, "run-1", redis=connection, clock=TickClock())
    first = log.emit("run_started", max_steps=30, budget_usd=2.0)
    log.emit("tool_call", name="read_file", summary="src/app.py")
    last = log.emit("spend", tokens=1200, cost_usd=0.0123)

    assert first == Event(TASK, "run-1", 1, "2025-01-02T03:04:06.000+00:00", "run_started",
                          {"max_steps": 30, "budget_usd": 2.0})
    assert last.seq == 3
    events = read_events(tmp_path, TASK)
    assert [e.seq for e in events] == [1, 2, 3]
    assert events[0] == first and events[2] == last
    assert log.path == tmp_path / "events" / "octo" / "widgets" / "7.jsonl"
    assert len(log.path.read_text().splitlines()) == 3


def test_stream_receives_the_same_events_in_order(tmp_path: Path, connection: redis.Redis) -> None:
    log = EventLog(tmp_path, TASK, "run-1", redis=connection)
    emitted = [log.emit("step_started", step=n) for n in range(1, 6)]

    assert stream_events(connection) == emitted == read_events(tmp_path, TASK)
    assert connection.ttl(stream_key(TASK)) > 0  # an abandoned task's stream expires


def test_tail_returns_only_new_events_and_a_resumable_id(tmp_path: Path,
                                                         connection: redis.Redis) -> None:
    log = EventLog(tmp_path, TASK, "run-1", redis=connection)
    log.emit("run_started")
    events, last_id = tail(connection, TASK, "$", block_ms=None)
    assert events == [] and last_id != "$"  # "$" is pinned, so nothing between calls is lost

    second = log.emit("step_started", step=1)
    third = log.emit("step_finished", step=1)
    events, last_id = tail(connection, TASK, last_id, block_ms=None)
    assert events == [second, third]

    events, again = tail(connection, TASK, last_id, block_ms=50)
    assert events == [] and again == last_id

    everything, _ = tail(connection, TASK, "0-0", block_ms=None)
    assert [e.seq for e in everything] == [1, 2, 3]


def test_tail_wakes_up_for_an_event_written_while_it_blocks(tmp_path: Path,
                                                            connection: redis.Redis) -> None:
    log = EventLog(tmp_path, TASK, "run-1", redis=connection)
    _, last_id = tail(connection, TASK, "$", block_ms=None)
    timer = threading.Timer(0.2, lambda: log.emit("state", state="running"))
    timer.start()
    try:
        events, _ = tail(connection, TASK, last_id, block_ms=5000)
    finally:
        timer.join()
    assert [e.kind for e in events] == ["state"]


def test_stream_is_trimmed_approximately(tmp_path: Path, connection: redis.Redis) -> None:
    log = EventLog(tmp_path, TASK, "run-1", redis=connection)
    pipe = connection.pipeline(transaction=False)
    for _ in range(STREAM_MAXLEN + 500):  # fill past the cap without 10k file writes
        pipe.xadd(stream_key(TASK), {"event": "{}"})
    pipe.execute()
    log.emit("run_started")

    assert connection.xlen(stream_key(TASK)) < STREAM_MAXLEN + 500
    assert connection.xlen(stream_key(TASK)) >= STREAM_MAXLEN


def test_redis_down_still_writes_the_file_and_returns_fast(tmp_path: Path) -> None:
    dead = redis.Redis(unix_socket_path=str(tmp_path / "no-such.sock"), socket_connect_timeout=0.5)
    log = EventLog(tmp_path, TASK, "run-1", redis=dead)

    first = log.emit("step_started", step=1)  # as slow as the client's own retries, then done
    started = time.monotonic()
    events = [first] + [log.emit("step_started", step=n) for n in range(2, 51)]
    assert time.monotonic() - started < 1  # after one failure Redis is skipped for a while

    assert read_events(tmp_path, TASK) == events
    dead.close()


def test_redis_dying_mid_run_does_not_fail_emit(tmp_path: Path, connection: redis.Redis) -> None:
    class Broken:
        """A client whose every command blows up in a way redis-py would not normally raise."""

        def pipeline(self, transaction: bool = True) -> Any:
            raise RuntimeError("connection pool exploded")

    log = EventLog(tmp_path, TASK, "run-1", redis=connection)
    log.emit("run_started")
    log._redis = Broken()  # type: ignore[assignment]
    log.emit("step_started", step=1)

    assert [e.seq for e in read_events(tmp_path, TASK)] == [1, 2]
    assert [e.seq for e in stream_events(connection)] == [1]


def test_a_stopped_server_does_not_fail_emit(tmp_path: Path) -> None:
    from github_app.redis_conn import EmbeddedRedis

    server = EmbeddedRedis(tmp_path / "redis")
    client = redis.Redis.from_url(server.ensure_started(), socket_timeout=2)
    try:
        log = EventLog(tmp_path, TASK, "run-1", redis=client)
        log.emit("run_started")
    finally:
        server.stop()
    log.emit("step_started", step=1)
    log.emit("step_finished", step=1)

    assert [e.seq for e in read_events(tmp_path, TASK)] == [1, 2, 3]
    client.close()


def test_corrupt_and_half_written_lines_are_skipped(tmp_path: Path) -> None:
    log = EventLog(tmp_path, TASK, "run-1", redis=None)
    log.emit("run_started")
    log.emit("step_started", step=1)
    with log.path.open("a") as fh:
        fh.write("not json at all\n")
        fh.write('{"task": "octo/widgets#7", "run": "run-1", "seq": "3"}\n')  # wrong shape
        fh.write('[1, 2, 3]\n')
        fh.write('{"task": "octo/widgets#7", "run": "run-1", "seq": 3, "at": "x", "ki')  # crash

    assert [e.seq for e in read_events(tmp_path, TASK)] == [1, 2]

    # The next process ends the torn line first, so its own event is not glued onto it.
    again = EventLog(tmp_path, TASK, "run-1", redis=None)
    event = again.emit("step_finished", step=1)
    assert event.seq == 3  # the run's numbering continues
    assert read_events(tmp_path, TASK)[-1] == event


def test_oversized_and_odd_data_is_cut_not_fatal(tmp_path: Path) -> None:
    log = EventLog(tmp_path, TASK, "run-1", redis=None)
    huge = "x" * 100_000
    event = log.emit("tool_call", name="run_tests", output=huge, small="kept")

    encoded = json.dumps(event.data, ensure_ascii=False, separators=(",", ":")).encode()
    assert len(encoded) <= DATA_LIMIT_BYTES
    assert event.data["small"] == "kept" and event.data["name"] == "run_tests"
    assert event.data["output"].startswith("xxx") and "[cut " in event.data["output"]

    many = log.emit("error", items=[f"item {n}" for n in range(5000)])
    assert many.data["cut"] is True and len(json.dumps(many.data).encode()) <= DATA_LIMIT_BYTES

    odd = log.emit("error", message="\ud800 lone surrogate", nan=float("nan"), raw=b"\xff\x00",
                   path=tmp_path, items={1, 2}, nested={"a": {"b": [1, (2, 3)]}})
    assert odd.data["nan"] == "nan" and odd.data["path"] == str(tmp_path)
    assert odd.data["nested"] == {"a": {"b": [1, [2, 3]]}}
    assert read_events(tmp_path, TASK)[-1] == odd  # what was returned is what was written


def test_unknown_kind_is_a_bug(tmp_path: Path) -> None:
    log = EventLog(tmp_path, TASK, "run-1", redis=None)
    with pytest.raises(ValueError, match="unknown event kind"):
        log.emit("launched_rocket")  # type: ignore[arg-type]


def test_two_runs_interleave_and_fold_shows_the_latest(tmp_path: Path,
                                                       connection: redis.Redis) -> None:
    old = EventLog(tmp_path, TASK, "run-a", redis=connection)
    old.emit("run_started", max_steps=10)
    old.emit("spend", tokens=500, cost_usd=0.5)
    new = EventLog(tmp_path, TASK, "run-b", redis=connection)
    new.emit("run_started", max_steps=20, tokens=500, cost_usd=0.5)
    old.emit("error", message="old run's straggler", fatal=True)  # must not touch run-b
    new.emit("step_started", step=1, action="reading the issue")
    new.emit("spend", tokens=900, cost_usd=0.75)

    events = read_events(tmp_path, TASK)
    assert [(e.run, e.seq) for e in events] == [
        ("run-a", 1), ("run-a", 2), ("run-b", 1), ("run-a", 3), ("run-b", 2), ("run-b", 3)]
    progress = fold(events)
    assert progress.run == "run-b" and progress.state == "running" and progress.error is None
    assert (progress.step, progress.max_steps, progress.tokens, progress.cost_usd) == (1, 20, 900, 0.75)
    assert fold(stream_events(connection)) == progress  # the live copy folds the same


def test_four_threads_append_800_whole_lines(tmp_path: Path, connection: redis.Redis) -> None:
    shared = EventLog(tmp_path, TASK, "shared", redis=connection)
    own = [EventLog(tmp_path, TASK, f"own-{n}", redis=None) for n in range(4)]
    barrier = threading.Barrier(4)

    def work(n: int) -> None:
        barrier.wait()
        for i in range(200):
            shared.emit("tool_call", name="t", summary=f"{n}:{i}", pad="p" * 500)
            own[n].emit("tool_call", name="t", summary=f"{n}:{i}", pad="q" * 3000)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    lines = log_path(tmp_path, TASK).read_bytes().split(b"\n")
    assert lines[-1] == b"" and len(lines) == 1601
    events = [Event.from_json(line) for line in lines[:-1]]
    assert all(e is not None for e in events)
    by_run: dict[str, list[int]] = {}
    for event in events:
        assert event is not None
        by_run.setdefault(event.run, []).append(event.seq)
    assert by_run["shared"] == list(range(1, 801))  # seq order is file order within a run
    for n in range(4):
        assert by_run[f"own-{n}"] == list(range(1, 201))
    assert [e.seq for e in stream_events(connection)] == sorted(
        e.seq for e in stream_events(connection))
    assert connection.xlen(stream_key(TASK)) == 800


@pytest.mark.parametrize("task", ["../etc#1", "a/..#1", "./b#2", "..%2F/x#3", "a/b#0", "a/b/c#1",
                                  "a\x00/b#1", "a/b#1/../../x"])
def test_hostile_task_names_stay_inside_the_events_dir(tmp_path: Path, task: str) -> None:
    try:
        path = log_path(tmp_path / "data", task)
    except ValueError:
        return  # refused outright is fine too
    root = (tmp_path / "data" / "events").resolve()
    assert path.resolve().is_relative_to(root)
    assert all(part not in {".", ".."} and not part.startswith(".")
               for part in path.relative_to(tmp_path / "data" / "events").parts)
    EventLog(tmp_path / "data", task, "r", redis=None).emit("run_started")
    assert path.is_file()


def test_fsync_flag_and_bad_run_ids(tmp_path: Path) -> None:
    EventLog(tmp_path, TASK, "run-1", redis=None, fsync=True).emit("run_started")
    assert len(read_events(tmp_path, TASK)) == 1
    for bad in ("", "x" * 129, "a\nb"):
        with pytest.raises(ValueError):
            EventLog(tmp_path, TASK, bad, redis=None)


def test_reading_a_task_with_no_log_is_empty(tmp_path: Path) -> None:
    assert read_events(tmp_path, TASK) == []
    assert fold([]).state is None
