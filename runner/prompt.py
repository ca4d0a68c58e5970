"""The task prompt: the issue (sanitized: it is untrusted), the failing tests, the file list."""

from __future__ import annotations

from collections.abc import Sequence

from github_app.github import Issue
from runner.context import untrusted
from runner.testrun import TestReport

MAX_ISSUE_CHARS = 8_000
MAX_TEST_CHARS = 6_000


def sanitize(text: str) -> str:
    """Remove what a person reading the issue on GitHub cannot see (``runner.context.untrusted``)."""
    return untrusted.sanitize(text)


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
