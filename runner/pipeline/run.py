"""One task, start to finish: workspace → tests before → agent → tests after → push → PR.

Collaborators come in as seams (``GitHost``, ``ModelClient``, a sandbox factory), so the same
pipeline runs in the worker, the demo and the tests.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, Protocol, cast

from unidiff.errors import UnidiffParseError

from github_app import logs
from github_app.errors import NeedsHuman, Retryable, TaskFailed
from github_app.github import GitHost, Issue, ReviewHost
from github_app.ingress.routing import parse_slash_command
from github_app.repo_config import RepoConfig, RepoConfigError, load_repo_config
from github_app.tasks import TaskKey
from github_app.tracker import lifecycle
from github_app.tracker.checkpoint import Checkpoint, read_block
from github_app.tracker.eventlog import EventLog, new_run_id
from github_app.tracker.lifecycle import State
from github_app.tracker.record import PlanStep, RunUpdate
from runner.agent.failure_log import FailureLog, FailureRecord
from runner.agent.loop import Agent, AgentResult, LoopLimits, Plan, Roles, StepEvent
from runner.agent.tools import Toolbox
from runner.context import ContextPackage, IssueText, build_context
from runner.gates.approval import Change, ChangeStatus, Gate, classify_changes, gate
from runner.gates.budget import BudgetLimits, RunBudget
from runner.gates.secret_scan import SecretsFound, check_before_push
from runner.gates.test_gate import GateVerdict, judge
from runner.model import ModelClient, ModelKeyRefused
from runner.model.patience import ModelWait, PatientModel, WaitPolicy, WaitStopped
from runner.pipeline.live_status import StatusReporter
from runner.pipeline.repo_setup import run_setup
from runner.review.feedback import Revision, from_ledger, from_people
from runner.review.task import SummaryComment
from runner.sandbox import Sandbox
from runner.testrun import TestCommand, TestReport, detect_test_command, run_tests
from runner.workspace import GitTransportError, Workspace, WorkspaceError, Workspaces

log = logs.get("nightcrew.task")


class SandboxFactory(Protocol):
    """A sandbox over a workspace; ``network`` only for the setup phase."""

    def __call__(self, workspace: Path, *, network: bool = False) -> Sandbox: ...


@dataclass
class TaskOutcome:
    task: str
    state: State
    branch: str
    status_comment: int
    pr_number: int | None = None
    pr_url: str | None = None
    tests_before: TestReport | None = None
    tests_after: TestReport | None = None
    tokens: int = 0
    cost_usd: float = 0.0
    steps: int = 0
    commits: list[str] = field(default_factory=list)
    summary: str = ""
    waiting_for: str | None = None  # "model_key": paused until a model API key works again


@dataclass(frozen=True)
class TaskConfig:
    data_dir: Path
    test_timeout_s: float = 600.0
    planner_model: str = "claude-opus-4-5"
    executor_model: str = "claude-sonnet-4-5"
    summarizer_model: str = "claude-haiku-4-5"
    checkpoint_key: bytes | None = None  # signs the status comment's state block; None = no block
    model_wait_max_s: float = 30 * 60.0  # one model API outage is waited out this long, then pause
    run_url: str | None = None  # where this run can be watched (a GitHub Actions run), shown
    pr_notice: str = ""  # said under an opened pull request (e.g. why its CI will not start)


ModelFactory = Callable[[str], ModelClient]


class TaskControls(Protocol):
    """What people asked in the thread (``github_app.queue.controls`` in Redis, in the worker)."""

    def stop_requested(self) -> tuple[Literal["cancel", "pause"], str] | None: ...
    def render_requested(self) -> bool: ...
    def take_budget(self) -> float: ...
    def approved(self) -> set[str]: ...
    def clear_stop(self) -> None: ...


class NoControls:
    """Nobody steers: local runs and tests."""

    def stop_requested(self) -> tuple[Literal["cancel", "pause"], str] | None:
        return None

    def render_requested(self) -> bool:
        return False

    def take_budget(self) -> float:
        return 0.0

    def approved(self) -> set[str]:
        return set()

    def clear_stop(self) -> None:
        return None


class Progress(Protocol):
    """Where a run's progress goes: the status comment in the worker, the terminal locally."""

    def __call__(self, change: RunUpdate | None = None, *, force: bool = False) -> None: ...


