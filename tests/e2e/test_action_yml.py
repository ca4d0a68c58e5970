"""The composite action's own steps (``action.yml``), run in order by a small harness that does
what a GitHub Actions runner does: inputs and ``${{ … }}`` expressions substituted, each
``run:`` in bash with ``-e``, ``GITHUB_PATH`` and ``GITHUB_OUTPUT`` honoured, later steps skipped
after a failure unless ``if: always()``, the action's outputs read from its steps'.

``uses:`` steps (setup-python) are the runner's business and skipped: this machine has Python.
The install step really installs this checkout into a fresh virtualenv, as the runner would from
the action's ref."""

from __future__ import annotations

import os
import re
import stat
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from devhub import DevHub
from runner.fakes.messages_server import FakeMessagesServer
from tests.e2e.task_helpers import FILES, OWNER, REPO
from tests.e2e.test_action import Step, fix_and_review, labeled_issue, read_outputs, status_body

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
ACTION = yaml.safe_load((ROOT / "action.yml").read_text())
_EXPR = re.compile(r"\$\{\{\s*(.+?)\s*\}\}")


@dataclass
class Job:
    """The part of a runner that runs one composite action."""

    env: dict[str, str]
    inputs: dict[str, str]
    work: Path
    ran: list[str] = field(default_factory=list)
    outputs: dict[str, dict[str, str]] = field(default_factory=dict)
    status: str = "success"

    def value(self, expression: str) -> str:
        scope, _, name = expression.partition(".")
        if scope == "inputs":
            given = self.inputs.get(name)
            default = str(ACTION["inputs"][name].get("default", ""))
            return given if given is not None else self.substitute(default)
        if expression == "github.token":
            return self.env["GITHUB_TOKEN"]
        if expression == "job.status":
            return self.status
        match = re.fullmatch(r"steps\.([\w-]+)\.outputs\.([\w-]+)", expression)
        if match:
            return self.outputs.get(match[1], {}).get(match[2], "")
        raise AssertionError(f"the harness does not know ${{{{ {expression} }}}}")

    def substitute(self, text: str) -> str:
        return _EXPR.sub(lambda m: self.value(m[1]), text)

    def run(self) -> dict[str, str]:
        path_file = self.work / "github_path"
        for index, step in enumerate(ACTION["runs"]["steps"]):
            name = step.get("name") or step.get("uses") or f"step {index}"
            condition = step.get("if")
            if condition is None and self.status != "success":
                continue
            if condition is not None and condition != "always()":
                raise AssertionError(f"the harness does not evaluate if: {condition}")
            if "uses" in step:
                self.ran.append(f"uses {step['uses']}")
                continue
            assert step["shell"] == "bash"
            output = self.work / f"output-{index}"
            output.write_text("")
            path_file.touch()
            extra = [line for line in path_file.read_text().splitlines() if line]
            env = {**self.env, "GITHUB_OUTPUT": str(output), "GITHUB_PATH": str(path_file),
                   "GITHUB_ACTION_PATH": str(ROOT),
                   "PATH": os.pathsep.join([*reversed(extra), self.env["PATH"]]),
                   **{k: self.substitute(str(v)) for k, v in (step.get("env") or {}).items()}}
            script = self.work / f"step-{index}.sh"
            script.write_text(self.substitute(step["run"]))
            done = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
                                  env=env, cwd=self.work, capture_output=True, text=True, timeout=600)
            self.ran.append(name)
            (self.work / f"log-{index}.txt").write_text(done.stdout + done.stderr)
            if "id" in step:
                self.outputs[step["id"]] = read_outputs(output)
            if done.returncode != 0:
                self.status = "failure"
        return {name: self.substitute(str(spec["value"])) for name, spec in ACTION["outputs"].items()}

    def log(self, name: str) -> str:
        index = next(i for i, s in enumerate(ACTION["runs"]["steps"]) if s.get("name") == name)
        return (self.work / f"log-{index}.txt").read_text()


