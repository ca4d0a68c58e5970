"""IssueTracker: one status comment per task, its signed checkpoint, one state label; and how the
status comment shows the publishing state."""

from __future__ import annotations

from dataclasses import replace

import pytest

from github_app.github import Issue, write_marker
from github_app.tasks import TaskKey
from github_app.tracker import lifecycle
from github_app.tracker.checkpoint import BLOCK_PREFIX, BlockRead, checkpoint_key
from github_app.tracker.issue import IssueTracker, empty_checkpoint
from github_app.tracker.status import MARKER, StatusView, comment_key, render
from tests.unit.fakes import FakeHost

TASK = TaskKey.parse("octo/hello#3")
KEY = checkpoint_key("tracker-test-secret-not-real")


class LabelHost(FakeHost):
    """A FakeHost that also remembers each label request and each read of the issue."""

    def __init__(self, labels: set[str] | None = None) -> None:
        super().__init__()
        self.labels = set(labels or ())
        self.label_calls: list[str] = []

    def issue(self, task: TaskKey) -> Issue:
        self.label_calls.append("read")
        return super().issue(task)

    def add_labels(self, task: TaskKey, labels: list[str]) -> None:
        self.label_calls += [f"+{label}" for label in labels]
        super().add_labels(task, labels)

    def remove_label(self, task: TaskKey, label: str) -> None:
        assert label in self.labels, f"removing {label}, which the issue does not carry"
        self.label_calls.append(f"-{label}")
        super().remove_label(task, label)


def state_labels(host: FakeHost) -> set[str]:
    return host.labels & set(lifecycle.ALL_LABELS)


# -- the status comment ----------------------------------------------------------------------


def test_the_first_write_creates_the_status_comment_with_its_write_key() -> None:
    host = FakeHost()
    tracker = IssueTracker(host, TASK, KEY)
    comment_id = tracker.write(StatusView("queued", str(TASK)))
    [(only_id, body)] = host.comments.items()
    assert comment_id == only_id == tracker.comment_id
    assert body.startswith(MARKER) and "⏳ **queued**" in body
    assert write_marker(comment_key(TASK)) in body  # a retried job finds it instead of writing again
    assert host.calls == []


def test_later_writes_edit_the_same_comment() -> None:
    host = FakeHost()
    tracker = IssueTracker(host, TASK, KEY)
    comment_id = tracker.write(StatusView("queued", str(TASK)))
    assert tracker.write(StatusView("running", str(TASK), step=2)) == comment_id
    assert tracker.write(StatusView("failed", str(TASK), detail="Tests broke.")) == comment_id
    assert list(host.comments) == [comment_id]
    assert host.calls == [f"update:{comment_id}", f"update:{comment_id}"]
    body = host.comments[comment_id]
    assert "❌ **failed**" in body and "Tests broke." in body and "queued" not in body
    assert write_marker(comment_key(TASK)) in body


def test_another_process_finds_the_status_comment_and_edits_it() -> None:
    host = FakeHost()
    host.create_comment(TASK, "Thanks for the report!")  # not the status comment
    comment_id = IssueTracker(host, TASK, KEY).write(StatusView("queued", str(TASK)))
    later = IssueTracker(host, TASK, KEY)
    assert later.find() == comment_id
    later.write_keeping_checkpoint(StatusView("queued", str(TASK), queue_position=2))
    assert len(host.comments) == 2 and host.calls == [f"update:{comment_id}"]
    assert "Queued · position 2." in later.status_body()


def test_an_issue_without_a_status_comment_reads_as_empty() -> None:
    tracker = IssueTracker(FakeHost(), TASK, KEY)
    assert tracker.find() is None and tracker.status_body() == ""
    assert tracker.checkpoint() == BlockRead(None, None)


# -- the checkpoint under it -----------------------------------------------------------------


def test_a_checkpoint_written_with_the_status_is_signed_into_it_and_read_back() -> None:
    host = FakeHost()
    checkpoint = replace(empty_checkpoint(TASK, "running"), step=4, head_sha="a" * 40)
    IssueTracker(host, TASK, KEY).write(StatusView("running", str(TASK), step=4), checkpoint)
    [body] = host.comments.values()
    assert BLOCK_PREFIX in body
    read = IssueTracker(host, TASK, KEY).checkpoint()  # a fresh reader, as after a crash
    assert read == BlockRead(checkpoint, None)
    wrong_key = IssueTracker(host, TASK, checkpoint_key("another-secret-not-real")).checkpoint()
    assert wrong_key.checkpoint is None and wrong_key.problem is not None


def test_checkpoint_reads_a_body_it_is_given() -> None:
    host = FakeHost()
    checkpoint = empty_checkpoint(TASK, "queued")
    tracker = IssueTracker(host, TASK, KEY)
    tracker.write(StatusView("queued", str(TASK)), checkpoint)
    body = tracker.status_body()
    tracker.write(StatusView("running", str(TASK)))  # no checkpoint given, none in the view
    assert tracker.checkpoint().checkpoint is None
    assert tracker.checkpoint(body).checkpoint == checkpoint


