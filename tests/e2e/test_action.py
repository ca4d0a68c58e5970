"""``nightcrew action`` as a workflow step runs it: the real CLI in a subprocess with the
environment GitHub Actions sets (event file, outputs file, step summary, the job's token), the
stand-in as GitHub (with a workflow run's ``GITHUB_TOKEN``), the real Anthropic SDK against the
fake Messages server, real git and bwrap — and a REDIS_URL that points at a closed port, so a
single touch of Redis would fail the run."""

from __future__ import annotations

import copy
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from devhub import DevHub
from devhub.webhook_schemas import SPEC_DIR
from github_app.tracker.status import MARKER
from runner.action.run import TOKEN_NOTICE
from runner.fakes.messages_server import FakeMessagesServer
from runner.fakes.script import ScriptStep
from runner.review.reviewer import TOOL
from tests.e2e.task_helpers import FILES, FIX_STEPS, OWNER, REPO

pytestmark = pytest.mark.e2e
EXAMPLES: dict[str, list[dict[str, Any]]] = json.loads(
    (SPEC_DIR / "webhook-examples.json").read_text("utf-8"))
RUN_ID = "7001"
NO_FINDINGS = {"tool_calls": [{"name": TOOL, "input": {"findings": []}}]}


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def example(event: str, action: str) -> dict[str, Any]:
    return copy.deepcopy(next(e for e in EXAMPLES[event] if e.get("action") == action))


def aimed(body: dict[str, Any], hub: DevHub, number: int, sender: str = "octocat") -> dict[str, Any]:
    """A real example payload pointed at the stand-in's repository, issue and person."""
    repo = hub.state.repo(OWNER, REPO)
    assert repo is not None
    body["repository"].update(full_name=f"{OWNER}/{REPO}", name=REPO, id=repo.id)
    body["repository"]["owner"].update(login=OWNER)
    body["issue"].update(number=number)
    body["issue"].pop("pull_request", None)
    body["sender"].update(login=sender, type="User")
    body.pop("installation", None)  # a workflow's event has none unless an App sent it
    return body


def labeled_issue(hub: DevHub) -> tuple[int, dict[str, Any]]:
    """A new issue and the real issues.labeled example labeling it with the trigger label."""
    number = hub.create_issue(OWNER, REPO, "add() subtracts", "`add(2, 3)` is -1, not 5.")
    labeled = aimed(example("issues", "labeled"), hub, number)
    labeled["label"].update(name="nightcrew")
    return number, labeled


def fix_and_review() -> list[ScriptStep]:
    """The model's script: the fix, then a review of the PR that finds nothing."""
    return [ScriptStep.from_json(s) for s in [*FIX_STEPS, NO_FINDINGS]]


def commented(hub: DevHub, number: int, text: str, sender: str = "octocat") -> dict[str, Any]:
    """A real issue_comment.created example for a comment really written on the stand-in."""
    body = aimed(example("issue_comment", "created"), hub, number, sender)
    body["comment"].update(body=text, id=hub.add_comment(OWNER, REPO, number, text, actor=sender))
    body["comment"]["user"].update(login=sender, type="User")
    return body


class Step:
    """One workflow step's environment, as a GitHub Actions runner sets it."""

    def __init__(self, hub: DevHub, tmp: Path, messages: FakeMessagesServer) -> None:
        self.hub, self.tmp = hub, tmp
        self.runner_temp = tmp / "runner-temp"
        self.runner_temp.mkdir(exist_ok=True)
        self.output, self.summary = tmp / "output.txt", tmp / "summary.md"
        self.env = {
            "PATH": os.environ["PATH"], "HOME": str(tmp), "GITHUB_ACTIONS": "true",
            "GITHUB_REPOSITORY": f"{OWNER}/{REPO}", "GITHUB_API_URL": hub.url,
            "GITHUB_SERVER_URL": "https://github.example", "GITHUB_RUN_ID": RUN_ID,
            "GITHUB_TOKEN": hub.workflow_token(OWNER, REPO), "GITHUB_OUTPUT": str(self.output),
            "GITHUB_STEP_SUMMARY": str(self.summary), "RUNNER_TEMP": str(self.runner_temp),
            "ANTHROPIC_API_KEY": "sk-ant-action-test-key-not-real",
            "ANTHROPIC_BASE_URL": messages.base_url,
            "REDIS_URL": f"redis://127.0.0.1:{closed_port()}/0",
        }

    def event(self, name: str, body: dict[str, Any]) -> None:
        path = self.tmp / f"event-{name}.json"
        path.write_text(json.dumps(body))
        self.env.update(GITHUB_EVENT_NAME=name, GITHUB_EVENT_PATH=str(path))

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "runner.cli", "action", *args]

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        self.output.write_text("")
        return subprocess.run(self.command(*args), env=self.env, capture_output=True, text=True,
                              timeout=240, cwd=self.tmp)

    def outputs(self) -> dict[str, str]:
        return read_outputs(self.output)


