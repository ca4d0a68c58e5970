"""The real ``anthropic`` SDK, through ``AnthropicModel``, against a real local Messages server.

No mocks of the SDK: ``FakeMessagesServer`` listens on a port, the SDK speaks HTTP to it, and
the server checks every request the way the API would.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from github_app.errors import NeedsHuman
from runner.fakes.cache_sim import cache_read_share
from runner.fakes.messages_server import FakeMessagesServer
from runner.fakes.script import (
    ScriptedCall,
    ScriptStep,
    dump_script,
    estimate_input,
    load_script,
)
from runner.fakes.scripted import ScriptedModel
from runner.model import Message, ModelClient, ModelError, ModelKeyRefused, ModelReply, Usage
from runner.model.anthropic import AnthropicModel, ModelAPIError
from runner.model.api_checks import cache_marker_count
from runner.model.keys import KeyRing, fingerprint
from runner.model.patience import ModelUnavailable, ModelWait, PatientModel, WaitPolicy

MODEL = "claude-sonnet-4-6"
KEY = "sk-ant-" + "test-0123456789abcdef"  # fake, built at run time
SYSTEM = "You are nightcrew. Fix the issue, run the tests, keep the diff small."
TOOLS: list[dict[str, Any]] = [
    {
        "name": "read_file",
        "description": "Read a file from the repository.",
        "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}},
    },
    {
        "name": "run_tests",
        "description": "Run the test suite.",
        "input_schema": {"type": "object", "properties": {}},
    },
]
THREE_TURNS = [
    ScriptStep(
        text="Reading the code.", tool_calls=(ScriptedCall("read_file", {"path": "app.py"}),)
    ),
    ScriptStep(
        tool_calls=(
            ScriptedCall("read_file", {"path": "tests/test_app.py"}),
            ScriptedCall("run_tests", {}),
        )
    ),
    ScriptStep(text="The off-by-one in app.py is fixed and the tests pass."),
]


@pytest.fixture(autouse=True)
def hermetic_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No key, base URL, profile or custom header from the developer's machine."""
    for name in list(os.environ):
        if name.startswith("ANTHROPIC_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("ANTHROPIC_CONFIG_DIR", str(tmp_path / "anthropic-config"))


@pytest.fixture
def server() -> Iterator[FakeMessagesServer]:
    with FakeMessagesServer(api_key=KEY) as fake:
        yield fake


def adapter(server: FakeMessagesServer, **options: Any) -> AnthropicModel:
    """The production adapter pointed at the fake, with a short timeout."""
    options = {"api_key": KEY, "base_url": server.base_url, "timeout": 5.0, **options}
    return AnthropicModel(MODEL, **options)


def ask(model: ModelClient, tools: list[dict[str, Any]] | None = None) -> ModelReply:
    """One call whose conversation is a single short user turn."""
    messages: list[Message] = [{"role": "user", "content": "go"}]
    return model.complete(system=SYSTEM, messages=messages, tools=tools or [])


def converse(model: ModelClient, max_turns: int = 5) -> tuple[list[ModelReply], list[Message]]:
    """Drive a conversation the way the agent loop does: reply, run tools, answer with results."""
    messages: list[Message] = [{"role": "user", "content": "Fix issue #7: off-by-one in app.py"}]
    replies: list[ModelReply] = []
    for _ in range(max_turns):
        reply = model.complete(system=SYSTEM, messages=messages, tools=TOOLS, max_tokens=1024)
        replies.append(reply)
        if not reply.tool_calls:
            break
        messages.append(assistant_turn(reply))
        messages.append(tool_results(reply))
    return replies, messages


def assistant_turn(reply: ModelReply) -> Message:
    """The reply as the assistant message that goes back into the conversation."""
    blocks: list[dict[str, Any]] = [{"type": "text", "text": reply.text}] if reply.text else []
    blocks += [
        {"type": "tool_use", "id": c.id, "name": c.name, "input": c.input} for c in reply.tool_calls
    ]
    return {"role": "assistant", "content": blocks}


def tool_results(reply: ModelReply) -> Message:
    """A user turn answering every tool call of ``reply``."""
    return {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": c.id, "content": f"output of {c.name}"}
            for c in reply.tool_calls
        ],
    }


