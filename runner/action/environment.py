"""What GitHub Actions hands a step, and what a step hands back.

A workflow job's step reads its context from environment variables (``GITHUB_EVENT_NAME``,
``GITHUB_EVENT_PATH`` …) and answers through files: ``GITHUB_OUTPUT`` takes ``name=value``
lines (a value over several lines as ``name<<DELIMITER`` … ``DELIMITER``), ``GITHUB_STEP_SUMMARY``
takes markdown shown on the run's page. The action's own steps share what they did through a
state file under ``RUNNER_TEMP`` (the finalize step reads it).
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from github_app.errors import NightcrewError
from github_app.tasks import TaskKey

STATE_FILE = "nightcrew-action.json"


class ActionEnvironmentError(NightcrewError):
    """The step does not run where GitHub Actions runs it (a variable is missing or wrong)."""


@dataclass(frozen=True)
class ActionEnv:
    """The workflow run's context, as GitHub Actions sets it."""

    event_name: str
    event_path: Path
    repository: str  # owner/repo
    api_url: str
    server_url: str
    run_id: str
    run_attempt: str = "1"
    token: str | None = None  # the job's GITHUB_TOKEN (or the action's github-token input)
    output_path: Path | None = None
    summary_path: Path | None = None
    temp_dir: Path | None = None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> ActionEnv:
        env = os.environ if environ is None else environ
        missing = [name for name in ("GITHUB_EVENT_NAME", "GITHUB_EVENT_PATH", "GITHUB_REPOSITORY",
                                     "GITHUB_RUN_ID") if not env.get(name)]
        if missing:
            raise ActionEnvironmentError(
                f"{', '.join(missing)} not set: `nightcrew action` runs as a step of a GitHub "
                "Actions job (see examples/workflows/nightcrew.yml)")
        repository = env["GITHUB_REPOSITORY"]
        if repository.count("/") != 1 or not all(repository.split("/")):
            raise ActionEnvironmentError(f"GITHUB_REPOSITORY is not owner/repo: {repository!r}")

        def path(name: str) -> Path | None:
            return Path(env[name]) if env.get(name) else None

        return cls(
            event_name=env["GITHUB_EVENT_NAME"], event_path=Path(env["GITHUB_EVENT_PATH"]),
            repository=repository,
            api_url=env.get("GITHUB_API_URL") or "https://api.github.com",
            server_url=env.get("GITHUB_SERVER_URL") or "https://github.com",
            run_id=env["GITHUB_RUN_ID"], run_attempt=env.get("GITHUB_RUN_ATTEMPT") or "1",
            token=env.get("INPUT_GITHUB_TOKEN") or env.get("GITHUB_TOKEN") or None,
            output_path=path("GITHUB_OUTPUT"), summary_path=path("GITHUB_STEP_SUMMARY"),
            temp_dir=path("RUNNER_TEMP"),
        )

    @property
    def owner(self) -> str:
        return self.repository.split("/")[0]

    @property
    def repo(self) -> str:
        return self.repository.split("/")[1]

    @property
    def run_url(self) -> str:
        """The workflow run's page (what the status comment links)."""
        return f"{self.server_url.rstrip('/')}/{self.repository}/actions/runs/{self.run_id}"

    def event_body(self) -> bytes:
        try:
            return self.event_path.read_bytes()
        except OSError as exc:
            raise ActionEnvironmentError(
                f"GITHUB_EVENT_PATH {self.event_path}: {exc.strerror or exc}") from None

    @property
    def state_path(self) -> Path | None:
        return self.temp_dir / STATE_FILE if self.temp_dir is not None else None


def write_outputs(path: Path | None, values: Mapping[str, str]) -> None:
    """Append step outputs; every value goes in a heredoc with a random delimiter, so no value
    (a PR title, an error message) can end it early and set an output of its own."""
    if path is None:
        return
    lines: list[str] = []
    for name, value in values.items():
        delimiter = f"nightcrew_{secrets.token_hex(8)}"
        while delimiter in value:
            delimiter = f"nightcrew_{secrets.token_hex(8)}"
        lines += [f"{name}<<{delimiter}", value, delimiter]
    with path.open("a", encoding="utf-8") as out:
        out.write("\n".join(lines) + "\n")


def append_summary(path: Path | None, markdown: str) -> None:
    """Add to the job summary shown on the workflow run's page."""
    if path is None:
        return
    with path.open("a", encoding="utf-8") as out:
        out.write(markdown.rstrip() + "\n")


@dataclass
class RunState:
    """What this workflow run did, for the action's final step (``finalize``): the tasks it
    started, with their status comments."""

    tasks: dict[str, int] = field(default_factory=dict)  # task key → status comment id

    def started(self, task: TaskKey, comment_id: int | None) -> None:
        if comment_id:
            self.tasks[str(task)] = comment_id

    def save(self, path: Path | None) -> None:
        if path is not None:
            path.write_text(json.dumps(asdict(self)), encoding="utf-8")

    @classmethod
    def load(cls, path: Path | None) -> RunState:
        """The state the main step left; empty when it never wrote one (it did not start)."""
        if path is None or not path.exists():
            return cls()
        try:
            data: Any = json.loads(path.read_text(encoding="utf-8"))
            tasks = {str(k): int(v) for k, v in dict(data.get("tasks") or {}).items()}
            return cls(tasks=tasks)
        except (ValueError, TypeError, AttributeError):
            return cls()
