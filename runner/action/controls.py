"""What people ask a task that runs inside a workflow job, read from the issue itself.

On the App, intake records steering commands in Redis for the running task. A workflow job has
no Redis, and a ``/nightcrew cancel`` comment starts a workflow run of its own, which may wait
behind this one in its concurrency group. So the running task reads the thread: every
``POLL_S`` at most, the comments written since it started, for a ``cancel`` or ``pause`` from
someone the repository's policy lets steer it. A budget raise or an approval is what started
this run (``/nightcrew budget``, ``/nightcrew approve``), handed in at the start.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from github_app import logs, trust
from github_app.github import GitHost, GitHubError
from github_app.ingress.routing import parse_slash_command
from github_app.repo_config import RepoConfig
from github_app.tasks import TaskKey

POLL_S = 30.0  # a list of the comments at most this often: one API call
log = logs.get("nightcrew.action")


@dataclass
class ThreadControls:
    """``TaskControls`` on the issue's comments (``runner.pipeline.run.TaskControls``)."""

    host: GitHost
    task: TaskKey
    config: RepoConfig
    after_comment: int  # only comments with a larger id (written after the run started) count
    budget_usd: float = 0.0  # granted by the command that started this run
    approved_kinds: set[str] = field(default_factory=set)
    poll_s: float = POLL_S
    clock: Callable[[], float] = time.monotonic
    _stop: tuple[Literal["cancel", "pause"], str] | None = None
    _checked_at: float | None = None

    def stop_requested(self) -> tuple[Literal["cancel", "pause"], str] | None:
        if self._stop is None and self._due():
            self._stop = self._read_stop()
        return self._stop

    def render_requested(self) -> bool:
        return False  # the status comment is written at every step anyway

    def take_budget(self) -> float:
        grant, self.budget_usd = self.budget_usd, 0.0
        return grant

    def approved(self) -> set[str]:
        return set(self.approved_kinds)

    def clear_stop(self) -> None:
        self._stop = None

    def _due(self) -> bool:
        now = self.clock()
        if self._checked_at is not None and now - self._checked_at < self.poll_s:
            return False
        self._checked_at = now
        return True

    def _read_stop(self) -> tuple[Literal["cancel", "pause"], str] | None:
        try:
            comments = self.host.list_comments(self.task)
        except GitHubError as exc:  # advisory: the next poll asks again
            log.warning("action.controls_unreadable", task=str(self.task), error=str(exc)[:200])
            return None
        for comment in comments:
            if comment.id <= self.after_comment:
                continue
            command = parse_slash_command(comment.body)
            if command is None or command.verb.lower() not in ("cancel", "pause"):
                continue
            if trust.refusal(self.task, self.host, comment.author, self.config) is not None:
                continue
            kind: Literal["cancel", "pause"] = "cancel" if command.verb.lower() == "cancel" else "pause"
            self.after_comment = comment.id
            return kind, comment.author
        if comments:
            self.after_comment = max(self.after_comment, max(c.id for c in comments))
        return None
