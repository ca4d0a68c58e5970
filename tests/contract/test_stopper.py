"""The kill switch's second half (real Redis, real RQ worker process, GitHub = the stand-in):
a task that overstays its stop request's grace period is claimed by exactly one worker, stopped
with RQ's stop-job command, and finished from outside with a clear, re-signed final state."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from rq import Queue, SimpleWorker
from rq.job import Job, JobStatus

from devhub import DevHub
from github_app.github import GitHost, GitHubApp
from github_app.queue import controls
from github_app.queue.dispatch import sweep
from github_app.queue.jobqueue import TASK_QUEUE, RQJobQueue, heartbeat_key, stop_job
from github_app.queue.payloads import TaskJob
from github_app.queue.scheduler import Caps, TaskScheduler
from github_app.queue.stopper import CLAIMS, Stopper, claim_key, read_claim
from github_app.tasks import TaskKey
from github_app.tracker import status
from github_app.tracker.checkpoint import Checkpoint, checkpoint_key, read_block, render_block, utc_now
from runner.pipeline.run import _ON_REQUEST
from runner.worker.rq_worker import reap_run

OWNER, REPO = "octo", "calc"
KEY = checkpoint_key("stopper-test-secret-not-real")
GRACE_S = 60.0
HANG = "tests.contract.jobs_for_tests.beat_and_hang"
RECORD = "tests.contract.jobs_for_tests.record"
ROOT = Path(__file__).resolve().parents[2]
SHA = "3f2c1e0d9b8a7f6e5d4c3b2a1f0e9d8c7b6a5f4e"
BUDGET = {"limits": {"tokens": 100000, "usd": 2.0, "wall_s": 3600.0, "steps": 30},
          "spent": {"tokens": 1234, "usd": 0.25, "wall_s": 42.0, "steps": 3}, "warned": False}


class World:
    """One repository on the stand-in, the App's client for it, Redis, the scheduler."""

    def __init__(self, hub: DevHub, private_key: str, connection: redis.Redis) -> None:
        self.hub, self.connection = hub, connection
        hub.create_repo(OWNER, REPO, {"calc.py": "def add(a, b):\n    return a - b\n"})
        self.installation = hub.install(OWNER)
        self.app = GitHubApp(hub.app_id, private_key, hub.url)
        self.host = self.app.host(self.installation)
        self.scheduler = TaskScheduler(connection, Caps(slots=5))
        self.queue = RQJobQueue(connection)
        self.stops: list[str] = []  # job ids a stop command went to

    def running_task(self, *, title: str = "add subtracts") -> TaskKey:
        """An issue whose task runs: signed "running" status comment, label, a dispatched slot."""
        task = TaskKey(OWNER, REPO, self.hub.create_issue(OWNER, REPO, title))
        self.hub.add_label(OWNER, REPO, task.number, "nightcrew")
        block = render_block(Checkpoint(
            task=str(task), state="running", step=3, branch=task.branch, head_sha=SHA,
            base_sha=None, plan=(("Find the bug", True), ("Fix add", False)), budget=BUDGET,
            approved=("dependencies",), pr_number=None, writes=(), updated_at=utc_now()), KEY)
        comment = self.host.create_comment(task, status.render(status.StatusView(
            "running", str(task), detail="Last action: `run_tests`", step=3, checkpoint_block=block)),
            key=status.comment_key(task))
        self.host.add_labels(task, ["nightcrew:running"])
        self.scheduler.submit(TaskJob(task=task, installation_id=self.installation,
                                      status_comment=comment, actor="alice"))
        assert task in [d.task for d in self.scheduler.dispatch()]
        return task

    def stopper(self, name: str, clock: float | None = None, *, really_stop: bool = False) -> Stopper:
        def stop(connection: redis.Redis, job_id: str) -> None:
            self.stops.append(job_id)
            if really_stop:
                stop_job(connection, job_id)

        return Stopper(self.connection, self.scheduler, self.queue, self.host_for,
                       checkpoint_key=KEY, grace_s=GRACE_S, name=name, stop=stop,
                       clock=(lambda: clock) if clock is not None else time.time)

    def host_for(self, task: TaskKey, installation: int | None) -> GitHost:
        assert installation == self.installation  # taken from the scheduler's record
        return self.host

    def issue(self, task: TaskKey) -> dict[str, Any]:
        return self.hub.issue(OWNER, REPO, task.number)

    def status_comments(self, task: TaskKey) -> list[str]:
        return [c["body"] for c in self.issue(task)["comments"] if status.MARKER in c["body"]]


@pytest.fixture
def world(devhub: DevHub, app_private_key: str, connection: redis.Redis) -> World:
    return World(devhub, app_private_key, connection)


