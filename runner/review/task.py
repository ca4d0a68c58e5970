"""One review round on GitHub: read the PR through the API, ask, place, post, keep the ledger.

The PR's code is never checked out: diff, commits and files come through the API, so a fork's
code never runs and never meets a credential. The round posts at most one review (event
COMMENT — a bot may not approve or request changes on its own PR), pinned to the head it
analysed; if the head moved meanwhile it posts nothing and asks for a new round. Then the one
summary comment (the ledger) is edited in place, resolved findings get a reply naming the commit
and nightcrew's own threads are resolved (never a person's), and the fix loop is decided.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from github_app import logs
from github_app.github import GitHubError, PullDetails, ReviewHost, ReviewThread
from github_app.repo_config import ReviewPolicy
from github_app.tasks import TaskKey, issue_of_branch
from runner.model import ModelClient
from runner.review.ledger import MARKER, Entry, Ledger, escape_comment, read_ledger, render_comment, title_of
from runner.review.placement import InlineComment, Placement, PullDiff, place
from runner.review.post import post_review
from runner.review.reviewer import ReviewModelError, review_diff
from runner.review.rounds import FixDecision, RoundPlan, next_step, plan_round, record_inline

MAX_FILES = 30  # changed files read at the head for the model (the diff covers the rest)
log = logs.get("nightcrew.review")
RoundState = Literal["posted", "nothing_new", "skipped", "stale", "model_failed"]
ROUNDS_START = "<!-- nightcrew:review-rounds -->"
ROUNDS_END = "<!-- /nightcrew:review-rounds -->"


@dataclass(frozen=True)
class RoundResult:
    """How a round ended, for the job's result and the fix loop."""

    state: RoundState
    reason: str = ""
    review_id: int | None = None
    inline: int = 0
    unplaced: int = 0
    settled: int = 0
    cost_usd: float = 0.0
    decision: FixDecision = FixDecision(False, "")
    issue: int | None = None  # the issue a nightcrew PR fixes (its branch says which)


def review_round(
    host: ReviewHost, pull: TaskKey, *, model: ModelClient, policy: ReviewPolicy, key: bytes,
    trigger: str = "command", sleep: Callable[[float], None] = time.sleep,
) -> RoundResult:
    """Review ``pull`` once (see the module docstring)."""
    owner, repo, number = pull.owner, pull.repo, pull.number
    bot = host.bot_login(owner, repo)
    pr = host.pull(owner, repo, number)
    if pr.state != "open":
        return RoundResult("skipped", "the pull request is closed")
    if pr.draft and trigger != "command":
        return RoundResult("skipped", "drafts are reviewed when marked ready")
    summary = SummaryComment(host, pull, key, bot)
    ledger = summary.read() or Ledger(pull=str(pull))
    own = pr.author.lower() == bot.lower()
    if ledger.reviewed_sha == pr.head_sha and trigger != "command":
        return RoundResult("nothing_new", f"already reviewed up to {pr.head_sha[:10]}")
    diff_text = host.pull_diff(owner, repo, number)
    diff = PullDiff.from_text(diff_text)
    threads = host.review_threads(owner, repo, number)
    dismissed = _dismissed(ledger, threads)
    try:
        answer = review_diff(
            model, title=pr.title, description=pr.body, diff=diff_text,
            files=_files(host, pull, pr, diff), focus_text=_focus(host, pull, pr, ledger), author=pr.author,
            open_findings=[e for e in ledger.in_state("open") if e.fingerprint not in dismissed])
    except ReviewModelError as exc:
        summary.write(ledger, status=f"⚠️ This round posted nothing: {exc}. Say `/nightcrew review` "
                                     "to try again.")
        return RoundResult("model_failed", str(exc))
    plan = plan_round(ledger, answer.findings, answer.verdicts, paths=diff.paths,
                      snippet_of=lambda f: diff.snippet(f.path, f.first_line, f.last_line, f.side),
                      head_sha=pr.head_sha, dismissed=dismissed)
    placement = place(plan.to_post, diff, max_inline=policy.max_inline_comments,
                      move_within=policy.move_within)
    if host.pull(owner, repo, number).head_sha != pr.head_sha:
        return RoundResult("stale", "the head moved while the round ran; a new round reviews it",
                           cost_usd=answer.cost_usd)
    review_id, comment_ids, refused = _post(host, pull, pr, plan, placement, bot, sleep)
    after = record_inline(plan.ledger, comment_ids)
    after = replace(after, cost_usd=after.cost_usd + answer.cost_usd)
    _answer_settled(host, pull, plan.settled, threads, bot, pr.head_sha)
    decision = next_step(after, plan, own_pull=own, enabled=policy.self_review,
                         threshold=policy.fix_severity, max_rounds=policy.max_rounds)
    if decision.revise:
        after = replace(after, fix_rounds=after.fix_rounds + 1)
    elif own and decision.reason:
        after = replace(after, handed_over=True)
    status = " ".join(part for part in (answer.summary.strip(), _refused_note(refused),
                                        decision.reason) if part)
    summary.write(after, status=status)
    if own:
        _note_rounds(host, pull, pr, after)
    issue = issue_of_branch(pr.head_ref) if own else None
    log.info("review.round", pull=str(pull), round=after.rounds, new=len(plan.to_post),
             inline=len(comment_ids), settled=len(plan.settled), revise=decision.revise,
             cost_usd=round(answer.cost_usd, 6))
    return RoundResult("posted" if review_id else "nothing_new", decision.reason, review_id,
                       len(comment_ids), len(placement.unplaced) + len(refused), len(plan.settled),
                       answer.cost_usd, decision, issue)