def run(
    task: TaskKey, *, host: GitHost, models: ModelFactory, sandbox_for: SandboxFactory,
    config: TaskConfig, status_comment: int | None = None, controls: TaskControls | None = None,
    events: EventLog | None = None, resume: bool = False, fresh: bool = False,
    revise_pr: int | None = None,
) -> TaskOutcome:
    """Run one task; report on the issue whatever happens.

    A run after a crash (or a ``/nightcrew resume``) starts from the signed checkpoint under the
    status comment: same comment, same branch and commits, same plan, the budget as spent.
    ``revise_pr``: a revision of that nightcrew PR — the task's branch taken up from its head,
    the open review feedback as the brief, the same PR updated (``runner.review.feedback``).
    """
    controls = controls or NoControls()
    events = events or EventLog(config.data_dir, str(task), new_run_id(), redis=None)
    reporter = StatusReporter(host, task, status_comment, config.checkpoint_key, events)
    checkpoint = None if fresh else _read_checkpoint(host, task, reporter, config, events,
                                                     requested=resume)
    outcome = TaskOutcome(str(task), "running", task.branch, reporter.comment_id)
    if checkpoint is not None:
        _restore(reporter, outcome, checkpoint)
    reporter.set_state_label("running")
    reporter.start(resumed=checkpoint is not None,
                   head_sha=checkpoint.head_sha if checkpoint else None,
                   **({"run_url": config.run_url} if config.run_url else {}))
    reporter.update(RunUpdate(state="running", detail="Resuming from the last checkpoint…"
                              if checkpoint else "Checking out the repository…"), force=True)
    try:
        revision = _revision(host, task, revise_pr, config) if revise_pr else None
        if revision is not None and revision.empty:
            _finish(reporter, outcome, "pr_opened", f"Nothing to revise on #{revise_pr}: no open "
                    "review comment asks for a change.")
            return outcome
        _run(task, host, models, sandbox_for, config, reporter, outcome, controls, checkpoint,
             fresh=fresh, revision=revision)
    except TaskFailed as exc:
        _finish(reporter, outcome, "failed", str(exc))
    except Retryable as exc:
        # GitHub or a git transport is throttling or down longer than the adapter waits: not the
        # task's failure.
        # The job waits and runs again from the checkpoint (runner.worker.jobs); nothing is marked.
        events.emit("error", message=str(exc)[:500], fatal=False)
        raise
    except Exception as exc:
        events.emit("error", message=f"{type(exc).__name__}: {exc}"[:500], fatal=True)
        _finish(reporter, outcome, "failed", f"nightcrew hit an internal error ({type(exc).__name__}).")
        raise
    return outcome


def _run(
    task: TaskKey, host: GitHost, models: ModelFactory, sandbox_for: SandboxFactory,
    config: TaskConfig, reporter: StatusReporter, outcome: TaskOutcome, controls: TaskControls,
    checkpoint: Checkpoint | None = None, *, fresh: bool = False,
    revision: Revision | None = None,
) -> None:
    issue = host.issue(task)
    repo = host.repository(task.owner, task.repo)
    repo_config = _repo_config(host, task)
    token = host.token()
    memory = FailureLog(config.data_dir, task.owner, task.repo)
    with Workspaces(config.data_dir).checkout(
        clone_url=repo.clone_url, token=token, name=task.job_id, branch=task.branch,
        base_branch=repo.default_branch,
    ) as workspace:
        reporter.base_sha = workspace.base_sha
        # Without a checkpoint key no run resumes, so no work in progress is kept either.
        saver = WorkSaver(task, workspace, host.token, reporter, outcome,
                          wip=config.checkpoint_key is not None)
        publishing = checkpoint is not None and checkpoint.state == "publishing"
        # A run after an earlier one may find its work in progress (an edit not yet tested):
        # taken up after a crash or a pause, dropped at once by a retry or a fresh start (before
        # this run's own checkpoint says "running" and a crash of it would take it up after all).
        wip = saver.fetch(token) if (checkpoint is not None or fresh) and not publishing else None
        if wip is not None and (checkpoint is None or checkpoint.state not in _WIP_RESUMES):
            saver.discard()
            wip = None
        _setup(task, workspace, repo_config, sandbox_for, config, reporter)
        sandbox = sandbox_for(workspace.path)
        command = detect_test_command(workspace.path, repo_config.test)
        if command is None:
            raise TaskFailed("No test command found for this repository; nightcrew opens PRs "
                             "only when tests pass.")
        before = run_tests(sandbox, command, timeout=config.test_timeout_s)
        outcome.tests_before = before
        reporter.update(RunUpdate(detail="Planning the fix…", tests_before=_counts(before)), force=True)
        if publishing:
            assert checkpoint is not None
            # The agent had finished before the crash: publish its work, do not redo it.
            result = AgentResult("finished", checkpoint.summary, 0, plan=_resumed_plan(checkpoint))
        else:
            granted = set(checkpoint.approved) if checkpoint else set()
            # A change that waits for approval is not pushed, not even as a checkpoint.
            saver.allowed = lambda: approval_gate(
                workspace, repo_config, granted | controls.approved()) is None
            restored = saver.restore(wip) if wip is not None else []
            saver.start()
            result = run_agent(issue, workspace, sandbox, command, models, config, repo_config,
                               reporter.update, outcome, memory, controls, on_green=saver.green,
                               on_change=saver.step, resume_from=checkpoint, restored=restored,
                               revision=revision)
        if result.outcome in ("cancelled", "paused"):
            controls.clear_stop()
            verb = "resume" if result.outcome == "paused" else "retry"
            kept = f" Work that passed the tests is on branch `{task.branch}`." if outcome.commits else ""
            _finish(reporter, outcome, result.outcome,
                    f"{_sentence(result.stop_reason)}.{kept} Say `/nightcrew {verb}` to go on.")
            return
        if result.outcome == "needs_approval":
            _finish(reporter, outcome, "needs_approval",
                    f"{result.question}\n\nThe change waiting for approval was not pushed.")
            return
        if result.outcome not in ("finished", "paused_budget"):
            memory.record(_failure_record(task, result))
            raise TaskFailed(f"The agent stopped: {result.stop_reason}.")
        after = run_tests(sandbox, command, timeout=config.test_timeout_s)
        outcome.tests_after = after
        reporter.update(RunUpdate(tests_after=_counts(after)))
        if result.outcome == "paused_budget":
            _pause_for_budget(task, workspace, host.token, issue, result, reporter, outcome, saver)
            return
        if revision is not None:
            _publish_revision(task, host, workspace, issue, result, reporter, outcome, saver, revision)
            return
        _publish(task, host, repo.default_branch, workspace, host.token, issue, result, repo_config,
                 reporter, outcome, saver, notice=config.pr_notice)


