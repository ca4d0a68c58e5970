"""The tracker seam: everything nightcrew writes on a task's issue goes through ``IssueTracker``.

That is the status comment (one per task, edited in place, found again by its write key), the
signed checkpoint block under it, and the ``nightcrew:*`` state label. Intake (queued, stopped
while queued), dispatch (queue positions), the stopper (stopped from outside), the reconciler
(reading) and the running task (``runner.pipeline.live_status``) all use it, so how a state
becomes a label and a comment lives here and in ``lifecycle`` only.
"""

from __future__ import annotations

from dataclasses import replace

from github_app.github import GitHost
from github_app.tasks import TaskKey
from github_app.tracker import lifecycle, status
from github_app.tracker.checkpoint import BlockRead, Checkpoint, read_block, render_block, utc_now
from github_app.tracker.lifecycle import State
from github_app.tracker.status import StatusView


class IssueTracker:
    """One task's issue, as nightcrew writes it. ``key`` signs checkpoints (None: no block)."""

    def __init__(self, host: GitHost, task: TaskKey, key: bytes | None, *,
                 comment_id: int | None = None) -> None:
        self.host = host
        self.task = task
        self.key = key
        self.comment_id = comment_id
        self._label: str | None = None  # the state label this tracker last set

    # -- reading -----------------------------------------------------------------------------

    def status_body(self) -> str:
        """The status comment's body as it is on GitHub ("" when there is none yet)."""
        comment_id = self.find()
        if comment_id is None:
            return ""
        return next((c.body for c in self.host.list_comments(self.task) if c.id == comment_id), "")

    def find(self) -> int | None:
        """The status comment's id (looked up once, then remembered)."""
        if self.comment_id is None:
            self.comment_id = self.host.find_comment(self.task, status.MARKER)
        return self.comment_id

    def checkpoint(self, body: str | None = None) -> BlockRead:
        """The signed checkpoint under the status comment (``BlockRead(None, None)``: none)."""
        if self.key is None:
            return BlockRead(None, None)
        return read_block(self.status_body() if body is None else body, self.key, task=str(self.task))

    # -- writing -----------------------------------------------------------------------------

    def write(self, view: StatusView, checkpoint: Checkpoint | None = None) -> int:
        """Create or edit the status comment showing ``view``, signed ``checkpoint`` under it.

        Without a ``checkpoint`` the block ``view`` carries (if any) is kept as it is.
        """
        if checkpoint is not None and self.key is not None:
            view = replace(view, checkpoint_block=render_block(checkpoint, self.key))
        body = status.render(view)
        key = status.comment_key(self.task)
        # An issue that had a task before keeps its one status comment: found and edited (a
        # create with the same write key would return the old comment without changing it).
        if self.find() is None:
            self.comment_id = self.host.create_comment(self.task, body, key=key)
        else:
            assert self.comment_id is not None
            self.host.update_comment(self.task, self.comment_id, body, key=key)
        return self.comment_id

    def write_keeping_checkpoint(self, view: StatusView) -> int:
        """Edit the status comment, carrying its current checkpoint block over unchanged
        (a queue position: after a lost Redis that block is what brings the task back)."""
        body = self.status_body() if self.find() is not None else ""
        return self.write(replace(view, checkpoint_block=status.checkpoint_line(body)))

    def set_state(self, state: State) -> None:
        """The state's label on the issue, and no other ``nightcrew:*`` state label.

        The first swap reads the issue's labels and removes the stale ones present; later
        swaps remove only the label this tracker set last.
        """
        wanted = lifecycle.label(state)
        if self._label is None:
            stale = [lb for lb in self.host.issue(self.task).labels
                     if lb in lifecycle.ALL_LABELS and lb != wanted]
        else:
            stale = [self._label] if self._label != wanted else []
        for label in stale:
            self.host.remove_label(self.task, label)
        if self._label != wanted:
            self.host.add_labels(self.task, [wanted])
        self._label = wanted


def empty_checkpoint(task: TaskKey, state: State) -> Checkpoint:
    """The checkpoint of a task that has done nothing yet (queued, or stopped before starting)."""
    return Checkpoint(task=str(task), state=state, step=0, branch=task.branch, head_sha=None,
                      base_sha=None, plan=(), budget={}, approved=(), pr_number=None, writes=(),
                      updated_at=utc_now())
