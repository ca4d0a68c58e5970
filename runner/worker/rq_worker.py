"""The worker entry point: an RQ worker on the nightcrew queues that also moves the scheduler
and pumps the webhook inbox into intake jobs.

Each ``nightcrew worker`` also runs a helper worker on the intake queue alone
(``--intake-only``): a task holds its worker for many minutes, and a ``/nightcrew cancel`` (or any
new issue) must not wait behind it, even in a fleet of one busy worker. The helper counts for no
task slot, stops with its parent, and runs the same maintenance pass.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from rq import Queue, Worker
from rq.exceptions import InvalidJobOperation, NoSuchJobError, StopRequested
from rq.job import Job, JobStatus

from github_app import logs
from github_app.ingress.inbox import DELIVERY_TTL_S, Pump, recover
from github_app.queue import reconcile
from github_app.queue.dispatch import advance, sweep
from github_app.queue.jobqueue import INTAKE_QUEUE, QUEUES, TASK_JOB, RQJobQueue
from github_app.queue.stopper import stopper_for
from github_app.redis_conn import connect
from github_app.settings import Settings
from github_app.wiring import scheduler_for
from runner.sandbox.bwrap import SandboxError
from runner.sandbox.docker import docker_api, remove_run, remove_stale
from runner.worker import jobs as _jobs  # noqa: F401  # loaded before forking: horses start beating at once
from runner.worker import model_keys
from runner.worker.procs import nightcrew_command, start_helper, stop_helper
from runner.workspace import Workspaces

PARENT_PID_ENV = "NIGHTCREW_WORKER_PARENT"  # set for the intake helper: it stops with that process
START_MARGIN_S = 3.0
PUMP_WAIT_S = 5.0  # how long one BLMOVE waits; also how soon a stopping pump notices
log = logs.get("nightcrew.worker")

# RQ forks a work horse per job. The pump thread holds this lock while it turns an entry into a
# job, and fork waits for it, so a horse never starts with a lock the pump thread held
# (a Redis connection pool's, a logger's) and deadlocks on it.
_FORK_GUARD = threading.Lock()
os.register_at_fork(before=_FORK_GUARD.acquire, after_in_parent=_FORK_GUARD.release,
                    after_in_child=_FORK_GUARD.release)


class PumpThread(threading.Thread):
    """Moves inbox entries into intake jobs as they arrive, beside the RQ work loop."""

    def __init__(self, connection: redis.Redis, owner: str) -> None:
        super().__init__(name=f"inbox-pump-{owner}", daemon=True)
        # Its own client: the blocking BLMOVE must not hold a connection the worker needs.
        own = redis.Redis(connection_pool=redis.ConnectionPool(
            connection_class=connection.connection_pool.connection_class,
            **connection.connection_pool.connection_kwargs))
        self.pump = Pump(own, RQJobQueue(own), owner=owner, keep_s=DELIVERY_TTL_S,
                         guard=lambda: _FORK_GUARD)
        self.stopping = threading.Event()

    def run(self) -> None:
        self.pump.resume()
        while not self.stopping.is_set():
            try:
                self.pump.pump_one(block_s=PUMP_WAIT_S)
            except redis.RedisError as exc:  # Redis restarting: wait, then carry on
                log.warning("inbox.pump_error", error=exc.__class__.__name__)
                self.stopping.wait(1.0)
            except Exception as exc:  # a bug must not end the pump: the entry stays ours, retried
                log.error("inbox.pump_failed", error=f"{type(exc).__name__}: {exc}"[:300])
                self.stopping.wait(1.0)


class NightcrewWorker(Worker):
    """An RQ worker whose maintenance pass also sweeps and dispatches the fair queue, and stops
    tasks that overstay the grace period of a ``/nightcrew cancel|pause``."""

    def __init__(self, *args: Any, settings: Settings, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.settings = settings
        # A started task job beats within moments (its modules are loaded before the fork); one
        # that has not beaten within the TTL and this margin lost its worker.
        self.jobs = RQJobQueue(self.connection, heartbeat_grace_s=settings.heartbeat_ttl_s + START_MARGIN_S)
        self.task_scheduler = scheduler_for(settings, self.jobs)
        self.stopper = stopper_for(settings, self.connection, self.task_scheduler, self.jobs,
                                   name=self.name)
        self.pump_thread: PumpThread | None = None

    @property
    def dequeue_timeout(self) -> int:
        """How long an idle worker blocks for a job: RQ's ``worker_ttl - 15``, but no longer than
        the maintenance interval, since the maintenance pass runs only between waits."""
        return max(1, min(self.worker_ttl - 15, self.maintenance_interval))

    def register_birth(self) -> None:
        """Registered (so other workers see this one live): now the pump may take entries."""
        super().register_birth()  # type: ignore[no-untyped-call]  # rq leaves it untyped
        if self.pump_thread is None:
            self.pump_thread = PumpThread(self.connection, self.name)
            self.pump_thread.start()

    def register_death(self) -> None:
        if self.pump_thread is not None:
            self.pump_thread.stopping.set()
        super().register_death()  # type: ignore[no-untyped-call]

    def run_maintenance_tasks(self) -> None:
        try:
            self._maintain()
        except redis.ConnectionError as exc:  # Redis restarting: RQ would quit; the next pass tries again
            log.warning("worker.maintenance_failed", error=f"{type(exc).__name__}: {exc}"[:300])

    def _maintain(self) -> None:
        super().run_maintenance_tasks()  # type: ignore[no-untyped-call]  # rq leaves it untyped
        live = [worker.name for worker in Worker.all(connection=self.connection)]
        recover(self.connection, live)  # entries a killed worker's pump had taken
        self._stop_overdue()
        # A task dispatched this long ago without a live (beating) job lost its worker; one with
        # a cancel or pause pending ends stopped instead of running again.
        sweep(self.task_scheduler, self.jobs, grace_s=self.settings.heartbeat_ttl_s + START_MARGIN_S,
              drop=self.stopper.drop_lost, close=self.stopper.close_lost)
        # Checkouts of runs that died on this machine (a SIGKILLed worker's, once its horse is
        # reaped: at start-up it may still have been a zombie that counts as alive).
        self._sweep_workspaces()
        # Refused model API keys: probe them; a working one lifts the fleet's hold.
        _next_pass_retries("model.probe_failed", lambda: model_keys.probe(
            self.settings, self.connection, self.task_scheduler, self.jobs))
        if reconcile.due(self.connection):  # one worker every 10 min, and at once on a fresh Redis
            _next_pass_retries("reconcile.failed", lambda: reconcile.reconcile_from_settings(self.settings))
        advance(self.task_scheduler, self.jobs)

    # RQ quits its work loop on any exception; while a horse runs, the parent's Redis writes
    # (working time, heartbeats) would make a Redis restart end the worker mid-task. They are
    # bookkeeping: a missed one is written again at the next beat.

    def set_current_job_working_time(self, current_job_working_time: float,
                                     pipeline: Any = None) -> None:
        try:
            super().set_current_job_working_time(current_job_working_time, pipeline)
        except redis.ConnectionError as exc:
            log.warning("worker.beat_failed", error=f"{type(exc).__name__}: {exc}"[:300])

    def heartbeat(self, timeout: int | None = None, pipeline: Any = None) -> None:
        try:
            super().heartbeat(timeout, pipeline)
        except redis.ConnectionError as exc:
            log.warning("worker.beat_failed", error=f"{type(exc).__name__}: {exc}"[:300])

    def maintain_heartbeats(self, job: Job) -> None:
        """While a job runs (every ``job_monitoring_interval``): also stop overdue tasks, so a
        fleet whose every worker is busy still enforces the grace period, its own job's too."""
        try:
            super().maintain_heartbeats(job)
        except redis.ConnectionError as exc:
            log.warning("worker.beat_failed", error=f"{type(exc).__name__}: {exc}"[:300])
        _next_pass_retries("stopper.failed", self.stopper.kill_overdue)

    def monitor_work_horse(self, job: Job, queue: Queue) -> None:
        """After a task's horse was stopped (or died): nothing of its run may outlive it."""
        super().monitor_work_horse(job, queue)
        if job.func_name != TASK_JOB:
            return
        try:
            state = job.get_status(refresh=True)
        except (InvalidJobOperation, NoSuchJobError, redis.RedisError):
            return
        if state not in (JobStatus.STOPPED, JobStatus.FAILED):
            return
        remains = reap_killed_run(self.settings, job.id)
        if remains.pids or remains.containers:
            log.warning("worker.reaped", job=job.id, pids=remains.pids, containers=remains.containers)
        self._sweep_workspaces()  # its checkout's owner is dead now
        self._stop_overdue()  # a stopped task's final state now, not at the next pass

    def _sweep_workspaces(self) -> None:
        try:
            Workspaces(self.settings.data_dir.resolve()).sweep()
        except OSError as exc:
            log.warning("workspaces.sweep_failed", error=f"{type(exc).__name__}: {exc}"[:300])

    def _stop_overdue(self) -> None:
        _next_pass_retries("stopper.failed", self.stopper.tick)