def _pause_for_budget(
    task: TaskKey, workspace: Workspace, token: TokenSource, issue: Issue, result: AgentResult,
    reporter: StatusReporter, outcome: TaskOutcome, saver: WorkSaver,
) -> None:
    """Wind down: keep what passes on the task branch, then stop as paused (resumable)."""
    after = outcome.tests_after
    kept = ""
    if after is not None and after.green and workspace.changed_files():
        sha = workspace.commit_all(f"WIP #{task.number}: {issue.title} (paused: budget)")
        if sha:
            outcome.commits.append(sha)
            push_checked(workspace, token, delete=saver.superseded())
            saver.remote_wip = False
            reporter.update(RunUpdate(commits=tuple(outcome.commits)))
            kept = f" The work so far passes the tests and is on branch `{task.branch}`."
    _finish(reporter, outcome, "paused",
            f"Paused: the budget is used up ({result.stop_reason}).{kept} Raise it with "
            "`/nightcrew budget +$N` to continue.")


TokenSource = Callable[[], str | None]  # mints an installation token (they expire after an hour)


def push_checked(workspace: Workspace, token: TokenSource, *, delete: Sequence[str] = ()) -> None:
    """Push the task branch, unless the change adds something that looks like a secret.

    Each push gets a freshly minted token: the one the run started with may have expired (a
    long run, or GitHub revoking it) — the clone's token is never reused for a push.
    ``delete``: hidden refs (a superseded work in progress) removed in the same push.
    """
    _scan(workspace)
    workspace.push(token(), delete=delete)


def push_wip_checked(workspace: Workspace, token: TokenSource, ref: str, message: str) -> str:
    """Push the work tree as a commit on top of the branch head to the hidden ``ref`` (forced),
    under the same rules as the branch: the secret scan first, a freshly minted token."""
    _scan(workspace)
    sha = workspace.wip_commit(message)
    workspace.push_ref(sha, ref, token())
    return sha


def _scan(workspace: Workspace) -> None:
    """Refuse to push a change that adds something that looks like a secret."""
    try:
        check_before_push(workspace.diff())
    except SecretsFound as exc:
        raise TaskFailed(str(exc)) from None  # the report names places and kinds, never the secret
    except UnidiffParseError:
        raise TaskFailed("The change could not be scanned for secrets, so nothing was pushed.") from None


def wip_ref(task: TaskKey) -> str:
    """The hidden ref holding a task's work in progress (never a branch: not in any PR)."""
    return f"refs/nightcrew/wip/{task.number}"


# A resumed run takes up the work in progress of a run that crashed or was paused, or that
# waits for an approval; after a failure or a cancel the retry starts from the last green commit.
_WIP_RESUMES = lifecycle.WIP_RESUMES