def test_without_a_key_nothing_is_signed_and_nothing_read() -> None:
    host = FakeHost()
    tracker = IssueTracker(host, TASK, None)
    tracker.write(StatusView("queued", str(TASK)), empty_checkpoint(TASK, "queued"))
    [body] = host.comments.values()
    assert BLOCK_PREFIX not in body
    assert tracker.checkpoint() == BlockRead(None, None)


def test_write_keeping_checkpoint_carries_the_block_over_unchanged() -> None:
    host = FakeHost()
    checkpoint = empty_checkpoint(TASK, "queued")
    IssueTracker(host, TASK, KEY).write(StatusView("queued", str(TASK)), checkpoint)
    [block_before] = [line for line in next(iter(host.comments.values())).splitlines()
                      if line.startswith(BLOCK_PREFIX)]
    positions = IssueTracker(host, TASK, None)  # dispatch holds no key, yet keeps the block
    positions.write_keeping_checkpoint(StatusView("queued", str(TASK), queue_position=3))
    [body] = host.comments.values()
    assert "Queued · position 3." in body
    assert [line for line in body.splitlines() if line.startswith(BLOCK_PREFIX)] == [block_before]
    assert IssueTracker(host, TASK, KEY).checkpoint() == BlockRead(checkpoint, None)


def test_write_keeping_checkpoint_on_an_issue_without_one_creates_the_comment() -> None:
    host = FakeHost()
    tracker = IssueTracker(host, TASK, KEY)
    comment_id = tracker.write_keeping_checkpoint(StatusView("queued", str(TASK), queue_position=1))
    assert list(host.comments) == [comment_id]
    assert BLOCK_PREFIX not in host.comments[comment_id]


# -- the state label -------------------------------------------------------------------------


def test_set_state_leaves_one_state_label_and_removes_only_stale_ones_present() -> None:
    host = LabelHost({"nightcrew", "bug", "nightcrew:failed", "nightcrew:paused"})
    IssueTracker(host, TASK, None).set_state("queued")
    assert host.labels == {"nightcrew", "bug", "nightcrew:queued"}  # the trigger and others stay
    assert host.label_calls[0] == "read"
    assert sorted(host.label_calls[1:3]) == ["-nightcrew:failed", "-nightcrew:paused"]
    assert host.label_calls[3:] == ["+nightcrew:queued"]


def test_the_tracker_swaps_its_own_label_without_reading_the_issue_again() -> None:
    host = LabelHost({"nightcrew"})
    tracker = IssueTracker(host, TASK, None)
    tracker.set_state("queued")
    assert host.label_calls == ["read", "+nightcrew:queued"]
    host.label_calls.clear()
    tracker.set_state("running")
    assert host.label_calls == ["-nightcrew:queued", "+nightcrew:running"]
    host.label_calls.clear()
    tracker.set_state("publishing")  # still running, to a person: nothing to change
    assert host.label_calls == [] and state_labels(host) == {"nightcrew:running"}
    tracker.set_state("pr_opened")
    assert host.label_calls == ["-nightcrew:running", "+nightcrew:done"]
    assert state_labels(host) == {"nightcrew:done"} and "nightcrew" in host.labels


@pytest.mark.parametrize("state", lifecycle.STATES)
def test_every_state_ends_with_exactly_its_label(state: lifecycle.State) -> None:
    host = LabelHost(set(lifecycle.ALL_LABELS) | {"nightcrew"})
    IssueTracker(host, TASK, None).set_state(state)
    assert state_labels(host) == {lifecycle.label(state)}
    assert f"-{lifecycle.label(state)}" not in host.label_calls  # its own label is never dropped


# -- the publishing state in the status comment ------------------------------------------------


def test_publishing_shows_as_working_on_the_pull_request_and_offers_only_status() -> None:
    body = render(StatusView("publishing", str(TASK), step=12, max_steps=30,
                             plan_item="Open the pull request"))
    lines = body.splitlines()
    assert lines[1] == "### nightcrew · 🛠️ **working** · opening the pull request"
    assert "Now: Open the pull request" in lines and "step 12/~30" in body
    [commands] = [line for line in lines if "Commands" in line]
    assert commands == "<sub>Commands: `/nightcrew status`</sub>"  # too late to pause or cancel


def test_running_offers_what_publishing_does_not() -> None:
    running = render(StatusView("running", str(TASK)))
    publishing = render(StatusView("publishing", str(TASK)))
    for command in ("pause", "cancel", "budget +$5"):
        assert f"`/nightcrew {command}`" in running and f"`/nightcrew {command}`" not in publishing


def test_a_publishing_task_is_shown_as_working_with_the_running_label() -> None:
    host = LabelHost({"nightcrew"})
    tracker = IssueTracker(host, TASK, KEY)
    tracker.write(StatusView("publishing", str(TASK)), empty_checkpoint(TASK, "publishing"))
    tracker.set_state("publishing")
    assert state_labels(host) == {"nightcrew:running"}
    assert "opening the pull request" in tracker.status_body()
    read = tracker.checkpoint()
    assert read.checkpoint is not None and read.checkpoint.state == "publishing"
