"""Placement of findings on real diffs: every comment GitHub would accept, nothing lost.

Each fixture (tests/fixtures/diffs, origins in its README) is split into files here without the
module under test, and each comment is checked the way the GitHub stand-in checks
``pulls/create-review`` comments (``devhub.server._review_comment`` on ``DiffFile``).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from devhub.git_http import DiffFile
from runner.review.findings import Finding, Side
from runner.review.placement import (
    DiffError,
    InlineComment,
    Placement,
    PullDiff,
    Unplaced,
    comment_body,
    place,
    review_summary,
    suggestion_block,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "diffs"
DIFFS = sorted(FIXTURES.glob("*.diff"))
SIDES: tuple[Side, ...] = ("RIGHT", "LEFT")
EVERYTHING = 10**6  # no inline limit


# -- the independent validator -------------------------------------------------------------------

@dataclass
class Reference:
    """A file as the validator sees it: its head path and devhub's view of its patch."""

    path: str
    diff: DiffFile
    hunks: list[tuple[int, int, int, int]]  # old start, old count, new start, new count


_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")


def reference_files(text: str) -> dict[str, Reference]:
    """Split a git diff into files by hand: ``diff --git`` blocks, paths from ``rename to``,
    ``+++ b/``, ``--- a/`` (a deleted file), the ``Binary files`` line, else the header."""
    blocks = re.split(r"^(?=diff --git )", text, flags=re.M)
    files: dict[str, Reference] = {}
    for block in filter(None, blocks):
        lines = block.splitlines()
        path = _reference_path(lines)
        first_hunk = next((i for i, line in enumerate(lines) if line.startswith("@@")), None)
        patch = None if first_hunk is None else "\n".join(lines[first_hunk:])
        hunks = []
        for line in lines:
            if match := _HUNK.match(line):
                a, b, c, d = match.groups()
                hunks.append((int(a), int(b or 1), int(c), int(d or 1)))
        files[path] = Reference(path, DiffFile(filename=path, status="", additions=0, deletions=0,
                                               patch=patch, sha=None), hunks)
    return files


def _reference_path(lines: list[str]) -> str:
    for line in lines:
        if line.startswith("rename to "):
            return line[len("rename to "):]
    for line in lines:
        if line.startswith("+++ b/"):
            return line[len("+++ b/"):].rstrip("\t")
    for line in lines:
        if line.startswith("--- a/"):
            return line[len("--- a/"):].rstrip("\t")
    for line in lines:
        if match := re.fullmatch(r"Binary files (?:a/(.+)|/dev/null) and (?:b/(.+)|/dev/null) differ", line):
            return match.group(2) or match.group(1)
    header = lines[0][len("diff --git a/"):]
    half = (len(header) - len(" b/")) // 2
    assert header[half:half + 3] == " b/", header
    return header[:half]


def github_refusal(files: dict[str, Reference], comment: dict[str, object]) -> str | None:
    """Why GitHub would refuse this ``comments`` entry (None: it would take it)."""
    allowed = {"path", "line", "side", "body", "start_line", "start_side"}
    if set(comment) - allowed or not {"path", "line", "side", "body"} <= set(comment):
        return f"keys {sorted(comment)}"
    ref = files.get(str(comment["path"]))
    if ref is None:
        return "Path could not be resolved"
    line, side = comment["line"], str(comment["side"])
    assert isinstance(line, int)
    position = ref.diff.position_of(line, side)
    if position is None:
        return "line must be part of the diff"
    if "start_line" in comment:
        start, start_side = comment["start_line"], str(comment["start_side"])
        assert isinstance(start, int)
        start_position = ref.diff.position_of(start, start_side)
        if start_position is None:
            return "start line must be part of the diff"
        if ref.diff.hunk_of(start, start_side) != ref.diff.hunk_of(line, side):
            return "start line must be part of the same hunk as the line"
        if start_position >= position:
            return "start line must precede the end line"
    elif "start_side" in comment:
        return "start_side without start_line"
    return None


