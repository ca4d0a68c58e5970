"""The reconciler rebuilds the queue from the tracker (stand-in GitHub, real Redis)."""

from __future__ import annotations

import redis

from devhub import DevHub
from github_app.github import GitHubApp
from github_app.queue.jobqueue import RQJobQueue, heartbeat_key
from github_app.queue.payloads import TaskJob
from github_app.queue.reconcile import reconcile
from github_app.queue.scheduler import Caps, TaskScheduler
from github_app.tasks import TaskKey
from github_app.tracker import status
from github_app.tracker.checkpoint import Checkpoint, checkpoint_key, render_block, utc_now
from tests.unit.fakes import FakeQueue

OWNER, REPO = "octo", "calc"
KEY = checkpoint_key("reconcile-test-secret-not-real")


def signed_status(task: TaskKey, state: str, key: bytes = KEY) -> str:
    block = render_block(Checkpoint(
        task=str(task), state=state, step=3, branch=task.branch, head_sha=None, base_sha=None,
        plan=(("Fix add", True),), budget={}, approved=(), pr_number=None, writes=(),
        updated_at=utc_now()), key)
    return status.render(status.StatusView("running", str(task), checkpoint_block=block))


def test_a_wiped_redis_gets_back_exactly_the_tasks_the_tracker_vouches_for(
    devhub: DevHub, app_private_key: str, connection: redis.Redis,
) -> None:
    devhub.create_repo(OWNER, REPO, {"calc.py": "x = 1\n"})
    devhub.install(OWNER)
    app = GitHubApp(devhub.app_id, app_private_key, devhub.url)
    host = app.host(app.installation_for(OWNER, REPO))

    def issue(label: str, body: str | None, *, author: str = "bot") -> TaskKey:
        task = TaskKey(OWNER, REPO, devhub.create_issue(OWNER, REPO, f"task {label}"))
        devhub.add_label(OWNER, REPO, task.number, label)
        if body is not None and author == "bot":
            host.create_comment(task, body, key=status.comment_key(task))
        elif body is not None:
            devhub.add_comment(OWNER, REPO, task.number, body, actor=author)
        return task

    running = issue("nightcrew:running", signed_status(TaskKey(OWNER, REPO, 1), "running"))
    queued = issue("nightcrew:queued", signed_status(TaskKey(OWNER, REPO, 2), "queued"))
    forged = issue("nightcrew:running", signed_status(TaskKey(OWNER, REPO, 3), "running"),
                   author="octocat")  # a person pasted nightcrew's comment and set the label
    foreign = issue("nightcrew:queued", signed_status(TaskKey(OWNER, REPO, 1), "queued"))
    tampered = issue("nightcrew:running", signed_status(TaskKey(OWNER, REPO, 5), "running",
                                                        key=checkpoint_key("another-secret")))
    paused = issue("nightcrew:paused", signed_status(TaskKey(OWNER, REPO, 6), "paused"))
    issue("nightcrew:done", None)
    known = issue("nightcrew:running", signed_status(TaskKey(OWNER, REPO, 8), "running"))

    scheduler = TaskScheduler(connection, Caps(slots=0))  # nothing dispatches: we look at the queue
    scheduler.submit(TaskJob(task=known, installation_id=1, status_comment=None, actor="alice"))  # the one task Redis still has
    report = reconcile(app, scheduler, FakeQueue(), KEY, bot_login=app.bot_login)

    assert sorted(report.resubmitted) == sorted([str(running), str(queued)])
    assert report.seen == 6 and report.known == 1
    refused = dict(report.refused)
    assert refused == {str(forged): "no status comment by nightcrew",
                       str(foreign): "checkpoint foreign", str(tampered): "checkpoint tampered"}
    assert str(paused) not in refused  # paused tasks wait for a person, not for the queue
    args = scheduler.state(running)
    assert args["state"] == "pending" and '"status_comment"' in args["args"]
    # Running it twice changes nothing: what it resubmitted is now known.
    again = reconcile(app, scheduler, FakeQueue(), KEY, bot_login=app.bot_login)
    assert again.resubmitted == [] and again.known == 3


def test_a_run_that_beats_again_after_a_wipe_is_not_started_a_second_time(
    devhub: DevHub, app_private_key: str, connection: redis.Redis,
) -> None:
    """FLUSHALL takes the heartbeats of the runs still going too; each comes back at its next beat.
    The reconciler looks again after one heartbeat TTL, so a run it saw between two beats is not
    started next to itself; a task whose run is really gone comes back."""
    devhub.create_repo(OWNER, REPO, {"calc.py": "x = 1\n"})
    devhub.install(OWNER)
    app = GitHubApp(devhub.app_id, app_private_key, devhub.url)
    host = app.host(app.installation_for(OWNER, REPO))
    tasks = []
    for n in range(2):
        task = TaskKey(OWNER, REPO, devhub.create_issue(OWNER, REPO, f"task {n}"))
        devhub.add_label(OWNER, REPO, task.number, "nightcrew:running")
        host.create_comment(task, signed_status(task, "running"), key=status.comment_key(task))
        tasks.append(task)
    beating, gone = tasks
    connection.flushall()  # both heartbeats went with it; only `beating` still runs
    waits: list[float] = []

    def sleep(seconds: float) -> None:  # while the reconciler waits, the live run beats again
        waits.append(seconds)
        connection.set(heartbeat_key(beating.job_id), "1", ex=20)

    scheduler = TaskScheduler(connection, Caps(slots=0))
    report = reconcile(app, scheduler, RQJobQueue(connection), KEY, bot_login=app.bot_login,
                       settle_s=20.0, sleep=sleep)
    assert waits == [20.0]  # once, for all the tasks it did not know
    assert report.resubmitted == [str(gone)] and report.known == 1
    assert scheduler.state(beating) == {} and scheduler.state(gone)["state"] == "pending"
    # Nothing unknown: no wait at all.
    assert reconcile(app, scheduler, RQJobQueue(connection), KEY, bot_login=app.bot_login,
                     settle_s=20.0, sleep=sleep).known == 2 and waits == [20.0]
