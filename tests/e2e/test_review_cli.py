"""``nightcrew review`` on a real git repository: a rename, a deletion and an edit reviewed locally.

The command runs as a user runs it (``python -m runner.cli``), so its errors are checked as the
one line ``main()`` prints.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.e2e

A_PY = "".join(f"value_{n} = {n}\n" for n in range(1, 31))
OLD_PY = "".join(f"def old_{n}():\n    return {n}\n" for n in range(1, 6))
GONE_PY = "import os\nprint(os.getcwd())\n"


def sh(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True,
                          env=env).stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """base: a.py, old.py, gone.py; head: a.py line 10 changed, old.py → new.py (one line
    changed), gone.py deleted."""
    repo = tmp_path / "repo"
    repo.mkdir()
    sh(repo, "init", "-q", "-b", "main")
    (repo / "a.py").write_text(A_PY)
    (repo / "old.py").write_text(OLD_PY)
    (repo / "gone.py").write_text(GONE_PY)
    sh(repo, "add", "-A")
    sh(repo, "commit", "-qm", "base")
    sh(repo, "checkout", "-qb", "feature")
    (repo / "a.py").write_text(A_PY.replace("value_10 = 10\n", "value_10 = 'ten'\n"))
    sh(repo, "commit", "-qam", "Make ten a word")
    sh(repo, "mv", "old.py", "new.py")
    (repo / "new.py").write_text(OLD_PY.replace("return 3\n", "return -3\n"))
    sh(repo, "rm", "-q", "gone.py")
    sh(repo, "add", "-A")
    sh(repo, "commit", "-qm", "Rename old.py, drop gone.py")
    return repo


def nightcrew(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NIGHTCREW_")}
    return subprocess.run([sys.executable, "-m", "runner.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60)


def write(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return path


FINDINGS = [
    {"id": "edit", "path": "a.py", "line": 10, "severity": "high", "category": "types",
     "body": "A word where a number was.", "suggestion": "value_10 = 10\n"},
    {"id": "range", "path": "a.py", "line": 9, "end_line": 11, "body": "These three belong together."},
    {"id": "deleted", "path": "gone.py", "line": 2, "side": "LEFT", "body": "Was this print needed?",
     "suggestion": "print()"},
    {"id": "deleted-right", "path": "gone.py", "line": 2, "body": "Not in the head at all."},
    {"id": "renamed", "path": "new.py", "line": 6, "severity": "critical", "body": "Negative now."},
    {"id": "near", "path": "a.py", "line": 16, "severity": "low", "body": "Just below the hunk."},
    {"id": "far", "path": "a.py", "line": 28, "body": "Far from the change."},
]


def test_findings_are_placed_on_the_local_range(repo: Path, tmp_path: Path) -> None:
    findings = write(tmp_path / "findings.json", FINDINGS)
    proc = nightcrew("review", "--repo", str(repo), "--base", "main", "--head", "feature",
                     "--findings", str(findings), "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert set(out) == {"comments", "unplaced", "summary"}
    comments = {c["finding"]: c for c in out["comments"]}
    unplaced = {u["finding"]: u for u in out["unplaced"]}
    assert sorted([*comments, *unplaced]) == sorted(f["id"] for f in FINDINGS)

    edit = comments["edit"]
    assert {k: edit[k] for k in ("path", "line", "side", "subject_type")} == {
        "path": "a.py", "line": 10, "side": "RIGHT", "subject_type": "line"}
    assert "start_line" not in edit
    assert edit["body"].startswith("**high** · types\n\nA word where a number was.")
    assert edit["body"].endswith("```suggestion\nvalue_10 = 10\n```")
    assert {k: comments["range"].get(k) for k in ("start_line", "start_side", "line")} == {
        "start_line": 9, "start_side": "RIGHT", "line": 11}
    assert (comments["deleted"]["line"], comments["deleted"]["side"]) == (2, "LEFT")
    assert "```suggestion" not in comments["deleted"]["body"]
    assert (comments["renamed"]["path"], comments["renamed"]["line"]) == ("new.py", 6)
    assert (comments["near"]["line"], comments["near"]["side"]) == (10, "RIGHT")  # 3 below the hunk
    assert "About line 16" in comments["near"]["body"]
    assert unplaced["far"] == {"finding": "far", "path": "a.py", "line": 28,
                               "reason": "line 28 is not in the diff (15 lines from the nearest "
                                         "hunk; comments move at most 3)"}
    assert "has no RIGHT lines" in unplaced["deleted-right"]["reason"]
    assert "`a.py:28` — Far from the change." in out["summary"]


def test_the_readable_review_lists_comments_then_the_summary(repo: Path, tmp_path: Path) -> None:
    findings = write(tmp_path / "findings.json", {"findings": FINDINGS[:2] + FINDINGS[-1:]})
    proc = nightcrew("review", "--repo", str(repo), "--base", "main", "--head", "feature",
                     "--findings", str(findings), "--max-inline", "1", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert "── a.py:10 (RIGHT)" in text and "A word where a number was." in text
    assert "a.py:9-11" not in text  # the limit of 1 keeps the high one
    assert text.index("── a.py:10") < text.index("── summary")
    assert "over this round's limit of 1 inline comments" in text


def test_the_review_model_is_asked_with_model_scripted(repo: Path, tmp_path: Path) -> None:
    script = [{"tool_calls": [{"name": "submit_review", "input": {
        "findings": [{"path": "new.py", "line": 6, "severity": "high", "body": "Sign flipped."}],
        "summary": "One problem."}}]}]
    path = write(tmp_path / "script.json", script)
    proc = nightcrew("review", "--repo", str(repo), "--base", "main", "--head", "feature",
                     "--model", f"scripted:{path}", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert [(c["path"], c["line"], c["side"]) for c in out["comments"]] == [("new.py", 6, "RIGHT")]
    assert "Sign flipped." in out["comments"][0]["body"]


@pytest.mark.parametrize(("args", "message"), [
    (["--base", "no-such-branch", "--findings", "GOOD"], "failed: fatal: bad revision 'no-such-branch...feature'"),
    (["--base", "--upload-pack=x", "--findings", "GOOD"], "is not a git ref"),
    (["--base", "main", "--findings", "MISSING"], "missing.json: no such file"),
    (["--base", "main", "--findings", "NOTJSON"], "not JSON"),
    (["--base", "main", "--findings", "BADENTRY"], "finding 1: line must be a line number"),
    (["--base", "main"], "give either --findings FILE or --model SPEC"),
    (["--base", "main", "--findings", "GOOD", "--model", "scripted:x"], "give either"),
])
def test_bad_input_is_one_line(repo: Path, tmp_path: Path, args: list[str], message: str) -> None:
    files = {"MISSING": tmp_path / "missing.json", "NOTJSON": write(tmp_path / "n.json", "[{oops"),
             "BADENTRY": write(tmp_path / "b.json", [FINDINGS[0], {"path": "a.py", "line": 0, "body": "x"}]),
             "GOOD": write(tmp_path / "g.json", FINDINGS)}
    args = [str(files[a]) if a in files else a for a in args]
    proc = nightcrew("review", "--repo", str(repo), "--head", "feature", *args, cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nightcrew: ") and message in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_directory_that_is_not_a_repository_is_one_line(tmp_path: Path) -> None:
    findings = write(tmp_path / "f.json", FINDINGS)
    plain = tmp_path / "plain"
    plain.mkdir()
    proc = nightcrew("review", "--repo", str(plain), "--base", "main", "--findings", str(findings),
                     cwd=tmp_path)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and f"git diff in {plain} failed" in lines[0]