def without_ids(reply: ModelReply) -> ModelReply:
    """The reply with tool-call ids blanked, since each player picks its own."""
    calls = [dataclasses.replace(c, id="") for c in reply.tool_calls]
    return dataclasses.replace(reply, tool_calls=calls)


# -- replies ------------------------------------------------------------------------------


def test_tool_calls_usage_and_cost_come_back(server: FakeMessagesServer) -> None:
    usage = Usage(input_tokens=1500, output_tokens=120, cache_write_tokens=3000)
    server.add_steps([dataclasses.replace(THREE_TURNS[0], usage=usage)])

    reply = ask(adapter(server), TOOLS)

    assert reply.text == "Reading the code."
    assert [(c.name, c.input) for c in reply.tool_calls] == [("read_file", {"path": "app.py"})]
    assert reply.tool_calls[0].id.startswith("toolu_")
    assert reply.stop_reason == "tool_use"
    assert reply.model == MODEL
    assert reply.usage == usage
    # 1500 * $3/M + 120 * $15/M + 3000 * $3.75/M
    assert reply.cost_usd == pytest.approx(0.0045 + 0.0018 + 0.01125)


def test_tool_arguments_that_are_not_an_object_arrive_as_malformed_not_a_crash(
    server: FakeMessagesServer,
) -> None:
    server.add_steps([ScriptStep.from_json({"tool_calls": [
        {"name": "read_file", "input": '{"path": "app.'},
        {"name": "read_file", "input": '{"path": "app.py"}'},
    ]})])
    broken, repaired = ask(adapter(server), TOOLS).tool_calls
    assert broken.input == {} and broken.malformed and "not valid JSON" in broken.malformed
    assert repaired.input == {"path": "app.py"} and repaired.malformed is None


def test_missing_cache_fields_count_as_zero(server: FakeMessagesServer) -> None:
    server.add_steps([ScriptStep(text="ok", usage=Usage(input_tokens=10, output_tokens=2))])
    reply = ask(adapter(server))
    assert reply.usage == Usage(input_tokens=10, output_tokens=2)
    assert reply.stop_reason == "end_turn"
    assert reply.tool_calls == []


def test_estimated_usage_is_nonzero_and_matches_count_tokens(server: FakeMessagesServer) -> None:
    server.add_steps([ScriptStep(text="ok")])
    model = adapter(server)
    messages: list[Message] = [{"role": "user", "content": "Summarise the failing test output."}]

    reply = model.complete(system=SYSTEM, messages=messages, tools=TOOLS)
    counted = model.count_tokens(system=SYSTEM, messages=messages, tools=TOOLS)

    assert reply.usage.input_tokens > 0 and reply.usage.output_tokens > 0
    assert counted == reply.usage.input_tokens
    assert server.requests[-1].path == "/v1/messages/count_tokens"


# -- the request on the wire --------------------------------------------------------------


def test_system_and_last_tool_carry_cache_markers(server: FakeMessagesServer) -> None:
    server.add_steps([ScriptStep(text="ok")])
    ask(adapter(server), TOOLS)

    body = server.requests[0].body
    assert body["system"] == [
        {"type": "text", "text": SYSTEM, "cache_control": {"type": "ephemeral"}}
    ]
    assert [t.get("cache_control") for t in body["tools"]] == [None, {"type": "ephemeral"}]
    assert "cache_control" not in TOOLS[-1], "the caller's tool specs must stay unmarked"


