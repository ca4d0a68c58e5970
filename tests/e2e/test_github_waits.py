"""GitHub throttling longer than the adapter waits in-process: the task job waits as GitHub asks
and runs the task again from its checkpoint — nothing marked failed, nothing written twice, the
model not asked again. Real task pipeline, GitHub stand-in with fault injection, real git, bwrap.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from devhub import DevHub, Fault
from github_app.github import Retryable
from github_app.tracker.eventlog import read_events
from runner.worker.jobs import LONGEST_GITHUB_WAIT_S, through_github_waits
from tests.e2e.task_helpers import OWNER, REPO, scripted_task


@pytest.mark.e2e
def test_a_long_rate_limit_on_the_pr_waits_and_resumes_into_publishing(
    devhub: DevHub, app_private_key: str, tmp_path: Path,
) -> None:
    scripted = scripted_task(devhub, app_private_key, tmp_path)
    task, model, config = scripted.task, scripted.model, scripted.config
    number = task.number

    waited: list[float] = []
    # A secondary rate limit on opening the PR, asking for two minutes: far past the adapter's
    # in-process limit, so the run gives up with Retryable after it pushed its work.
    pulls = rf"/repos/{OWNER}/{REPO}/pulls"
    with devhub.inject(Fault(403, "POST", pulls, retry_after=120)) as injection:
        outcome = through_github_waits(lambda _first: scripted.attempt(), what=str(task),
                                       sleep=waited.append)
        assert injection.faults[0].answered == 1

    assert waited == [120.0]
    assert outcome.state == "pr_opened" and outcome.pr_number is not None
    assert model.remaining == 0  # the second run published; it asked the model nothing
    issue = devhub.issue(OWNER, REPO, number)
    assert len([c for c in issue["comments"] if "nightcrew:status" in c["body"]]) == 1
    assert len(devhub.pulls(OWNER, REPO)) == 1
    assert "nightcrew:done" in issue["labels"] and "nightcrew:failed" not in issue["labels"]
    events = read_events(config.data_dir, task)
    assert [e.data.get("state") for e in events if e.kind == "run_finished"] == ["pr_opened"]
    assert [e.data.get("resumed") for e in events if e.kind == "run_started"] == [False, True]
    [wait] = [e for e in events if e.kind == "error"]
    assert wait.data["fatal"] is False and "rate limited" in wait.data["message"]


def test_waits_follow_retry_after_then_back_off_and_give_up() -> None:
    calls: list[bool] = []
    waited: list[float] = []

    def always_throttled(first: bool) -> None:
        calls.append(first)
        hint = timedelta(hours=2) if len(calls) == 1 else None  # capped, then no hint
        raise Retryable("rate limited by GitHub", 429, retry_after=hint)

    with pytest.raises(Retryable):
        through_github_waits(always_throttled, sleep=waited.append, waits=3)
    assert calls == [True, False, False, False]  # only the first run is "first" (fresh)
    assert waited == [LONGEST_GITHUB_WAIT_S, 60.0, 120.0]


def test_other_errors_are_not_waited_on() -> None:
    waited: list[float] = []

    def broken(first: bool) -> None:
        raise ValueError("a bug, not GitHub")

    with pytest.raises(ValueError):
        through_github_waits(broken, sleep=waited.append)
    assert waited == []
