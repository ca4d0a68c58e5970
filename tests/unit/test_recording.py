"""Recording a model's replies as a script and replaying them offline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from runner.fakes.recording import RecordingModel, step_from_reply
from runner.fakes.script import ScriptedCall, ScriptStep, load_script
from runner.fakes.scripted import ScriptedModel
from runner.model import Message, ModelError, ModelReply, Usage

MODEL = "claude-sonnet-4-5"
SYSTEM = "You are nightcrew. " + "Fix the issue and keep the diff small. " * 120
TOOLS: list[dict[str, Any]] = [
    {"name": "read_file", "description": "Read a file.",
     "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}}},
    {"name": "run_tests", "description": "Run the tests.",
     "input_schema": {"type": "object", "properties": {}}},
]
STEPS = [
    ScriptStep(text="Reading.", tool_calls=(ScriptedCall("read_file", {"path": "app.py"}),)),
    ScriptStep(tool_calls=(ScriptedCall("read_file", {"path": "t.py"}), ScriptedCall("run_tests"))),
    ScriptStep(text="Scripted usage.", tool_calls=(ScriptedCall("run_tests"),),
               usage=Usage(1200, 40, 300, 900)),
    ScriptStep(text="Cut off", stop_reason="max_tokens"),
]


def run(model: RecordingModel | ScriptedModel) -> list[ModelReply]:
    """Drive a conversation until the model stops calling tools."""
    messages: list[Message] = [{"role": "user", "content": "Fix issue #7"}]
    replies: list[ModelReply] = []
    while True:
        reply = model.complete(system=SYSTEM, messages=messages, tools=TOOLS)
        replies.append(reply)
        if not reply.tool_calls:
            return replies
        blocks: list[dict[str, Any]] = [{"type": "text", "text": reply.text}] if reply.text else []
        blocks += [{"type": "tool_use", "id": c.id, "name": c.name, "input": c.input}
                   for c in reply.tool_calls]
        messages.append({"role": "assistant", "content": blocks})
        messages.append({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": c.id, "content": f"output of {c.name} " * 50}
            for c in reply.tool_calls
        ]})


def test_a_recorded_run_replays_identically(tmp_path: Path) -> None:
    path = tmp_path / "runs" / "trajectory.json"
    recorded = run(RecordingModel(ScriptedModel(STEPS, model=MODEL), path))

    replayed = run(ScriptedModel(load_script(path), model=MODEL))

    assert replayed == recorded  # text, tool calls (ids too), usage, stop reason and cost
    assert any(r.usage.cache_read_tokens for r in recorded), "the simulated cache was recorded"
    assert recorded[-1].stop_reason == "max_tokens"


def test_the_file_is_rewritten_after_every_call(tmp_path: Path) -> None:
    path = tmp_path / "trajectory.json"
    model = RecordingModel(ScriptedModel(STEPS[:1], model=MODEL), path)
    assert model.model == MODEL

    model.complete(system=SYSTEM, messages=[{"role": "user", "content": "go"}], tools=TOOLS)
    with pytest.raises(ModelError, match="script exhausted"):  # a run that dies mid-way...
        model.complete(system=SYSTEM, messages=[{"role": "user", "content": "go"}], tools=TOOLS)

    raw = json.loads(path.read_text())  # ...still leaves a complete script of what it did
    assert len(raw) == 1 and raw[0]["tool_calls"] == [
        {"name": "read_file", "input": {"path": "app.py"}}
    ]
    assert set(raw[0]["usage"]) == {
        "input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"
    }
    assert [p.name for p in tmp_path.iterdir()] == ["trajectory.json"], "no temp file left"


def test_a_step_keeps_text_calls_usage_and_stop_reason() -> None:
    reply = ModelReply(model=MODEL, text="hi", usage=Usage(1, 2, 3, 4), stop_reason="end_turn")
    assert step_from_reply(reply) == ScriptStep(
        text="hi", usage=Usage(1, 2, 3, 4), stop_reason="end_turn"
    )
