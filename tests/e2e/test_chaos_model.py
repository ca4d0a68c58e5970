"""Chaos: the model API fails for minutes, and no task fails, doubles or is lost.

The whole system runs as in ``tests/e2e/test_chaos.py`` (embedded Redis, the GitHub stand-in,
the adaptive Messages server, the web app and a worker as processes), with the production
wait policy (``PatientModel``: the API's retry-after, else backing off; 30 min before a pause).

- **An outage**: the Messages stand-in answers 529 ``overloaded_error`` for two minutes, then 429
  with ``retry-after`` for a while, then drops connections mid-answer. Every task waits it out
  (its status comment says so) and finishes once.
- **A refused key**: the stand-in answers 401 to every key for a while. The running task pauses
  (``nightcrew:paused``) at its next call, the fleet holds task work (the second task stays
  queued), a worker's probe finds the key works again, and both tasks go on by themselves.

Counted over the tasks, and asserted zero: lost (not done with a PR), failed, duplicated
(status comments, App comments, PRs, commits). One ``CHAOS-MODEL`` line each is printed and
appended as JSON to ``$NIGHTCREW_CHAOS_REPORT`` when set.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pytest
from redis import Redis

from github_app.queue import model_hold
from github_app.tasks import TaskKey
from github_app.tracker.eventlog import read_events
from github_app.tracker.status import LABELS, MARKER
from runner.cli.demo import OWNER, REPO
from tests.e2e.chaos_harness import ChaosHarness, report

pytestmark = pytest.mark.e2e

OVERLOADED_S = 120.0  # the issue's outage: two minutes of 529
RATE_LIMITED_S = 10.0
DROPPING_S = 6.0


@dataclass
class ModelTally:
    """What the run lost, failed or did twice, over its tasks."""

    scenario: str
    tasks: int
    finished: int = 0
    lost: int = 0
    failed: int = 0
    duplicated: int = 0
    model_requests: dict[int, int] = field(default_factory=dict)  # status -> count
    dropped_mid_answer: int = 0
    waits_shown: int = 0  # status-comment updates that said "Waiting for the model API"
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (f"CHAOS-MODEL {self.scenario}: tasks={self.tasks} finished={self.finished} "
                f"lost={self.lost} failed={self.failed} duplicated={self.duplicated} "
                f"requests={self.model_requests} dropped={self.dropped_mid_answer} "
                f"waits_shown={self.waits_shown} seconds={self.seconds:.0f}")


def _count(h: ChaosHarness, numbers: list[int], tally: ModelTally) -> ModelTally:
    bot = h.hub.bot.login
    pulls = h.hub.pulls(OWNER, REPO)
    for number in numbers:
        task = TaskKey(OWNER, REPO, number)
        issue = h.hub.issue(OWNER, REPO, number)
        labels = set(issue["labels"])
        status = [c for c in issue["comments"] if MARKER in c["body"]]
        mine = [c["body"] for c in issue["comments"] if c["user"] == bot]
        prs = [p for p in pulls if p["head"] == task.branch]
        commits, repeated = h.branch_commits(task)
        twice = sum(n - 1 for n in Counter(mine).values() if n > 1)
        tally.duplicated += max(0, len(status) - 1) + max(0, len(prs) - 1) + repeated + twice
        if LABELS["failed"] in labels:
            tally.failed += 1
        if LABELS["done"] in labels and len(prs) == 1 and len(status) == 1:
            tally.finished += 1
        else:
            tally.lost += 1
            tally.problems.append(f"#{number}: labels {sorted(labels)}, {len(prs)} PRs, "
                                  f"{len(status)} status comments, commits {commits}")
        events = read_events(h.data_dir, task)
        tally.waits_shown += sum(1 for e in events if "Waiting for the model API"
                                 in str(e.data.get("detail", "")))
    tally.model_requests = dict(Counter(r.status for r in h.model.requests))
    tally.dropped_mid_answer = h.model.dropped_mid_answer
    tally.problems += h.contract_problems()[1]
    return tally


def _ended(h: ChaosHarness, numbers: list[int]) -> bool:
    ended = {LABELS["done"], LABELS["failed"]}
    return all(ended & set(h.hub.issue(OWNER, REPO, n)["labels"]) for n in numbers)


def _finish(h: ChaosHarness, numbers: list[int], tally: ModelTally, started: float) -> None:
    tally.seconds = time.monotonic() - started
    h.hub.wait_deliveries(timeout=10)
    _count(h, numbers, tally)
    report(tally.line(), {"kind": "chaos-model", **asdict(tally)})
    assert (tally.lost, tally.failed, tally.duplicated) == (0, 0, 0), tally.problems
    assert tally.problems == [], tally.problems


@pytest.mark.timeout(420)
def test_an_overloaded_rate_limited_then_dropping_api_is_waited_out(tmp_path: Path) -> None:
    with ChaosHarness(tmp_path) as h:
        # In force from the first call on: 529 for two minutes (retry-after 5 s), then 429
        # (retry-after 2 s), then answers cut off mid-body.
        h.model.outage(OVERLOADED_S, status=529, retry_after_s=5)
        h.model.outage(RATE_LIMITED_S, status=429, retry_after_s=2, start_in=OVERLOADED_S)
        h.model.outage(DROPPING_S, "drop", start_in=OVERLOADED_S + RATE_LIMITED_S)
        started = time.monotonic()
        numbers = h.trigger_many(2)
        h.number = numbers[0]
        tally = ModelTally("overloaded-429-dropped", len(numbers))
        try:
            h.wait_until("the status comment to say it waits", lambda: any(
                "Waiting for the model API (overloaded)" in c["body"]
                for c in h.hub.issue(OWNER, REPO, numbers[0])["comments"]), timeout=90)
            h.wait_until("every task to end", lambda: _ended(h, numbers), timeout=330)
        except TimeoutError as exc:
            tally.problems.append(str(exc).splitlines()[0])
        _finish(h, numbers, tally, started)
        assert tally.model_requests.get(529, 0) > 0 and tally.model_requests.get(429, 0) > 0
        assert tally.waits_shown > 0


@pytest.mark.timeout(300)
def test_a_refused_key_pauses_holds_the_fleet_and_goes_on_once_a_key_works(tmp_path: Path) -> None:
    refused_s = 15.0
    with ChaosHarness(tmp_path, extra_env={"NIGHTCREW_MODEL_PROBE_INTERVAL": "2"}) as h:
        client = Redis(unix_socket_path=str(h.redis.socket_path))
        # From the first model call: on a busy machine the first call may come after a
        # window counted from now had closed.
        h.model.outage(refused_s, "refuse", anchored=True)
        started = time.monotonic()
        numbers = h.trigger_many(2)
        h.number = numbers[0]
        tally = ModelTally("key-refused", len(numbers))
        seen_hold, seen_paused, second_waited = False, False, True
        try:
            def held() -> bool:
                nonlocal seen_hold, seen_paused, second_waited
                if model_hold.held(client) is not None:
                    seen_hold = True
                    # While the fleet holds, the second task is never dispatched.
                    labels = set(h.hub.issue(OWNER, REPO, numbers[1])["labels"])
                    second_waited = second_waited and LABELS["running"] not in labels
                seen_paused = seen_paused or LABELS["paused"] in set(
                    h.hub.issue(OWNER, REPO, numbers[0])["labels"])
                return seen_hold and seen_paused
            h.wait_until("the fleet to hold and the task to pause", held, timeout=60)
            h.wait_until("every task to end", lambda: _ended(h, numbers), timeout=200)
        except TimeoutError as exc:
            tally.problems.append(str(exc).splitlines()[0])
        finally:
            client.close()
        _finish(h, numbers, tally, started)
        assert seen_hold and seen_paused and second_waited
        assert tally.model_requests.get(401, 0) > 0
        events = read_events(h.data_dir, TaskKey(OWNER, REPO, numbers[0]))
        assert any("refused every configured key" in str(e.data.get("detail", "")) for e in events)