def test_the_last_message_block_carries_a_cache_marker(server: FakeMessagesServer) -> None:
    server.add_steps([ScriptStep(text="ok")])
    messages: list[Message] = [{"role": "user", "content": "go"}]

    adapter(server).complete(system=SYSTEM, messages=messages, tools=TOOLS)

    sent = server.requests[0].body["messages"]
    assert sent == [
        {"role": "user",
         "content": [{"type": "text", "text": "go", "cache_control": {"type": "ephemeral"}}]}
    ]
    assert messages == [{"role": "user", "content": "go"}], "the caller's messages stay unmarked"


def test_cache_messages_false_marks_only_tools_and_system(server: FakeMessagesServer) -> None:
    server.add_steps([ScriptStep(text="ok")])
    ask(adapter(server, cache_messages=False), TOOLS)

    body = server.requests[0].body
    assert body["messages"] == [{"role": "user", "content": "go"}]
    assert body["system"][0]["cache_control"] == {"type": "ephemeral"}


def test_caller_markers_stay_within_the_apis_four(server: FakeMessagesServer) -> None:
    server.add_steps([ScriptStep(text="ok")])
    replies, messages = converse(ScriptedModel(THREE_TURNS, model=MODEL))
    for message in messages[:4]:  # a caller that marks blocks of its own
        if isinstance(message["content"], list):
            message["content"][-1]["cache_control"] = {"type": "ephemeral"}

    adapter(server).complete(system=SYSTEM, messages=messages, tools=TOOLS)

    assert server.violations == []
    body = server.requests[0].body
    markers = [cache_marker_count(body[part]) for part in ("tools", "system")] + [
        cache_marker_count(m["content"]) for m in body["messages"]
    ]
    assert sum(markers) == 4 and markers[-1] == 1, "the newest marker is the adapter's own"


# A conversation long enough to cache: a ~1.6k-token system prompt, ~500-token tool results.
LONG_SYSTEM = SYSTEM + " Read before you edit; explain each change in the PR body." * 110
LONG_OUTPUT = "def add(a, b):\n    return a + b  # the implementation under test\n" * 30
TWELVE_TURNS = [
    ScriptStep(
        text=f"Step {n}: reading the next file.",
        tool_calls=(ScriptedCall("read_file", {"path": f"src/module_{n}.py"}),),
    )
    for n in range(1, 12)
] + [ScriptStep(text="Fixed the off-by-one; all tests pass.")]


def converse_long(model: ModelClient) -> list[ModelReply]:
    """Twelve model calls with large tool results, as a real agent run would make them."""
    messages: list[Message] = [{"role": "user", "content": "Fix issue #7: off-by-one in app.py"}]
    replies: list[ModelReply] = []
    for _ in range(len(TWELVE_TURNS)):
        reply = model.complete(system=LONG_SYSTEM, messages=messages, tools=TOOLS)
        replies.append(reply)
        if not reply.tool_calls:
            break
        messages.append(assistant_turn(reply))
        messages.append({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": c.id, "content": f"{c.input}\n{LONG_OUTPUT}"}
            for c in reply.tool_calls
        ]})
    return replies


def test_incremental_caching_reads_most_of_every_later_turn_from_the_cache() -> None:
    with FakeMessagesServer(TWELVE_TURNS, api_key=KEY) as server:
        marked = converse_long(adapter(server))
    with FakeMessagesServer(TWELVE_TURNS, api_key=KEY) as server:
        prefix_only = converse_long(adapter(server, cache_messages=False))

    assert len(marked) == len(prefix_only) == 12
    share, baseline = (cache_read_share([r.usage for r in rs]) for rs in (marked, prefix_only))
    # Measured: 0.894 with the last-message breakpoint, 0.310 with tools + system only.
    assert share >= 0.85 and baseline <= 0.4, (share, baseline)
    first, second = marked[0].usage, marked[1].usage
    assert first.cache_read_tokens == 0 and first.cache_write_tokens > 1024
    # The first turn's string went out as a marked text block, a few characters longer.
    assert first.cache_write_tokens - 10 < second.cache_read_tokens <= first.cache_write_tokens
    for reply in marked[1:]:
        assert 0 < reply.usage.cache_write_tokens < 700, "each turn writes only its new tail"
    assert sum(r.cost_usd for r in marked) < sum(r.cost_usd for r in prefix_only)