def commentable(ref: Reference, side: Side) -> list[int]:
    """Every line of ``side`` inside the hunks, from the ``@@`` headers alone."""
    lines = []
    for old, old_count, new, new_count in ref.hunks:
        start, count = (new, new_count) if side == "RIGHT" else (old, old_count)
        lines += range(start, start + count)
    return lines


def findings_for(files: dict[str, Reference]) -> tuple[list[Finding], set[str]]:
    """Findings on every commentable line and over every hunk (both sides), a few outside the
    hunks and one on a path the PR does not have; also the ids that must land exactly."""
    findings: list[Finding] = []
    exact: set[str] = set()

    def add(path: str, line: int, side: Side, end: int | None = None, *, inside: bool) -> None:
        ident = f"f{len(findings)}"
        findings.append(Finding(id=ident, path=path, line=line, end_line=end, side=side,
                                body=f"about {path}:{line} {side}", suggestion="x = 1"))
        if inside:
            exact.add(ident)

    for path, ref in files.items():
        for side in SIDES:
            lines = commentable(ref, side)
            shown = set(lines)
            for line in lines:
                add(path, line, side, inside=True)
            for old, old_count, new, new_count in ref.hunks:
                start, count = (new, new_count) if side == "RIGHT" else (old, old_count)
                if count >= 2:
                    add(path, start, side, start + count - 1, inside=True)
                    add(path, start + count - 1, side, start + count + 5, inside=False)
            for line in sorted({n + k for n in lines for k in (1, 3, 4, 5, 9)} - shown)[:20]:
                add(path, line, side, inside=False)
            add(path, 99_999, side, inside=False)
            if not lines:  # binary, or a rename without changes
                add(path, 1, side, inside=False)
    add("not/in/this/pull.py", 3, "RIGHT", inside=False)
    return findings, exact


@pytest.mark.parametrize("fixture", DIFFS, ids=lambda p: p.name)
def test_every_comment_is_valid_and_every_finding_is_placed_once(fixture: Path) -> None:
    text = fixture.read_text()
    files = reference_files(text)
    findings, exact = findings_for(files)
    placement = place(findings, PullDiff.from_text(text), max_inline=EVERYTHING)

    refusals = [(c.finding, why) for c in placement.comments
                if (why := github_refusal(files, c.to_github()))]
    assert refusals == []
    seen = Counter([c.finding for c in placement.comments] + [u.finding for u in placement.unplaced])
    assert seen == Counter(f.id for f in findings)
    by_id = {f.id: f for f in findings}
    for comment in placement.comments:
        finding = by_id[comment.finding]
        if comment.finding in exact:
            assert (comment.path, comment.side, comment.start_line, comment.line) == (
                finding.path, finding.side,
                finding.first_line if finding.end_line else None, finding.last_line)
            assert comment.moved_from is None
    assert exact <= {c.finding for c in placement.comments}
    assert len(placement.comments) >= len(exact) > 10


@pytest.mark.parametrize("fixture", DIFFS, ids=lambda p: p.name)
def test_paths_are_the_files_of_the_fixture(fixture: Path) -> None:
    text = fixture.read_text()
    assert set(PullDiff.from_text(text).paths) == set(reference_files(text))


# -- what each fixture holds ----------------------------------------------------------------------

def fixture(name: str) -> PullDiff:
    return PullDiff.from_text((FIXTURES / name).read_text())


def one(finding: Finding, diff: PullDiff, **kwargs: int) -> InlineComment | Unplaced:
    placement = place([finding], diff, **kwargs)
    assert len(placement.comments) + len(placement.unplaced) == 1
    return (placement.comments or placement.unplaced)[0]


def finding(path: str, line: int, side: Side = "RIGHT", end_line: int | None = None, **kw: str) -> Finding:
    return Finding(id=kw.pop("id", "a1"), path=path, line=line, end_line=end_line, side=side,
                   body=kw.pop("body", "Something is off here."), **kw)  # type: ignore[arg-type]


