"""The status comment is rendered from the task's event log: what GitHub shows equals the fold of
the JSONL log, and an event recorded by any part of the run reaches the comment."""

from __future__ import annotations

from pathlib import Path

import pytest

from devhub import DevHub
from github_app.github import GitHubApp
from github_app.tracker import status
from github_app.tracker.eventlog import EventLog, fold, new_run_id, read_events
from github_app.tracker.record import RunUpdate
from runner.pipeline.live_status import StatusReporter, status_view
from tests.e2e.task_helpers import KEY, OWNER, REPO, scripted_task


def _shown(hub: DevHub, number: int) -> str:
    [body] = [c["body"] for c in hub.issue(OWNER, REPO, number)["comments"] if status.MARKER in c["body"]]
    return status.split_block(body)[0]


@pytest.mark.e2e
def test_the_comment_github_shows_is_the_fold_of_the_event_log(
    devhub: DevHub, app_private_key: str, tmp_path: Path,
) -> None:
    scripted = scripted_task(devhub, app_private_key, tmp_path)
    outcome = scripted.attempt()
    assert outcome.state == "pr_opened"
    events = read_events(scripted.config.data_dir, scripted.task)
    # Rebuilt from the file alone (another process could do this): the very comment on GitHub.
    rebuilt = status.render(status_view(fold(events), str(scripted.task)))
    assert _shown(devhub, scripted.task.number) == rebuilt
    assert "pull request opened" in rebuilt and "1 passed, 0 failed" in rebuilt
    assert {"run_started", "test_result", "step_finished", "spend", "run_finished"} <= {e.kind for e in events}


@pytest.mark.e2e
def test_an_event_from_any_part_of_the_run_reaches_the_comment(
    devhub: DevHub, app_private_key: str, tmp_path: Path,
) -> None:
    scripted = scripted_task(devhub, app_private_key, tmp_path)
    app = GitHubApp(devhub.app_id, app_private_key, devhub.url)
    host = app.host(app.installation_for(OWNER, REPO))
    events = EventLog(tmp_path / "data", scripted.task, new_run_id(), redis=None)
    reporter = StatusReporter(host, scripted.task, None, KEY, events)
    reporter.start(resumed=False)
    reporter.update(RunUpdate(step=1, max_steps=30, tokens=1200, cost_usd=0.01, plan_item="Fix add"),
                    force=True)
    # Not through the reporter: the agent's tool call, as another component would record it.
    events.emit("tool_call", name="read_file", summary="calc.py")
    reporter.update(RunUpdate(tokens=2400, cost_usd=0.02), force=True)
    shown = _shown(devhub, scripted.task.number)
    assert "Now: Fix add · read_file calc.py" in shown
    assert "step 1/~30 · 2,400 tokens · $0.0200" in shown
    assert shown == status.render(status_view(fold(read_events(tmp_path / "data", scripted.task)),
                                              str(scripted.task)))
