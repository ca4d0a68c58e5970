"""``nightcrew run``: the whole loop on a local git repository, without GitHub.

The repository is cloned into a throw-away workspace (the caller's working tree is never
touched), the agent works there in the sandbox exactly as in the worker, and the result is
pushed back to the repository as a branch ``nightcrew/run-…`` with a commit and a summary.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from github_app.errors import TaskFailed
from github_app.github import Issue
from github_app.repo_config import RepoConfigError, load_local_config
from github_app.tracker.record import RunUpdate
from runner.agent.failure_log import FailureLog
from runner.pipeline.repo_setup import run_setup, setup_policy
from runner.pipeline.run import ModelFactory, Progress, TaskConfig, TaskOutcome, push_checked, run_agent
from runner.sandbox import SandboxPolicy
from runner.sandbox.bwrap import BwrapSandbox
from runner.testrun import TestReport, detect_test_command, run_tests
from runner.workspace import Workspace


class RunError(Exception):
    """A local run cannot start or go on; the message is for the person at the terminal."""


@dataclass(frozen=True)
class LocalTask:
    title: str
    body: str


def read_task(text: str | None, issue_file: Path | None) -> LocalTask:
    """The task from the command line's text or an issue file (``# title`` then the body)."""
    if issue_file is not None:
        raw = issue_file.read_text(encoding="utf-8", errors="replace")
        first, _, rest = raw.partition("\n")
        if first.startswith("#"):
            return LocalTask(first.lstrip("#").strip() or "Task", rest.strip())
        return LocalTask(raw.strip().splitlines()[0][:120] if raw.strip() else "Task", raw.strip())
    if not text or not text.strip():
        raise RunError("give the task as text or with --issue-file")
    return LocalTask(text.strip().splitlines()[0][:120], text.strip())


def model_factory(spec: str | None) -> ModelFactory:
    """``scripted:FILE`` plays a script (one player for every role); a model id is used for every
    role; without ``--model`` each role gets its configured model from the Anthropic API."""
    if spec and spec.startswith("scripted:"):
        from runner.fakes.script import load_script
        from runner.fakes.scripted import ScriptedModel

        path = Path(spec.removeprefix("scripted:"))
        if not path.is_file():
            raise RunError(f"--model {spec}: no such script file")
        scripted = ScriptedModel(load_script(path))
        return lambda _model_id: scripted
    if not os.environ.get("ANTHROPIC_API_KEY"):
        raise RunError("set ANTHROPIC_API_KEY, or pass --model scripted:FILE")
    from runner.model.anthropic import models_by_id

    by_id = models_by_id()
    return lambda model_id: by_id(spec or model_id)


