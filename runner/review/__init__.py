"""Reviewing pull requests: findings, their placement on the diff, the ledger across rounds.

The flow of one round (``runner.review.task``): the PR's diff and files through the API (never a
checkout) → the review model's findings (``reviewer``) → placement on the parsed diff
(``placement``, pure) → one review posted safely (``post``) → the findings ledger in one summary
comment (``ledger``) → open findings back to the builder (the fix loop).
"""