def read_outputs(path: Path) -> dict[str, str]:
    """A GITHUB_OUTPUT file's heredoc lines read the way the runner reads them."""
    lines, values, i = path.read_text().splitlines(), {}, 0
    while i < len(lines):
        name, _, delimiter = lines[i].partition("<<")
        end = lines.index(delimiter, i + 1)
        values[name] = "\n".join(lines[i + 1:end])
        i = end + 1
    return values


@pytest.fixture
def repo(devhub: DevHub) -> DevHub:
    devhub.create_repo(OWNER, REPO, FILES)
    return devhub


def status_body(hub: DevHub, number: int) -> str:
    [body] = [c["body"] for c in hub.issue(OWNER, REPO, number)["comments"] if MARKER in c["body"]]
    return body


def labels(hub: DevHub, number: int) -> list[str]:
    return list(hub.issue(OWNER, REPO, number)["labels"])


def test_a_labeled_issue_becomes_a_pr_in_one_step_with_the_jobs_token_and_no_redis(
    repo: DevHub, tmp_path: Path,
) -> None:
    number, labeled = labeled_issue(repo)
    with FakeMessagesServer(fix_and_review()) as messages:
        step = Step(repo, tmp_path, messages)
        step.event("issues", labeled)
        done = step.run("run")
    assert done.returncode == 0, done.stderr[-3000:]
    outputs = step.outputs()
    assert outputs["conclusion"] == "success"
    [pull] = [p for p in repo.pulls(OWNER, REPO) if p["head"] == f"nightcrew/issue-{number}"]
    assert outputs["pr_url"].endswith(f"/pull/{pull['number']}") and float(outputs["cost_usd"]) > 0
    assert pull["user"] == "github-actions[bot]" and f"Fixes #{number}" in pull["body"]
    body = status_body(repo, number)
    assert "pull request opened" in body
    assert f"Run: [GitHub Actions](https://github.example/{OWNER}/{REPO}/actions/runs/{RUN_ID})" in body
    assert TOKEN_NOTICE in body  # its CI will not start: said where people look
    assert "nightcrew:done" in labels(repo, number)
    summary = step.summary.read_text()
    assert "### nightcrew · run · success" in summary and outputs["pr_url"] in summary
    # nightcrew reviewed its own PR in the same job (one review, no findings).
    assert [t["name"] for t in messages.requests[-1].body["tools"]] == [TOOL]
    [ledger] = [c for c in repo.issue(OWNER, REPO, pull["number"])["comments"]
                if "<!-- nightcrew:review -->" in c["body"]]
    assert ledger["user"] == "github-actions[bot]"
    handled = json.loads(done.stdout.strip().splitlines()[-1])["handled"]
    assert [h["reason"].split(":")[0] for h in handled] == ["queued", "pr_opened", f"review of #{pull['number']}"]
    assert repo.violations == []


def test_a_slash_command_comment_starts_the_task_and_a_strangers_does_not(
    repo: DevHub, tmp_path: Path,
) -> None:
    number = repo.create_issue(OWNER, REPO, "add() subtracts", "`add(2, 3)` is -1, not 5.")
    repo.set_permission(OWNER, REPO, "mallory", "read")
    with FakeMessagesServer(fix_and_review()) as messages:
        step = Step(repo, tmp_path, messages)
        stranger = commented(repo, number, "/nightcrew fix please", sender="mallory")
        step.event("issue_comment", stranger)
        refused = step.run("run")
        assert refused.returncode == 0, refused.stderr[-2000:]
        assert step.outputs()["conclusion"] == "skipped" and messages.requests == []
        comment = commented(repo, number, "/nightcrew fix keep it small")
        step.event("issue_comment", comment)
        done = step.run("run")
    assert done.returncode == 0, done.stderr[-3000:]
    assert step.outputs()["conclusion"] == "success"
    assert "pull request opened" in status_body(repo, number)
    assert repo.violations == []


def test_a_task_left_queued_by_a_dropped_run_is_drained_by_the_next_run(
    repo: DevHub, tmp_path: Path,
) -> None:
    number, labeled = labeled_issue(repo)
    other = repo.create_issue(OWNER, REPO, "unrelated", "talk")
    with FakeMessagesServer(fix_and_review()) as messages:
        step = Step(repo, tmp_path, messages)
        step.event("issues", labeled)
        queued = step.run("intake")  # the intake job ran; its work job was dropped
        assert queued.returncode == 0, queued.stderr[-2000:]
        assert "nightcrew:queued" in labels(repo, number)
        assert messages.requests == []
        chatter = commented(repo, other, "no command here")
        step.event("issue_comment", chatter)
        drained = step.run("work")  # any later run's work job drains the queue
    assert drained.returncode == 0, drained.stderr[-3000:]
    assert step.outputs()["conclusion"] == "success"
    assert "pull request opened" in status_body(repo, number)


