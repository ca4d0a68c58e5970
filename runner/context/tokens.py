"""The one token estimate the context package uses: about four characters a token.

It matches ``runner.fakes.script.estimate_tokens`` (the scripted model's estimate), so a
context that "fits 4,200 tokens" here is the size the budget and the status comment see.
"""

from __future__ import annotations

import math

CHARS_PER_TOKEN = 4


def count_tokens(text: str) -> int:
    """Estimated tokens of ``text``; nothing costs nothing, anything costs at least one."""
    return math.ceil(len(text) / CHARS_PER_TOKEN) if text else 0


def cut_to_tokens(text: str, tokens: int) -> str:
    """The head of ``text`` that fits ``tokens``, cut at a line end when one is near."""
    limit = max(tokens, 0) * CHARS_PER_TOKEN
    if len(text) <= limit:
        return text
    head = text[:limit]
    newline = head.rfind("\n")
    return head[: newline + 1] if newline > limit // 2 else head