class WorkSaver:
    """Every agent step that changed the work is a checkpoint a resumed run finds.

    A step whose tests pass becomes a commit on the task branch and a new signed checkpoint
    (``green``). Any other step that changed the work tree (``step``) becomes a WIP commit on
    ``wip_ref``: its parent is the branch head, it is force-pushed, and the branch and the PR
    never see it. A resumed run fetches it and, when its parent is still the branch head it
    starts from, restores its tree uncommitted (``restore``), so the next model step sees the
    edit instead of asking for it again. A green commit supersedes the WIP: the same push
    deletes it. Nothing is pushed while the change waits for approval (``allowed``).
    """

    def __init__(self, task: TaskKey, workspace: Workspace, token: TokenSource,
                 reporter: StatusReporter, outcome: TaskOutcome, *, wip: bool = True) -> None:
        self.task, self.workspace, self.token = task, workspace, token
        self.wip = wip  # False: green commits only
        self.reporter, self.outcome = reporter, outcome
        self.ref = wip_ref(task)
        self.allowed: Callable[[], bool] = lambda: True
        self.saved_tree: str | None = None  # the tree of the last commit or WIP pushed
        self.remote_wip = False  # whether the remote holds a WIP of this task (as far as known)
        self.wip_seconds: list[float] = []  # what each WIP save took, from the tree's hash on

    def fetch(self, token: str | None) -> str | None:
        """The remote's WIP commit of this task, if any; a failed fetch only costs the WIP."""
        if not self.wip:
            return None
        try:
            sha = self.workspace.fetch_ref(self.ref, token)
        except GitTransportError:
            raise  # GitHub's git is down: wait and run again, rather than lose the work in progress
        except WorkspaceError as exc:
            log.warning("task.wip_fetch_failed", task=str(self.task), error=str(exc)[:300])
            return None
        self.remote_wip = sha is not None
        return sha

    def restore(self, sha: str) -> list[str]:
        """Take up the WIP ``sha`` if it sits on the branch head; the files it changed."""
        try:
            restored = self.workspace.restore(sha)
        except WorkspaceError as exc:  # a WIP that cannot be restored is a step to do again
            log.warning("task.wip_restore_failed", task=str(self.task), error=str(exc)[:300])
            return []
        if restored is None:  # superseded: the next branch push deletes it
            log.info("task.wip_stale", task=str(self.task), wip=sha)
            return []
        log.info("task.wip_restored", task=str(self.task), wip=sha, files=restored)
        return restored

    def discard(self) -> None:
        """Delete the remote WIP now: this run starts from the branch, not from it."""
        try:
            self.workspace.delete_ref(self.ref, self.token())
            self.remote_wip = False
        except WorkspaceError as exc:  # left behind, the next branch push deletes it
            log.warning("task.wip_discard_failed", task=str(self.task), error=str(exc)[:300])

    def start(self) -> None:
        """The agent starts: what the work tree holds now counts as saved."""
        self.saved_tree = self.workspace.tree() if self.wip else None

    def superseded(self) -> tuple[str, ...]:
        """Hidden refs the next branch push deletes: the WIP, once a commit holds the work."""
        return (self.ref,) if self.remote_wip else ()

    def green(self) -> None:
        """Tests just passed: the work so far becomes a pushed commit and a new checkpoint."""
        if not self.allowed():
            return
        sha = self.workspace.commit_all(f"nightcrew: checkpoint of #{self.task.number} (tests pass)")
        if sha is None:
            return  # nothing new since the last checkpoint
        push_checked(self.workspace, self.token, delete=self.superseded())
        self.remote_wip = False
        self.saved_tree = self.workspace.tree() if self.wip else None
        self.outcome.commits.append(sha)
        self.reporter.update(RunUpdate(commits=tuple(self.outcome.commits)), force=True)

    def step(self) -> None:
        """A step that may have changed the work tree: push it as the WIP if it did."""
        if not self.wip:
            return
        started = time.monotonic()
        tree = self.workspace.tree()
        if tree == self.saved_tree or not self.allowed():
            return
        push_wip_checked(self.workspace, self.token, self.ref,
                         f"nightcrew: work in progress on #{self.task.number} (not tested)")
        self.remote_wip, self.saved_tree = True, tree
        self.wip_seconds.append(time.monotonic() - started)
        log.info("task.wip_pushed", task=str(self.task), ms=round(self.wip_seconds[-1] * 1000))


# A crash leaves the checkpoint in one of these states; a person's resume/retry may pick up more.
_AFTER_CRASH = lifecycle.ACTIVE
_ON_REQUEST = lifecycle.ACTIVE | lifecycle.STOPPED


def _read_checkpoint(
    host: GitHost, task: TaskKey, reporter: StatusReporter, config: TaskConfig, events: EventLog,
    *, requested: bool,
) -> Checkpoint | None:
    """The signed state under the status comment, if this run should continue from it."""
    if config.checkpoint_key is None:
        return None
    body = next((c.body for c in host.list_comments(task) if c.id == reporter.comment_id), None)
    if body is None:
        return None
    read = read_block(body, config.checkpoint_key, task=str(task))
    if read.problem is not None:
        events.emit("error", message=f"checkpoint block {read.problem}; ignored")
        reporter.view = replace(reporter.view, note=f"The saved state under this comment was "
                                f"{read.problem} and was ignored; the task starts from its branch.")
        return None
    checkpoint = read.checkpoint
    if checkpoint is None or checkpoint.state not in (_ON_REQUEST if requested else _AFTER_CRASH):
        return None
    return checkpoint