def _next_pass_retries(event: str, work: Callable[[], object]) -> None:
    """Run one part of the maintenance pass; a failure (Redis restarting, GitHub or the model
    API down) is logged and the next pass (or beat) tries again. RQ's warm shutdown is no
    failure: its SIGTERM handler raises StopRequested wherever the main thread is, and
    swallowing it here would leave the worker running."""
    try:
        work()
    except StopRequested:
        raise
    except Exception as exc:
        log.warning(event, error=f"{type(exc).__name__}: {exc}"[:300])


# -- what a killed run may leave behind ------------------------------------------------------------


@dataclass(frozen=True)
class RunRemains:
    """What reaping a killed run ended: its processes' pids, its sandbox containers' names."""

    pids: list[int]
    containers: list[str]


def reap_killed_run(settings: Settings, name: str) -> RunRemains:
    """End what is left of the run whose checkout is ``name`` (its job id): its processes, and with
    the Docker backend its containers, which a killed client leaves running until their deadline."""
    roots = Workspaces(settings.data_dir.resolve()).roots()
    pids = reap_run(roots, name)
    return RunRemains(pids, reap_containers(settings, [root / name for root in roots]))


def reap_containers(settings: Settings, workspaces: list[Path]) -> list[str]:
    """Remove the Docker sandbox's containers of these checkouts; their names. Nothing to do for
    bwrap (its sandbox dies with the horse); an unreachable API is logged, the sweep retries."""
    if settings.sandbox != "docker":
        return []
    try:
        with docker_api(settings.docker_url) as client:
            return remove_run(client, workspaces)
    except SandboxError as exc:
        log.warning("worker.containers_reap_failed", error=str(exc)[:300])
        return []