def test_both_players_bill_the_same_cached_usage() -> None:
    with FakeMessagesServer(TWELVE_TURNS, api_key=KEY) as server:
        over_http = converse_long(adapter(server))
    in_process = converse_long(ScriptedModel(TWELVE_TURNS, model=MODEL))

    assert [r.usage for r in in_process] == [r.usage for r in over_http]
    assert sum(r.usage.cache_read_tokens for r in in_process) > 0


def test_cache_false_bills_everything_as_input() -> None:
    with FakeMessagesServer(TWELVE_TURNS, api_key=KEY, cache=False) as server:
        over_http = converse_long(adapter(server))
    in_process = converse_long(ScriptedModel(TWELVE_TURNS, model=MODEL, cache=False))

    for replies in (over_http, in_process):
        assert all(r.usage.cache_read_tokens == r.usage.cache_write_tokens == 0 for r in replies)
    assert [r.usage for r in in_process] == [r.usage for r in over_http]


def test_key_goes_in_a_bearer_header_and_is_never_recorded(server: FakeMessagesServer) -> None:
    server.add_steps([ScriptStep(text="ok")])
    ask(adapter(server))

    request = server.requests[0]
    assert request.status == 200  # the server accepts only this exact key
    assert request.auth_header == "authorization"  # 2.12.0: `Authorization: Bearer`, not x-api-key
    assert request.headers["anthropic-version"]
    assert KEY not in repr(server.requests)


def test_key_and_base_url_come_from_the_environment(
    server: FakeMessagesServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The demo's path: nothing passed in code, the SDK reads both variables.
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", server.base_url)
    server.add_steps([ScriptStep(text="from env")])

    reply = ask(AnthropicModel(MODEL, timeout=5.0))

    assert reply.text == "from env"
    assert server.requests[0].status == 200


def test_no_credentials_fail_at_construction() -> None:
    with pytest.raises(ModelAPIError, match="ANTHROPIC_API_KEY") as caught:
        AnthropicModel(MODEL, base_url="http://127.0.0.1:9")
    assert not caught.value.retryable


# -- errors -------------------------------------------------------------------------------


def test_one_overload_is_retried_by_the_sdk(server: FakeMessagesServer) -> None:
    server.add_steps([ScriptStep(text="after the retry")])
    server.fail_next(529)

    reply = ask(adapter(server))

    assert reply.text == "after the retry"
    assert [r.status for r in server.requests] == [529, 200]
    assert server.requests[1].headers["x-stainless-retry-count"] == "1"


def test_overload_outlasting_the_retries_is_a_retryable_model_error(
    server: FakeMessagesServer,
) -> None:
    server.add_steps([ScriptStep(text="never reached")])
    server.fail_next(529, times=10)

    with pytest.raises(ModelAPIError) as caught:
        ask(adapter(server, max_retries=2))

    assert caught.value.retryable and caught.value.status_code == 529
    assert "overloaded_error" in str(caught.value)
    assert len(server.requests) == 3  # the first try and two retries


def test_a_malformed_conversation_is_a_400_model_error_not_retried(
    server: FakeMessagesServer,
) -> None:
    server.add_steps([ScriptStep(text="never reached")])
    messages: list[Message] = [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": "toolu_1", "name": "run_tests", "input": {}}
        ]},
        # answers a tool call nobody made
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_2", "content": "ok"}
        ]},
    ]

    with pytest.raises(ModelAPIError) as caught:
        adapter(server).complete(system=SYSTEM, messages=messages, tools=TOOLS)

    assert not caught.value.retryable and caught.value.status_code == 400
    assert "toolu_2" in str(caught.value)
    assert len(server.requests) == 1
    assert len(server.violations) == 1 and "tool_use_id" in server.violations[0]
    assert server.remaining == 1, "a rejected request must not consume a step"


