"""One review round against the ledger (pure): what is new, what was fixed, what to post.

An incremental review that looks only at the latest commits forgets earlier findings and may
pass a PR with two of three blockers left; so every round re-checks each open finding at the
new head (the review model's verdicts) and only fingerprints the ledger has never seen are
posted: a finding is never posted twice, however often the PR is reviewed.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, replace

from github_app.repo_config import Severity
from runner.review.findings import SEVERITIES, Finding, fingerprint
from runner.review.ledger import Entry, FindingState, Ledger, title_of

Verdict = tuple[FindingState, str]  # a re-checked open finding's state, and why


@dataclass(frozen=True)
class RoundPlan:
    """What this round does: post ``to_post``, answer ``settled``, keep ``ledger``."""

    ledger: Ledger
    to_post: tuple[Finding, ...]
    repeated: tuple[Finding, ...]  # already in the ledger: never posted again
    settled: tuple[Entry, ...]  # open before, resolved now: a reply on the thread, then resolve
    fingerprints: Mapping[str, str]  # finding id → fingerprint, for every finding of the round


def plan_round(
    ledger: Ledger, findings: Sequence[Finding], verdicts: Mapping[str, Verdict], *,
    snippet_of: Callable[[Finding], str], paths: Collection[str], head_sha: str,
    dismissed: Collection[str] = (),
) -> RoundPlan:
    """Merge a round's findings and verdicts into the ledger.

    ``verdicts``: fingerprint → (state, reason) for open entries the model re-checked (one it
    did not mention stays open); ``paths``: the files in the PR at ``head_sha`` (an open finding
    in a file no longer changed is outdated); ``dismissed``: fingerprints whose thread a person
    resolved (irrelevant to them: not re-opened, not re-posted).
    """
    round_no = ledger.rounds + 1
    entries: list[Entry] = []
    settled: list[Entry] = []
    for entry in ledger.entries:
        updated = _recheck(entry, verdicts, paths, dismissed, head_sha)
        if entry.state == "open" and updated.state == "resolved":
            settled.append(updated)
        entries.append(updated)
    known = {entry.fingerprint for entry in entries}
    prints: dict[str, str] = {}
    to_post: list[Finding] = []
    repeated: list[Finding] = []
    for finding in findings:
        # Outside the diff there is no snippet: the text of the finding stands in for it.
        snippet = snippet_of(finding) or finding.body
        prints[finding.id] = mark = fingerprint(finding.path, snippet, finding.category)
        if mark in known:
            repeated.append(finding)
            continue
        known.add(mark)
        to_post.append(finding)
        entries.append(Entry(fingerprint=mark, finding=finding.id, path=finding.path,
                             line=finding.line, severity=finding.severity,
                             title=title_of(finding.body), side=finding.side,
                             category=finding.category, round=round_no))
    after = replace(ledger, reviewed_sha=head_sha, rounds=round_no, entries=tuple(entries))
    return RoundPlan(after, tuple(to_post), tuple(repeated), tuple(settled), prints)


def _recheck(entry: Entry, verdicts: Mapping[str, Verdict], paths: Collection[str],
             dismissed: Collection[str], head_sha: str) -> Entry:
    if entry.state != "open":
        return entry
    if entry.fingerprint in dismissed:
        return replace(entry, state="irrelevant", settled_in=head_sha,
                       note="a person resolved its thread")
    if entry.inline and entry.path not in paths:  # it had a place in the diff, and lost it
        return replace(entry, state="outdated", settled_in=head_sha,
                       note="the file is no longer changed by this PR")
    verdict = verdicts.get(entry.fingerprint)
    if verdict is None or verdict[0] == "open":
        return entry
    state, reason = verdict
    return replace(entry, state=state, settled_in=head_sha, note=reason[:200])


def record_inline(ledger: Ledger, comment_ids: Mapping[str, int]) -> Ledger:
    """The ledger with the round's inline comments noted (finding id → comment id)."""
    round_no = ledger.rounds
    entries = tuple(
        replace(e, inline=True, comment_id=comment_ids[e.finding])
        if e.round == round_no and e.finding in comment_ids else e
        for e in ledger.entries
    )
    return replace(ledger, entries=entries)


def to_fix(ledger: Ledger, threshold: Severity) -> list[Entry]:
    """Open findings as severe as ``threshold`` or more: what the fix loop hands the builder."""
    floor = SEVERITIES.index(threshold)
    return [e for e in ledger.in_state("open") if SEVERITIES.index(e.severity) >= floor]


@dataclass(frozen=True)
class FixDecision:
    """Whether the fix loop goes on, and what the summary says when it stops."""

    revise: bool
    reason: str


def next_step(ledger: Ledger, plan: RoundPlan, *, own_pull: bool, enabled: bool,
              threshold: Severity, max_rounds: int) -> FixDecision:
    """After a round on a PR: another fix round, or hand it to people (with why)."""
    if not own_pull or not enabled:
        return FixDecision(False, "")
    wanted = to_fix(ledger, threshold)
    if not wanted:
        return FixDecision(False, f"No open finding is {threshold} or worse: over to human review.")
    if ledger.fix_rounds >= max_rounds:
        return FixDecision(False, f"{len(wanted)} finding(s) still open after {ledger.fix_rounds} "
                                  "fix round(s), the most this repository allows: over to human review.")
    if ledger.fix_rounds > 0 and not plan.to_post:
        return FixDecision(False, "This round found nothing new after a fix round: over to "
                                  "human review.")
    return FixDecision(True, f"{len(wanted)} finding(s) go back to the builder "
                             f"(fix round {ledger.fix_rounds + 1} of {max_rounds}).")
