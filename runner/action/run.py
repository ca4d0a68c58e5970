"""``nightcrew action``: one workflow job's share of the App's work, in process.

Two phases, like the App's two stages (``github_app.queue.intake``, then the task job):

- **intake** routes the event file with the App's routing, checks who asked (the repository's
  policy), and records the request on the issue: a task to start gets its status comment and the
  ``nightcrew:queued`` label; a budget raise or an approval is folded into the signed checkpoint
  and the task queued again; a cancel or pause of a queued task ends it there. It takes seconds,
  so the example workflow runs it outside any concurrency group: no request is ever dropped.
- **work** does what the event asks of a pull request (a review round, a revision) and then
  *drains*: every issue of the repository labeled ``nightcrew:queued`` whose status comment holds
  a checkpoint signed by nightcrew is run, one after another, each resuming from its checkpoint.
  A run GitHub dropped from its concurrency queue therefore loses nothing (the next run drains
  its task), and neither does a run that was cancelled or hit the job's time limit: ``finalize``
  puts its task back to queued with the checkpoint it had.

Nothing here touches Redis: steering reaches a running task through the issue's comments
(``runner.action.controls.ThreadControls``), grants through the checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Literal

from github_app import logs, trust
from github_app.github import GitHubError, GitHubKitHost
from github_app.ingress.events import IssuesEvent, MalformedPayload, parse_event
from github_app.ingress.routing import (
    STEERING,
    Command,
    Grant,
    Ignore,
    InstallationChange,
    help_text,
    read_grant,
    route,
)
from github_app.repo_config import RepoConfig, RepoConfigError, load_repo_config, render_config_error
from github_app.tasks import TaskKey, issue_of_branch
from github_app.tracker import lifecycle
from github_app.tracker.checkpoint import Checkpoint, utc_now
from github_app.tracker.eventlog import EventLog, new_run_id
from github_app.tracker.issue import IssueTracker, empty_checkpoint
from github_app.tracker.status import StatusView
from github_app.tracker.stopped import final_view, stopped_view
from runner.action.controls import ThreadControls
from runner.action.environment import ActionEnv, RunState
from runner.pipeline.run import ModelFactory, SandboxFactory, TaskConfig, TaskOutcome, run
from runner.review.task import review_round

Conclusion = Literal["success", "skipped", "failure"]
# Said under a pull request opened with the job's GITHUB_TOKEN (GitHub's rule, not ours).
TOKEN_NOTICE = ("This pull request was opened with the workflow's `GITHUB_TOKEN`, so GitHub "
                "starts no workflow for it (its CI does not run until someone pushes). Give the "
                "action a GitHub App's id and key to open pull requests that run CI.")
log = logs.get("nightcrew.action")


@dataclass(frozen=True)
class Handled:
    """What the job did about one task or request."""

    conclusion: Conclusion
    reason: str
    task: str | None = None
    state: str | None = None
    pr_url: str | None = None
    cost_usd: float = 0.0


@dataclass
class ActionDeps:
    """What the job works with, built by ``runner.action.wiring``."""

    env: ActionEnv
    host: GitHubKitHost  # a ReviewHost that also lists labeled issues (the drain)
    models: ModelFactory
    sandbox_for: SandboxFactory
    config: TaskConfig
    trigger_label: str = "nightcrew"
    app_slug: str = "nightcrew"
    workflow_token: bool = True  # writing with GITHUB_TOKEN (not as an App): say what that means
    state: RunState = field(default_factory=RunState)
    queued: list[TaskKey] = field(default_factory=list)  # what intake queued, for the work phase
    _repo_config: RepoConfig | None = None

    @property
    def key(self) -> bytes | None:
        return self.config.checkpoint_key

    def repo_config(self) -> RepoConfig:
        """The repository's config, read once per step (every task of the job is in this
        repository); ``RepoConfigError`` when it is broken."""
        if self._repo_config is None:
            self._repo_config = load_repo_config(self.host, self.env.owner, self.env.repo)
        return self._repo_config


# -------------------------------------------------------------------------------- intake


@dataclass(frozen=True)
class Request:
    """The workflow's event, routed: a command and the repository's config."""

    command: Command
    config: RepoConfig

    @property
    def on_pull_request(self) -> bool:
        return self.command.kind in ("review", "revise")


def decide(deps: ActionDeps, *, answer: bool = True) -> Request | Handled:
    """The event file routed by the App's routing, with the repository's config; or what was
    done instead (ignored, an unknown verb or a broken config answered when ``answer``)."""
    env, host = deps.env, deps.host
    try:
        parsed = parse_event(env.event_name, env.event_body())
        decision = route(env.event_name, parsed, trigger_label=deps.trigger_label,
                         app_slug=deps.app_slug, bot_login=host.bot_login(env.owner, env.repo))
    except MalformedPayload as exc:
        return Handled("failure", f"the {env.event_name} event file is malformed: {exc}")
    if isinstance(decision, Ignore | InstallationChange):
        reason = decision.reason if isinstance(decision, Ignore) else "an installation change"
        return Handled("skipped", reason)
    if not isinstance(decision, Command):  # an unknown verb: say which ones there are
        if answer:
            host.create_comment(decision.task, help_text(decision.verb))
        return Handled("skipped", f"unknown command {decision.verb!r}", str(decision.task))
    task = decision.task
    try:
        config = deps.repo_config()
    except RepoConfigError as exc:
        if answer:
            host.create_comment(task, render_config_error(exc))
        return Handled("failure", f"the repository's config is broken: {exc}", str(task))
    label = parsed.label.name if isinstance(parsed, IssuesEvent) and parsed.label else None
    if label is not None and label != config.trigger_label:
        return Handled("skipped", f"label {label!r} is not this repository's trigger label", str(task))
    return Request(decision, config)


def intake(deps: ActionDeps) -> Handled:
    """Record what the event asks of an issue (see the module docstring); a pull request's
    review or revision is left to the work phase, which has the time for it."""
    request = decide(deps)
    if isinstance(request, Handled):
        return request
    decision, config, task, host = request.command, request.config, request.command.task, deps.host
    if request.on_pull_request:
        return Handled("skipped", f"{decision.kind} of #{task.number}: done by the work phase", str(task))
    refused = trust.refusal(task, host, decision.actor, config)
    if refused is not None:
        host.create_comment(task, f"{refused.reason} Nothing was started.")
        return Handled("skipped", refused.reason, str(task))
    host.react(task, "eyes", decision.comment_id)
    tracker = IssueTracker(host, task, deps.key)
    if decision.kind in STEERING:
        return _steer(deps, decision, tracker, config)
    where = _where(tracker)
    if where in lifecycle.ACTIVE:
        return Handled("skipped", f"already {lifecycle.describe(where)}", str(task), where)
    tracker.write(StatusView("queued", str(task)), empty_checkpoint(task, "queued"))
    return _queue(deps, tracker)


def _queue(deps: ActionDeps, tracker: IssueTracker) -> Handled:
    tracker.set_state("queued")
    deps.queued.append(tracker.task)
    return Handled("success", "queued", str(tracker.task), "queued")


def _where(tracker: IssueTracker) -> lifecycle.State | None:
    """Where the task is: its signed checkpoint says (labels alone are anyone's to set)."""
    read = tracker.checkpoint()
    if read.checkpoint is not None:
        return read.checkpoint.state
    return lifecycle.state_of_labels(set(tracker.host.issue(tracker.task).labels))


def _steer(deps: ActionDeps, command: Command, tracker: IssueTracker, config: RepoConfig) -> Handled:
    task, host = command.task, deps.host
    where = _where(tracker)
    verb = lifecycle.command_for(command.kind, command.args)
    if command.kind == "status":
        return Handled("skipped", f"status: {where or 'none'}", str(task), where)
    move = lifecycle.transition(where, verb)
    if isinstance(move, lifecycle.Refusal):
        host.create_comment(task, move.reason)
        return Handled("skipped", move.reason, str(task), where)
    if move.deferred:  # running in another job: it reads the thread at its next step
        return Handled("skipped", f"{command.kind}: the running job reads it at its next step",
                       str(task), where)
    if verb in ("cancel", "pause"):
        state: lifecycle.State = "cancelled" if verb == "cancel" else "paused"
        go_on = "retry" if verb == "cancel" else "resume"
        detail = (f"{'Cancelled' if verb == 'cancel' else 'Paused'} by @{command.actor} while "
                  f"{lifecycle.describe(where or 'queued')}. Say `/nightcrew {go_on}` to go on.")
        tracker.write(stopped_view(task, state, detail, tracker.status_body(), deps.key))
        tracker.set_state(state)
        return Handled("success", f"{command.kind}: {state}", str(task), state)
    grant = read_grant(command.kind, command.args, config.approval.require_for)
    if isinstance(grant, str):
        host.create_comment(task, grant)
        return Handled("skipped", grant, str(task), where)
    read = tracker.checkpoint()
    base = read.checkpoint if read.checkpoint is not None and verb != "retry_fresh" else None
    checkpoint = _granted(base or empty_checkpoint(task, "queued"), grant)
    tracker.write(final_view(task, "queued", f"Queued again by @{command.actor}.", checkpoint,
                             deps.key), checkpoint)
    return _queue(deps, tracker)


def _granted(checkpoint: Checkpoint, grant: Grant) -> Checkpoint:
    """The checkpoint queued again, with a dollar grant added to its limit and approvals kept:
    the tracker carries them to the job that runs the task (no Redis between the two)."""
    budget = dict(checkpoint.budget)
    if grant.usd > 0 and isinstance(budget.get("limits"), dict) and isinstance(
            budget["limits"].get("usd"), int | float):
        budget["limits"] = {**budget["limits"], "usd": float(budget["limits"]["usd"]) + grant.usd}
    approved = tuple(sorted(set(checkpoint.approved) | set(grant.kinds)))
    return replace(checkpoint, state="queued", budget=budget, approved=approved, updated_at=utc_now())


def _pull_request_refusal(deps: ActionDeps, command: Command, config: RepoConfig) -> Handled | None:
    """Why a review or revision asked of a PR is not done (answered where a person asked)."""
    task, host = command.task, deps.host
    ask = trust.pull_request_ask(task, host, command.kind, command.trigger, command.actor, config)
    if ask.off:
        return Handled("skipped", "review: off for this pull request (review: in the config)", str(task))
    if ask.refusal is not None:
        if ask.answer:
            host.create_comment(task, f"{ask.refusal.reason} Nothing was started.")
        return Handled("skipped", ask.refusal.reason, str(task))
    if command.comment_id is not None:
        host.react(task, "eyes", command.comment_id)
    if command.kind == "revise" and (not ask.own or issue_of_branch(ask.head_ref) is None):
        host.create_comment(task, "nightcrew revises only the pull requests it opened; say "
                                  "`/nightcrew review` for a review of this one.")
        return Handled("skipped", "revise: not a nightcrew pull request", str(task))
    return None


# -------------------------------------------------------------------------------- work


def work(deps: ActionDeps, *, more_time: Callable[[], bool] = lambda: True) -> list[Handled]:
    """The pull request's review or revision (if the event asked one), then every queued task
    of the repository, each from its checkpoint, while ``more_time()`` says so."""
    done: list[Handled] = []
    request = decide(deps, answer=False)  # intake answered already
    if isinstance(request, Request) and request.on_pull_request:
        command = request.command
        refused = _pull_request_refusal(deps, command, request.config)
        done += [refused] if refused is not None else _review_loop(
            deps, command.task, trigger=_trigger(command.trigger),
            revise_first=command.kind == "revise")
    tried: set[TaskKey] = set()
    while more_time():
        task = next((t for t in _queued(deps) if t not in tried), None)
        if task is None:
            break
        tried.add(task)
        done += _run_queued(deps, task)
    return done


def _trigger(trigger: str) -> str:
    """A review round's trigger for a command's (``pull_request.opened`` → ``opened``)."""
    return trigger.rpartition(".")[2] if trigger else "command"


def _queued(deps: ActionDeps) -> list[TaskKey]:
    """This run's own tasks first, then every other issue labeled queued."""
    env = deps.env
    label = lifecycle.label("queued")
    found = [TaskKey(env.owner, env.repo, n) for n in deps.host.issues_with_label(env.owner, env.repo, label)]
    return [*[t for t in deps.queued if t in found], *[t for t in found if t not in deps.queued]]


def _run_queued(deps: ActionDeps, task: TaskKey) -> list[Handled]:
    """Run a queued task from its signed checkpoint (a label alone brings nothing back)."""
    tracker = IssueTracker(deps.host, task, deps.key)
    comment = tracker.find()
    read = tracker.checkpoint() if comment is not None else None
    if read is None or read.checkpoint is None:
        why = "no status comment by nightcrew" if comment is None else f"checkpoint {read and read.problem or 'missing'}"
        log.info("action.drain_refused", task=str(task), why=why)
        return [Handled("skipped", f"not taken up: {why}", str(task))]
    if read.checkpoint.state not in lifecycle.ACTIVE:
        return [Handled("skipped", f"checkpoint says {read.checkpoint.state}", str(task))]
    outcome = _run(deps, task, comment)
    if outcome.state == "pr_opened" and outcome.pr_number is not None:
        # Its own PR, reviewed in the same job (with GITHUB_TOKEN, opening it starts no workflow).
        return [_handled(outcome), *_review_loop(deps, task.with_number(outcome.pr_number),
                                                 trigger="opened")]
    return [_handled(outcome)]


def _run(deps: ActionDeps, task: TaskKey, comment: int | None, *,
         revise_pr: int | None = None) -> TaskOutcome:
    host, env = deps.host, deps.env
    config = replace(deps.config, run_url=env.run_url,
                     pr_notice=TOKEN_NOTICE if deps.workflow_token else "")
    tracker = IssueTracker(host, task, deps.key, comment_id=comment)
    after = max((c.id for c in host.list_comments(task)), default=0)
    controls = ThreadControls(host, task, deps.repo_config(), after_comment=after)
    deps.state.started(task, comment)
    deps.state.save(env.state_path)
    events = EventLog(config.data_dir, str(task), new_run_id(), redis=None)
    outcome = run(task, host=host, models=deps.models, sandbox_for=deps.sandbox_for, config=config,
                  status_comment=tracker.find(), controls=controls, events=events, resume=True,
                  revise_pr=revise_pr)
    return outcome


def _review_loop(deps: ActionDeps, pull: TaskKey, *, trigger: str,
                 revise_first: bool = False) -> list[Handled]:
    """Review rounds on a PR and, on nightcrew's own, the fix loop between them (in process:
    the revision is a run on the issue the PR fixes, then the PR is reviewed again)."""
    host, key = deps.host, deps.key
    config = deps.repo_config()
    done: list[Handled] = []
    if revise_first:
        issue = issue_of_branch(host.pull(pull.owner, pull.repo, pull.number).head_ref)
        if issue is None:
            return [Handled("skipped", "not a nightcrew pull request", str(pull))]
        done.append(_revise(deps, pull.with_number(issue), pull.number))
        if not config.review.self_review or done[-1].state != "pr_opened":
            return done
        trigger = "after_fix"
    if key is None:
        return [*done, Handled("skipped", "no checkpoint key: the findings ledger cannot be signed", str(pull))]
    model = deps.models(config.review.model or config.models.model_for(
        "summarizer", deps.config.summarizer_model))
    for _ in range(config.review.max_rounds + 1):
        result = review_round(host, pull, model=model, policy=config.review, key=key, trigger=trigger)
        done.append(Handled("success" if result.state == "posted" else "skipped",
                            f"review of #{pull.number}: {result.state} {result.reason}".strip(),
                            str(pull), cost_usd=result.cost_usd))
        if not (result.decision.revise and result.issue is not None):
            break
        done.append(_revise(deps, pull.with_number(result.issue), pull.number))
        if done[-1].state != "pr_opened":
            break
        trigger = "after_fix"
    return done


def _revise(deps: ActionDeps, issue: TaskKey, pull_number: int) -> Handled:
    """A revision of ``pull_number`` as a run on its issue (same status comment and budget rules)."""
    tracker = IssueTracker(deps.host, issue, deps.key)
    if tracker.find() is None:
        tracker.write(StatusView("queued", str(issue)), empty_checkpoint(issue, "queued"))
    tracker.set_state("queued")
    return _handled(_run(deps, issue, tracker.comment_id, revise_pr=pull_number))


def _handled(outcome: TaskOutcome) -> Handled:
    good = outcome.state in ("pr_opened", "done")
    return Handled("success" if good else "failure", outcome.state, outcome.task, outcome.state,
                   outcome.pr_url, outcome.cost_usd)


# -------------------------------------------------------------------------------- finalize


def finalize(deps: ActionDeps, job_status: str) -> list[Handled]:
    """The action's last step (``if: always()``): a task this run left active is not left
    "working" — a cancelled or timed-out job puts it back to queued with its checkpoint (the
    next run's drain resumes it), a failed job marks it failed (``/nightcrew retry`` resumes)."""
    done: list[Handled] = []
    for key, comment in deps.state.tasks.items():
        task = TaskKey.parse(key)
        tracker = IssueTracker(deps.host, task, deps.key, comment_id=comment)
        try:
            body = tracker.status_body()
            read = tracker.checkpoint(body)
        except GitHubError as exc:
            done.append(Handled("failure", f"status comment unreadable: {exc}", key))
            continue
        state = read.checkpoint.state if read.checkpoint is not None else None
        if state not in ("running", "publishing"):
            done.append(Handled("skipped", f"already {state or 'unknown'}", key, state))
            continue
        if job_status == "failure":
            final: lifecycle.State = "failed"
            detail = (f"The workflow job failed before the task ended ({deps.env.run_url}). "
                      "Say `/nightcrew retry` to go on from the last checkpoint.")
        else:
            final = "queued"
            detail = ("The workflow run ended before the task did (cancelled or out of time); "
                      "the next nightcrew run in this repository resumes it from the last "
                      "checkpoint. Say `/nightcrew cancel` to stop it instead.")
        tracker.write(stopped_view(task, final, detail, body, deps.key))
        tracker.set_state(final)
        done.append(Handled("success", f"left {final}", key, final))
    return done