class SummaryComment:
    """The PR's one summary comment (the ledger), found by its marker and the App's authorship."""

    def __init__(self, host: ReviewHost, pull: TaskKey, key: bytes, bot: str) -> None:
        self.host, self.pull, self.key, self.bot = host, pull, key, bot
        self.comment_id: int | None = None
        self.write_key = "review-summary-" + re.sub(r"[^A-Za-z0-9._-]", "-", str(pull))

    def read(self) -> Ledger | None:
        """The ledger of earlier rounds (None: no summary yet, or one that is not intact)."""
        for comment in self.host.list_comments(self.pull):
            if comment.author == self.bot and MARKER in comment.body:
                self.comment_id = comment.id
                return read_ledger(comment.body, self.key, str(self.pull))
        return None

    def write(self, ledger: Ledger, *, status: str = "") -> int:
        body = render_comment(ledger, self.key, status=status)
        if self.comment_id is None:
            self.comment_id = self.host.create_comment(self.pull, body, key=self.write_key)
        else:
            self.host.update_comment(self.pull, self.comment_id, body, key=self.write_key)
        return self.comment_id


def _post(host: ReviewHost, pull: TaskKey, pr: PullDetails, plan: RoundPlan, placement: Placement,
          bot: str, sleep: Callable[[float], None],
          ) -> tuple[int | None, dict[str, int], list[tuple[InlineComment, str]]]:
    """Post the round's review when it has new findings: (review id, finding → comment id, refused)."""
    if not plan.to_post:
        return None, {}, []
    round_key = f"review-{pull.number}-r{plan.ledger.rounds}-{pr.head_sha[:12]}"

    def body(refused: Sequence[tuple[InlineComment, str]]) -> str:
        return review_body(plan, placement, refused)

    posted = post_review(host, pull.owner, pull.repo, pull.number, commit_id=pr.head_sha,
                         key=round_key, comments=placement.comments, body=body, bot=bot, sleep=sleep)
    ids = _comment_ids(host, pull, posted.comments_in, posted.posted) if posted.posted else {}
    return posted.review_id, ids, posted.refused


def review_body(plan: RoundPlan, placement: Placement,
                refused: Sequence[tuple[InlineComment, str]] = ()) -> str:
    """The review's own text: what is new, and every finding that could not go inline."""
    lines = [f"**nightcrew review**, round {plan.ledger.rounds}: {len(plan.to_post)} new "
             f"finding(s), {len(placement.comments) - len(refused)} inline."]
    outside = [(u.path, u.line, u.reason, u.finding) for u in placement.unplaced]
    outside += [(c.path, c.line, why, c.finding) for c, why in refused]
    if outside:
        by_id = {f.id: f for f in plan.to_post}
        lines += ["", "Not inline:"]
        for path, line, why, finding in outside:
            text = title_of(by_id[finding].body) if finding in by_id else ""
            lines.append(f"- `{path}:{line}` — {escape_comment(text)} _({why})_")
    if plan.repeated:
        lines += ["", f"{len(plan.repeated)} finding(s) were reported before and are not repeated."]
    return "\n".join(lines)


