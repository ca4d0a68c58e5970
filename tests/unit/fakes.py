"""Small hand-written fakes of the seams, for tests of the core that needs no I/O."""

from __future__ import annotations

from typing import Any

from github_app.github import Comment, Issue, PullRequest, Reaction, Repository, with_marker, write_marker
from github_app.tasks import TaskKey


class FakeHost:
    """A ``GitHost`` that remembers what was asked of it."""

    def __init__(self, permission: str = "write") -> None:
        self.permission_level = permission
        self.comments: dict[int, str] = {}
        self.labels: set[str] = set()
        self.reactions: list[tuple[str, int | None]] = []
        self.calls: list[str] = []
        self.granted = {"issues": "write", "pull_requests": "write", "contents": "write",
                        "metadata": "read"}
        self.files: dict[str, str] = {}

    def app_permissions(self, owner: str, repo: str) -> dict[str, str]:
        return dict(self.granted)

    def token(self) -> str:
        return "ghs_fake"

    def repository(self, owner: str, repo: str) -> Repository:
        return Repository(f"{owner}/{repo}", f"http://git.invalid/{owner}/{repo}.git", "main")

    def issue(self, task: TaskKey) -> Issue:
        return Issue(task.number, "t", "b", "open", "alice", tuple(self.labels))

    def permission(self, owner: str, repo: str, user: str) -> str:
        return self.permission_level

    def create_comment(self, task: TaskKey, body: str, key: str | None = None) -> int:
        if key is not None:
            found = self.find_comment(task, write_marker(key))
            if found is not None:
                return found
            body = with_marker(body, key)
        comment_id = 1000 + len(self.comments)
        self.comments[comment_id] = body
        return comment_id

    def update_comment(self, task: TaskKey, comment_id: int, body: str, key: str | None = None) -> None:
        assert comment_id in self.comments
        self.comments[comment_id] = body if key is None else with_marker(body, key)
        self.calls.append(f"update:{comment_id}")

    def list_comments(self, task: TaskKey) -> list[Comment]:
        return [Comment(i, body, "nightcrew[bot]") for i, body in sorted(self.comments.items())]

    def find_comment(self, task: TaskKey, marker: str) -> int | None:
        return next((i for i, body in sorted(self.comments.items()) if marker in body), None)

    def add_labels(self, task: TaskKey, labels: list[str]) -> None:
        self.labels.update(labels)

    def remove_label(self, task: TaskKey, label: str) -> None:
        self.labels.discard(label)

    def react(self, task: TaskKey, content: Reaction, comment_id: int | None = None) -> None:
        self.reactions.append((content, comment_id))

    def find_pull(self, owner: str, repo: str, head: str) -> PullRequest | None:
        return None

    def create_pull(self, owner: str, repo: str, *, head: str, base: str, title: str, body: str,
                    draft: bool = False) -> PullRequest:
        return PullRequest(1, "http://pr/1", head, "open")

    def read_file(self, owner: str, repo: str, path: str, ref: str | None = None) -> str | None:
        return self.files.get(path)


class FakeQueue:
    """A ``JobQueue`` holding jobs in a list."""

    def __init__(self, live: set[str] | None = None) -> None:
        self.jobs: list[tuple[str, tuple[Any, ...], str, str | None]] = []
        self.live = live or set()
        self.seen: set[str] = set()

    def enqueue(self, func: str, *args: Any, queue: str, job_id: str | None = None, heartbeat: bool = False,
                timeout_s: int = 3600) -> bool:
        if job_id in self.live:
            return False
        self.jobs.append((func, args, queue, job_id))
        if job_id:
            self.live.add(job_id)
        return True

    def is_live(self, job_id: str) -> bool:
        return job_id in self.live

    def enqueue_once(self, func: str, *args: Any, queue: str, job_id: str, keep_s: int,
                     timeout_s: int = 120) -> bool:
        if job_id in self.seen:
            return False
        self.seen.add(job_id)
        self.jobs.append((func, args, queue, job_id))
        return True
