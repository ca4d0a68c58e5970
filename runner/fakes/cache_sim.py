"""Prompt caching: where the breakpoints go, and a deterministic model of Anthropic's cache.

An agent loop resends its whole, growing conversation on every turn. With ``cache_control``
markers ("breakpoints") on the last tool, the system prompt and the last message block, each
turn reads everything up to the previous turn's last block from the cache (a tenth of the
input price) and writes only the new tail (1.25x). ``cache_marked_request`` places those
markers; the adapter sends its result and both script players apply it too, so the
simulation below sees exactly the breakpoints a real run would send.

``PromptCache`` implements the documented behaviour so tests and benchmarks see realistic
``cache_creation_input_tokens`` / ``cache_read_input_tokens``:

* The prompt is the ordered blocks tools -> system -> messages. A breakpoint is a block with
  ``cache_control``; its cacheable prefix is every block up to and including it.
* A request reads the longest cached prefix ending at a breakpoint or at one of the
  ``LOOKBACK_BLOCKS`` (20) block boundaries before a breakpoint. Tokens up to that hit are
  cache reads; from there to the last breakpoint, cache writes (every breakpoint's prefix is
  then stored); after the last breakpoint, plain input.
* A prefix shorter than the model's minimum (``min_cacheable_tokens``) is never cached:
  a request whose last breakpoint ends below it is billed as plain input.
* Entries expire ``ttl_seconds`` (5 minutes) after their last write or hit; the clock is
  injectable so tests need not sleep.
* A prefix's identity is a hash of the model and its blocks without their ``cache_control``
  keys; tool_use ids stay in, as in the real prompt (each player numbers them deterministically,
  so a replayed conversation hits its own earlier prefixes).

Token counts use the four-characters-a-token estimate of ``runner.fakes.script``, cut at block
boundaries, so ``input + cache_write + cache_read`` equals ``estimated_usage``'s input exactly.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from runner.context.tokens import estimate_tokens
from runner.fakes.script import estimate_input, estimated_usage, system_text
from runner.model import Usage

LOOKBACK_BLOCKS = 20
CACHE_TTL_SECONDS = 300.0
DEFAULT_MIN_CACHEABLE_TOKENS = 1024
# Model families whose minimum cacheable prefix is above the 1024-token default. Keys are
# model-id prefixes (longest match wins), as in ``prices.PRICES``.
MIN_CACHEABLE_TOKENS: dict[str, int] = {
    "claude-opus-4-5": 4096,
    "claude-opus-4-6": 4096,
    "claude-haiku-4-5": 4096,
    "claude-3-5-haiku": 2048,
    "claude-3-haiku": 2048,
}
# Ignored when counting tokens: markers steer billing, ids differ between the two players.
_NOT_COUNTED = frozenset({"cache_control", "id", "tool_use_id"})
_NOT_IDENTITY = frozenset({"cache_control"})


# ---------------------------------------------------------------------------------------------
# The prompt as blocks


@dataclass(frozen=True)
class PromptBlock:
    """One block of a request's prompt, as the cache sees it.

    ``key`` identifies the prefix ending with this block; ``end`` is the estimated token count
    of that prefix; ``breakpoint`` says whether the block carries ``cache_control``.
    """

    key: str
    end: int
    breakpoint: bool


def prompt_blocks(body: Mapping[str, Any]) -> list[PromptBlock]:
    """The request's blocks in cache order (tools, system, messages), with prefix keys and ends."""
    chain = hashlib.sha256(_dumps(["model", body.get("model")]).encode())
    blocks: list[PromptBlock] = []
    start = 0
    for section in (_tool_blocks, _system_blocks, _message_blocks):
        raw_blocks, total = section(body)
        for label, identity, chars, marked in raw_blocks:
            chain.update(_dumps([label, identity]).encode())
            end = start + min(math.ceil(chars / 4), total)
            blocks.append(PromptBlock(chain.copy().hexdigest(), end, marked))
        start += total
    return blocks


# A section's blocks as (label, identity, characters from the section's start to the block's
# end, has a breakpoint), and the section's estimated tokens.
_RawBlock = tuple[str, Any, int, bool]