def _restore(reporter: StatusReporter, outcome: TaskOutcome, checkpoint: Checkpoint) -> None:
    """What the issue showed before the crash, so the status comment carries on from it."""
    reporter.base_sha, reporter.budget = checkpoint.base_sha, dict(checkpoint.budget)
    spent = checkpoint.budget.get("spent") if isinstance(checkpoint.budget, dict) else None
    if isinstance(spent, dict) and isinstance(spent.get("wall_s"), int | float):
        reporter.elapsed_before = float(spent["wall_s"])
    reporter.pr_number, reporter.approved = checkpoint.pr_number, set(checkpoint.approved)
    commits = (checkpoint.head_sha,) if checkpoint.head_sha else ()
    outcome.commits = list(commits)
    reporter.view = replace(reporter.view, step=checkpoint.step, commits=commits,
                            plan=tuple(PlanStep(t, d) for t, d in checkpoint.plan))


def _failure_record(task: TaskKey, result: AgentResult) -> FailureRecord:
    plan = result.plan.render() if result.plan else ""
    return FailureRecord(task=f"issue #{task.number}", at=datetime.now(UTC).isoformat(timespec="seconds"),
                         tried=plan[:400], failed=result.outcome, why=result.stop_reason[:400])


def _repo_config(host: GitHost, task: TaskKey) -> RepoConfig:
    """The repo's config from its default branch (never from the task's own branch)."""
    try:
        return load_repo_config(host, task.owner, task.repo)
    except RepoConfigError as exc:
        raise TaskFailed(f"`.github/nightcrew.yml` is invalid: {exc}") from None


def _setup(
    task: TaskKey, workspace: Workspace, repo_config: RepoConfig, sandbox_for: SandboxFactory,
    config: TaskConfig, reporter: StatusReporter,
) -> None:
    """Run the repo's setup commands with the network on (no credentials), or reuse the cache."""
    if not repo_config.setup:
        return
    reporter.update(RunUpdate(detail="Setting up the repository (network on, no credentials)…"),
                    force=True)
    result = run_setup(
        workspace.path, list(repo_config.setup), lambda path: sandbox_for(path, network=True),
        config.data_dir / "setup-cache" / task.owner / task.repo,
    )
    if not result.ok:
        raise TaskFailed(result.failure_report())
    workspace.exclude(result.paths)  # setup output is never part of the change


def run_agent(
    issue: Issue, workspace: Workspace, sandbox: Sandbox, command: TestCommand,
    models: ModelFactory, config: TaskConfig, repo_config: RepoConfig, progress: Progress,
    outcome: TaskOutcome, memory: FailureLog, controls: TaskControls | None = None,
    on_green: Callable[[], None] | None = None, resume_from: Checkpoint | None = None,
    on_change: Callable[[], None] | None = None, restored: Sequence[str] = (),
    revision: Revision | None = None,
) -> AgentResult:
    """Gather the context, then run the loop under the repo's budget, limits and approval gate.

    Shared by the worker (progress = the status comment) and ``nightcrew run`` (the terminal).
    """
    policy = repo_config.agent
    tools = Toolbox(workspace.path, sandbox, command, test_timeout=config.test_timeout_s,
                    output_limit=policy.log_truncation_limit)
    before = outcome.tests_before
    # A revision's context is found from the review comments too: they name the files and lines.
    asked = issue.body if revision is None else f"{issue.body}\n\n{revision.brief}"
    context = build_context(
        workspace.path, IssueText(issue.title, asked, author=issue.author,
                                  origin=f"issue #{issue.number}"),
        token_budget=repo_config.context.token_budget,
        max_files=repo_config.context.max_files_per_task, rules=repo_config.rules,
        memory=memory.render(), test_output=None if before is None or before.green else before.output,
    )
    removed = sum(context.removed.values())
    note = f"Hidden text was removed from the issue before the agent saw it ({removed} part(s))." if removed else ""
    controls = controls or NoControls()
    budget = _budget(repo_config, resume_from)
    granted = controls.take_budget()
    if granted > 0:
        budget.raise_limit(usd=granted)
    approved = controls.approved() | set(resume_from.approved if resume_from else ())
    progress(RunUpdate(approved_kinds=tuple(sorted(approved))))  # in the checkpoint: survives a lost Redis
    limits = LoopLimits(max_iterations=min(policy.max_iterations, repo_config.budget.steps),
                        log_truncation_limit=policy.log_truncation_limit,
                        repeat_failure_limit=policy.repeat_failure_limit,
                        compact_at_tokens=policy.compact_at_tokens)

    def on_step(event: StepEvent) -> None:
        outcome.steps, outcome.tokens, outcome.cost_usd = (
            event.step, event.usage.total_tokens, event.cost_usd
        )
        progress(RunUpdate(step=event.step, max_steps=event.max_steps, tokens=outcome.tokens,
                           cost_usd=event.cost_usd, detail=f"Last action: `{event.action}`",
                           plan_item=event.plan_item, plan=_plan_view(agent.result.plan),
                           budget_snapshot=budget.snapshot(), note=event.note or None),
                 force=controls.render_requested())

    def waiting(wait: ModelWait | None) -> None:
        if wait is not None:  # shown until the next step's action replaces it
            progress(RunUpdate(detail=wait.describe()), force=True)

    def patient(model: ModelClient) -> ModelClient:
        return PatientModel(model, WaitPolicy(max_total_s=config.model_wait_max_s), on_wait=waiting,
                            stop=lambda: controls.stop_requested() is not None)

    progress(RunUpdate(note=note, budget_usd=budget.limits.usd))
    agent = Agent(_roles(models, config, repo_config, patient), tools, limits=limits, budget=budget,
                  gate=lambda: approval_gate(workspace, repo_config, approved | controls.approved()),
                  on_step=on_step,
                  stop_check=controls.stop_requested, on_green=on_green, on_change=on_change,
                  plan=_resumed_plan(resume_from) or True)
    try:
        result = agent.run(_brief(issue, context, before, resume_from, restored, revision))
    except NeedsHuman as exc:  # the model API: an outage past the wait, every key refused, a stop
        result = _stopped_by(exc, agent.result, controls, outcome)
    outcome.steps, outcome.tokens, outcome.cost_usd = (
        result.steps, result.usage.total_tokens, result.cost_usd)
    return result


