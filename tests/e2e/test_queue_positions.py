"""Queue positions on the issues, through the real GitHub adapter and the stand-in."""

from __future__ import annotations

import pytest
import redis

from devhub import DevHub
from github_app import wiring
from github_app.queue import dispatch, intake
from github_app.queue.jobqueue import RQJobQueue
from github_app.settings import load_settings
from github_app.tasks import TaskKey
from github_app.tracker.checkpoint import read_block
from github_app.tracker.status import MARKER
from tests.conftest import DEVHUB_APP_ID

pytestmark = pytest.mark.e2e
OWNER, REPO = "octo", "queue"


def status_body(hub: DevHub, number: int) -> str:
    [comment] = [c for c in hub.issue(OWNER, REPO, number)["comments"] if MARKER in c["body"]]
    body: str = comment["body"]
    return body


def test_waiting_tasks_show_their_position_and_it_moves(
    devhub: DevHub, app_private_key: str, redis_server: str, connection: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in {"NIGHTCREW_APP_ID": str(DEVHUB_APP_ID), "NIGHTCREW_PRIVATE_KEY": app_private_key,
                        "NIGHTCREW_GITHUB_API_URL": devhub.url, "REDIS_URL": redis_server,
                        "NIGHTCREW_MAX_RUNNING": "1",
                        "NIGHTCREW_CHECKPOINT_SECRET": "positions-test-secret-not-real"}.items():
        monkeypatch.setenv(name, value)
    installation = devhub.install(OWNER)
    devhub.create_repo(OWNER, REPO, {"README.md": "# q\n"})
    numbers = [devhub.create_issue(OWNER, REPO, f"task {i}", "do it") for i in range(3)]
    for number in numbers:
        result = intake.intake({"task": f"{OWNER}/{REPO}#{number}", "kind": "start", "actor": "octocat",
                                "installation_id": installation, "comment_id": None, "args": ""})
        assert result == "queued"
    first, second, third = numbers

    assert dispatch.refresh_positions() == 2
    assert "position 1" in status_body(devhub, second) and "position 2" in status_body(devhub, third)
    assert "position" not in status_body(devhub, first)  # it holds the slot
    assert dispatch.refresh_positions() == 0  # nothing moved: no edits

    scheduler = wiring.scheduler_for(load_settings(), RQJobQueue(connection))
    scheduler.finish(TaskKey(OWNER, REPO, first))
    [moved] = dispatch.advance(scheduler, RQJobQueue(connection))
    assert moved.task == TaskKey(OWNER, REPO, second)
    assert dispatch.refresh_positions() == 1
    assert "position 1" in status_body(devhub, third)
    # Edited twice for its position, the waiting task's status still carries its signed
    # checkpoint: what brings it back if Redis is lost.
    read = read_block(status_body(devhub, third), load_settings().checkpoint_key(),
                      task=f"{OWNER}/{REPO}#{third}")
    assert read.problem is None and read.checkpoint is not None and read.checkpoint.state == "queued"
    assert all(issue_labels == ["nightcrew:queued"] for issue_labels in
               (devhub.issue(OWNER, REPO, n)["labels"] for n in numbers))