def _comment_ids(host: ReviewHost, pull: TaskKey, review_id: int | None,
                 posted: Sequence[InlineComment]) -> dict[str, int]:
    """Which comment GitHub made of which finding (matched by place and text)."""
    mine = [c for c in host.review_comments(pull.owner, pull.repo, pull.number)
            if c.review_id == review_id]
    ids: dict[str, int] = {}
    for comment in posted:
        match = next((c for c in mine if c.path == comment.path and c.line == comment.line
                      and c.body.strip() == comment.body.strip() and c.id not in ids.values()), None)
        if match is not None:
            ids[comment.finding] = match.id
    return ids


def _dismissed(ledger: Ledger, threads: Sequence[ReviewThread]) -> set[str]:
    """Open findings whose thread is resolved: nightcrew resolves only what it settled, so a
    person did — they are irrelevant to that person, not re-opened and not re-posted."""
    resolved = {c.id for t in threads if t.is_resolved for c in t.comments[:1]}
    return {e.fingerprint for e in ledger.in_state("open") if e.comment_id in resolved}


def _answer_settled(host: ReviewHost, pull: TaskKey, settled: Sequence[Entry],
                    threads: Sequence[ReviewThread], bot: str, head_sha: str) -> None:
    """A reply naming the commit on each resolved finding's thread; resolve it if it is ours."""
    by_root = {t.comments[0].id: t for t in threads if t.comments}
    for entry in settled:
        thread = by_root.get(entry.comment_id) if entry.comment_id else None
        if thread is None:
            continue
        if not thread.is_resolved:
            host.reply_to_review_comment(pull.owner, pull.repo, pull.number, thread.comments[0].id,
                                         f"Resolved in {head_sha[:10]}. {entry.note}".strip())
        if thread.root_author.lower() == bot.lower() and not thread.is_resolved:
            try:
                host.resolve_review_thread(thread.id)
            except GitHubError as exc:  # a thread left open is not worth failing the round
                log.warning("review.resolve_failed", pull=str(pull), thread=thread.id, error=str(exc))


def _files(host: ReviewHost, pull: TaskKey, pr: PullDetails, diff: PullDiff) -> dict[str, str]:
    """The changed files at the analysed head, through the contents API (never a checkout).

    The head commit is read from the base repository (GitHub keeps every PR's head there), so a
    fork is never fetched.
    """
    owner, repo = pull.owner, pull.repo
    files: dict[str, str] = {}
    for path in sorted(diff.paths)[:MAX_FILES]:
        try:
            text = host.read_file(owner, repo, path, ref=pr.head_sha)
        except GitHubError:  # binary, too large, gone: the diff still shows it
            continue
        if text is not None:
            files[path] = text
    return files


def _focus(host: ReviewHost, pull: TaskKey, pr: PullDetails, ledger: Ledger) -> str | None:
    """The diff since the last reviewed head (None on a first round, or after a force-push)."""
    if not ledger.reviewed_sha or ledger.reviewed_sha == pr.head_sha:
        return None
    try:
        return host.compare_diff(pull.owner, pull.repo, ledger.reviewed_sha, pr.head_sha)
    except GitHubError:
        return None


def _refused_note(refused: Sequence[tuple[InlineComment, str]]) -> str:
    if not refused:
        return ""
    return f"GitHub refused {len(refused)} inline comment(s); they are listed here instead."


def _note_rounds(host: ReviewHost, pull: TaskKey, pr: PullDetails, ledger: Ledger) -> None:
    """The review rounds and their cost in nightcrew's own PR body (one section, replaced)."""
    open_count = len(ledger.in_state("open"))
    section = (f"{ROUNDS_START}\n**Review**: {ledger.rounds} round(s), {ledger.fix_rounds} fix "
               f"round(s), {open_count} finding(s) open · review cost ${ledger.cost_usd:.4f}"
               f"{' · handed to human review' if ledger.handed_over else ''}\n{ROUNDS_END}")
    body = pr.body or ""
    if ROUNDS_START in body and ROUNDS_END in body:
        head, _, rest = body.partition(ROUNDS_START)
        body = head + section + rest.partition(ROUNDS_END)[2]
    else:
        body = f"{body.rstrip()}\n\n{section}"
    host.update_pull_body(pull.owner, pull.repo, pull.number, body)