def test_renames_are_files_by_their_new_path() -> None:
    diff = fixture("layout-refactor.diff")
    app = diff.file("github_app/ingress/app.py")
    assert app is not None and app.status == "renamed" and app.old_path == "github_app/app.py"
    moved = diff.file("devhub/git_http.py")
    assert moved is not None and moved.status == "renamed" and moved.hunks == ()
    assert "github_app/app.py" not in diff.paths


def test_a_finding_naming_the_old_path_of_a_renamed_file_lands_on_the_new_path() -> None:
    diff = fixture("layout-refactor.diff")
    line = diff.files["github_app/ingress/app.py"].hunks[0].changed("RIGHT")[0]
    comment = one(finding("github_app/app.py", line), diff)
    assert isinstance(comment, InlineComment) and comment.path == "github_app/ingress/app.py"


def test_a_rename_without_changes_takes_no_line_comment() -> None:
    spot = one(finding("devhub/git_http.py", 10), fixture("layout-refactor.diff"))
    assert isinstance(spot, Unplaced) and "no lines of devhub/git_http.py" in spot.reason


def test_a_deleted_file_takes_comments_on_the_left_only() -> None:
    diff = fixture("layout-refactor.diff")
    gone = diff.files["runner/prompt.py"]
    assert gone.status == "removed" and gone.path == "runner/prompt.py"
    left = one(finding("runner/prompt.py", 5, "LEFT"), diff)
    assert isinstance(left, InlineComment) and (left.line, left.side) == (5, "LEFT")
    right = one(finding("runner/prompt.py", 5, "RIGHT"), diff)
    assert isinstance(right, Unplaced) and "has no RIGHT lines" in right.reason


def test_a_new_file_takes_comments_on_the_right_only() -> None:
    diff = fixture("fakes-move.diff")
    new = diff.files["runner/model/cache_marks.py"]
    assert new.status == "added" and new.old_path is None
    assert isinstance(one(finding(new.path, 87), diff), InlineComment)
    assert isinstance(one(finding(new.path, 1, "LEFT"), diff), Unplaced)


def test_a_deleted_only_line_is_not_on_the_right() -> None:
    diff = fixture("many-hunks.diff")
    deleted = diff.files["runner/safety.py"].hunks[2].changed("LEFT")
    beyond = next(n for n in deleted if diff.hunk_at("runner/safety.py", n, "RIGHT") is None)
    spot = one(finding("runner/safety.py", beyond, "RIGHT"), diff, move_within=0)
    assert isinstance(spot, Unplaced) and f"line {beyond} is not in the diff" in spot.reason
    left = one(finding("runner/safety.py", beyond, "LEFT"), diff)
    assert isinstance(left, InlineComment) and (left.line, left.side) == (beyond, "LEFT")


def test_binary_files_take_no_line_comment() -> None:
    for name, path in (("tzdata-2024.1-2024.2.diff", "tzdata-2024.2/src/tzdata/zoneinfo/Europe/Lisbon"),
                       ("paths-with-spaces.diff", "new icon.bin"), ("paths-with-spaces.diff", "gone.bin")):
        diff = fixture(name)
        assert diff.files[path].binary
        spot = one(finding(path, 1), diff)
        assert isinstance(spot, Unplaced) and "binary file" in spot.reason


def test_no_newline_at_end_of_file_is_not_a_line() -> None:
    diff = fixture("tzdata-2024.1-2024.2.diff")
    version = diff.files["tzdata-2024.2/VERSION"]
    assert [(line.kind, line.text) for line in version.hunks[0].lines] == [("-", "2024.1"), ("+", "2024.2")]
    assert diff.snippet("tzdata-2024.2/VERSION", 1, 1, "RIGHT") == "2024.2"
    assert diff.snippet("tzdata-2024.2/VERSION", 1, 1, "LEFT") == "2024.1"
    assert isinstance(one(finding("tzdata-2024.2/VERSION", 2), diff, move_within=0), Unplaced)


