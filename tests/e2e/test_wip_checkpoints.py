"""Work in progress as a checkpoint: every agent step that changed the tree is pushed to a hidden
ref (``refs/nightcrew/wip/<N>``), so a run killed before its tests finished resumes with the edit
instead of asking the model for it again. End to end against the GitHub stand-in (real git over
smart HTTP), the real sandbox and the scripted model; the crash is a BaseException raised from
the model call, which nothing in the pipeline catches (as with a SIGKILL, nothing after it runs).
"""

from __future__ import annotations

import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from devhub import DevHub, Hold
from github_app.github import GitHost, GitHubApp
from github_app.tasks import TaskKey
from github_app.tracker.eventlog import EventLog, new_run_id
from runner.fakes.script import ScriptStep
from runner.fakes.scripted import ScriptedModel
from runner.pipeline.live_status import StatusReporter
from runner.pipeline.run import TaskConfig, TaskOutcome, WorkSaver, run, wip_ref
from runner.sandbox import Sandbox, SandboxPolicy
from runner.sandbox.bwrap import BwrapSandbox
from runner.workspace import Workspaces
from tests.e2e.test_task_outcomes import FILES, FIX, KEY, OWNER, PLAN, REPO, Crash, CrashAt, call

pytestmark = pytest.mark.e2e


class Watched:
    """The model, and a look at the world before each call it answers."""

    def __init__(self, inner: Any, look: Callable[[], None]) -> None:
        self.inner, self.look, self.model = inner, look, inner.model

    def complete(self, **kwargs: Any) -> Any:
        self.look()
        return self.inner.complete(**kwargs)


class Task:
    """One issue on the stand-in and the means to run (and crash) the pipeline on it."""

    def __init__(self, hub: DevHub, key: str, tmp_path: Path, files: dict[str, str] | None = None) -> None:
        hub.create_repo(OWNER, REPO, files or FILES)
        hub.install(OWNER)
        self.hub = hub
        self.number = hub.create_issue(OWNER, REPO, "add() subtracts", "`add(2, 3)` is -1, not 5.")
        self.key = TaskKey(OWNER, REPO, self.number)
        app = GitHubApp(hub.app_id, key, hub.url)
        self.host: GitHost = app.host(app.installation_for(OWNER, REPO))
        self.config = TaskConfig(data_dir=tmp_path / "data", checkpoint_key=KEY)
        self.status_id: int | None = None

    def run(self, steps: list[dict[str, Any]], *, crash_at: int | None = None, resume: bool = False,
            look: Callable[[], None] | None = None) -> tuple[TaskOutcome | None, ScriptedModel]:
        """Run with this script; ``crash_at``: the worker dies at that model call (1-based);
        ``resume``: a person's `/nightcrew retry` or `resume`; ``look`` before each model call."""
        model = ScriptedModel([ScriptStep.from_json(s) for s in steps], model="claude-sonnet-4-5")
        client: Any = CrashAt(model, crash_at) if crash_at else model
        client = Watched(client, look) if look else client

        def sandbox_for(workspace: Path, *, network: bool = False) -> Sandbox:
            return BwrapSandbox(workspace, SandboxPolicy())

        try:
            outcome = run(self.key, host=self.host, models=lambda _m: client,
                          sandbox_for=sandbox_for, config=self.config, status_comment=self.status_id,
                          resume=resume)
        except Crash:
            outcome = None
        if self.status_id is None:
            issue = self.hub.issue(OWNER, REPO, self.number)
            self.status_id = next(c["id"] for c in issue["comments"] if "nightcrew:status" in c["body"])
        return outcome, model

    def git(self, *args: str) -> str:
        return self.hub.git.git(OWNER, REPO, *args).decode().strip()

    def wip(self) -> str | None:
        """The WIP commit on the stand-in, if any."""
        return self.hub.git.resolve(OWNER, REPO, wip_ref(self.key))

    def branch_subjects(self) -> list[str]:
        if self.key.branch not in self.hub.git.branches(OWNER, REPO):
            return []
        return self.git("log", "--format=%s", f"main..{self.key.branch}").splitlines()


def first_brief(model: ScriptedModel) -> str:
    return str(model.requests[0]["messages"][0]["content"][0]["text"])


