"""Task identity: an issue is a task, named ``owner/repo#N``."""

from __future__ import annotations

import re
from dataclasses import dataclass

_KEY = re.compile(r"^(?P<owner>[A-Za-z0-9_.-]+)/(?P<repo>[A-Za-z0-9_.-]+)#(?P<number>[1-9][0-9]*)$")
_BRANCH = re.compile(r"nightcrew/issue-([1-9][0-9]*)")


@dataclass(frozen=True, order=True)
class TaskKey:
    """The task's key; also its RQ job id, so one issue has at most one live run."""

    owner: str
    repo: str
    number: int

    def __str__(self) -> str:
        return f"{self.owner}/{self.repo}#{self.number}"

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.repo}"

    def with_number(self, number: int) -> TaskKey:
        """The issue or pull request ``number`` of the same repository."""
        return TaskKey(self.owner, self.repo, number)

    @property
    def branch(self) -> str:
        return f"nightcrew/issue-{self.number}"

    @property
    def job_id(self) -> str:
        """The RQ job id: RQ accepts only [A-Za-z0-9_-], so other characters become -XX."""
        return "task_" + "".join(
            ch if ch.isascii() and (ch.isalnum() or ch == "_") else f"-{ord(ch):02x}"
            for ch in str(self)
        )

    @classmethod
    def parse(cls, text: str) -> TaskKey:
        """Parse ``owner/repo#N``; raise ValueError with the text otherwise."""
        match = _KEY.match(text)
        if match is None:
            raise ValueError(f"not a task key (owner/repo#N): {text!r}")
        return cls(match["owner"], match["repo"], int(match["number"]))


def issue_of_branch(head_ref: str) -> int | None:
    """The issue a nightcrew branch works on (``nightcrew/issue-42`` → 42; ``TaskKey.branch``)."""
    match = _BRANCH.fullmatch(head_ref)
    return int(match.group(1)) if match else None
