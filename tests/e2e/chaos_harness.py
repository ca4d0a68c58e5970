"""The whole system on this machine, with a worker to SIGKILL: embedded Redis, the GitHub
stand-in, a Messages server that answers by what the conversation needs, the web app and worker
processes. ``tests/e2e/test_chaos.py`` kills the worker at chosen points and counts the damage.

Everything the harness starts is stopped when it closes, also on failure: the processes it
started by process group and, for a work-horse or sandbox that left its group, by the data dir in
its environment or command line.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from redis import Redis

from devhub import DevHub
from github_app.queue.jobqueue import heartbeat_key
from github_app.redis_conn import EmbeddedRedis
from github_app.tasks import TaskKey
from github_app.tracker.eventlog import Event, open_runs, read_events
from github_app.tracker.status import MARKER
from runner.cli.demo import (
    DEMO_FILES,
    DEMO_ISSUE_BODY,
    DEMO_ISSUE_TITLE,
    OWNER,
    REPO,
    _child_env,
    start_devhub,
)
from runner.fakes.messages_server import FakeMessagesServer
from runner.fakes.script import ScriptStep
from runner.worker.procs import ManagedProcess, free_port, nightcrew_command, wait_http_ok

PLAN_TEXT = ("- [ ] Find why `add` returns the wrong sum in calc.py\n"
             "- [ ] Fix `add` with the smallest change\n"
             "- [ ] Run the tests\n"
             "Acceptance:\n- [ ] tests/test_calc.py::test_add passes; no other test fails")
SUMMARY = "`add` subtracted its arguments; it now returns `a + b`, and `test_add` passes."
# An undisturbed run asks the model this often: the plan, then edit, run_tests, mark_done, finish.
BASELINE_REQUESTS = 5
DONE_LABELS = frozenset({"nightcrew:done", "nightcrew:failed"})
HELD_BEAT_S = 600  # a held heartbeat outlives any test that holds it; lapsing it deletes it
# The test timings of every process (github_app.settings): a killed worker's run is seen dead
# 3 s after its last beat (TTL 2 s, the lowest allowed, leaves a loaded machine too little slack
# between beats every TTL/4); the worker TTL as low as allowed; a maintenance pass (sweep,
# stop deadlines, dispatch) every second, busy workers included (RQ's job monitoring interval).
FAST_TIMINGS = {"NIGHTCREW_HEARTBEAT_TTL": "3", "NIGHTCREW_WORKER_TTL": "20",
                "NIGHTCREW_MAINTENANCE_INTERVAL": "1"}


# ----------------------------------------------------------------------------- the model


def _text_of(content: Any) -> str:
    """The text of a message's content (a string or content blocks), tool results included."""
    if isinstance(content, str):
        return content
    parts: list[str] = []
    for block in content if isinstance(content, list) else []:
        if isinstance(block, dict):
            if isinstance(block.get("text"), str):
                parts.append(block["text"])
            if "content" in block:
                parts.append(_text_of(block["content"]))
    return "\n".join(parts)


