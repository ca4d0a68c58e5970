"""The sandbox a task's commands run in, on the backend the settings name."""

from __future__ import annotations

from pathlib import Path

from github_app.settings import Settings
from runner.pipeline.repo_setup import setup_policy
from runner.sandbox import Sandbox, SandboxPolicy
from runner.sandbox.bwrap import BwrapSandbox
from runner.sandbox.docker import DockerSandbox


def sandbox_for(settings: Settings, policy: SandboxPolicy, workspace: Path, *,
                network: bool = False) -> Sandbox:
    """The agent's sandbox (network off), or the setup phase's (network on), on the backend
    ``NIGHTCREW_SANDBOX`` names; both phases share one policy, setup only turns the network on."""
    policy = setup_policy(policy) if network else policy
    if settings.sandbox == "docker":
        return DockerSandbox(workspace, policy, image=settings.sandbox_image,
                             base_url=settings.docker_url)
    return BwrapSandbox.for_task(workspace, policy)
