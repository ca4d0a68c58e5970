"""The walking skeleton, end to end: labeled issue → signed webhook → RQ → worker → sandbox →
scripted model behind the real Anthropic SDK → push over smart-HTTP → PR → status comment."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from devhub import DevHub
from github_app.tracker.status import MARKER
from runner.cli.demo import OWNER, REPO, run_demo

pytestmark = pytest.mark.e2e


def test_demo_opens_a_tested_pr_and_keeps_one_status_comment() -> None:
    seen: dict[str, Any] = {}

    def inspect(hub: DevHub, result: dict[str, Any]) -> None:
        seen["issue"] = hub.issue(OWNER, REPO, result["issue"])
        seen["pulls"] = hub.pulls(OWNER, REPO)
        seen["fixed"] = hub.file_at(OWNER, REPO, result["branch"], "calc.py")
        seen["main"] = hub.file_at(OWNER, REPO, "main", "calc.py")
        seen["violations"] = list(hub.violations)
        seen["deliveries"] = list(hub.deliveries)
        seen["threads"] = hub.review_threads(OWNER, REPO, result["pr"])

    result = run_demo(json_output=True, inspect=inspect)

    assert result["ok"] is True
    assert result["tests_before"] == {"passed": 1, "failed": 1}
    assert result["tests_after"] == {"passed": 2, "failed": 0}
    assert result["tokens"] > 0 and result["cost_usd"] > 0
    assert "nightcrew:done" in result["labels"] and "nightcrew:queued" not in result["labels"]
    [pull] = seen["pulls"]
    assert pull["number"] == result["pr"] and pull["head"] == "nightcrew/issue-1"
    assert "Fixes #1" in pull["body"]
    assert "return a + b" in seen["fixed"] and "return a - b" in seen["main"]
    status = [c for c in seen["issue"]["comments"] if MARKER in c["body"]]
    assert len(status) == 1 and status[0]["id"] == result["status_comment"]
    assert "pull request opened" in status[0]["body"] and str(pull["number"]) in status[0]["body"]
    assert seen["violations"] == []  # every request nightcrew sent was one GitHub would accept
    # Opening its own PR asked for a review round: one inline comment on the changed line.
    assert result["reviewed"] is True
    [thread] = seen["threads"]
    assert (thread["path"], thread["line"], thread["comments"][0]["author"]) == (
        "calc.py", 6, "nightcrew[bot]")


def test_demo_cli_prints_one_json_object() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "runner.cli", "demo", "--json"], capture_output=True, text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert set(result) >= {"issue", "pr", "branch", "tests_before", "tests_after",
                           "status_comment", "labels", "tokens", "cost_usd"}
    assert result["pr"] and result["tests_after"]["failed"] == 0