def _stopped_by(exc: NeedsHuman, result: AgentResult, controls: TaskControls,
                outcome: TaskOutcome) -> AgentResult:
    """The agent's result so far, ended as paused (or as the stop a person asked for)."""
    stop = controls.stop_requested() if isinstance(exc, WaitStopped) else None
    if stop is not None:
        kind, actor = stop
        result.outcome = "cancelled" if kind == "cancel" else "paused"
        result.stop_reason = f"{result.outcome} by @{actor} while waiting for the model API"
        return result
    result.outcome = "paused"
    if isinstance(exc, ModelKeyRefused):
        outcome.waiting_for = "model_key"
        result.stop_reason = ("paused: the model API refused every configured key. The task goes "
                              "on by itself once a key works (`nightcrew doctor` checks them)")
    else:
        result.stop_reason = f"paused: {exc}"
    return result


def _budget(repo_config: RepoConfig, resume_from: Checkpoint | None) -> RunBudget:
    """The repo's budget, or the one a resumed task had spent from (never a fresh start)."""
    if resume_from is not None and resume_from.budget:
        try:
            return RunBudget.from_snapshot(dict(resume_from.budget))
        except ValueError:
            log.warning("task.bad_budget_snapshot", task=resume_from.task)
    return RunBudget(BudgetLimits.from_config(repo_config.budget))


def _resumed_plan(resume_from: Checkpoint | None) -> Plan | None:
    if resume_from is None or not resume_from.plan:
        return None
    return Plan([text for text, _ in resume_from.plan], [],
                {n for n, (_, done) in enumerate(resume_from.plan, 1) if done})


def _roles(models: ModelFactory, config: TaskConfig, repo_config: RepoConfig,
           wrap: Callable[[ModelClient], ModelClient] = lambda model: model) -> Roles:
    """Planner, executor and summarizer: the repo's choice, else the server's defaults."""
    routing = repo_config.models
    return Roles(planner=wrap(models(routing.model_for("planner", config.planner_model))),
                 executor=wrap(models(routing.model_for("executor", config.executor_model))),
                 summarizer=wrap(models(routing.model_for("summarizer", config.summarizer_model))))


def approval_gate(workspace: Workspace, repo_config: RepoConfig,
                  approved: Collection[str] = ()) -> Gate | None:
    """The question for a human when the change so far is of a kind the repo gates and no
    maintainer approved yet (``/nightcrew approve``)."""
    changes = [Change(path, _CHANGE_STATUS.get(code, "modified")) for code, path in workspace.changes()]
    kinds = classify_changes(changes, repo_config.approval,
                             existing_top_level=workspace.top_level_at_base())
    return gate({k: v for k, v in kinds.items() if k not in approved}, repo_config.approval)


_CHANGE_STATUS: dict[str, ChangeStatus] = {"A": "added", "M": "modified", "D": "deleted",
                                           "R": "renamed", "T": "modified"}


