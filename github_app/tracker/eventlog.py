"""The task event log: what a run did, appended as it happens, and the status comment folded from it.

Every run appends events to two places:

* ``<data_dir>/events/<owner>/<repo>/<number>.jsonl`` — one JSON object per line, the source of
  truth. Each line is written with one ``write`` on an ``O_APPEND`` descriptor, so concurrent
  writers never interleave inside a line; a crash can leave at most a half last line, which
  ``read_events`` skips.
* the Redis stream ``nc:events:<owner>/<repo>#<number>`` (field ``event``: the same JSON line),
  trimmed to about ``STREAM_MAXLEN`` entries, for live readers (``tail``). Redis holds only what
  may be lost: when it is down the event still goes to the file and the run goes on.

The status comment is this fold: ``runner.pipeline.live_status.StatusReporter`` listens to its run's
``EventLog`` (``listeners``), folds every event with ``RunFold`` and renders what it folds.

One task may run several times (resume, retry); each run has its own id and its own ``seq``
counting from 1, and ``fold`` shows the latest run.

The ``data`` each kind carries (all keys optional; ``fold`` ignores what it does not know):

==============  ===========================================================================
kind            data
==============  ===========================================================================
run_started     max_steps, budget_usd, plan; when resuming: step, tokens, cost_usd,
                elapsed_s, commits, tests_before (the checkpoint's numbers)
step_started    step (default: previous + 1), action, plan_item
step_finished   step
tool_call       name, summary (short, e.g. the path) -> the current action "name summary"
test_result     phase ("before" | "after"), summary (e.g. "12 passed, 1 failed") or
                passed + failed counts
spend           tokens, cost_usd: the run's totals so far (not deltas: a lost or cut event
                then cannot skew the sum); budget_usd
state           state (a ``lifecycle.State``), detail
progress        only the keys any kind may carry (below): what changed besides the above
error           message, fatal (bool; a fatal error means the state is "failed")
run_finished    state (the final ``lifecycle.State``), detail; ``interrupted`` when the run did not
                end by itself and the fleet closed its log (``github_app.queue.stopper``):
                "lost" (its worker died: the task waits to run again, or ended stopped),
                "killed" (stopped from outside after a cancel's or pause's grace)
==============  ===========================================================================

Any kind may also carry detail, note, plan (list of text or {"text", "done"}), plan_item,
commit (one sha to append), commits (the whole list), pr_url, run_url (where the run can be
watched: its GitHub Actions run), max_steps, budget_usd.
"""

from __future__ import annotations

import json
import math
import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, cast, get_args

import redis

from github_app import logs
from github_app.tasks import TaskKey
from github_app.tracker.lifecycle import STATES, State
from github_app.tracker.record import PlanStep, RunRecord

Kind = Literal["run_started", "step_started", "step_finished", "tool_call", "test_result", "spend",
               "state", "progress", "error", "run_finished"]
KINDS: frozenset[str] = frozenset(get_args(Kind))
_STATES: frozenset[str] = frozenset(STATES)

DATA_LIMIT_BYTES = 8192  # an event's data, as compact UTF-8 JSON; more is cut, never refused
STREAM_MAXLEN = 10_000  # approximate: Redis trims whole macro nodes, which is much cheaper
STREAM_TTL_S = 7 * 24 * 3600  # a finished task's stream goes away by itself; the file stays
REDIS_RETRY_S = 30.0  # after a Redis failure, skip it this long so a dead server costs no time
MAX_RUN_ID_CHARS = 128
CUT_MARKER = "…[cut {n} chars]"
_MAX_DEPTH = 32
_SAFE_NAME = re.compile(r"[A-Za-z0-9_.-]")

Clock = Callable[[], datetime]
_log = logs.get(__name__)