def job_for(step: Step, work: Path) -> Job:
    env = {k: v for k, v in step.env.items() if k not in ("ANTHROPIC_API_KEY", "GITHUB_OUTPUT")}
    return Job(env, {"anthropic-api-key": step.env["ANTHROPIC_API_KEY"]}, work)


def fake_bwrap(directory: Path) -> None:
    """What bwrap says on an Ubuntu 24.04 runner that forbids user namespaces."""
    directory.mkdir(parents=True)
    bwrap = directory / "bwrap"
    bwrap.write_text("#!/bin/sh\necho 'bwrap: loopback: Failed RTM_NEWADDR: Operation not permitted' >&2\nexit 1\n")
    bwrap.chmod(bwrap.stat().st_mode | stat.S_IXUSR)


def test_the_composite_action_installs_self_tests_the_sandbox_runs_and_finalizes(
    devhub: DevHub, tmp_path: Path,
) -> None:
    devhub.create_repo(OWNER, REPO, FILES)
    number, labeled = labeled_issue(devhub)
    with FakeMessagesServer(fix_and_review()) as messages:
        step = Step(devhub, tmp_path, messages)
        step.event("issues", labeled)

        # Where the sandbox cannot isolate, the job fails at the self-test: nothing ran.
        broken = tmp_path / "no-userns"
        fake_bwrap(broken / "bin")
        job = job_for(step, tmp_path)
        job.env["PATH"] = f"{broken / 'bin'}{os.pathsep}{job.env['PATH']}"
        outputs = job.run()
        assert job.status == "failure"
        assert job.ran == ["uses actions/setup-python@v5", "Install nightcrew (this action's own ref)",
                           "Let the sandbox use user namespaces", "Sandbox self-test",
                           "Leave every status comment in a true state"]
        assert "the sandbox cannot isolate commands" in job.log("Sandbox self-test")
        assert outputs["conclusion"] == "" and messages.requests == []
        assert devhub.issue(OWNER, REPO, number)["comments"] == []  # no status comment, no label

        # On a runner where it can, the same steps open the pull request.
        job = job_for(step, tmp_path)
        outputs = job.run()
        assert job.status == "success", job.log("nightcrew")[-3000:]
    assert "Sandbox self-test" in job.ran and "nightcrew" in job.ran
    assert outputs["conclusion"] == "success" and outputs["pr_url"].endswith("/pull/2")
    assert float(outputs["cost_usd"]) > 0
    assert "pull request opened" in status_body(devhub, number)
    assert job.ran[-1] == "Leave every status comment in a true state"
    assert "already pr_opened" in job.log("Leave every status comment in a true state")
    assert devhub.violations == []


def test_the_action_declares_what_the_runner_mode_promises() -> None:
    inputs: dict[str, Any] = ACTION["inputs"]
    assert inputs["anthropic-api-key"]["required"] is True
    assert set(ACTION["outputs"]) == {"conclusion", "pr_url", "cost_usd"}
    assert ACTION["runs"]["using"] == "composite"
    final = ACTION["runs"]["steps"][-1]
    assert final["if"] == "always()" and "finalize" in final["run"]


def test_the_example_workflow_is_least_privilege_never_cancels_work_and_ignores_bots() -> None:
    workflow = yaml.safe_load((ROOT / "examples/workflows/nightcrew.yml").read_text())
    assert workflow["permissions"] == {"contents": "write", "issues": "write", "pull-requests": "write"}
    intake, work = workflow["jobs"]["intake"], workflow["jobs"]["work"]
    assert "concurrency" not in intake  # never dropped from a concurrency queue
    assert "sender.type != 'Bot'" in intake["if"]
    assert work["needs"] == "intake" and work["concurrency"]["cancel-in-progress"] is False
    assert "github.repository" in work["concurrency"]["group"]  # one drain at a time
    for job, phase in ((intake, "intake"), (work, "work")):
        [uses] = job["steps"]
        assert set(uses["with"]) <= set(ACTION["inputs"]) and uses["with"]["phase"] == phase