def _brief(issue: Issue, context: ContextPackage, before: TestReport | None,
           resume_from: Checkpoint | None = None, restored: Sequence[str] = (),
           revision: Revision | None = None) -> str:
    """The task as the planner and the executor first see it."""
    lines = [f"Fix issue #{issue.number} of this repository. The issue and the repository "
             "context follow."]
    if revision is not None:
        lines = [f"The fix for issue #{issue.number} is on this branch, in pull request "
                 f"#{revision.pull.number}, and reviewers asked for changes.", "", revision.brief, "",
                 "The issue and the repository context follow."]
    if resume_from is not None and resume_from.head_sha:
        lines.append(f"This task is resumed: the work of an earlier run is already committed on "
                     f"this branch (up to {resume_from.head_sha[:10]}); plan items marked done are "
                     "done. Check the current state of the files before editing.")
    if restored:
        shown = ", ".join(f"`{path}`" for path in restored[:20])
        more = f" and {len(restored) - 20} more" if len(restored) > 20 else ""
        lines.append(f"Edits an earlier run of this task made but did not test yet are restored in "
                     f"the working tree (uncommitted): {shown}{more}. Run the tests before going on.")
    if before is not None:
        lines.append(f"The test suite before any change: {_counts(before)}, {before.errors} errors "
                     f"(exit {before.exit_code}).")
    lines += ["", context.render()]
    return "\n".join(lines)


def _plan_view(plan: Plan | None) -> tuple[PlanStep, ...]:
    if plan is None:
        return ()
    return tuple(PlanStep(item, n in plan.done) for n, item in enumerate(plan.items, 1))


def _publish(
    task: TaskKey, host: GitHost, base: str, workspace: Workspace, token: TokenSource, issue: Issue,
    result: AgentResult, repo_config: RepoConfig, reporter: StatusReporter, outcome: TaskOutcome,
    saver: WorkSaver, *, notice: str = "",
) -> None:
    """The test gate, then commit, scan, push and the pull request (ready, draft or none);
    ``notice`` is said under the pull request in the final status."""
    after = outcome.tests_after
    assert after is not None
    files = workspace.changed_files()
    if not files:
        _finish(reporter, outcome, "no_change", "The agent finished without changing any file.")
        return
    verdict = judge(outcome.tests_before, after)
    log.info("task.test_gate", task=str(task), ready=verdict.ready, reasons=list(verdict.reasons),
             before=_counts(outcome.tests_before) if outcome.tests_before else None,
             after=_counts(after))
    if not verdict.ready and repo_config.pull_request.on_failing_tests == "none":
        raise TaskFailed("No pull request: " + "; ".join(verdict.reasons) + ".")
    summary = result.summary
    sha = workspace.commit_all(f"Fix #{task.number}: {issue.title}\n\n{summary}")
    if sha:
        outcome.commits.append(sha)
    push_checked(workspace, token, delete=saver.superseded())  # the branch now holds all work
    saver.remote_wip = False
    # Pushed: a crash from here on resumes straight into publishing this work.
    reporter.summary = summary
    reporter.advance("pushed", RunUpdate(commits=tuple(outcome.commits)))
    title = f"Fix #{task.number}: {issue.title}"
    pull = host.find_pull(task.owner, task.repo, task.branch) or host.create_pull(
        task.owner, task.repo, head=task.branch, base=base, draft=not verdict.ready,
        title=title if verdict.ready else f"[draft] {title}",
        body=_pr_body(task, summary, outcome, result.plan, files, verdict),
    )
    host.add_labels(TaskKey(task.owner, task.repo, pull.number), ["nightcrew"])
    outcome.pr_number, outcome.pr_url, outcome.summary = pull.number, pull.html_url, summary
    reporter.pr_number = pull.number
    reporter.update(RunUpdate(commits=tuple(outcome.commits), pr_url=pull.html_url))
    if verdict.ready:
        _finish(reporter, outcome, "pr_opened", f"{summary}\n\n> {notice}" if notice else summary)
    else:
        _finish(reporter, outcome, "failed", "Opened a **draft** pull request with the failure "
                f"report: {'; '.join(verdict.reasons)}.")


def _revision(host: GitHost, task: TaskKey, pr_number: int, config: TaskConfig) -> Revision:
    """What the revision of ``pr_number`` is to address, read from the PR now."""
    reviews = cast(ReviewHost, host)
    pull = task.with_number(pr_number)
    bot = reviews.bot_login(task.owner, task.repo)
    threshold = _repo_config(host, task).review.fix_severity
    comments = reviews.review_comments(task.owner, task.repo, pr_number)
    ledger = (SummaryComment(reviews, pull, config.checkpoint_key, bot).read()
              if config.checkpoint_key else None)
    items = [*from_ledger(ledger, threshold, comments),
             *from_people(reviews.review_threads(task.owner, task.repo, pr_number), comments, bot)]
    request, requester = _fix_request(host, pull, bot)
    head = reviews.pull(task.owner, task.repo, pr_number).head_sha
    return Revision(pull, tuple(items), request, requester, head,
                    review_rounds=ledger.rounds if ledger else 0,
                    review_cost_usd=ledger.cost_usd if ledger else 0.0)


def _fix_request(host: GitHost, pull: TaskKey, bot: str) -> tuple[str, str]:
    """The newest ``/nightcrew fix …`` a person wrote in the PR's conversation, and by whom."""
    for comment in reversed(host.list_comments(pull)):
        if comment.author.lower() == bot.lower():
            continue
        asked = parse_slash_command(comment.body)
        if asked is not None and asked.verb == "fix":
            return asked.args, comment.author
    return "", "unknown"


