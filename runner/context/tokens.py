"""nightcrew's one token estimate: about four characters a token.

The context packer (``count_tokens``), the agent loop's budget check and compaction, and both
model fakes (``estimate_tokens``, on a request's JSON) use it, so a context that "fits 4,200
tokens" here is the size the budget and the status comment see.
"""

from __future__ import annotations

import json
import math

CHARS_PER_TOKEN = 4


def estimate_tokens(value: object) -> int:
    """Tokens of any JSON-safe value: four characters of its canonical JSON a token."""
    if not value:
        return 0
    return math.ceil(len(json.dumps(value, sort_keys=True, ensure_ascii=False)) / CHARS_PER_TOKEN)


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