def test_paths_with_spaces_and_their_renames() -> None:
    diff = fixture("paths-with-spaces.diff")
    assert set(diff.paths) == {"docs/my notes.md", "docs/new name.txt", "gone.bin", "logo.png",
                               "new icon.bin", "tail.txt"}
    assert diff.files["docs/new name.txt"].old_path == "docs/old name.txt"
    assert diff.snippet("docs/my notes.md", 3, 4, "RIGHT") == "three\nfour"


def test_quoted_paths_are_unquoted() -> None:
    text = ('diff --git "a/caf\\303\\251 \\"x\\".txt" "b/caf\\303\\251 \\"x\\".txt"\n'
            'index 1111111..2222222 100644\n--- "a/caf\\303\\251 \\"x\\".txt"\n'
            '+++ "b/caf\\303\\251 \\"x\\".txt"\n@@ -1 +1 @@\n-a\n+b\n')
    assert PullDiff.from_text(text).paths == ('café "x".txt',)


def test_many_hunks_each_comment_in_its_own_hunk() -> None:
    diff = fixture("many-hunks.diff")
    safety = diff.files["runner/safety.py"]
    assert len(safety.hunks) == 12
    for hunk in safety.hunks:
        line = (hunk.changed("RIGHT") or hunk.changed("LEFT"))[0]
        side: Side = "RIGHT" if hunk.changed("RIGHT") else "LEFT"
        assert diff.hunk_at("runner/safety.py", line, side) == hunk


def test_snippet_is_the_text_the_diff_shows() -> None:
    diff = fixture("layout-refactor.diff")
    assert diff.snippet("runner/cli/__main__.py", 1, 2, "RIGHT").startswith('"""')
    assert diff.snippet("runner/cli/__main__.py", 50, 60, "RIGHT") == ""
    assert diff.snippet("nowhere.py", 1, 2, "RIGHT") == ""


# -- ranges ---------------------------------------------------------------------------------------

def test_a_range_in_one_hunk_keeps_its_lines_and_start_line_is_the_first() -> None:
    diff = fixture("layout-refactor.diff")
    comment = one(finding("runner/cli/__main__.py", 2, end_line=4), diff)
    assert isinstance(comment, InlineComment)
    assert comment.to_github() == {"path": "runner/cli/__main__.py", "line": 4, "side": "RIGHT",
                                   "start_line": 2, "start_side": "RIGHT", "body": comment.body}


def test_a_range_of_one_line_has_no_start_line() -> None:
    diff = fixture("layout-refactor.diff")
    comment = one(finding("runner/cli/__main__.py", 3, end_line=3), diff)
    assert isinstance(comment, InlineComment) and comment.start_line is None
    assert set(comment.to_github()) == {"path", "line", "side", "body"}
    assert InlineComment("a", "p", 3, "RIGHT", "b", start_line=3, start_side="RIGHT").to_github() == {
        "path": "p", "line": 3, "side": "RIGHT", "body": "b"}


def test_a_range_across_two_hunks_is_clipped_to_one_and_says_so() -> None:
    diff = fixture("many-hunks.diff")
    first, second = diff.files["runner/safety.py"].hunks[:2]
    a, b = first.span("RIGHT"), second.span("RIGHT")
    assert a is not None and b is not None and a[1] < b[0]
    spot = one(finding("runner/safety.py", a[1] - 1, end_line=b[0] + 3, suggestion="y"), diff)
    assert isinstance(spot, InlineComment)
    assert (spot.start_line, spot.line) == (b[0], b[0] + 3)  # the larger part: 4 lines against 2
    assert f"About lines {a[1] - 1}–{b[0] + 3}" in spot.body
    assert "suggestion" not in spot.body.split("_About")[0] and "left out" in spot.body