def _tool_blocks(body: Mapping[str, Any]) -> tuple[list[_RawBlock], int]:
    """Tools: each definition a block, measured inside the JSON list the estimate counts."""
    tools = body.get("tools")
    if not isinstance(tools, list) or not tools:
        return [], 0
    out: list[_RawBlock] = []
    offset = 1  # "["
    for i, tool in enumerate(tools):
        clean = _without(tool, _NOT_IDENTITY)
        offset += (2 if i else 0) + len(_dumps(clean))
        out.append(("tool", clean, offset, _has_marker(tool)))
    return out, estimate_tokens([_without(t, _NOT_IDENTITY) for t in tools])


def _system_blocks(body: Mapping[str, Any]) -> tuple[list[_RawBlock], int]:
    """System: one block for a string, else each text block, measured in the joined text."""
    system = body.get("system")
    total = estimate_tokens(system_text(system))
    if isinstance(system, str):
        return ([("system", system, len(_dumps(system)), False)] if system else []), total
    if not isinstance(system, list):
        return [], total
    out: list[_RawBlock] = []
    texts: list[str] = []
    for block in system:
        if not isinstance(block, dict):
            continue
        texts.append(str(block.get("text", "")))
        chars = len(_dumps("\n".join(texts))) - 1  # up to, not including, the closing quote
        out.append(("system", _without(block, _NOT_IDENTITY), chars, _has_marker(block)))
    return out, total


def _message_blocks(body: Mapping[str, Any]) -> tuple[list[_RawBlock], int]:
    """Messages: each content block (a string content is one), measured in the counted JSON."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return [], 0
    _prefix, total = estimate_input({"messages": messages})
    out: list[_RawBlock] = []
    start = 1  # "["
    for i, message in enumerate(messages):
        start += 2 if i else 0
        counted = _counted_message(message)
        out.extend(_blocks_of_message(i, message, start))
        start += len(_dumps(counted))
    return out, total


def _blocks_of_message(index: int, message: object, start: int) -> list[_RawBlock]:
    """One message's blocks, offsets counted from the start of the messages JSON."""
    counted = _counted_message(message)
    if not isinstance(message, dict) or "content" not in message:
        return [(f"message {index}", message, start + len(_dumps(counted)), False)]
    label = f"message {index} {message.get('role')}"
    head = start + _keys_before_content(counted) + len('"content": ')
    content = message["content"]
    if not isinstance(content, list):
        # A string is shorthand for one text block, and the API caches it as one: the same
        # turn sent marked (a block) and later unmarked (a string) is the same prefix.
        identity = {"type": "text", "text": content} if isinstance(content, str) else content
        return [(label, identity, head + len(_dumps(counted["content"])), False)]
    out: list[_RawBlock] = []
    offset = head + 1  # "["
    for j, block in enumerate(content):
        offset += (2 if j else 0) + len(_dumps(_without(block, _NOT_COUNTED)))
        out.append((label, _without(block, _NOT_IDENTITY), offset, _has_marker(block)))
    return out


def _counted_message(message: object) -> Any:
    """A message as the token estimate counts it (see ``script._canonical_messages``)."""
    if isinstance(message, dict) and isinstance(message.get("content"), list):
        return {**message, "content": [_without(b, _NOT_COUNTED) for b in message["content"]]}
    return message


def _keys_before_content(message: Mapping[str, Any]) -> int:
    """Characters of ``{`` and the members sorted before ``content`` in the message's JSON."""
    chars = 1
    for key in sorted(k for k in message if k < "content"):
        chars += len(_dumps(key)) + 2 + len(_dumps(message[key])) + 2
    return chars


def _without(item: object, keys: frozenset[str]) -> object:
    """A block without ``keys``; anything but a dict is itself."""
    if isinstance(item, dict):
        return {k: v for k, v in item.items() if k not in keys}
    return item


def _has_marker(item: object) -> bool:
    """Whether a block carries a cache_control marker."""
    return isinstance(item, dict) and bool(item.get("cache_control"))


def _dumps(value: object) -> str:
    """JSON exactly as ``script.estimate_tokens`` serialises it, so lengths add up."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


# ---------------------------------------------------------------------------------------------
# The cache


@dataclass(frozen=True)
class InputSplit:
    """A request's input tokens as the API bills them."""

    input_tokens: int
    cache_write_tokens: int = 0
    cache_read_tokens: int = 0