def test_a_rejected_key_is_a_key_refusal_that_names_a_fingerprint_not_the_key(
    server: FakeMessagesServer,
) -> None:
    wrong = "sk-ant-" + "wrong-key-fedcba9876543210"
    with pytest.raises(ModelKeyRefused) as caught:
        ask(adapter(server, api_key=wrong))
    assert not caught.value.retryable and caught.value.reason == "key refused"
    assert wrong not in str(caught.value) and fingerprint(wrong) in str(caught.value)


def test_a_refused_key_is_skipped_for_the_next_one_in_the_list(server: FakeMessagesServer) -> None:
    wrong = "sk-ant-" + "revoked-00112233445566"
    server.add_steps([ScriptStep(text="first"), ScriptStep(text="second")])
    ring = KeyRing([wrong, KEY])
    model = adapter(server, api_key=None, keys=ring)
    assert ask(model).text == "first"
    assert ring.usable() == [KEY]  # recorded: the next call goes straight to the working key
    assert ask(model).text == "second"
    statuses = [r.status for r in server.requests]
    assert statuses == [401, 200, 200]


def test_a_comma_separated_environment_key_is_a_rotation_list(
    server: FakeMessagesServer, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", f"sk-ant-{'stale-9988776655'} , {KEY}")
    server.add_steps([ScriptStep(text="ok")])
    assert ask(adapter(server, api_key=None)).text == "ok"


def test_an_overloaded_api_says_so_and_passes_on_its_retry_after(server: FakeMessagesServer) -> None:
    server.fail_next(529, times=5, retry_after_ms=1)  # more than the adapter's retries
    with pytest.raises(ModelAPIError) as caught:
        ask(adapter(server, max_retries=1))
    assert caught.value.retryable and caught.value.reason == "overloaded"
    assert caught.value.retry_after_s == pytest.approx(0.001)


def test_a_key_echoed_by_the_server_is_redacted() -> None:
    # Some proxies echo what they were sent; the fake's error text is "injected failure ...".
    with FakeMessagesServer() as server:
        server.fail_next(400)
        with pytest.raises(ModelAPIError) as caught:
            ask(adapter(server, api_key="injected"))
    assert "injected" not in str(caught.value)
    assert "[redacted]" in str(caught.value)


def test_an_exhausted_script_is_a_model_error(server: FakeMessagesServer) -> None:
    server.add_steps([ScriptStep(text="only one")])
    model = adapter(server)
    ask(model)

    with pytest.raises(ModelError, match="script exhausted after 1 steps"):
        model.complete(system=SYSTEM, messages=[{"role": "user", "content": "again"}], tools=[])


def test_an_unreachable_api_is_a_retryable_model_error() -> None:
    with socket.socket() as sock:  # a port that was free a moment ago and has no listener now
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    model = AnthropicModel(MODEL, api_key=KEY, base_url=url, max_retries=1, timeout=2.0)

    with pytest.raises(ModelAPIError) as caught:
        ask(model)

    assert caught.value.retryable and caught.value.status_code is None
    assert KEY not in str(caught.value)


# -- multi-turn, and the two players agree -----------------------------------------------


def test_a_multi_turn_tool_conversation_passes_the_servers_checks() -> None:
    with FakeMessagesServer(THREE_TURNS, api_key=KEY) as server:
        replies, messages = converse(adapter(server))

    assert server.violations == []
    assert [r.status for r in server.requests] == [200, 200, 200]
    assert [len(r.body["messages"]) for r in server.requests] == [1, 3, 5]
    assert [len(r.tool_calls) for r in replies] == [1, 2, 0]
    assert replies[-1].stop_reason == "end_turn"
    assert messages[-1]["content"][1]["tool_use_id"] == replies[1].tool_calls[1].id


def test_scripted_model_replies_like_the_adapter() -> None:
    with FakeMessagesServer(THREE_TURNS, api_key=KEY) as server:
        over_http, _ = converse(adapter(server))
    in_process, _ = converse(ScriptedModel(THREE_TURNS, model=MODEL))

    assert [without_ids(r) for r in in_process] == [without_ids(r) for r in over_http]
    assert in_process[0].tool_calls[0].id == "toolu_scripted_1"
    assert all(r.usage.input_tokens > 0 and r.cost_usd > 0 for r in in_process)


def test_scripted_model_rejects_what_the_server_rejects() -> None:
    messages: list[Message] = [
        {"role": "user", "content": "go"},
        {"role": "user", "content": "again"},
    ]
    with FakeMessagesServer([ScriptStep(text="x")], api_key=KEY) as server:
        with pytest.raises(ModelError):
            adapter(server).complete(system=SYSTEM, messages=messages, tools=[])
    with pytest.raises(ModelError) as caught:
        ScriptedModel([ScriptStep(text="x")]).complete(system=SYSTEM, messages=messages, tools=[])

    assert "roles must alternate" in server.violations[0]
    assert server.violations[0].split(": ", 1)[1] in str(caught.value)


def test_scripted_model_runs_out_like_the_server() -> None:
    model = ScriptedModel([ScriptStep(text="one")])
    ask(model)
    with pytest.raises(ModelError, match="script exhausted after 1 steps"):
        ask(model)


# -- the script format --------------------------------------------------------------------


def test_a_script_survives_a_file_round_trip(tmp_path: Path) -> None:
    steps = [
        *THREE_TURNS,
        ScriptStep(text="cut off", usage=Usage(5, 7, 11, 13), stop_reason="max_tokens"),
    ]
    path = tmp_path / "script.json"
    dump_script(steps, path)
    assert load_script(path) == steps


def test_a_misspelt_step_field_is_an_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "script.json"
    path.write_text('[{"text": "hi", "tool_call": []}]')
    with pytest.raises(ValueError, match="tool_call"):
        load_script(path)


def test_count_tokens_ignores_cache_markers() -> None:
    plain = {"system": SYSTEM, "tools": TOOLS, "messages": [{"role": "user", "content": "go"}]}
    marked = {
        **plain,
        "system": [{"type": "text", "text": SYSTEM, "cache_control": {"type": "ephemeral"}}],
        "tools": [TOOLS[0], {**TOOLS[1], "cache_control": {"type": "ephemeral"}}],
    }
    assert estimate_input(plain) == estimate_input(marked)


def test_an_outage_is_waited_out_with_the_real_sdk_and_the_same_request_sent_again(
    server: FakeMessagesServer,
) -> None:
    # Answers cut off mid-body, and 529 with retry-after, both from the first request (however
    # late it comes): the SDK's own retries run out (none here), PatientModel waits as the API
    # asks and sends the very same request again.
    server.outage(1.0, status=529, retry_after_s=0.2, anchored=True)
    server.outage(0.6, "drop", anchored=True)
    server.add_steps([ScriptStep(text="answered after the outage")])
    waits: list[ModelWait | None] = []
    model = PatientModel(adapter(server, max_retries=0),
                         WaitPolicy(first_s=0.1, shortest_s=0.05, poll_s=0.05), on_wait=waits.append)
    assert ask(model).text == "answered after the outage"
    reasons = {w.reason for w in waits if w is not None}
    assert reasons == {"overloaded", "unreachable"} and waits[-1] is None
    bodies = {json.dumps(r.body, sort_keys=True) for r in server.requests}
    assert len(bodies) == 1  # nothing re-asked: every attempt was the same request
    assert server.dropped_mid_answer > 0 and server.remaining == 0


def test_an_outage_longer_than_the_policy_pauses_instead_of_failing(server: FakeMessagesServer) -> None:
    server.outage(60.0, status=529, retry_after_s=0.05)
    model = PatientModel(adapter(server, max_retries=0),
                         WaitPolicy(max_total_s=0.3, shortest_s=0.05, poll_s=0.05))
    with pytest.raises(ModelUnavailable) as caught:
        ask(model)
    assert isinstance(caught.value, NeedsHuman) and caught.value.cause == "overloaded"