def test_a_cancelled_run_leaves_its_task_queued_and_the_next_run_resumes_it(
    repo: DevHub, tmp_path: Path,
) -> None:
    number, labeled = labeled_issue(repo)
    script = [ScriptStep.from_json(s) for s in FIX_STEPS]
    with FakeMessagesServer(script) as messages:
        step = Step(repo, tmp_path, messages)
        step.event("issues", labeled)
        messages.hold(2)  # after the plan and the edit: the run is mid-task
        proc = subprocess.Popen(step.command("run"), env=step.env, cwd=tmp_path,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
        try:
            assert messages.arrived(2, timeout=180), "the run never reached its third model call"
            os.killpg(proc.pid, signal.SIGKILL)  # the runner cancels the job
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            messages.release(drop=True)
        assert "working" in status_body(repo, number)
        final = step.run("finalize", "--job-status", "cancelled")  # the `if: always()` step
        assert final.returncode == 0, final.stderr[-2000:]
        body = status_body(repo, number)
        assert "queued" in body and "resumes it from the last checkpoint" in body
        assert "nightcrew:queued" in labels(repo, number)
        messages.add_steps([ScriptStep.from_json(s) for s in [*FIX_STEPS[2:], NO_FINDINGS]])
        chatter = commented(repo, number, "any news?")
        step.event("issue_comment", chatter)
        resumed = step.run("work")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    body = status_body(repo, number)
    assert "pull request opened" in body
    # Resumed, not redone: the plan was not asked for again.
    assert len([r for r in messages.requests if r.body["model"] == "claude-opus-4-5"]) == 1
    assert len([p for p in repo.pulls(OWNER, REPO)]) == 1


def test_outside_a_workflow_it_says_so_and_exits_nonzero(tmp_path: Path) -> None:
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "runner.cli", "action"], env=env,
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode != 0
    assert "GITHUB_EVENT_NAME" in done.stderr and "Traceback" not in done.stderr


REVISION_STEPS: list[dict[str, Any]] = [
    {"text": "- [ ] Document add\nAcceptance:\n- [ ] add has a docstring"},
    {"tool_calls": [{"name": "edit_file", "input": {
        "path": "calc.py", "search": "def add(a, b):\n",
        "replace": "def add(a, b):\n    \"\"\"The sum of a and b.\"\"\"\n"}}]},
    {"tool_calls": [{"name": "run_tests", "input": {}}]},
    {"tool_calls": [{"name": "finish", "input": {"summary": "add() has a docstring"}}]},
]


def test_a_review_comment_mentioning_nightcrew_on_its_pr_is_addressed_in_the_same_branch(
    repo: DevHub, tmp_path: Path,
) -> None:
    number, labeled = labeled_issue(repo)
    with FakeMessagesServer(fix_and_review()) as messages:
        step = Step(repo, tmp_path, messages)
        step.event("issues", labeled)
        assert step.run("run").returncode == 0
        [pull] = repo.pulls(OWNER, REPO)
        first_head = pull["head_sha"]
        repo.submit_review(OWNER, REPO, pull["number"], actor="octocat", event="COMMENT", comments=[
            {"path": "calc.py", "line": 2, "side": "RIGHT", "body": "@nightcrew add a docstring"}])
        [thread] = repo.review_threads(OWNER, REPO, pull["number"])
        [asked] = thread["comments"]
        event = example("pull_request_review_comment", "created")
        event["repository"].update(full_name=f"{OWNER}/{REPO}", name=REPO)
        event["repository"]["owner"].update(login=OWNER)
        event["pull_request"].update(number=pull["number"], state="open")
        event["pull_request"]["user"].update(login="github-actions[bot]", type="Bot")
        event["pull_request"]["head"].update(ref=pull["head"], sha=first_head)
        event["comment"].update(id=asked["id"], body=asked["body"], path="calc.py")
        event["comment"]["user"].update(login="octocat", type="User")
        event["sender"].update(login="octocat", type="User")
        event.pop("installation", None)
        step.event("pull_request_review_comment", event)
        messages.add_steps([ScriptStep.from_json(s) for s in [*REVISION_STEPS, NO_FINDINGS]])
        revised = step.run("run")
    assert revised.returncode == 0, revised.stderr[-3000:]
    [pull] = repo.pulls(OWNER, REPO)
    assert pull["head_sha"] != first_head  # the fix is a new commit on the same branch
    assert '"""The sum of a and b."""' in repo.file_at(OWNER, REPO, pull["head"], "calc.py")
    [thread] = repo.review_threads(OWNER, REPO, pull["number"])
    replies = [c["body"] for c in thread["comments"][1:]]
    assert any(r.startswith("Addressed in ") for r in replies), replies
    assert thread["resolved"] is False  # a person's thread is theirs to resolve
    assert f"Revised #{pull['number']}" in status_body(repo, number)
    assert repo.violations == []
