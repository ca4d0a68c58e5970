"""Post one review round so that GitHub accepts it, exactly once.

GitHub takes a review with several inline comments all or nothing, and its 422 does not say which
comment it refused; sometimes it leaves a body-only review behind anyway. So on a 422 the poster
never retries blindly:

1. it looks for the review this round may already have left (its hidden write key);
2. it checks each comment alone as a PENDING review, deleting each at once (GitHub allows one
   pending review per person and PR), a second apart so as not to trip the secondary rate limit;
3. it posts the comments GitHub accepts in one review, and the refused ones go to the summary.

Comments were placed on the parsed diff before (``placement``), so step 2 only runs when GitHub
and the placement disagree — a bug worth a log line, not a lost finding.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from github_app import logs
from github_app.github import GitHubError, PullReviews, Review, write_marker
from runner.review.placement import InlineComment

CHECK_PAUSE_S = 1.0
log = logs.get("nightcrew.review")


@dataclass
class Posted:
    """What one round left on the PR."""

    review_id: int | None
    posted: list[InlineComment] = field(default_factory=list)
    refused: list[tuple[InlineComment, str]] = field(default_factory=list)
    orphan: bool = False  # GitHub had kept a review of this round despite answering 422
    comments_in: int | None = None  # the review holding the inline comments (after an orphan: another)

    def __post_init__(self) -> None:
        if self.comments_in is None:
            self.comments_in = self.review_id


def post_review(
    host: PullReviews, owner: str, repo: str, number: int, *, commit_id: str, key: str,
    comments: Sequence[InlineComment], body: Callable[[Sequence[tuple[InlineComment, str]]], str],
    bot: str, sleep: Callable[[float], None] = time.sleep,
) -> Posted:
    """Post ``comments`` as one COMMENT review pinned to ``commit_id``; ``body(refused)``
    renders the review's text once it is known which comments GitHub refused."""
    payload = [c.to_github() for c in comments]
    earlier = _left_behind(host, owner, repo, number, key, bot)
    if earlier is not None:  # a run of this round that crashed after posting: never post twice
        return Posted(earlier.id, list(comments), orphan=False)
    try:
        review = host.create_review(owner, repo, number, commit_id=commit_id, body=body(()),
                                    comments=payload, key=key)
        return Posted(review.id, list(comments))
    except GitHubError as exc:
        if exc.status != 422:
            raise
        log.warning("review.refused", pull=f"{owner}/{repo}#{number}", detail=_detail(exc),
                    comments=len(comments))
    orphan = _left_behind(host, owner, repo, number, key, bot)
    _drop_pending(host, owner, repo, number, bot)
    accepted, refused = _check_each(host, owner, repo, number, commit_id, comments, sleep)
    if orphan is not None and not accepted:
        return Posted(orphan.id, [], refused, orphan=True)
    text = "" if orphan is not None else body(refused)
    # A second review is posted only to carry inline comments the orphan lacks.
    again_key = f"{key}-checked" if orphan is not None else key
    review = host.create_review(owner, repo, number, commit_id=commit_id, body=text,
                                comments=[c.to_github() for c in accepted], key=again_key)
    return Posted(orphan.id if orphan is not None else review.id, accepted, refused,
                  orphan=orphan is not None, comments_in=review.id)


def _left_behind(host: PullReviews, owner: str, repo: str, number: int, key: str,
                 bot: str) -> Review | None:
    """A review of this round GitHub kept although it answered 422 (found by the write key)."""
    marker = write_marker(key)
    return next((r for r in host.reviews(owner, repo, number)
                 if r.author == bot and marker in r.body and r.state != "PENDING"), None)


def _drop_pending(host: PullReviews, owner: str, repo: str, number: int, bot: str) -> None:
    """Delete a pending review of ours left by a check that crashed: GitHub allows only one."""
    for review in host.reviews(owner, repo, number):
        if review.author == bot and review.state == "PENDING":
            host.delete_pending_review(owner, repo, number, review.id)


def _check_each(
    host: PullReviews, owner: str, repo: str, number: int, commit_id: str,
    comments: Sequence[InlineComment], sleep: Callable[[float], None],
) -> tuple[list[InlineComment], list[tuple[InlineComment, str]]]:
    """Each comment tried alone as a pending review (deleted at once): which GitHub takes."""
    accepted: list[InlineComment] = []
    refused: list[tuple[InlineComment, str]] = []
    for n, comment in enumerate(comments):
        if n:
            sleep(CHECK_PAUSE_S)
        try:
            pending = host.create_review(owner, repo, number, commit_id=commit_id, body="",
                                         comments=[comment.to_github()], event=None)
        except GitHubError as exc:
            if exc.status != 422:
                raise
            refused.append((comment, f"GitHub refused the comment ({_detail(exc)})"))
            continue
        host.delete_pending_review(owner, repo, number, pending.id)
        accepted.append(comment)
    return accepted, refused


def _detail(exc: GitHubError) -> str:
    return str(getattr(exc, "detail", "") or exc)[:300]