def sweep_containers(settings: Settings) -> int:
    """At worker start: remove the Docker sandbox's containers whose run is gone (their maker, a
    SIGKILLed worker's horse, no longer runs) or whose deadline passed; how many."""
    if settings.sandbox != "docker":
        return 0
    try:
        with docker_api(settings.docker_url) as client:
            return remove_stale(client)
    except SandboxError as exc:
        log.warning("worker.containers_sweep_failed", error=str(exc)[:300])
        return 0


def reap_run(roots: tuple[Path, ...], name: str, *, rounds: int = 5) -> list[int]:
    """SIGKILL every process of this machine that names the run's checkout (``root/name``, its git
    dir ``root/name.git``) in its argv or environment, or works in it; returns their pids.

    The sandbox dies with the horse (bwrap ``--die-with-parent`` tears its pid namespace down);
    what is left are git and helper processes in their own sessions, which the horse's process
    group kill did not reach. Repeated a few times: a process may fork while we look.
    """
    paths = [str(root / name) for root in roots]
    pattern = re.compile(b"(?:" + b"|".join(re.escape(p.encode()) for p in paths)
                         + rb")(?:\.git)?(?=[/\0=:\s]|$)")
    me = os.getpid()
    killed: list[int] = []
    for _ in range(rounds):
        found = [pid for pid in _pids() if pid != me and pid not in killed
                 and _names_run(pid, pattern, paths)]
        if not found:
            break
        for pid in found:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        killed += found
    return killed


def _pids() -> list[int]:
    try:
        return [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]
    except OSError:
        return []


def _names_run(pid: int, pattern: re.Pattern[bytes], paths: list[str]) -> bool:
    for part in ("cmdline", "environ"):
        try:
            if pattern.search(Path(f"/proc/{pid}/{part}").read_bytes()):
                return True
        except OSError:
            pass
    try:
        cwd = os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return False
    return any(cwd == p or cwd.startswith(p + "/") for p in paths)


def run_worker(settings: Settings, *, burst: bool = False, intake_only: bool = False) -> bool:
    """Work the intake queue first, then tasks (``intake_only``: intake alone); returns when
    stopped (or empty, in burst). A worker for tasks runs an intake helper beside it."""
    if not intake_only:
        Workspaces(settings.data_dir.resolve()).sweep()  # leftovers of a killed worker
        sweep_containers(settings)
    connection = connect(settings)
    queues = [Queue(name, connection=connection) for name in ((INTAKE_QUEUE,) if intake_only else QUEUES)]
    worker = NightcrewWorker(queues, connection=connection, settings=settings,
                             worker_ttl=settings.worker_ttl_s,
                             maintenance_interval=settings.maintenance_interval_s,
                             # a busy worker looks at stop deadlines this often (maintain_heartbeats)
                             job_monitoring_interval=min(settings.maintenance_interval_s, 30))
    if burst:  # work what has arrived: the inbox too, which no pump thread may reach in time
        Pump(connection, worker.jobs, owner=worker.name, keep_s=DELIVERY_TTL_S).drain()
        return bool(worker.work(burst=True, logging_level="WARNING", with_scheduler=False))
    if intake_only:
        _stop_with_parent()
        return bool(worker.work(logging_level="WARNING", with_scheduler=False))
    helper = start_helper(nightcrew_command("worker", "--intake-only"),
                          {**os.environ, PARENT_PID_ENV: str(os.getpid())})
    try:
        return bool(worker.work(logging_level="WARNING", with_scheduler=False))
    finally:
        stop_helper(helper)


HELPER_STOP_GRACE_S = 4.0  # after its worker died: warm stop, then cold, then exit


def _stop_with_parent() -> None:
    """An intake helper asks itself to stop (RQ's warm shutdown) once its parent worker is gone:
    a SIGKILLed parent cannot stop it."""
    parent = os.environ.get(PARENT_PID_ENV)
    if not parent or not parent.isdigit():
        return  # run on its own (a dedicated intake worker): nothing to follow

    def watch() -> None:
        while os.getppid() == int(parent):
            time.sleep(1.0)
        # RQ's SIGTERM handler raises StopRequested wherever the main thread is; a broad
        # `except` there (RQ's own, a library's) can swallow it. The second SIGTERM is RQ's cold
        # shutdown (SystemExit); past that, the process ends itself: a helper never outlives
        # its worker by more than a few seconds.
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(HELPER_STOP_GRACE_S)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(HELPER_STOP_GRACE_S)
        log.warning("worker.helper_forced_exit", parent=parent)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
