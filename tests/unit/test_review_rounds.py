"""A round against the ledger: new findings posted once, open ones re-checked, the fix loop."""

from __future__ import annotations

from github_app.repo_config import Severity
from runner.review.findings import Finding, fingerprint
from runner.review.ledger import Ledger
from runner.review.rounds import next_step, plan_round, record_inline, to_fix

HEAD1, HEAD2 = "1" * 40, "2" * 40
SNIPPETS = {("calc.py", 2): "    return a - b", ("calc.py", 9): "    x = 1"}


def finding(ident: str, line: int, severity: Severity = "high", body: str = "Wrong sign.") -> Finding:
    return Finding(id=ident, path="calc.py", line=line, body=body, severity=severity,
                   category="correctness")


def snippet(f: Finding) -> str:
    return SNIPPETS.get((f.path, f.line), "")


def first_round() -> Ledger:
    plan = plan_round(Ledger(pull="o/r#1"), [finding("n1", 2), finding("n2", 9, "low")], {},
                      snippet_of=snippet, paths={"calc.py"}, head_sha=HEAD1)
    return record_inline(plan.ledger, {"n1": 501})


def test_a_first_round_posts_every_finding_and_records_it_open() -> None:
    ledger = first_round()
    assert ledger.rounds == 1 and ledger.reviewed_sha == HEAD1
    assert [(e.finding, e.state, e.inline, e.comment_id) for e in ledger.entries] == [
        ("n1", "open", True, 501), ("n2", "open", False, None)]
    assert ledger.entries[0].fingerprint == fingerprint("calc.py", "return a - b", "correctness")


def test_a_known_fingerprint_is_never_posted_again_even_on_another_line() -> None:
    ledger = first_round()
    SNIPPETS[("calc.py", 3)] = "\treturn   a - b"  # the same code, moved a line and re-indented
    again = plan_round(ledger, [finding("n1", 3, body="Still subtracts.")], {},
                       snippet_of=snippet, paths={"calc.py"}, head_sha=HEAD2)
    assert again.to_post == () and [f.id for f in again.repeated] == ["n1"]
    assert len(again.ledger.entries) == 2


def test_verdicts_settle_open_findings_and_resolved_ones_are_answered() -> None:
    ledger = first_round()
    fp1, fp2 = (e.fingerprint for e in ledger.entries)
    plan = plan_round(ledger, [], {fp1: ("resolved", "adds now"), fp2: ("irrelevant", "fine")},
                      snippet_of=snippet, paths={"calc.py"}, head_sha=HEAD2)
    states = {e.finding: (e.state, e.settled_in) for e in plan.ledger.entries}
    assert states == {"n1": ("resolved", HEAD2), "n2": ("irrelevant", HEAD2)}
    assert [e.finding for e in plan.settled] == ["n1"]  # only resolved ones get a reply


def test_an_inline_finding_in_a_file_the_pr_no_longer_changes_is_outdated() -> None:
    plan = plan_round(first_round(), [], {}, snippet_of=snippet, paths={"other.py"}, head_sha=HEAD2)
    # n1 had its place in the diff and lost it; n2 was never inline: only the model can settle it.
    assert [e.state for e in plan.ledger.entries] == ["outdated", "open"]


def test_a_thread_a_person_resolved_makes_its_finding_irrelevant_not_reopened() -> None:
    ledger = first_round()
    fp1 = ledger.entries[0].fingerprint
    plan = plan_round(ledger, [finding("n9", 2)], {fp1: ("open", "")}, snippet_of=snippet,
                      paths={"calc.py"}, head_sha=HEAD2, dismissed={fp1})
    assert plan.ledger.entries[0].state == "irrelevant" and plan.to_post == ()


def test_unverdicted_open_findings_stay_open() -> None:
    plan = plan_round(first_round(), [], {}, snippet_of=snippet, paths={"calc.py"}, head_sha=HEAD2)
    assert [e.state for e in plan.ledger.entries] == ["open", "open"]


def test_the_fix_loop_goes_on_while_severe_findings_are_open_and_rounds_are_left() -> None:
    ledger = first_round()
    plan = plan_round(Ledger(pull="o/r#1"), [finding("n1", 2)], {}, snippet_of=snippet,
                      paths={"calc.py"}, head_sha=HEAD1)
    assert [e.finding for e in to_fix(ledger, "high")] == ["n1"]
    assert [e.finding for e in to_fix(ledger, "low")] == ["n1", "n2"]
    go = next_step(ledger, plan, own_pull=True, enabled=True, threshold="high", max_rounds=2)
    assert go.revise and "fix round 1 of 2" in go.reason
    assert not next_step(ledger, plan, own_pull=False, enabled=True, threshold="high", max_rounds=2).revise
    assert not next_step(ledger, plan, own_pull=True, enabled=False, threshold="high", max_rounds=2).revise
    assert not next_step(ledger, plan, own_pull=True, enabled=True, threshold="critical",
                         max_rounds=2).revise


def test_the_fix_loop_stops_at_max_rounds_or_when_a_round_finds_nothing_new() -> None:
    from dataclasses import replace
    ledger = replace(first_round(), fix_rounds=2)
    plan = plan_round(ledger, [], {}, snippet_of=snippet, paths={"calc.py"}, head_sha=HEAD2)
    stop = next_step(plan.ledger, plan, own_pull=True, enabled=True, threshold="high", max_rounds=2)
    assert not stop.revise and "human review" in stop.reason
    one = replace(first_round(), fix_rounds=1)
    quiet = plan_round(one, [], {}, snippet_of=snippet, paths={"calc.py"}, head_sha=HEAD2)
    stop = next_step(quiet.ledger, quiet, own_pull=True, enabled=True, threshold="high", max_rounds=3)
    assert not stop.revise and "nothing" in stop.reason