def min_cacheable_tokens(model: str) -> int:
    """The shortest prefix ``model`` caches; shorter ones are silently billed as input."""
    keys = [k for k in MIN_CACHEABLE_TOKENS if model == k or model.startswith(k + "-")]
    if keys:
        return MIN_CACHEABLE_TOKENS[max(keys, key=len)]
    return 2048 if "haiku" in model else DEFAULT_MIN_CACHEABLE_TOKENS


class PromptCache:
    """One account's prompt cache: prefix keys and when each was last written or read.

    ``min_tokens`` overrides the per-model minimum (``min_cacheable_tokens``), e.g. for tests.
    Not thread-safe; the fake server calls it under its own lock.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        ttl_seconds: float = CACHE_TTL_SECONDS,
        min_tokens: int | None = None,
        lookback: int = LOOKBACK_BLOCKS,
    ) -> None:
        self._clock = clock
        self._ttl = ttl_seconds
        self._min_tokens = min_tokens
        self._lookback = lookback
        self._entries: dict[str, float] = {}

    def __len__(self) -> int:
        """Live entries, for tests and debugging."""
        self._expire(self._clock())
        return len(self._entries)

    def bill(self, body: Mapping[str, Any]) -> InputSplit:
        """Serve one request: look its prefixes up, store its breakpoints, split its input."""
        blocks = prompt_blocks(body)
        total = sum(estimate_input(body))
        marked = [i for i, b in enumerate(blocks) if b.breakpoint]
        minimum = self._min_tokens
        if minimum is None:
            minimum = min_cacheable_tokens(str(body.get("model", "")))
        if not marked or blocks[marked[-1]].end < minimum:
            return InputSplit(total)
        now = self._clock()
        self._expire(now)
        hit = self._longest_hit(blocks, marked)
        read = blocks[hit].end if hit is not None else 0
        last = blocks[marked[-1]].end
        if hit is not None:
            self._entries[blocks[hit].key] = now
        for i in marked:
            if blocks[i].end >= minimum:
                self._entries[blocks[i].key] = now
        return InputSplit(total - last, cache_write_tokens=last - read, cache_read_tokens=read)

    def _longest_hit(self, blocks: Sequence[PromptBlock], marked: Sequence[int]) -> int | None:
        """The last block whose prefix is cached, searched back from each breakpoint."""
        candidates = {
            i for bp in marked for i in range(max(bp - self._lookback, 0), bp + 1)
        }
        hits = [i for i in candidates if blocks[i].key in self._entries]
        return max(hits) if hits else None

    def _expire(self, now: float) -> None:
        """Forget entries unused for longer than the TTL."""
        stale = [k for k, used in self._entries.items() if now - used > self._ttl]
        for key in stale:
            del self._entries[key]


def cached_usage(
    body: Mapping[str, Any], blocks: Sequence[Mapping[str, Any]], cache: PromptCache | None
) -> Usage:
    """``estimated_usage`` with its input split by ``cache`` (unsplit when ``cache`` is None)."""
    usage = estimated_usage(body, blocks)
    if cache is None:
        return usage
    split = cache.bill(body)
    # estimated_usage bills at least one token; keep that floor in the plain input.
    uncached = usage.input_tokens - split.cache_write_tokens - split.cache_read_tokens
    return Usage(
        input_tokens=uncached,
        output_tokens=usage.output_tokens,
        cache_write_tokens=split.cache_write_tokens,
        cache_read_tokens=split.cache_read_tokens,
    )


def as_cache(cache: bool | PromptCache) -> PromptCache | None:
    """A player's cache option as a cache: True a fresh one, False none, or the one given."""
    if isinstance(cache, PromptCache):
        return cache
    return PromptCache() if cache else None


def cache_read_share(usages: Sequence[Usage], skip_first: int = 2) -> float:
    """Share of input tokens read from the cache over the calls after the first ``skip_first``.

    The first calls must write the cache before anything can be read, so a benchmark judging a
    run's caching skips them. 0.0 when there is no input to judge.
    """
    later = usages[skip_first:]
    read = sum(u.cache_read_tokens for u in later)
    total = sum(u.input_tokens + u.cache_write_tokens + u.cache_read_tokens for u in later)
    return read / total if total else 0.0
