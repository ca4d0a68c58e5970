"""The prompt-cache simulation and the breakpoints the adapter places."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from runner.fakes.cache_sim import (
    CACHE_TTL_SECONDS,
    PromptCache,
    cache_read_share,
    cached_usage,
    min_cacheable_tokens,
    prompt_blocks,
)
from runner.fakes.script import estimate_input, estimated_usage
from runner.model import Message, Usage
from runner.model.api_checks import MAX_CACHE_BREAKPOINTS, cache_marker_count, request_violation
from runner.model.cache_marks import cache_marked_request

MODEL = "claude-sonnet-4-5"
SYSTEM = "You are nightcrew. " + "Keep the diff small and run the tests. " * 150  # ~1.5k tokens
TOOLS: list[dict[str, Any]] = [
    {
        "name": "read_file",
        "description": "Read a file.",
        "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}},
    }
]
OUTPUT = "line of a source file, as a tool would print it\n" * 30  # ~370 tokens


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def conversation(turns: int) -> list[Message]:
    """A user turn, then ``turns`` rounds of one tool call and its result."""
    messages: list[Message] = [{"role": "user", "content": "Fix issue #7: off-by-one in app.py"}]
    for n in range(1, turns + 1):
        call_id = f"toolu_{n}"
        messages.append(
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": f"Reading part {n}."},
                    {"type": "tool_use", "id": call_id, "name": "read_file",
                     "input": {"path": f"src/part{n}.py"}},
                ],
            }
        )
        messages.append(
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": call_id, "content": f"{n}: {OUTPUT}"}
            ]}
        )
    return messages


def body(messages: list[Message], *, system: str = SYSTEM, cache_messages: bool = True,
         model: str = MODEL) -> dict[str, Any]:
    """The request the adapter sends for this conversation."""
    marked = cache_marked_request(system, messages, TOOLS, cache_messages=cache_messages)
    return {"model": model, "max_tokens": 1024, **marked}


def total_input(request: dict[str, Any]) -> int:
    return sum(estimate_input(request))


# -- where the breakpoints go --------------------------------------------------------------


def test_tools_system_and_the_last_message_block_are_marked_on_copies() -> None:
    messages = conversation(2)
    original = copy.deepcopy(messages)

    request = body(messages)

    assert request["tools"][-1]["cache_control"] == {"type": "ephemeral"}
    assert request["system"][0]["cache_control"] == {"type": "ephemeral"}
    assert request["messages"][-1]["content"][-1]["cache_control"] == {"type": "ephemeral"}
    assert sum(cache_marker_count(m["content"]) for m in request["messages"]) == 1
    assert messages == original, "the caller's conversation must stay unmarked"
    assert "cache_control" not in TOOLS[-1]


def test_a_string_content_becomes_one_marked_text_block() -> None:
    request = body([{"role": "user", "content": "go"}])
    assert request["messages"] == [
        {"role": "user",
         "content": [{"type": "text", "text": "go", "cache_control": {"type": "ephemeral"}}]}
    ]


def test_without_cache_messages_only_tools_and_system_are_marked() -> None:
    request = body(conversation(1), cache_messages=False)
    assert all(cache_marker_count(m["content"]) == 0 for m in request["messages"])
    assert request["messages"][0]["content"] == "Fix issue #7: off-by-one in app.py"


def test_caller_markers_are_kept_within_the_limit_oldest_dropped() -> None:
    messages = conversation(3)
    for index in (1, 2, 3, 4):  # four markers of the caller's own
        messages[index]["content"][-1]["cache_control"] = {"type": "ephemeral"}

    request = body(messages)

    marked = [i for i, m in enumerate(request["messages"]) if cache_marker_count(m["content"])]
    assert marked == [4, 6], "tools + system + the two newest message markers"
    assert request_violation(request) is None
    assert messages[1]["content"][-1]["cache_control"], "the caller's copy is untouched"


def test_a_thinking_block_is_never_marked() -> None:
    messages: list[Message] = [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": [
            {"type": "text", "text": "ok"},
            {"type": "thinking", "thinking": "hmm", "signature": "sig"},
        ]},
    ]
    content = body(messages)["messages"][-1]["content"]
    assert [b.get("cache_control") for b in content] == [{"type": "ephemeral"}, None]


def test_the_checks_reject_a_fifth_breakpoint() -> None:
    request = body(conversation(2))
    for message in request["messages"][:3]:
        message["content"] = [{"type": "text", "text": "x", "cache_control": {"type": "ephemeral"}}]
    problem = request_violation(request)
    assert problem is not None
    assert problem.startswith(
        f"A maximum of {MAX_CACHE_BREAKPOINTS} blocks with cache_control may be provided"
    )


# -- the simulation --------------------------------------------------------------------------


def test_block_ends_grow_and_stay_within_the_estimate() -> None:
    request = body(conversation(3))
    blocks = prompt_blocks(request)
    ends = [b.end for b in blocks]
    assert ends == sorted(ends) and ends[-1] <= total_input(request)
    # tools, system, first user turn, then 2 blocks per assistant turn and 1 per result
    assert len(blocks) == 1 + 1 + 1 + 3 * 3
    assert [i for i, b in enumerate(blocks) if b.breakpoint] == [0, 1, len(blocks) - 1]


def test_the_first_call_writes_and_the_next_reads_it_and_writes_the_tail() -> None:
    cache = PromptCache(clock=Clock())
    first_request, second_request = body(conversation(1)), body(conversation(2))

    first = cache.bill(first_request)
    second = cache.bill(second_request)

    first_end = prompt_blocks(first_request)[-1].end
    assert first.cache_read_tokens == 0 and first.cache_write_tokens == first_end
    assert second.cache_read_tokens == first_end
    assert second.cache_write_tokens == prompt_blocks(second_request)[-1].end - first_end
    assert 0 < second.input_tokens < 10, "only the closing brackets follow the last breakpoint"


def test_every_split_conserves_the_estimated_input() -> None:
    cache = PromptCache(clock=Clock())
    for turns in range(6):
        request = body(conversation(turns))
        blocks = [{"type": "text", "text": "ok"}]
        usage = cached_usage(request, blocks, cache)
        plain = estimated_usage(request, blocks)
        assert usage.input_tokens + usage.cache_write_tokens + usage.cache_read_tokens == (
            plain.input_tokens
        )
        assert usage.output_tokens == plain.output_tokens
    assert cached_usage(request, blocks, None) == plain


def test_a_prefix_below_the_minimum_is_not_cached() -> None:
    cache = PromptCache(clock=Clock())
    request = body([{"role": "user", "content": "go"}], system="Be brief.")
    assert prompt_blocks(request)[-1].end < 1024

    for _ in range(2):
        split = cache.bill(request)
        assert split.cache_write_tokens == split.cache_read_tokens == 0
        assert split.input_tokens == total_input(request)
    assert len(cache) == 0


def test_the_minimum_depends_on_the_model() -> None:
    assert min_cacheable_tokens("claude-sonnet-4-5-20250929") == 1024
    assert min_cacheable_tokens("claude-3-5-haiku-20241022") == 2048
    assert min_cacheable_tokens("claude-haiku-4-5") == 4096
    request = body(conversation(1), model="claude-3-haiku-20240307")
    assert 1024 < prompt_blocks(request)[-1].end < 2048
    assert PromptCache(clock=Clock()).bill(request).cache_write_tokens == 0
    assert PromptCache(clock=Clock(), min_tokens=1024).bill(request).cache_write_tokens > 0


def test_entries_expire_five_minutes_after_their_last_use() -> None:
    clock = Clock()
    cache = PromptCache(clock=clock)
    request = body(conversation(1))
    cache.bill(request)

    clock.now += CACHE_TTL_SECONDS - 1
    assert cache.bill(request).cache_read_tokens > 0, "a hit within five minutes..."
    clock.now += CACHE_TTL_SECONDS - 1
    assert cache.bill(request).cache_read_tokens > 0, "...refreshes the entry"
    clock.now += CACHE_TTL_SECONDS + 1
    expired = cache.bill(request)
    assert expired.cache_read_tokens == 0 and expired.cache_write_tokens > 0


def test_changing_the_system_prompt_invalidates_everything_after_the_tools() -> None:
    cache = PromptCache(clock=Clock(), min_tokens=1)
    cache.bill(body(conversation(2)))

    changed = body(conversation(2), system=SYSTEM + " Also add a changelog entry.")
    split = cache.bill(changed)

    tools_end = prompt_blocks(changed)[0].end
    assert split.cache_read_tokens == tools_end, "only the tools prefix survives"
    assert split.cache_write_tokens == prompt_blocks(changed)[-1].end - tools_end


def test_a_request_without_breakpoints_caches_nothing() -> None:
    cache = PromptCache(clock=Clock(), min_tokens=1)
    request = {"model": MODEL, "max_tokens": 10, "system": SYSTEM, "tools": TOOLS,
               "messages": conversation(2)}
    for _ in range(2):
        split = cache.bill(request)
        assert (split.cache_write_tokens, split.cache_read_tokens) == (0, 0)
        assert split.input_tokens == total_input(request)
    assert len(cache) == 0


def test_a_hit_is_found_at_most_twenty_blocks_before_a_breakpoint() -> None:
    cache = PromptCache(clock=Clock())
    cache.bill(body(conversation(1)))  # breakpoint after block 5

    near = body(conversation(7))  # 18 more blocks: the old breakpoint is within the lookback
    assert cache.bill(near).cache_read_tokens == prompt_blocks(body(conversation(1)))[-1].end

    cache = PromptCache(clock=Clock())
    cache.bill(body(conversation(1)))
    far = body(conversation(8))  # 21 more blocks: too far back, only tools+system are read
    assert cache.bill(far).cache_read_tokens == prompt_blocks(far)[1].end


def test_tool_use_ids_are_part_of_the_prefix() -> None:
    cache = PromptCache(clock=Clock())
    cache.bill(body(conversation(2)))
    renamed = conversation(2)
    renamed[1]["content"][1]["id"] = renamed[2]["content"][0]["tool_use_id"] = "toolu_other"

    split = cache.bill(body(renamed))

    assert split.cache_read_tokens == prompt_blocks(body(renamed))[1].end


def test_cache_read_share_skips_the_first_calls() -> None:
    usages = [
        Usage(input_tokens=10, cache_write_tokens=1000),
        Usage(input_tokens=10, cache_write_tokens=200, cache_read_tokens=1000),
        Usage(input_tokens=10, cache_write_tokens=90, cache_read_tokens=1200),
        Usage(input_tokens=10, cache_write_tokens=90, cache_read_tokens=1290),
    ]
    assert cache_read_share(usages) == pytest.approx(2490 / 2690)
    assert cache_read_share(usages, skip_first=0) == pytest.approx(3490 / 4910)
    assert cache_read_share(usages[:2]) == 0.0


def test_a_string_turn_hits_the_prefix_it_wrote_as_a_marked_block() -> None:
    cache = PromptCache(clock=Clock())
    opening: list[Message] = [{"role": "user", "content": "Fix issue #7: off-by-one in app.py"}]
    first_request = body(opening)  # the adapter sends the string as one marked text block
    cache.bill(first_request)

    second = cache.bill(body(conversation(1)))  # later the same turn goes as a plain string

    assert second.cache_read_tokens == prompt_blocks(body(conversation(1)))[2].end
    assert second.cache_read_tokens > prompt_blocks(first_request)[1].end