def test_a_run_killed_before_its_tests_finished_resumes_with_the_edit(
    devhub: DevHub, app_private_key: str, tmp_path: Path,
) -> None:
    task = Task(devhub, app_private_key, tmp_path)
    # Run 1: plans, edits, and dies asking for the next step (its tests never ran).
    outcome, _ = task.run([PLAN, FIX, call("run_tests")], crash_at=3)
    assert outcome is None
    wip = task.wip()
    assert wip is not None and task.branch_subjects() == []  # saved beside the branch, not on it
    main = task.git("rev-parse", "main")
    assert task.git("rev-parse", f"{wip}^") == main
    assert "return a + b" in task.git("show", f"{wip}:calc.py")

    # Run 2: the edit is back in the tree before the first model step, so nobody asks for it.
    outcome, model = task.run([call("run_tests"), call("finish", summary="add adds")])
    assert outcome is not None and outcome.state == "pr_opened"
    assert model.remaining == 0 and len(model.requests) == 2
    brief = first_brief(model)
    assert "restored in the working tree" in brief and "`calc.py`" in brief
    assert "return a + b" in brief and "return a - b" not in brief  # the context shows the edit
    # The PR's branch has the green checkpoint only; the green push deleted the WIP.
    assert task.branch_subjects() == [f"nightcrew: checkpoint of #{task.number} (tests pass)"]
    assert task.wip() is None
    [pull] = devhub.pulls(OWNER, REPO)
    assert pull["head"] == task.key.branch


def test_only_steps_that_change_the_tree_are_pushed(
    devhub: DevHub, app_private_key: str, tmp_path: Path,
) -> None:
    task = Task(devhub, app_private_key, tmp_path)
    pushes = devhub.hold(Hold("POST", rf"/{OWNER}/{REPO}\.git/git-receive-pack", count=None,
                              refs="refs/nightcrew/wip/.*", delay=0))
    steps: list[dict[str, Any]] = [
        PLAN, call("read_file", path="calc.py"), FIX, call("read_file", path="calc.py"),
             call("run_command", command="true"), call("run_tests"),
             call("finish", summary="add adds")]
    outcome, _ = task.run(steps)
    assert outcome is not None and outcome.state == "pr_opened"
    # The edit's WIP push, and the green commit's push that deletes it (the same round trip);
    # the reads, the command that changed nothing and the test run pushed nothing.
    assert pushes.held == 2
    assert task.wip() is None
    assert task.branch_subjects() == [f"nightcrew: checkpoint of #{task.number} (tests pass)"]


def test_a_change_waiting_for_approval_is_not_pushed_as_work_in_progress(
    devhub: DevHub, app_private_key: str, tmp_path: Path,
) -> None:
    task = Task(devhub, app_private_key, tmp_path)
    steps: list[dict[str, Any]] = [
        PLAN, FIX, call("edit_file", path="requirements.txt", search="", replace="numpy==2.1\n"),
        call("finish", summary="fixed add, pinned numpy")]
    outcome, _ = task.run(steps)
    assert outcome is not None and outcome.state == "needs_approval"
    wip = task.wip()
    assert wip is not None  # the fix alone was saved; the dependency change after it was not
    assert task.git("ls-tree", "--name-only", wip, "requirements.txt") == ""
    assert "return a + b" in task.git("show", f"{wip}:calc.py")


def test_a_secret_never_reaches_the_hidden_ref(
    devhub: DevHub, app_private_key: str, tmp_path: Path,
) -> None:
    task = Task(devhub, app_private_key, tmp_path)
    canary = "ghp_" + "Qx9" * 12  # built at run time
    steps = [PLAN, call("edit_file", path="settings_local.py", search="", replace=f'TOKEN = "{canary}"\n'),
             call("finish", summary="x")]
    outcome, _ = task.run(steps)
    assert outcome is not None and outcome.state == "failed"
    assert task.wip() is None
    objects = subprocess.run(["git", "--git-dir", str(devhub.git.path(OWNER, REPO)), "cat-file",
                              "--batch-all-objects", "--batch"], capture_output=True, check=True).stdout
    assert canary.encode() not in objects


