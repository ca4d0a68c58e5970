"""Wiring for the worker: settings → adapters. The only place the runner picks implementations."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import redis

from github_app import logs
from github_app import wiring as app_wiring
from github_app.github import GitHost, GitHubApp, GitHubKitHost
from github_app.queue import controls
from github_app.queue.jobqueue import RQJobQueue
from github_app.queue.model_hold import RedisRefusals
from github_app.queue.scheduler import TaskScheduler
from github_app.redis_conn import connect
from github_app.settings import Settings, SettingsError, load_settings
from github_app.tasks import TaskKey
from github_app.tracker.eventlog import EventLog, new_run_id
from runner.model import ModelClient
from runner.model.anthropic import models_by_id
from runner.model.keys import KeyRing, configured_keys
from runner.pipeline.run import TaskConfig, TaskOutcome
from runner.sandbox import Sandbox, SandboxPolicy, factory

T = TypeVar("T")
log = logs.get("nightcrew.wiring")


@dataclass
class Dependencies:
    settings: Settings
    policy: SandboxPolicy = field(default_factory=SandboxPolicy)

    def app(self) -> GitHubApp:
        return app_wiring.app(self.settings)

    def host_for(self, task: TaskKey, installation_id: int | None) -> GitHost:
        """The GitHub client for the installation that covers the task's repository."""
        app = self.app()
        installation = installation_id or app.installation_for(task.owner, task.repo)
        return app.host(int(installation))

    def review_host_for(self, pull: TaskKey, installation_id: int | None) -> GitHubKitHost:
        """The GitHub client with the pull-request review API, for the PR's installation."""
        app = self.app()
        installation = installation_id or app.installation_for(pull.owner, pull.repo)
        return app.host(int(installation))

    @functools.cached_property
    def connection(self) -> redis.Redis:
        """One Redis client for the run (checked once), shared by its heartbeat, log and controls."""
        return connect(self.settings)

    def models(self) -> Callable[[str], ModelClient]:
        """Model id → the Anthropic adapter for it (ANTHROPIC_BASE_URL may point it at a stand-in).

        The keys rotate fleet-wide: a key the API refused is recorded in Redis and skipped by
        every worker (``github_app.queue.model_hold``)."""
        return models_by_id(keys=self.model_keys())

    def model_keys(self) -> KeyRing:
        """The configured model API keys, refusals shared through Redis."""
        keys = configured_keys(self.settings.anthropic_api_key)
        if not keys:
            raise SettingsError("ANTHROPIC_API_KEY is required to run tasks")
        return KeyRing(keys, RedisRefusals(self.connection))

    def events_for(self, task: TaskKey) -> EventLog:
        """This run's event log: a JSONL file in the data dir and a Redis stream for watchers."""
        return EventLog(self.settings.data_dir.resolve(), str(task), new_run_id(),
                        redis=self.connection)

    def controls_for(self, task: TaskKey) -> RedisControls:
        return RedisControls(self.connection, task)

    def task_config(self) -> TaskConfig:
        s = self.settings
        return TaskConfig(data_dir=s.data_dir.resolve(), test_timeout_s=s.test_timeout_s,
                          planner_model=s.planner_model, executor_model=s.executor_model,
                          summarizer_model=s.summarizer_model,
                          checkpoint_key=app_wiring.checkpoint_key(s),
                          model_wait_max_s=s.model_wait_max_s)

    def scheduler(self) -> tuple[TaskScheduler, RQJobQueue]:
        """The fleet's scheduler and the queue it dispatches to."""
        queue = RQJobQueue(self.connection)
        return app_wiring.scheduler_for(self.settings, queue), queue

    def sandbox_for(self, workspace: Path, *, network: bool = False) -> Sandbox:
        """The agent's sandbox, or the setup phase's (``runner.sandbox.factory``)."""
        return factory.sandbox_for(self.settings, self.policy, workspace, network=network)


@dataclass(frozen=True)
class RedisControls:
    """``TaskControls`` on the requests intake recorded in Redis (``github_app.queue.controls``).

    Requests are advisory to a running task: while Redis is unreachable (restarting) each read
    answers "nothing asked" instead of failing the task. Nothing is lost by that: an unread stop
    request, budget grant or approval stays in Redis for the next step or the next run, and a
    missed approval only makes the gate ask again (it fails closed).
    """

    connection: redis.Redis
    task: TaskKey

    def stop_requested(self) -> tuple[Literal["cancel", "pause"], str] | None:
        request = self._read(controls.stop_requested, None)
        return None if request is None else (request.kind, request.actor)

    def render_requested(self) -> bool:
        return self._read(controls.render_requested, False)

    def take_budget(self) -> float:
        return self._read(controls.take_budget, 0.0)

    def approved(self) -> set[str]:
        return self._read(controls.approved, set())

    def clear_stop(self) -> None:
        self._read(controls.clear_stop, None)

    def _read(self, call: Callable[[redis.Redis, TaskKey], T], unavailable: T) -> T:
        try:
            return call(self.connection, self.task)
        except redis.RedisError as exc:
            log.warning("controls.redis_unavailable", task=str(self.task), error=type(exc).__name__)
            return unavailable


def from_settings() -> Dependencies:
    return Dependencies(load_settings())


def task_key(text: str) -> TaskKey:
    return TaskKey.parse(text)


def outcome_json(outcome: TaskOutcome) -> dict[str, Any]:
    """The job's result: plain JSON, readable by `rq info` and the demo."""
    def counts(report: Any) -> dict[str, int] | None:
        return None if report is None else {"passed": report.passed, "failed": report.failed}

    return {
        "task": outcome.task, "state": outcome.state, "branch": outcome.branch,
        "status_comment": outcome.status_comment, "pr": outcome.pr_number,
        "pr_url": outcome.pr_url, "tests_before": counts(outcome.tests_before),
        "tests_after": counts(outcome.tests_after), "tokens": outcome.tokens,
        "cost_usd": round(outcome.cost_usd, 6), "steps": outcome.steps,
        "commits": outcome.commits,
    }