@pytest.fixture
def rq_worker(redis_server: str) -> Iterator[Callable[[], subprocess.Popen[bytes]]]:
    """Starts a forking RQ worker process on the task queue, as in production (a horse per job),
    in burst mode: it leaves when the queue is empty."""
    procs: list[subprocess.Popen[bytes]] = []

    def start() -> subprocess.Popen[bytes]:
        procs.append(subprocess.Popen(
            [sys.executable, "-c", "import sys, redis; from rq import Queue, Worker; "
             "c = redis.Redis.from_url(sys.argv[1]); "
             f"Worker([Queue('{TASK_QUEUE}', connection=c)], connection=c).work(burst=True)",
             redis_server], cwd=ROOT))
        return procs[-1]

    try:
        yield start
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def _wait(what: str, check: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s")
        time.sleep(0.05)


def assert_stopped_from_outside(world: World, task: TaskKey, *, state: str, actor: str,
                                how: str, go_on: str) -> None:
    """The final state: label, one status comment saying who and what next, re-signed block,
    nothing left in Redis."""
    labels = set(world.issue(task)["labels"])
    wanted = {"cancelled": "nightcrew:cancelled", "paused": "nightcrew:paused"}[state]
    assert wanted in labels and not labels & (set(status.ALL_STATE_LABELS) - {wanted})
    [body] = world.status_comments(task)
    assert f"by @{actor}; {how}" in body and f"`/nightcrew {go_on}`" in body
    assert f"Work that passed the tests is on branch `{task.branch}`" in body
    read = read_block(body, KEY, task=str(task))
    assert read.problem is None and read.checkpoint is not None
    checkpoint = read.checkpoint
    assert checkpoint.state == state and checkpoint.state in _ON_REQUEST  # a resume accepts it
    assert (checkpoint.step, checkpoint.head_sha, checkpoint.budget, checkpoint.approved) == (
        3, SHA, BUDGET, ("dependencies",))  # the last checkpoint's data, kept
    assert checkpoint.plan == (("Find the bug", True), ("Fix add", False))
    assert "- [x] Find the bug" in body and SHA[:7] in body and "1,234 tokens" in body
    assert world.scheduler.state(task) == {}
    assert controls.stop_requested(world.connection, task) is None
    assert controls.stop_deadline(world.connection, task) is None
    assert not world.connection.exists(heartbeat_key(task.job_id))
    assert not world.connection.exists(claim_key(task)) and not world.connection.smembers(CLAIMS)


def test_a_task_past_its_grace_is_stopped_by_one_worker_and_finished_from_outside(
    world: World, rq_worker: Callable[[], subprocess.Popen[bytes]],
) -> None:
    task = world.running_task()
    assert world.queue.enqueue(HANG, {"n": 1}, queue=TASK_QUEUE, job_id=task.job_id, heartbeat=True)
    worker = rq_worker()
    _wait("the job to run and beat", lambda: world.connection.exists(heartbeat_key(task.job_id)))
    now = time.time()
    deadline = controls.request_stop(world.connection, task, "cancel", "bob", grace_s=GRACE_S, now=now)
    # Saying it again buys a hung task no time.
    assert controls.request_stop(world.connection, task, "cancel", "bob", grace_s=GRACE_S,
                                 now=now + 30) == deadline == now + GRACE_S

    assert world.stopper("early", now + GRACE_S - 1).tick() == ([], [])  # within the grace
    assert world.stops == [] and world.queue.is_live(task.job_id)

    # Eight workers' maintenance passes at once: one claim, one stop command.
    stoppers = [world.stopper(f"w{n}", now + GRACE_S + 1, really_stop=True) for n in range(8)]
    barrier = threading.Barrier(len(stoppers))
    killed: list[TaskKey] = []

    def run(stopper: Stopper) -> None:
        barrier.wait()
        killed.extend(stopper.kill_overdue())

    threads = [threading.Thread(target=run, args=(s,)) for s in stoppers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert killed == [task] and world.stops == [task.job_id]
    claim = read_claim(world.connection, task)
    assert claim is not None and (claim.kind, claim.actor, claim.why) == ("cancel", "bob", "grace")

    # RQ's worker SIGKILLs the horse: the job's `finally` never runs, so its slot, heartbeat key
    # and status stay as they were until the stopper finishes the task from outside.
    worker.wait(20)  # burst: it exits once the stopped job is out of the way
    assert Job.fetch(task.job_id, connection=world.connection).get_status() == JobStatus.STOPPED
    assert world.connection.exists(heartbeat_key(task.job_id))  # the dead horse's last beat
    assert world.scheduler.state(task)["state"] == "dispatched"
    assert not world.queue.is_live(task.job_id)

    finished = [s.finish_stopped() for s in stoppers[:3]]
    assert sorted(map(len, finished)) == [0, 0, 1]
    assert_stopped_from_outside(world, task, state="cancelled", actor="bob",
                                how="the run did not stop within 60s and was stopped.", go_on="retry")
    body = world.status_comments(task)
    assert world.stopper("later").tick() == ([], []) and world.status_comments(task) == body


def test_a_task_that_honours_its_request_in_time_is_not_touched(world: World) -> None:
    task = world.running_task()
    assert world.queue.enqueue(RECORD, {"n": 1}, queue=TASK_QUEUE, job_id=task.job_id, heartbeat=True)
    now = time.time()
    controls.request_stop(world.connection, task, "pause", "bob", grace_s=GRACE_S, now=now)
    controls.clear_stop(world.connection, task)  # what runner.pipeline.run does when it honours it
    assert controls.stop_deadline(world.connection, task) is None
    before = world.status_comments(task)
    assert world.stopper("w1", now + 10 * GRACE_S).tick() == ([], [])
    assert world.stops == [] and world.status_comments(task) == before
    assert world.scheduler.state(task)["state"] == "dispatched" and world.queue.is_live(task.job_id)


def test_a_stale_request_of_a_run_that_already_ended_is_forgotten(world: World) -> None:
    task = TaskKey(OWNER, REPO, world.hub.create_issue(OWNER, REPO, "done already"))
    now = time.time()
    controls.request_stop(world.connection, task, "cancel", "bob", grace_s=GRACE_S, now=now)
    assert world.stopper("w1", now + GRACE_S + 1).tick() == ([], [])
    # Nothing runs and nothing waits: the flag would stop the task's next run at its first step.
    assert controls.stop_requested(world.connection, task) is None and world.stops == []


def test_a_task_that_finishes_itself_as_it_is_claimed_keeps_its_own_final_state(
    world: World, connection: redis.Redis,
) -> None:
    task = world.running_task()
    assert world.queue.enqueue(RECORD, {"n": 1}, queue=TASK_QUEUE, job_id=task.job_id, heartbeat=True)
    now = time.time()
    controls.request_stop(connection, task, "cancel", "bob", grace_s=GRACE_S, now=now)
    stopper = world.stopper("w1", now + GRACE_S + 1)
    assert stopper.kill_overdue() == [task]  # the stop command is on its way…
    # …but the run reaches its step boundary first: it honours the request and ends itself.
    SimpleWorker([Queue(TASK_QUEUE, connection=connection)], connection=connection).work(burst=True)
    controls.clear_stop(connection, task)
    [comment] = [c["id"] for c in world.issue(task)["comments"] if status.MARKER in c["body"]]
    own = status.render(status.StatusView("cancelled", str(task), detail="Cancelled by @bob. Say "
                                          "`/nightcrew retry` to go on."))
    world.host.update_comment(task, comment, own, key=status.comment_key(task))
    world.scheduler.finish(task)  # runner.worker.jobs' `finally`
    before = world.status_comments(task)
    assert stopper.finish_stopped() == []
    assert world.status_comments(task) == before  # what the task wrote stands
    assert not connection.exists(claim_key(task)) and not connection.smembers(CLAIMS)


@pytest.mark.parametrize(("kind", "state", "go_on"), [("cancel", "cancelled", "retry"),
                                                      ("pause", "paused", "resume")])
def test_a_lost_task_with_a_stop_pending_ends_stopped_instead_of_running_again(
    world: World, kind: controls.StopKind, state: str, go_on: str,
) -> None:
    task = world.running_task()
    other = world.running_task(title="no stop asked")  # also lost, nobody asked to stop it
    controls.request_stop(world.connection, task, kind, "carol", grace_s=GRACE_S)
    world.connection.set(heartbeat_key(task.job_id), "1", ex=1)  # a lapsing last beat
    _wait("the heartbeat to lapse", lambda: not world.connection.exists(heartbeat_key(task.job_id)))
    # No RQ job is live for either (their worker was SIGKILLed): the sweep takes their slots back.
    requeued = sweep(world.scheduler, world.queue, grace_s=0, drop=world.stopper("w1").drop_lost)
    assert requeued == [other] and world.scheduler.state(other)  # it waits (or runs) again
    assert_stopped_from_outside(
        world, task, state=state, actor="carol", go_on=go_on,
        how="its worker was lost before it could stop, so it was not started again.")
    assert world.stops == []  # nothing to kill: the job was gone already


def test_reaping_a_stopped_run_kills_what_names_its_checkout_and_nothing_else(tmp_path: Path) -> None:
    root = tmp_path / "workspaces"
    name, sibling = "task_octo-2fcalc-231", "task_octo-2fcalc-2310"  # #31 and #310 of one repo
    for directory in (name, sibling):
        (root / directory).mkdir(parents=True)
    hang = [sys.executable, "-c", "import time; time.sleep(60)"]

    def start(argv: list[str], cwd: Path = tmp_path, **env: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(argv, cwd=cwd, env={"PATH": "/usr/bin:/bin", **env},
                                start_new_session=True)  # as git and bwrap: not in our group

    run = [start(hang, root / name),  # works in the checkout
           start([*hang, f"--work-tree={root / name}"]),  # names it in its argv
           start(hang, GIT_DIR=f"{root / name}.git")]  # or in its environment
    others = [start(hang, root / sibling), start([*hang, f"--work-tree={root / sibling}"])]
    try:
        _wait("the processes to start", lambda: all(
            Path(f"/proc/{p.pid}/cmdline").read_bytes().count(b"sleep") for p in run + others))
        assert sorted(reap_run((root,), name)) == sorted(p.pid for p in run)
        for proc in run:
            assert proc.wait(5) == -9
        assert all(proc.poll() is None for proc in others)  # another task's run lives on
        assert reap_run((root,), name) == []
    finally:
        for proc in run + others:
            proc.kill()
            proc.wait()