def test_a_range_partly_outside_its_hunk_is_clipped_to_the_hunk() -> None:
    diff = fixture("layout-refactor.diff")
    spot = one(finding("runner/cli/__main__.py", 4, end_line=9), diff)
    assert isinstance(spot, InlineComment) and (spot.start_line, spot.line) == (4, 5)


def test_a_reversed_range_is_read_first_to_last() -> None:
    diff = fixture("layout-refactor.diff")
    spot = one(finding("runner/cli/__main__.py", 4, end_line=2), diff)
    assert isinstance(spot, InlineComment) and (spot.start_line, spot.line) == (2, 4)


# -- moving ---------------------------------------------------------------------------------------

def small_diff() -> PullDiff:
    # One hunk: new lines 10-16, changed lines 13 (added) and old 13 (deleted).
    return PullDiff.from_text(
        "diff --git a/m.py b/m.py\nindex 1111111..2222222 100644\n--- a/m.py\n+++ b/m.py\n"
        "@@ -10,7 +10,7 @@ def f():\n a\n b\n c\n-old\n+new\n d\n e\n f\n")


@pytest.mark.parametrize("within", [0, 1, 3, 5])
def test_a_finding_exactly_move_within_lines_outside_moves_one_more_does_not(within: int) -> None:
    diff = small_diff()
    below = one(finding("m.py", 16 + within), diff, move_within=within)
    above = one(finding("m.py", 10 - within), diff, move_within=within)
    if within == 0:
        assert isinstance(below, InlineComment) and below.line == 16 and below.moved_from is None
    else:
        for spot, line in ((below, 16 + within), (above, 10 - within)):
            assert isinstance(spot, InlineComment), spot
            assert (spot.line, spot.side, spot.moved_from) == (13, "RIGHT", line)
            assert f"About line {line}" in spot.body
    for line in (16 + within + 1, 10 - within - 1):
        if line < 1:
            continue
        spot = one(finding("m.py", line), diff, move_within=within)
        assert isinstance(spot, Unplaced) and f"line {line} is not in the diff" in spot.reason


def test_a_moved_finding_on_the_left_goes_to_a_deleted_line_and_loses_its_suggestion() -> None:
    spot = one(finding("m.py", 18, "LEFT", suggestion="z"), small_diff())
    assert isinstance(spot, InlineComment) and (spot.line, spot.side, spot.moved_from) == (13, "LEFT", 18)
    assert "```suggestion" not in spot.body


def test_a_range_just_outside_moves_to_one_changed_line() -> None:
    spot = one(finding("m.py", 17, end_line=19), small_diff())
    assert isinstance(spot, InlineComment) and spot.start_line is None and spot.line == 13
    assert "About lines 17–19" in spot.body


# -- bodies and suggestions -----------------------------------------------------------------------

def test_comment_body_leads_with_severity_and_category() -> None:
    text = comment_body(finding("m.py", 13, severity="high", category="correctness", body="Off by one."))
    assert text.startswith("**high** · correctness\n\nOff by one.")
    assert comment_body(finding("m.py", 13, severity="low")).startswith("**low**\n\n")


def test_a_suggestion_on_the_right_replaces_exactly_the_commented_lines() -> None:
    spot = one(finding("m.py", 12, end_line=13, suggestion="c\nnewer\n"), small_diff())
    assert isinstance(spot, InlineComment) and (spot.start_line, spot.line) == (12, 13)
    assert spot.body.endswith("```suggestion\nc\nnewer\n```")


def test_a_suggestion_on_the_left_is_left_out_with_a_note() -> None:
    spot = one(finding("m.py", 13, "LEFT", suggestion="restored"), small_diff())
    assert isinstance(spot, InlineComment) and spot.side == "LEFT"
    assert "```suggestion" not in spot.body and "restored" not in spot.body
    assert "deleted (LEFT) lines" in spot.body


