"""The task prompt: the issue (sanitized: it is untrusted), the failing tests, the file list."""

from __future__ import annotations

import re
from collections.abc import Sequence

from github_app.github import Issue
from runner.testrun import TestReport

_HTML_COMMENT = re.compile(r"<!--.*?(-->|$)", re.DOTALL)
# Zero-width and bidi-control characters hide instructions from the human reader.
_INVISIBLE = re.compile("[\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]")
MAX_ISSUE_CHARS = 8_000
MAX_TEST_CHARS = 6_000


def sanitize(text: str) -> str:
    """Remove what a person reading the issue on GitHub cannot see."""
    text = _HTML_COMMENT.sub("", text)
    text = _INVISIBLE.sub("", text)
    return text.strip()


def task_prompt(
    issue: Issue, tests: TestReport | None, files: list[str], rules: Sequence[str] = (),
) -> str:
    """The first user message of the agent's conversation."""
    body = sanitize(issue.body)[:MAX_ISSUE_CHARS]
    parts = [
        f"Fix issue #{issue.number}: {sanitize(issue.title)}",
        "<issue>",
        body or "(no description)",
        "</issue>",
    ]
    if tests is not None:
        parts += [
            f"The test suite before any change: {tests.passed} passed, {tests.failed} failed, "
            f"{tests.errors} errors (exit {tests.exit_code}).",
            "<test-output>", tests.output[-MAX_TEST_CHARS:], "</test-output>",
        ]
    if rules:
        parts += ["The repository's rules for changes (from .github/nightcrew.yml):",
                  *(f"- {sanitize(rule)}" for rule in rules)]
    parts += ["Files in the repository:", "\n".join(files[:200])]
    return "\n".join(parts)