def _publish_revision(
    task: TaskKey, host: GitHost, workspace: Workspace, issue: Issue, result: AgentResult,
    reporter: StatusReporter, outcome: TaskOutcome, saver: WorkSaver, revision: Revision,
) -> None:
    """Only green work goes onto the PR's branch; then each person's thread hears which commit
    addressed it (their threads stay theirs to resolve; findings are settled by the re-review)."""
    assert outcome.tests_after is not None
    verdict = judge(outcome.tests_before, outcome.tests_after)
    if not verdict.ready:
        raise TaskFailed(f"The revision of #{revision.pull.number} does not pass the tests ("
                         + "; ".join(verdict.reasons) + "); the pull request was left as it was.")
    summary = result.summary or "Addressed the review."
    if workspace.commit_all(f"Address review on #{revision.pull.number}\n\n{summary}"):
        outcome.commits.append(workspace.head())
    sha = workspace.head()  # green steps may have committed the work already
    if sha == revision.head_sha:
        _finish(reporter, outcome, "pr_opened", f"The revision of #{revision.pull.number} changed "
                "nothing; its review comments are left for people.")
        return
    push_checked(workspace, host.token, delete=saver.superseded())
    saver.remote_wip = False
    reporter.summary = summary
    reporter.advance("pushed", RunUpdate(commits=tuple(outcome.commits)))
    reviews = cast(ReviewHost, host)
    first_line = summary.splitlines()[0][:200]
    for item in revision.items:
        if item.source == "person" and item.comment_id is not None:
            reviews.reply_to_review_comment(task.owner, task.repo, revision.pull.number,
                                            item.comment_id, f"Addressed in {sha[:10]}: {first_line}")
    pull = host.find_pull(task.owner, task.repo, task.branch)
    outcome.pr_number = revision.pull.number
    outcome.pr_url = pull.html_url if pull else None
    outcome.summary = summary
    reporter.pr_number = revision.pull.number
    reporter.update(RunUpdate(commits=tuple(outcome.commits), pr_url=outcome.pr_url))
    _finish(reporter, outcome, "pr_opened",
            f"Revised #{revision.pull.number} in `{sha[:10]}`: {summary}{revision.spent}")


_ENDING: dict[State, lifecycle.Happening] = {
    "pr_opened": "pr_opened", "done": "finished", "no_change": "no_change", "failed": "failed",
    "needs_approval": "ask_approval", "paused": "paused", "cancelled": "cancelled",
}


def _finish(reporter: StatusReporter, outcome: TaskOutcome, state: State, detail: str) -> None:
    """End the run in ``state``: the lifecycle move, the label, the final status comment."""
    outcome.state = reporter.advance(_ENDING[state], RunUpdate(detail=detail))
    log.info("task.finished", task=outcome.task, state=state, tokens=outcome.tokens,
             cost_usd=round(outcome.cost_usd, 6), pr=outcome.pr_number)


def _sentence(text: str) -> str:
    """``text`` with a capital first letter (``str.capitalize`` would lower-case @Names)."""
    return text[:1].upper() + text[1:]


def _counts(report: TestReport) -> str:
    return f"{report.passed} passed, {report.failed} failed"


def _pr_body(task: TaskKey, summary: str, outcome: TaskOutcome, plan: Plan | None,
             files: list[str], verdict: GateVerdict) -> str:
    """Summary, the plan and what was done, tests before and after, files, cost; ``Fixes #N``."""
    before, after = outcome.tests_before, outcome.tests_after
    lines = [f"Fixes #{task.number}", "", summary, ""]
    if not verdict.ready:
        lines += ["> [!WARNING]", "> Draft: " + "; ".join(verdict.reasons) + ".", ""]
    if plan is not None:
        lines += ["**Plan**", *(f"- [{'x' if n in plan.done else ' '}] {item}"
                                for n, item in enumerate(plan.items, 1))]
        if plan.acceptance:
            lines += ["", "**Acceptance**", *(f"- {c}" for c in plan.acceptance)]
        lines.append("")
    lines += ["| tests | passed | failed | errors |", "|---|---|---|---|"]
    for name, report in (("before", before), ("after", after)):
        if report is not None:
            lines.append(f"| {name} | {report.passed} | {report.failed} | {report.errors} |")
    if verdict.fixed:
        lines += ["", "Fixed: " + ", ".join(f"`{t}`" for t in verdict.fixed[:10])]
    lines += ["", f"**Files changed** ({len(files)})", *(f"- `{f}`" for f in files[:50])]
    lines += ["", f"{outcome.steps} steps · {outcome.tokens:,} tokens · ${outcome.cost_usd:.4f}",
              "", "<sub>Opened by nightcrew.</sub>"]
    return "\n".join(lines)