def test_a_suggestion_holding_a_fence_gets_a_longer_one() -> None:
    assert suggestion_block("x = '```'") == "````suggestion\nx = '```'\n````"
    assert suggestion_block("a ````` b") == "``````suggestion\na ````` b\n``````"
    assert suggestion_block("") == "```suggestion\n```"
    spot = one(finding("m.py", 13, suggestion="s = '''\n```\n'''"), small_diff())
    assert isinstance(spot, InlineComment) and "````suggestion\ns = '''\n```\n'''\n````" in spot.body


def test_a_custom_body_renderer_is_used() -> None:
    spot = one(finding("m.py", 13), small_diff())
    placed = place([finding("m.py", 13)], small_diff(), body=lambda f: f"<{f.id}>")
    assert isinstance(spot, InlineComment) and placed.comments[0].body == "<a1>"


# -- the inline limit -----------------------------------------------------------------------------

def test_past_max_inline_the_least_severe_go_first_ties_keep_input_order() -> None:
    severities = ["low", "high", "medium", "low", "critical", "medium", "low"]
    findings = [finding("m.py", 13, id=f"f{n}", severity=s) for n, s in enumerate(severities)]
    placement = place(findings, small_diff(), max_inline=4)
    assert [c.finding for c in placement.comments] == ["f1", "f2", "f4", "f5"]
    assert [u.finding for u in placement.unplaced] == ["f0", "f3", "f6"]
    assert {u.reason for u in placement.unplaced} == {"over this round's limit of 4 inline comments"}


def test_the_limit_counts_only_comments_and_keeps_unplaced_in_input_order() -> None:
    findings = [finding("nowhere.py", 1, id="x"), finding("m.py", 13, id="y", severity="low"),
                finding("m.py", 14, id="z", severity="high")]
    placement = place(findings, small_diff(), max_inline=1)
    assert [c.finding for c in placement.comments] == ["z"]
    assert [u.finding for u in placement.unplaced] == ["x", "y"]


# -- values ---------------------------------------------------------------------------------------

def test_json_shapes() -> None:
    comment = InlineComment("f1", "a.py", 5, "RIGHT", "b", start_line=3, start_side="RIGHT", moved_from=None)
    assert comment.to_json() == {"path": "a.py", "line": 5, "side": "RIGHT", "body": "b", "start_line": 3,
                                 "start_side": "RIGHT", "subject_type": "line", "finding": "f1"}
    unplaced = Unplaced("f2", "b.py", 40, "line 40 is not in the diff")
    assert unplaced.to_json() == {"finding": "f2", "path": "b.py", "line": 40,
                                  "reason": "line 40 is not in the diff"}
    assert unplaced.where == "b.py:40"


def test_review_summary_counts_and_lists_what_is_not_inline() -> None:
    placement = place([finding("m.py", 13, id="in"), finding("m.py", 40, id="out", body="Leaks a file.\nMore.")],
                      small_diff())
    text = review_summary(placement)
    assert text.splitlines()[0] == "**nightcrew review**: 2 finding(s), 1 inline, 1 listed here."
    assert "- `m.py:40` — Leaks a file. _(line 40 is not in the diff" in text
    assert review_summary(Placement()) == "**nightcrew review**: 0 finding(s), 0 inline."


# -- bad diffs ------------------------------------------------------------------------------------

@pytest.mark.parametrize("text", [
    "this is not a diff\n",
    "diff --git a/x b/x\n--- a/x\n+++ b/x\n@@ -1,3 +1,3 @@\n a\n-b\n",  # a hunk cut short
    "diff --git a/x b/x\n--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n+c\n+d\n@@ -9 +9 @@\n",
    "--- a/x\n+++ b/y\n+++ b/z\n",
])
def test_text_that_is_not_a_diff_is_a_diff_error(text: str) -> None:
    with pytest.raises(DiffError, match="not a unified diff"):
        PullDiff.from_text(text)


def test_an_empty_diff_has_no_files() -> None:
    assert PullDiff.from_text("").paths == ()
    placement = place([finding("m.py", 1)], PullDiff.from_text(""))
    assert placement.comments == () and "not in this pull request" in placement.unplaced[0].reason
