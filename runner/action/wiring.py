"""Wiring for a workflow job: the Actions environment and settings → the action's adapters.

The third wiring point beside the web app's and the worker's; like them, the only place the
action picks implementations. No Redis: refusals of model keys are kept in memory, the event
log is a file, controls come from the issue.
"""

from __future__ import annotations

import functools
import os

from github_app.github import GitHubApp, GitHubKitHost, WorkflowToken
from github_app.settings import Settings, SettingsError
from github_app.tracker.checkpoint import checkpoint_key
from runner.action.environment import ActionEnv, ActionEnvironmentError, RunState
from runner.action.run import ActionDeps
from runner.model.anthropic import models_by_id
from runner.model.keys import KeyRing, MemoryRefusals, configured_keys
from runner.pipeline.run import TaskConfig
from runner.sandbox import SandboxPolicy
from runner.sandbox.factory import sandbox_for


def action_deps(env: ActionEnv, settings: Settings) -> ActionDeps:
    """The job's adapters: GitHub as the App (when its id and key are given) or with the job's
    token, the model keys, the sandbox, and the task settings."""
    keys = configured_keys(settings.anthropic_api_key)
    if not keys:
        raise SettingsError("ANTHROPIC_API_KEY is required (the action's anthropic-api-key input)")
    host, as_app = _host(env, settings)
    # The runner's temp dir is the job's own (cleaned after it) unless a data dir is set.
    data_dir = (settings.data_dir if os.environ.get("NIGHTCREW_DATA_DIR") or env.temp_dir is None
                else env.temp_dir / "nightcrew")
    config = TaskConfig(
        data_dir=data_dir.resolve(), test_timeout_s=settings.test_timeout_s,
        planner_model=settings.planner_model, executor_model=settings.executor_model,
        summarizer_model=settings.summarizer_model, checkpoint_key=action_checkpoint_key(settings),
        model_wait_max_s=settings.model_wait_max_s,
    )
    policy = SandboxPolicy()
    return ActionDeps(
        env=env, host=host, models=models_by_id(keys=KeyRing(keys, MemoryRefusals())),
        sandbox_for=functools.partial(sandbox_for, settings, policy), config=config,
        trigger_label=settings.trigger_label, app_slug=settings.app_slug,
        workflow_token=not as_app, state=RunState.load(env.state_path),
    )


def _host(env: ActionEnv, settings: Settings) -> tuple[GitHubKitHost, bool]:
    """The App's installation on the repository when the App's id and key are set, else the
    job's token (``GITHUB_TOKEN``)."""
    if settings.app_id is not None:
        app = GitHubApp(*settings.require_app(), env.api_url)
        return app.host(app.installation_for(env.owner, env.repo)), True
    if not env.token:
        raise ActionEnvironmentError(
            "no GitHub credentials: pass the action's github-token input (default "
            "${{ github.token }}) or a GitHub App's id and private key")
    return GitHubKitHost(WorkflowToken(env.token, env.api_url)), False


def action_checkpoint_key(settings: Settings) -> bytes:
    """The key that signs checkpoints across workflow runs: NIGHTCREW_CHECKPOINT_SECRET when
    set, else derived from the App's private key, else from the model API key — secrets the
    repository already keeps for every run, so a resume needs nothing more configured.
    Rotating the one it comes from makes old checkpoints unreadable (their tasks start over)."""
    if settings.checkpoint_secret is not None and settings.checkpoint_secret.get_secret_value():
        return settings.checkpoint_key()
    if settings.app_id is not None:
        return checkpoint_key("app-key:" + settings.app_private_key())
    keys = configured_keys(settings.anthropic_api_key)
    if not keys:
        raise SettingsError("ANTHROPIC_API_KEY is required (the action's anthropic-api-key input)")
    return checkpoint_key("model-key:" + keys[0])
