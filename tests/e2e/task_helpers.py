"""One task through the real pipeline for e2e tests: the GitHub stand-in, real git, bwrap, and a
scripted model behind the loop."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devhub import DevHub
from github_app.github import GitHubApp
from github_app.tasks import TaskKey
from github_app.tracker.checkpoint import checkpoint_key
from runner.fakes.script import ScriptStep
from runner.fakes.scripted import ScriptedModel
from runner.pipeline.run import TaskConfig, TaskControls, TaskOutcome, run
from runner.sandbox import Sandbox, SandboxPolicy
from runner.sandbox.bwrap import BwrapSandbox

OWNER, REPO = "octo", "calc"
FILES = {
    "calc.py": "def add(a, b):\n    return a - b\n",
    "tests/test_calc.py": "from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n",
}
KEY = checkpoint_key("checkpoint-test-secret-not-real")
FIX_STEPS: list[dict[str, Any]] = [
    {"text": "- [ ] Fix add\nAcceptance:\n- [ ] test_add passes"},
    {"tool_calls": [{"name": "edit_file", "input": {
        "path": "calc.py", "search": "    return a - b\n", "replace": "    return a + b\n"}}]},
    {"tool_calls": [{"name": "run_tests", "input": {}}]},
    {"tool_calls": [{"name": "finish", "input": {"summary": "add() adds"}}]},
]


@dataclass
class ScriptedTask:
    """An issue on the stand-in and what runs it: ``attempt()`` is one run of the task."""

    task: TaskKey
    model: ScriptedModel
    config: TaskConfig
    attempt: Callable[[], TaskOutcome]


def scripted_task(hub: DevHub, app_private_key: str, tmp_path: Path,
                  steps: list[dict[str, Any]] | None = None, *, files: dict[str, str] | None = None,
                  controls: TaskControls | None = None) -> ScriptedTask:
    """The calc repo (``files``, made once), a new issue on it, and a run of it against ``steps``."""
    if hub.state.repo(OWNER, REPO) is None:
        hub.create_repo(OWNER, REPO, files or FILES)
        hub.install(OWNER)
    number = hub.create_issue(OWNER, REPO, "add() subtracts", "`add(2, 3)` is -1, not 5.")
    task = TaskKey(OWNER, REPO, number)
    model = ScriptedModel([ScriptStep.from_json(s) for s in steps or FIX_STEPS], model="claude-sonnet-4-5")
    app = GitHubApp(hub.app_id, app_private_key, hub.url)
    installation = app.installation_for(OWNER, REPO)
    config = TaskConfig(data_dir=tmp_path / "data", checkpoint_key=KEY)

    def sandbox_for(path: Path, *, network: bool = False) -> Sandbox:
        return BwrapSandbox(path, SandboxPolicy())

    def attempt() -> TaskOutcome:
        return run(task, host=app.host(installation), models=lambda _id: model,
                   sandbox_for=sandbox_for, config=config, controls=controls)

    return ScriptedTask(task, model, config, attempt)