@dataclass(frozen=True)
class Event:
    """One thing a run did; ``data`` is JSON-safe and at most ``DATA_LIMIT_BYTES`` as JSON."""

    task: str
    run: str
    seq: int
    at: str
    kind: Kind
    data: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        """One compact JSON line (no newline); the file and the stream carry exactly this."""
        return json.dumps({"task": self.task, "run": self.run, "seq": self.seq, "at": self.at,
                           "kind": self.kind, "data": self.data},
                          ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> Event | None:
        """The event a line holds, or None for a corrupt or foreign line (readers skip those)."""
        try:
            raw = json.loads(text)
        except (ValueError, UnicodeDecodeError):
            return None
        if not isinstance(raw, dict):
            return None
        task, run, seq, at, kind, data = (raw.get(k) for k in
                                          ("task", "run", "seq", "at", "kind", "data"))
        if not (isinstance(task, str) and isinstance(run, str) and isinstance(at, str)
                and isinstance(seq, int) and not isinstance(seq, bool) and seq >= 1
                and kind in KINDS and isinstance(data, dict)):
            return None
        return cls(task, run, seq, at, cast(Kind, kind), data)


def new_run_id() -> str:
    """A fresh run id that sorts by start time, so a directory listing or a log reads in order."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(4)


def stream_key(task: str | TaskKey) -> str:
    """The Redis stream of a task's events; the task is parsed first so the key is canonical."""
    return f"nc:events:{_task_key(task)}"


def log_path(data_dir: Path, task: str | TaskKey) -> Path:
    """``data_dir/events/<owner>/<repo>/<number>.jsonl``, always inside ``data_dir/events``.

    TaskKey already limits names to ``[A-Za-z0-9_.-]``, but that still lets ``..`` through, so
    every component is escaped again and the result is checked to stay under the root.
    """
    key = _task_key(task)
    root = Path(data_dir) / "events"
    path = root / _safe_component(key.owner) / _safe_component(key.repo) / f"{key.number}.jsonl"
    if not path.resolve().is_relative_to(root.resolve()):
        raise ValueError(f"event log path escapes {root}: {path}")
    return path


class EventLog:
    """Appends one run's events to the task's JSONL file and, best effort, its Redis stream.

    Thread-safe: ``seq`` is taken, the line written and published under one lock, so file and
    stream order are seq order within a run. Several ``EventLog`` objects (threads or processes) may share a file.
    """

    def __init__(self, data_dir: Path, task: str | TaskKey, run: str, *,
                 redis: redis.Redis | None, clock: Clock = lambda: datetime.now(UTC),
                 fsync: bool = False, after_seq: int = 0) -> None:
        if not run or len(run) > MAX_RUN_ID_CHARS or not run.isprintable():
            raise ValueError(f"a run id must be 1..{MAX_RUN_ID_CHARS} printable characters: {run!r}")
        self.task = str(_task_key(task))
        self.run = run
        self.path = log_path(data_dir, task)
        self.stream = stream_key(task)
        self._redis = redis
        self._clock = clock
        self._fsync = fsync
        self._lock = threading.Lock()
        self._redis_retry_at = 0.0  # time.monotonic() before which Redis is not tried again
        # Called with every event this object records, in seq order (e.g. the status comment's fold).
        self.listeners: list[Callable[[Event], None]] = []
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _end_torn_line(self.path)
        # A reopened run continues its numbering; ``after_seq``: past what another machine's
        # file holds of it (seen on the stream), so a fold never takes a new event for a duplicate.
        self._seq = max(_last_seq(self.path, run), after_seq)

    def emit(self, kind: Kind, **data: Any) -> Event:
        """Record one event and return it.

        ``data`` is made JSON-safe and cut to ``DATA_LIMIT_BYTES``, so odd payloads never fail a
        run. An unknown ``kind`` is a bug and raises ``ValueError``; a failing file write
        (disk full) raises ``OSError`` because the file is the record; a failing Redis is
        logged and skipped.
        """
        if kind not in KINDS:
            raise ValueError(f"unknown event kind: {kind!r}")
        payload = cap_data(data)
        with self._lock:
            self._seq += 1
            event = Event(self.task, self.run, self._seq, _iso(self._clock()), kind, payload)
            line = event.to_json()
            _append_line(self.path, line, fsync=self._fsync)
            self._publish(line)  # under the lock too, so the stream's order is seq order
            for listener in self.listeners:
                listener(event)
        return event

    def _publish(self, line: str) -> None:
        """XADD the line; on any failure log once and stay away from Redis for a while.

        The failing call itself costs what the client's retry policy costs (redis-py 8's
        default, 10 backed-off retries, is about 4 s); the next ``REDIS_RETRY_S`` cost nothing.
        """
        if self._redis is None or time.monotonic() < self._redis_retry_at:
            return
        try:
            pipe = self._redis.pipeline(transaction=False)
            pipe.xadd(self.stream, {"event": line}, maxlen=STREAM_MAXLEN, approximate=True)
            pipe.expire(self.stream, STREAM_TTL_S)
            pipe.execute()
        except Exception as exc:  # any: the stream is optional; the file has the event
            self._redis_retry_at = time.monotonic() + REDIS_RETRY_S
            _log.warning("eventlog.redis_unavailable", task=self.task, run=self.run,
                         error=f"{type(exc).__name__}: {exc}", retry_in_s=REDIS_RETRY_S)


def read_events(data_dir: Path, task: str | TaskKey) -> list[Event]:
    """Every readable event of a task in file order; corrupt lines (a torn last line) are skipped."""
    path = log_path(data_dir, task)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return []
    events = (Event.from_json(line) for line in raw.split(b"\n") if line.strip())
    return [e for e in events if e is not None]


def tail(client: redis.Redis, task: str | TaskKey, last_id: str = "$", *,
         block_ms: int | None = 1000, count: int = 500) -> tuple[list[Event], str]:
    """New events on the task's stream after ``last_id``, and the id to pass next time.

    ``"$"`` means "from now": it is resolved to the stream's current last id before reading, so
    passing the returned id back loses nothing between calls. ``block_ms`` waits that long for
    something new (``None``: do not wait; Redis reads ``0`` as "forever"). Redis errors are
    raised: a live reader can retry or fall back to ``read_events``.
    """
    key = stream_key(task)
    if last_id == "$":
        newest: Any = client.xrevrange(key, count=1)
        last_id = _text(newest[0][0]) if newest else "0-0"
    reply: Any = client.xread({key: last_id}, count=count, block=block_ms)
    # RESP2 replies [[stream, entries]], RESP3 {stream: entries}; either way take the entries.
    streams = reply.values() if isinstance(reply, dict) else [e for _s, e in reply or []]
    events: list[Event] = []
    for entries in streams:
        for entry_id, fields in entries:
            last_id = _text(entry_id)
            line = fields.get(b"event", fields.get("event"))
            event = Event.from_json(line) if isinstance(line, str | bytes) else None
            if event is not None:
                events.append(event)
    return events, last_id


# --- size and shape of event data -------------------------------------------------------------


def cap_data(data: Mapping[str, Any], limit: int = DATA_LIMIT_BYTES) -> dict[str, Any]:
    """``data`` as JSON-safe values within ``limit`` bytes of JSON.

    Long strings are cut first (shorter and shorter, each with a marker saying how much went);
    if the structure itself is too big, it is replaced by a cut preview of its JSON.
    """
    safe = cast(dict[str, Any], json_safe(dict(data)))
    if _size(safe) <= limit:
        return safe
    max_chars = limit
    while max_chars > 32:
        max_chars //= 2
        cut = cast(dict[str, Any], _cut_strings(safe, max_chars))
        if _size(cut) <= limit:
            return cut
    text = json.dumps(safe, ensure_ascii=False, separators=(",", ":"))
    preview: dict[str, Any] = {"cut": True, "preview": _cut(text, limit // 2)}
    while _size(preview) > limit:  # escaping can double a preview's size; shrink until it fits
        preview["preview"] = _cut(text, len(preview["preview"]) // 2)
    return preview


def json_safe(value: Any, depth: int = 0) -> Any:
    """A JSON-serializable copy: odd floats, bytes, sets, objects and deep nesting become text."""
    if depth > _MAX_DEPTH:
        return "…[too deep]"
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, str):
        return value.encode("utf-8", "replace").decode("utf-8")  # lone surrogates become "?"
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, Mapping):
        return {json_safe(str(k), depth + 1): json_safe(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [json_safe(v, depth + 1) for v in value]
    try:
        return json_safe(str(value), depth + 1)
    except Exception:  # any: a broken __str__ must not fail the run
        return f"<unprintable {type(value).__name__}>"


def _cut_strings(value: Any, max_chars: int) -> Any:
    """A copy with every string longer than ``max_chars`` cut (keys too, they can be long)."""
    if isinstance(value, str):
        return _cut(value, max_chars)
    if isinstance(value, dict):
        return {_cut(k, max_chars): _cut_strings(v, max_chars) for k, v in value.items()}
    if isinstance(value, list):
        return [_cut_strings(v, max_chars) for v in value]
    return value


def _cut(text: str, max_chars: int) -> str:
    """``text`` kept to about ``max_chars``, ending with a marker that says how much was cut."""
    if len(text) <= max_chars:
        return text
    keep = max(0, max_chars - 24)
    return text[:keep] + CUT_MARKER.format(n=len(text) - keep)


def _size(value: Any) -> int:
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))


# --- the file ---------------------------------------------------------------------------------


def _append_line(path: Path, line: str, *, fsync: bool) -> None:
    """Append ``line`` + newline with one write, so concurrent appenders never interleave."""
    payload = (line + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        written = os.write(fd, payload)
        while written < len(payload):  # short writes are rare on files, but not forbidden
            written += os.write(fd, payload[written:])
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)


def _end_torn_line(path: Path) -> None:
    """End a half line a crash left, so the next event is not glued onto it and lost too."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            if fh.tell() == 0:
                return
            fh.seek(-1, os.SEEK_END)
            torn = fh.read(1) != b"\n"
    except FileNotFoundError:
        return
    if torn:
        _append_line(path, "", fsync=False)


def _last_seq(path: Path, run: str) -> int:
    """The highest seq this run already wrote, so a reopened run does not reuse numbers."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return 0
    seqs = (e.seq for line in raw.split(b"\n") if line.strip()
            if (e := Event.from_json(line)) is not None and e.run == run)
    return max(seqs, default=0)


def _safe_component(name: str) -> str:
    """A path component that is never empty, ``.``/``..`` or hidden, and never holds a separator."""
    escaped = "".join(ch if _SAFE_NAME.fullmatch(ch) else f"%{ord(ch):02X}" for ch in name)
    if not escaped or escaped.startswith("."):
        escaped = "%2E" + escaped[1:] if escaped else "%00"
    return escaped


def _task_key(task: str | TaskKey) -> TaskKey:
    return task if isinstance(task, TaskKey) else TaskKey.parse(task)


def _iso(moment: datetime) -> str:
    """ISO 8601 in UTC to the millisecond; a naive clock is taken to be UTC already."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


# --- folding events into what the status comment shows ----------------------------------------


# What the status comment shows about the latest run: the one run record.
Progress = RunRecord


def latest_run(events: Iterable[Event]) -> str | None:
    """The run shown: the one started last in file order, else the run of the last event.

    File order is append order on this host, which clocks cannot get wrong.
    """
    started, last = None, None
    for event in events:
        last = event.run
        if event.kind == "run_started":
            started = event.run
    return started if started is not None else last


def open_runs(events: Iterable[Event]) -> dict[str, int]:
    """Runs that started and were never closed, in the order they started, each with the highest
    seq seen: a run whose worker died, which nothing but the fleet will ever close."""
    last_seq: dict[str, int] = {}
    started: list[str] = []
    closed: set[str] = set()
    for event in events:
        last_seq[event.run] = max(last_seq.get(event.run, 0), event.seq)
        if event.kind == "run_started":
            closed.discard(event.run)  # a reopened run is open again
            if event.run not in started:
                started.append(event.run)
        elif event.kind == "run_finished":
            closed.add(event.run)
    return {run: last_seq[run] for run in started if run not in closed}


def fold(events: Sequence[Event]) -> Progress:
    """The latest run's progress; events of other runs are ignored, duplicates counted once."""
    run = latest_run(events)
    if run is None:
        return Progress()
    seen: set[int] = set()
    mine: list[Event] = []
    for event in sorted((e for e in events if e.run == run), key=lambda e: e.seq):
        if event.seq not in seen:
            seen.add(event.seq)
            mine.append(event)
    acc = RunFold(run=run)
    for event in mine:
        acc.apply(event)
    return acc.freeze()


class RunFold:
    """The accumulator behind ``fold`` (and a live status comment): ``apply`` one event at a
    time, ``freeze`` for the ``RunRecord`` so far. One method per kind keeps each rule readable;
    what is folded is the record itself, plus the times elapsed is counted from."""

    def __init__(self, run: str) -> None:
        self.record = RunRecord(run=run)
        self.elapsed_before = 0.0
        self.started_at: datetime | None = None
        self.last_at: datetime | None = None

    def apply(self, event: Event) -> None:
        """Fold one event: its kind's rule, then the keys any kind may carry."""
        moment = _parse_time(event.at)
        if moment is not None:
            if self.started_at is None or event.kind == "run_started":
                self.started_at = moment
            self.last_at = moment
        self._set(last_seq=event.seq, task=event.task)
        getattr(self, f"_on_{event.kind}")(event.data)
        self._common(event.data)

    def _set(self, **changes: Any) -> None:
        self.record = replace(self.record, **changes)

    def _on_run_started(self, d: dict[str, Any]) -> None:
        r = self.record
        self.elapsed_before = _float(d.get("elapsed_s"), 0.0)
        self._set(state="running", finished=False, interrupted=None, step=_int(d.get("step"), r.step),
                  tokens=_int(d.get("tokens"), r.tokens), cost_usd=_float(d.get("cost_usd"), r.cost_usd),
                  tests_before=_str(d.get("tests_before"), r.tests_before))

    def _on_step_started(self, d: dict[str, Any]) -> None:
        self._set(step=_int(d.get("step"), self.record.step + 1),
                  action=_str(d.get("action"), "") or "")

    def _on_step_finished(self, d: dict[str, Any]) -> None:
        self._set(step=_int(d.get("step"), self.record.step))

    def _on_tool_call(self, d: dict[str, Any]) -> None:
        name, summary = _str(d.get("name"), "") or "", _str(d.get("summary"), "") or ""
        self._set(action=f"{name} {summary}".strip())

    def _on_test_result(self, d: dict[str, Any]) -> None:
        text = _str(d.get("summary"), None)
        if text is None and "passed" in d and "failed" in d:
            text = f"{_int(d.get('passed'), 0)} passed, {_int(d.get('failed'), 0)} failed"
        self._set(**{"tests_before" if d.get("phase") == "before" else "tests_after": text})

    def _on_spend(self, d: dict[str, Any]) -> None:
        r = self.record
        self._set(tokens=_int(d.get("tokens"), r.tokens), cost_usd=_float(d.get("cost_usd"), r.cost_usd))

    def _on_state(self, d: dict[str, Any]) -> None:
        self._set_state(d.get("state"))

    def _on_progress(self, d: dict[str, Any]) -> None:
        return None  # the common keys only

    def _on_error(self, d: dict[str, Any]) -> None:
        self._set(error=_str(d.get("message"), None) or "error")
        if d.get("fatal") is True:
            self._set(state="failed")

    def _on_run_finished(self, d: dict[str, Any]) -> None:
        # The state is what the task is now (queued again, cancelled…); ``interrupted`` says the
        # run itself did not end by itself but was closed by the fleet.
        self._set(finished=True, action="", interrupted=_str(d.get("interrupted"), None))
        self._set_state(d.get("state"))

    def _set_state(self, value: Any) -> None:
        """Take a known state; an unknown one (a newer writer) leaves the state as it was."""
        if isinstance(value, str) and value in _STATES:
            self._set(state=cast(State, value))

    def _common(self, d: dict[str, Any]) -> None:
        """Keys any event may carry, so an emitter need not pick a kind just to set one."""
        r = self.record
        changes: dict[str, Any] = {name: d[name] for name in ("detail", "note", "plan_item")
                                   if isinstance(d.get(name), str)}
        changes["max_steps"] = _int(d.get("max_steps"), r.max_steps)
        if "budget_usd" in d:  # None is a real value: "no dollar budget"
            budget = d["budget_usd"]
            changes["budget_usd"] = None if budget is None else _float(budget, r.budget_usd or 0.0)
        changes["pr_url"] = _str(d.get("pr_url"), r.pr_url)
        changes["run_url"] = _str(d.get("run_url"), r.run_url)
        commits = list(r.commits)
        if isinstance(d.get("commits"), list):
            commits = [c for c in d["commits"] if isinstance(c, str)]
        commit = d.get("commit")
        if isinstance(commit, str) and commit not in commits:
            commits.append(commit)
        changes["commits"] = tuple(commits)
        if isinstance(d.get("plan"), list):
            changes["plan"] = tuple(s for s in (_plan_step(item) for item in d["plan"]) if s is not None)
        self._set(**changes)

    def freeze(self) -> RunRecord:
        """The record so far; elapsed counts from run_started (plus any resumed time)."""
        elapsed = self.elapsed_before
        if self.started_at is not None and self.last_at is not None:
            elapsed += max(0.0, (self.last_at - self.started_at).total_seconds())
        return replace(self.record, elapsed_s=elapsed)


def _plan_step(item: Any) -> PlanStep | None:
    """A plan entry written as text or as {"text", "done"}; anything else is dropped."""
    if isinstance(item, str):
        return PlanStep(item)
    if isinstance(item, dict) and isinstance(item.get("text"), str):
        return PlanStep(item["text"], item.get("done") is True)
    return None


def _parse_time(text: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _int(value: Any, default: int) -> int:
    """A non-negative JSON integer, else ``default``: a bad field must not break the comment."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return default
    return value


def _float(value: Any, default: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or value < 0:
        return default
    return float(value)


def _str(value: Any, default: str | None) -> str | None:
    return value if isinstance(value, str) else default