def run_local(
    repo: Path, task: LocalTask, models: ModelFactory, *, data_dir: Path, out: TextIO = sys.stderr,
    test_timeout_s: float = 600.0, model_wait_max_s: float = 30 * 60.0,
) -> dict[str, Any]:
    """Run the loop on ``repo``; returns the summary (also pushed as the branch's commit).

    A model API outage is waited out as in the worker (the terminal says so), up to
    ``model_wait_max_s``; then the run ends paused, its work kept on the branch."""
    repo = repo.resolve()
    if not (repo / ".git").exists():
        raise RunError(f"{repo} is not a git repository (no .git)")
    branch = f"nightcrew/run-{_slug(task.title)}-{int(time.time())}"
    started = time.monotonic()
    with Workspace.checkout(clone_url=str(repo), token=None, root=data_dir / "runs",
                            name=branch.replace("/", "-"), branch=branch) as workspace:
        try:
            config = load_local_config(workspace.path)
        except RepoConfigError as exc:
            raise RunError(f"the repository's config is invalid: {exc}") from None
        policy = SandboxPolicy()
        if config.setup:
            _say(out, "setup: running the repo's setup commands (network on, no credentials)")
            setup = run_setup(workspace.path, list(config.setup),
                              lambda p: BwrapSandbox.for_task(p, setup_policy(policy)),
                              data_dir / "setup-cache" / _slug(str(repo)))
            if not setup.ok:
                raise RunError(setup.failure_report())
            workspace.exclude(setup.paths)
        sandbox = BwrapSandbox.for_task(workspace.path, policy)
        command = detect_test_command(workspace.path, config.test)
        if command is None:
            raise RunError("no test command found; set `test:` in .github/nightcrew.yml")
        outcome = TaskOutcome(task.title, "running", branch, 0)
        outcome.tests_before = run_tests(sandbox, command, timeout=test_timeout_s)
        _say(out, f"tests before: {_counts(outcome.tests_before)}")
        issue = Issue(number=0, title=task.title, body=task.body, state="open", author="you", labels=())
        memory = FailureLog(data_dir, "local", _slug(repo.name))
        result = run_agent(issue, workspace, sandbox, command, models,
                           TaskConfig(data_dir=data_dir, test_timeout_s=test_timeout_s,
                                      model_wait_max_s=model_wait_max_s), config,
                           _printer(out), outcome, memory)
        after = run_tests(sandbox, command, timeout=test_timeout_s)
        _say(out, f"tests after: {_counts(after)}")
        summary = result.summary or result.stop_reason
        sha = workspace.commit_all(_commit_message(task, result.outcome, summary, outcome.tests_before,
                                                   after))
        if sha:
            try:
                push_checked(workspace, lambda: None)  # a local push needs no token
            except TaskFailed as exc:  # something that looks like a secret: nothing leaves
                raise RunError(f"{exc} Nothing was pushed.") from None
    return {
        "outcome": result.outcome, "summary": summary, "question": result.question,
        "branch": branch if sha else None, "commit": sha,
        "plan": [{"item": item, "done": n in result.plan.done}
                 for n, item in enumerate(result.plan.items, 1)] if result.plan else [],
        "tests_before": _counts(outcome.tests_before), "tests_after": _counts(after),
        "green": after.green, "steps": result.steps, "tokens": result.usage.total_tokens,
        "cost_usd": round(result.cost_usd, 6), "seconds": round(time.monotonic() - started, 1),
    }


def render_summary(report: dict[str, Any]) -> str:
    """What ``nightcrew run`` prints at the end, for people."""
    lines = [f"outcome: {report['outcome']}" + (" (tests green)" if report["green"] else ""),
             f"summary: {report['summary']}"]
    if report["question"]:
        lines.append(f"needs approval: {report['question']}")
    lines.append(f"branch: {report['branch']} ({report['commit'][:7]})" if report["branch"]
                 else "no change was made")
    lines.append(f"tests: before {report['tests_before']} · after {report['tests_after']}")
    lines.append(f"{report['steps']} steps · {report['tokens']:,} tokens · ${report['cost_usd']:.4f}"
                 f" · {report['seconds']} s")
    return "\n".join(lines)


def as_json(report: dict[str, Any]) -> str:
    return json.dumps(report, sort_keys=True)


def _printer(out: TextIO) -> Progress:
    """Live progress on the terminal: one line per step (and what happens between steps)."""
    def progress(change: RunUpdate | None = None, *, force: bool = False) -> None:
        change = change or RunUpdate()
        if change.step is None:
            for text in (change.detail, f"note: {change.note}" if change.note else None):
                if text:  # e.g. "Waiting for the model API (overloaded), …"
                    _say(out, text)
            return
        line = (f"step {change.step}/{change.max_steps or '?'} · {change.tokens or 0:,} tokens · "
                f"${change.cost_usd or 0.0:.4f} · {change.plan_item or ''} · {change.detail or ''}")
        _say(out, line)
        if change.note:
            _say(out, f"note: {change.note}")
    return progress


def _commit_message(task: LocalTask, outcome: str, summary: str, before: TestReport | None,
                    after: TestReport) -> str:
    head = task.title if outcome == "finished" else f"WIP ({outcome}): {task.title}"
    return (f"{head[:72]}\n\n{summary}\n\nTests before: {_counts(before)}\n"
            f"Tests after: {_counts(after)}\n\nMade by nightcrew run.")


def _counts(report: TestReport | None) -> str:
    if report is None:
        return "—"
    return f"{report.passed} passed, {report.failed} failed, {report.errors} errors"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "task"


def _say(out: TextIO, line: str) -> None:
    print(line, file=out, flush=True)