def test_a_stale_wip_is_not_restored_and_goes_with_the_next_push(
    devhub: DevHub, app_private_key: str, tmp_path: Path,
) -> None:
    task = Task(devhub, app_private_key, tmp_path)
    # Run 1: the fix goes green (a commit), then an untested edit (a WIP on it), then it dies.
    outcome, _ = task.run([PLAN, FIX, call("run_tests"),
                           call("edit_file", path="NOTES.md", search="", replace="wip\n"),
                           call("finish", summary="x")], crash_at=5)
    assert outcome is None
    green = task.git("rev-parse", task.key.branch)
    wip = task.wip()
    assert wip is not None and task.git("rev-parse", f"{wip}^") == green
    # A person pushes to the branch meanwhile: the WIP no longer sits on its head.
    theirs = task.git("commit-tree", "-p", green, "-m", "a person's commit", f"{green}^{{tree}}")
    task.git("update-ref", f"refs/heads/{task.key.branch}", theirs)

    outcome, model = task.run([call("run_tests"), call("finish", summary="add adds")])
    assert outcome is not None and outcome.state == "pr_opened"
    assert "restored" not in first_brief(model)
    assert task.git("ls-tree", "--name-only", task.key.branch, "NOTES.md") == ""
    assert task.wip() is None  # deleted with the publishing push


def test_a_retry_after_a_failure_drops_the_failed_runs_work_in_progress(
    devhub: DevHub, app_private_key: str, tmp_path: Path,
) -> None:
    task = Task(devhub, app_private_key, tmp_path)
    # Run 1 edits the wrong file, then fails the same test again and again: halted, failed.
    outcome, _ = task.run([PLAN, call("edit_file", path="NOTES.md", search="", replace="wrong\n"),
                           *[call("run_tests") for _ in range(4)]])
    assert outcome is not None and outcome.state == "failed" and task.wip() is not None
    # `/nightcrew retry`: it starts from the branch (here: main), not from the failed edit, and
    # drops that at once (a crash of the retry must not take it up either).
    wips: list[str | None] = []
    outcome, model = task.run([FIX, call("run_tests"), call("finish", summary="add adds")],
                              resume=True, look=lambda: wips.append(task.wip()))
    assert outcome is not None and outcome.state == "pr_opened"
    assert wips[0] is None
    assert "restored" not in first_brief(model)
    assert task.git("ls-tree", "--name-only", task.key.branch, "NOTES.md") == ""
    assert task.wip() is None


def test_a_wip_step_costs_little_against_the_stand_in(
    devhub: DevHub, app_private_key: str, tmp_path: Path,
) -> None:
    """What saving work in progress adds to an edit step (and to a step that changed nothing)."""
    task = Task(devhub, app_private_key, tmp_path)
    repo = task.host.repository(OWNER, REPO)
    with Workspaces(tmp_path / "data").checkout(clone_url=repo.clone_url, token=task.host.token(),
                                                name="bench", branch=task.key.branch) as workspace:
        events = EventLog(tmp_path / "data", str(task.key), new_run_id(), redis=None)
        reporter = StatusReporter(task.host, task.key, None, KEY, events)
        outcome = TaskOutcome(str(task.key), "running", task.key.branch, reporter.comment_id)
        saver = WorkSaver(task.key, workspace, task.host.token, reporter, outcome)
        saver.start()
        edits, idle = [], []
        for n in range(8):
            (workspace.path / "calc.py").write_text(f"def add(a, b):\n    return a + b + {n}\n")
            started = time.monotonic()
            saver.step()
            edits.append(time.monotonic() - started)
            assert task.git("show", f"{task.wip()}:calc.py").endswith(f"+ {n}")
            started = time.monotonic()
            saver.step()  # nothing changed since: nothing pushed
            idle.append(time.monotonic() - started)
        assert len(saver.wip_seconds) == 8
    minting = []
    for _ in range(5):  # part of every push: a freshly minted installation token
        started = time.monotonic()
        task.host.token()
        minting.append(time.monotonic() - started)
    edit_ms, idle_ms = statistics.median(edits) * 1000, statistics.median(idle) * 1000
    print(f"WIP step cost against the stand-in: edit step median {edit_ms:.0f} ms "
          f"(max {max(edits) * 1000:.0f} ms; of it minting the token "
          f"{statistics.median(minting) * 1000:.0f} ms), unchanged step median {idle_ms:.0f} ms")
    assert edit_ms < 2000 and idle_ms < 500