def next_move(body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """What a good model answers to this request: ("plan"|"summary"|"review", {}) or (tool, input).

    Decided from the request alone, so a resumed run (fresh conversation, plan kept or not, the
    fix already on the branch or not) still gets the answer that moves it on: edit unless the
    brief shows the fix is in, then run the tests, mark the plan done (unless the brief shows it
    done), finish. A resumed conversation has no test run yet, so it runs the tests again.
    """
    system = json.dumps(body.get("system", ""))
    if any(tool.get("name") == "submit_review" for tool in body.get("tools") or []):
        return "review", {}  # the round reviewing a PR nightcrew opened: nothing to find
    if "planner" in system:
        return "plan", {}
    if "handoff note" in system:
        return "summary", {}
    messages: list[dict[str, Any]] = body.get("messages", [])
    called = [block.get("name") for m in messages if m.get("role") == "assistant"
              for block in (m["content"] if isinstance(m.get("content"), list) else [])
              if isinstance(block, dict) and block.get("type") == "tool_use"]
    brief = _text_of(messages[0].get("content")) if messages else ""
    fixed = "return a + b" in brief and "return a - b" not in brief
    if "edit_file" not in called and not fixed:
        return "edit_file", {"path": "calc.py", "search": "    return a - b\n",
                             "replace": "    return a + b\n"}
    last_edit = max((n for n, name in enumerate(called) if name == "edit_file"), default=-1)
    if "run_tests" not in called[last_edit + 1:]:
        return "run_tests", {}
    if "mark_done" not in called and not _plan_done(brief):
        return "mark_done", {"items": [1, 2, 3]}
    return "finish", {"summary": SUMMARY}


def _plan_done(brief: str) -> bool:
    """Whether the plan the executor's brief shows has every item ticked (a resumed task's may)."""
    _, found, plan = brief.partition("The plan (mark items done with mark_done):")
    items = [line for line in plan.split("Acceptance:")[0].splitlines()
             if line.startswith(("- [ ]", "- [x]"))]
    return bool(found and items) and all(line.startswith("- [x]") for line in items)


class AdaptiveMessagesServer(FakeMessagesServer):
    """The scripted Messages server, its next step chosen by ``next_move`` as each request comes.

    ``moves`` lists what was answered, in order (held-and-dropped requests are not answered).
    """

    def __init__(self) -> None:
        super().__init__(())
        self.moves: list[str] = []

    def _message(self, body: Any) -> Any:  # called under the server's lock, one at a time
        move, args = next_move(body)
        if move == "plan":
            step = ScriptStep.from_json({"text": PLAN_TEXT})
        elif move == "summary":
            step = ScriptStep.from_json({"text": "Handoff: calc.add is fixed; run the tests, finish."})
        elif move == "review":
            step = ScriptStep.from_json({"tool_calls": [{"name": "submit_review", "input": {
                "findings": [], "summary": "The fix is minimal."}}]})
        else:
            step = ScriptStep.from_json({"tool_calls": [{"name": move, "input": args}]})
        self._steps.append(step)  # every earlier step was served: this one is next
        self.moves.append(move)
        return super()._message(body)


# ----------------------------------------------------------------------------- processes


# Processes are read from /proc (the sandbox is bubblewrap, so Linux anyway): no extra dependency.


def _read(pid: int, name: str) -> bytes:
    """``/proc/<pid>/<name>``, or b"" when the process is gone or not ours to read."""
    try:
        return Path(f"/proc/{pid}/{name}").read_bytes()
    except OSError:
        return b""


def _pids() -> list[int]:
    return [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]


def _cmdline(pid: int) -> list[str]:
    return [part.decode(errors="replace") for part in _read(pid, "cmdline").split(b"\0") if part]


def _stat(pid: int) -> tuple[str, int] | None:
    """(state letter, parent pid), or None when the process is gone."""
    raw = _read(pid, "stat").decode(errors="replace")
    fields = raw[raw.rfind(")") + 2:].split()  # the command name may hold spaces and parens
    return (fields[0], int(fields[1])) if len(fields) > 1 else None


def _tree(root: int) -> list[int]:
    """The process and all its descendants, root first (empty when it is gone)."""
    parents = {pid: stat[1] for pid in _pids() if (stat := _stat(pid)) is not None}
    if root not in parents:
        return []
    found, frontier = [root], [root]
    while frontier:
        frontier = [pid for pid, parent in parents.items() if parent in frontier]
        found += frontier
    return found


def _belongs(pid: int, marker: str) -> bool:
    """Whether a process names ``marker`` (the run's directory) in its argv or environment."""
    return marker.encode() in _read(pid, "cmdline") or marker.encode() in _read(pid, "environ")


def _gone(pid: int) -> bool:
    stat = _stat(pid)
    return stat is None or stat[0] in ("Z", "X")


def _kill_all(pids: list[int]) -> None:
    """Freeze, then SIGKILL, then wait until gone: a frozen process cannot fork a child we miss."""
    for sig in (signal.SIGSTOP, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not all(_gone(pid) for pid in pids):
        time.sleep(0.02)


def _stop_now(proc: ManagedProcess) -> None:
    """Stop a process of the harness and everything under it at once: at close nothing it
    would do on a graceful stop matters (Redis goes next), and waiting for RQ's warm shutdown
    and the intake helper's stop costs about a second a worker."""
    _kill_all(_tree(proc.proc.pid))
    proc.stop()  # reaps it and closes its log; its group is gone already


# ----------------------------------------------------------------------------- observations


@dataclass
class Tally:
    """What one chaos run lost or did twice; every count should be zero."""

    point: str
    lost: int = 0  # the task never finished (or did not finish with a PR)
    duplicated_comments: int = 0  # status comments beyond the one
    duplicated_prs: int = 0  # PRs for the task branch beyond the one
    duplicated_commits: int = 0  # empty commits, or the same (tree, message) twice
    respent_steps: int = 0  # model steps answered beyond an undisturbed run's
    dropped_requests: int = 0  # model requests held at the kill and never answered
    finished_runs: int = 0  # runs that ended by themselves (a task that finishes twice shows 2)
    closed_lost: int = 0  # runs the fleet closed because their worker died (the killed one)
    resume_s: float | None = None  # kill → the next run_started event
    done_s: float | None = None  # kill → the done/failed label
    runs: int = 0
    moves: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    commits: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    devhub_gaps: list[str] = field(default_factory=list)  # requests the stand-in cannot answer

    def line(self) -> str:
        resume = "never" if self.resume_s is None else f"{self.resume_s:.1f}s"
        done = "never" if self.done_s is None else f"{self.done_s:.1f}s"
        return (f"CHAOS {self.point}: lost={self.lost} duplicated_comments="
                f"{self.duplicated_comments} duplicated_prs={self.duplicated_prs} "
                f"duplicated_commits={self.duplicated_commits} respent_steps={self.respent_steps} "
                f"dropped_requests={self.dropped_requests} finished_runs={self.finished_runs} "
                f"closed_lost={self.closed_lost} "
                f"runs={self.runs} resume={resume} done={done} moves={','.join(self.moves)} "
                f"labels={','.join(self.labels)}"
                + (f" devhub_gaps={sorted(set(self.devhub_gaps))}" if self.devhub_gaps else ""))


class ChaosHarness:
    """One system (Redis, stand-in, model server, web app) and the worker processes it runs."""

    hub: DevHub
    model: AdaptiveMessagesServer
    redis: EmbeddedRedis
    env: dict[str, str]

    def __init__(self, root: Path, files: dict[str, str] | None = None, *,
                 fast: bool = True, respend: int = 1,
                 extra_env: dict[str, str] | None = None) -> None:
        self.root = root
        self.extra_env = dict(extra_env or {})  # set for every process, after the fast timings
        # The chaos tests count a task's model calls and GitHub writes: the review round that
        # nightcrew's own PR would start (tested in test_review_*.py and the demo) is off here.
        self.files = without_self_review(dict(files or DEMO_FILES))
        # Fast: the test timings (FAST_TIMINGS), so the suite stays short; one point runs with
        # the production defaults to show those hold too. What a resume waits for (measured):
        # the dead run's heartbeat to lapse (its TTL, 3 s), and the grace for a job that may not
        # have beaten yet (TTL + 3 s after its dispatch and its start), then a maintenance pass
        # (an idle worker blocks at most the maintenance interval between passes), then the new
        # work-horse starting the job (~0.5 s). The new worker's start (~2 s) overlaps the lapse.
        self.fast = fast
        self.respend = respend
        self.data_dir = root / "worker-data"
        self._stack = ExitStack()
        self.workers: list[ManagedProcess] = []
        self.web: ManagedProcess | None = None
        self.number = 0
        self.kill_at: float | None = None  # time.monotonic() of the SIGKILL
        self._runs_before_kill: set[str] = set()
        self._run_seen: dict[str, float] = {}  # run id → monotonic time its run_started was seen

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> ChaosHarness:
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _start(self) -> None:
        secret = secrets.token_hex(16)
        self._stack.callback(self._sweep)  # runs last (LIFO): after every process was stopped
        redis = self.redis = EmbeddedRedis(self.root / "redis")
        redis_url = redis.ensure_started()
        self._stack.callback(redis.stop)
        self.model = AdaptiveMessagesServer()
        model_url = self.model.start()
        self._stack.callback(self.model.stop)
        self.hub, key_path = start_devhub(self.root / "devhub", webhook_secret=secret)
        self._stack.callback(self.hub.stop)
        self.env = _child_env(self.root, redis_url, self.hub.url, key_path, secret, model_url)
        if self.fast:
            self.env.update(FAST_TIMINGS)
        self.env.update(self.extra_env)
        port = free_port()
        self.web = ManagedProcess("web app", nightcrew_command("serve", "--port", str(port)),
                                  self.env, self.root / "web.log")
        self._stack.callback(_stop_now, self.web)
        self.start_worker()
        wait_http_ok(f"http://127.0.0.1:{port}/healthz", self.web)
        self.hub.webhook_url = f"http://127.0.0.1:{port}/webhooks"
        self.hub.install(OWNER)
        self.hub.create_repo(OWNER, REPO, self.files)

    def close(self) -> None:
        """Stop everything started, newest first; never raises for a process already gone."""
        self._stack.close()

    def start_worker(self) -> ManagedProcess:
        n = len(self.workers) + 1
        worker = ManagedProcess(f"worker {n}", nightcrew_command("worker"), self.env,
                                self.root / f"worker-{n}.log")
        self.workers.append(worker)
        self._stack.callback(_stop_now, worker)
        return worker

    @property
    def worker(self) -> ManagedProcess:
        return self.workers[-1]

    def _sweep(self) -> None:
        """Kill whatever still names this run's directory (a horse or sandbox that left its group)."""
        mine = str(self.root) + os.sep
        _kill_all([pid for pid in _pids() if pid != os.getpid() and _belongs(pid, mine)])

    # -- the task ------------------------------------------------------------------------------

    @property
    def task(self) -> TaskKey:
        return TaskKey(OWNER, REPO, self.number)

    def trigger(self) -> int:
        """Open the demo issue and label it, as a maintainer would; returns its number."""
        self.number = self.hub.create_issue(OWNER, REPO, DEMO_ISSUE_TITLE, DEMO_ISSUE_BODY)
        self.hub.add_label(OWNER, REPO, self.number, "nightcrew")
        return self.number

    def trigger_many(self, count: int) -> list[int]:
        """Open ``count`` demo issues and label each (its own number each); their numbers."""
        numbers = []
        for _ in range(count):
            number = self.hub.create_issue(OWNER, REPO, DEMO_ISSUE_TITLE, DEMO_ISSUE_BODY)
            self.hub.add_label(OWNER, REPO, number, "nightcrew")
            numbers.append(number)
        return numbers

    # -- Redis ---------------------------------------------------------------------------------

    def restart_redis(self, down_s: float = 0.0) -> None:
        """Stop the embedded Redis (SIGTERM: the AOF is flushed) and start it on the same dir."""
        self.redis.stop()
        time.sleep(down_s)
        self.redis.ensure_started()

    def flush_redis(self) -> None:
        """FLUSHALL: every queue, job, lock and inbox entry gone; only the tracker remains."""
        client = Redis(unix_socket_path=str(self.redis.socket_path))
        try:
            client.flushall()
        finally:
            client.close()

    def hold_heartbeat(self, task: TaskKey) -> Callable[[], None]:
        """Keep a dead run's heartbeat fresh until the returned call lets it lapse, at once.

        The fleet tells that a worker died by its run's lapsed heartbeat: in production that
        leaves the heartbeat TTL (20 s) between the death and a sweep noticing it, at the fast
        timings 3 s. A test that must act inside that window (a cancel for a task whose worker
        just died) holds it open instead of racing it. Call it after the run's worker is dead
        (a live one would write its own TTL again).
        """
        client = Redis(unix_socket_path=str(self.redis.socket_path))
        key = heartbeat_key(task.job_id)
        client.set(key, str(time.time()), ex=HELD_BEAT_S)

        def lapse() -> None:
            try:
                client.delete(key)
            finally:
                client.close()

        return lapse

    def events(self) -> list[Event]:
        return read_events(self.data_dir, self.task) if self.number else []

    def _observe(self) -> None:
        now = time.monotonic()
        for event in self.events():
            if event.kind == "run_started" and event.run not in self._run_seen:
                self._run_seen[event.run] = now

    def wait_until(self, what: str, check: Callable[[], bool], timeout: float = 60.0) -> None:
        """Poll ``check`` until true, failing early when a process died."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._alive()
            self._observe()
            if check():
                return
            time.sleep(0.05)
        raise TimeoutError(f"{what}: not within {timeout}s\n{self.logs()}")

    def _alive(self) -> None:
        assert self.web is not None
        self.web.check_alive()
        if self.kill_at is None or len(self.workers) > 1:
            self.worker.check_alive()

    def sandboxed(self, argv: list[str]) -> bool:
        """Whether a process with exactly this argv runs under the current worker."""
        return any(_cmdline(pid) == argv for pid in _tree(self.worker.proc.pid))

    def kill_worker(self) -> None:
        """SIGKILL the worker, its work-horse (own process group) and everything under them."""
        self.kill_lineage(self.worker)
        self.kill_at = time.monotonic()
        self._observe()
        self._runs_before_kill = set(self._run_seen)

    def kill_lineage(self, worker: ManagedProcess) -> None:
        """SIGKILL ``worker`` and everything it started, also what left its tree: a work-horse
        or fork of it that was reparented holds its Redis connections, and a blocked pump call on
        one of them would still take inbox entries for the dead worker. Other live workers
        of the harness (and their horses) are spared."""
        mine = str(self.root) + os.sep
        spared = {pid for proc in [*self.workers, *([self.web] if self.web else [])]
                  if proc is not worker and proc.proc.poll() is None for pid in _tree(proc.proc.pid)}
        for _ in range(3):  # again: something may fork while we look
            victims = [pid for pid in _tree(worker.proc.pid) if pid not in spared]
            victims += [other for other in _pids()  # a worker or horse that left the tree
                        if other not in spared and other not in victims
                        and _cmdline(other)[-2:] == ["runner.cli", "worker"] and _belongs(other, mine)]
            if not [pid for pid in victims if not _gone(pid)]:
                break
            _kill_all(victims)
        worker.proc.wait(5)

    def wait_finished(self, timeout: float = 180.0) -> dict[str, Any] | None:
        """Wait for the done/failed label, then for the log of every run to close (the label is
        set just before the run's own ``run_finished``); the issue, or None when it never ended.
        A log that never closes is left for the tally to report."""
        try:
            self.wait_until("the task to end", lambda: bool(
                DONE_LABELS & set(self.hub.issue(OWNER, REPO, self.number)["labels"])), timeout)
        except TimeoutError:
            return None
        try:
            self.wait_until("every run's log to close", lambda: not open_runs(self.events()), 30)
        except TimeoutError:
            pass
        self.hub.wait_deliveries(timeout=10)
        return self.hub.issue(OWNER, REPO, self.number)

    # -- counting ------------------------------------------------------------------------------

    def tally(self, point: str, issue: dict[str, Any] | None, done_at: float | None) -> Tally:
        self._observe()
        tally = Tally(point)
        issue = issue or self.hub.issue(OWNER, REPO, self.number)
        tally.labels = sorted(issue["labels"])
        status = [c for c in issue["comments"] if MARKER in c["body"]]
        tally.duplicated_comments = max(0, len(status) - 1)
        if len(status) != 1:
            tally.problems.append(f"{len(status)} status comments (want 1)")
        elif any(c["user"] != self.hub.bot.login for c in status):
            tally.problems.append("the status comment is not the App's")
        pulls = [p for p in self.hub.pulls(OWNER, REPO) if p["head"] == self.task.branch]
        tally.duplicated_prs = max(0, len(pulls) - 1)
        others = [p for p in self.hub.pulls(OWNER, REPO) if p["head"] != self.task.branch]
        if len(pulls) != 1:
            tally.problems.append(f"{len(pulls)} PRs with head {self.task.branch} (want 1)")
        if others:
            tally.problems.append(f"PRs on other heads: {[p['head'] for p in others]}")
        tally.commits, tally.duplicated_commits = self._commits()
        if tally.duplicated_commits:
            tally.problems.append(f"duplicated commits on {self.task.branch}: {tally.commits}")
        if "nightcrew:done" not in issue["labels"]:
            tally.lost = 1
            tally.problems.append(f"the task did not end done: labels {tally.labels}")
        elif set(issue["labels"]) & {"nightcrew:running", "nightcrew:queued", "nightcrew:failed"}:
            tally.problems.append(f"stale state labels: {tally.labels}")
        if not pulls and tally.lost == 0:
            tally.lost = 1
        fixed = self._file_on_branch("calc.py")
        if "return a + b" not in fixed:
            tally.problems.append("the fix is not on the task branch")
        tally.moves = list(self.model.moves)
        tally.respent_steps = max(0, len(self.model.moves) - BASELINE_REQUESTS)
        tally.dropped_requests = len(self.model.dropped)
        if tally.respent_steps > self.respend:
            tally.problems.append(f"{tally.respent_steps} model steps answered again "
                                  f"(at most {self.respend})")
        events = self.events()
        ends = [e for e in events if e.kind == "run_finished"]
        tally.finished_runs = sum(1 for e in ends if "interrupted" not in e.data)
        tally.closed_lost = sum(1 for e in ends if e.data.get("interrupted") == "lost")
        tally.runs = len({e.run for e in events})
        if tally.finished_runs != 1:
            tally.problems.append(f"{tally.finished_runs} runs finished by themselves (want 1)")
        # The killed worker's run cannot close its log; the fleet does (nothing here is stopped).
        odd = [e.data for e in ends if e.data.get("interrupted") not in (None, "lost")
               or (e.data.get("interrupted") and e.run not in self._runs_before_kill)]
        if odd:
            tally.problems.append(f"runs closed by the fleet that it did not lose: {odd}")
        for run in sorted({e.run for e in events if e.kind == "run_started"}):
            closed = sum(1 for e in ends if e.run == run)
            if closed != 1:  # an open log never ends; one closed twice ended twice
                tally.problems.append(f"run {run} has {closed} run_finished events (want 1)")
        if self.kill_at is not None:
            later = [t for run, t in self._run_seen.items() if run not in self._runs_before_kill]
            tally.resume_s = min(later) - self.kill_at if later else None
            tally.done_s = None if done_at is None else done_at - self.kill_at
            if tally.resume_s is None:
                tally.problems.append("no run started after the kill")
            elif tally.resume_s >= 120:
                tally.problems.append(f"the next run started {tally.resume_s:.0f}s after the kill")
        gaps, problems = self.contract_problems()
        tally.devhub_gaps = gaps
        tally.problems += problems
        return tally

    def contract_problems(self) -> tuple[list[str], list[str]]:
        """(the stand-in's own gaps, contract violations of either stand-in as problems).

        An operation the stand-in lacks is its gap, not a chaos finding: reported, not failed.
        """
        gaps = [v for v in self.hub.violations if "not implemented by devhub" in v]
        violations = [v for v in self.hub.violations if v not in gaps]
        problems = [f"GitHub contract violations: {violations}"] if violations else []
        if self.model.violations:
            problems.append(f"Messages API violations: {self.model.violations}")
        return gaps, problems

    def _commits(self) -> tuple[list[str], int]:
        """The task branch's commits past main as "tree subject", and how many repeat."""
        return self.branch_commits(self.task)

    def branch_commits(self, task: TaskKey) -> tuple[list[str], int]:
        """``task``'s branch commits past main as "tree subject", and how many repeat (an
        empty commit, or the same (tree, subject) twice); any repository of the stand-in."""
        if task.branch not in self.hub.branches(task.owner, task.repo):
            return [], 0
        git = self.hub.git.git
        raw = git(task.owner, task.repo, "log", "--reverse", "--format=%T|%s", f"main..{task.branch}")
        commits, duplicated, seen = [], 0, set()
        previous = git(task.owner, task.repo, "rev-parse", "main^{tree}").decode().strip()
        for row in filter(None, raw.decode().splitlines()):
            tree, subject = row.split("|", 1)
            commits.append(f"{tree[:8]} {subject}")
            duplicated += tree == previous or (tree, subject) in seen
            seen.add((tree, subject))
            previous = tree
        return commits, duplicated

    def _file_on_branch(self, path: str) -> str:
        try:
            return self.hub.file_at(OWNER, REPO, self.task.branch, path)
        except Exception:  # no branch, no file: reported as "not on the branch"
            return ""

    def logs(self, lines: int = 40) -> str:
        parts = []
        for proc in [*self.workers, *([self.web] if self.web else [])]:
            parts.append(f"--- {proc.name} ({proc.log_path.name}) ---\n{proc.tail(lines)}")
        return "\n".join(parts)



def repo_files(*, setup: list[str] | None = None, test: str | None = None) -> dict[str, str]:
    """The demo repository, its ``.github/nightcrew.yml`` with this setup and test command."""
    lines = ["setup:"] + [f"  - {json.dumps(c)}" for c in (setup or ["python -m compileall -q calc.py tests"])]
    if test is not None:
        lines.append(f"test: {json.dumps(test)}")
    lines += ["caps:", "  per_repository: 1", "rules:", "  - Keep the change minimal."]
    return {**DEMO_FILES, ".github/nightcrew.yml": "\n".join(lines) + "\n"}


def without_self_review(files: dict[str, str]) -> dict[str, str]:
    """``files`` with ``review.self_review`` off in their nightcrew config."""
    config = files.get(".github/nightcrew.yml", "")
    if "review:" not in config:
        files[".github/nightcrew.yml"] = config + "review:\n  self_review: false\n"
    return files


def report(line: str, data: dict[str, Any]) -> None:
    """Print a chaos test's summary line; append its counts as JSON to $NIGHTCREW_CHAOS_REPORT."""
    print(line)
    target = os.environ.get("NIGHTCREW_CHAOS_REPORT")
    if target:
        with Path(target).open("a") as out:
            out.write(json.dumps(data) + "\n")
