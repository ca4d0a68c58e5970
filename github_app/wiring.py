"""Wiring for the App's side: settings → adapters. The only place ``github_app`` builds them.

The RQ entry points (intake, queue positions, installations, the reconciler) and the workers'
maintenance (the stopper) get their GitHub App, Redis, queue, scheduler and checkpoint key
here; the worker's task side has its own root in ``runner/wiring.py``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import redis

from github_app.github import GitHost, GitHubApp
from github_app.queue.jobqueue import TASK_QUEUE, RQJobQueue
from github_app.queue.scheduler import Caps, TaskScheduler
from github_app.redis_conn import connect
from github_app.settings import Settings, SettingsError
from github_app.tasks import TaskKey

HostFor = Callable[[TaskKey, int | None], GitHost]


def app(settings: Settings) -> GitHubApp:
    """The GitHub App client (``SettingsError`` without an App id and key)."""
    app_id, private_key = settings.require_app()
    return GitHubApp(app_id, private_key, settings.github_api_url)


def checkpoint_key(settings: Settings) -> bytes | None:
    """The checkpoint signing key, or None when no secret is set (status comments then carry no
    signed block, and no run resumes from one)."""
    try:
        return settings.checkpoint_key()
    except SettingsError:
        return None


def queue(settings: Settings, connection: redis.Redis | None = None) -> RQJobQueue:
    return RQJobQueue(connection if connection is not None else connect(settings))


def scheduler_for(settings: Settings, jobs: RQJobQueue) -> TaskScheduler:
    """The fleet's scheduler; slots follow the live workers unless NIGHTCREW_MAX_RUNNING caps them."""
    caps = Caps(per_installation=settings.cap_per_installation, slots=settings.max_running)
    return TaskScheduler(jobs.connection, caps, live_slots=lambda: jobs.worker_count(TASK_QUEUE))


def hosts(settings: Settings) -> HostFor:
    """Installation clients as the App; the App is set up on first use, not at start-up."""

    @functools.cache
    def the_app() -> GitHubApp:
        return app(settings)

    def host_for(task: TaskKey, installation: int | None) -> GitHost:
        client = the_app()
        return client.host(installation or client.installation_for(task.owner, task.repo))

    return host_for
