"""Record a model's replies as a script, so a real run can be replayed offline.

``RecordingModel`` wraps any ``ModelClient`` and, after every call, rewrites a script file in
exactly the format ``ScriptedModel`` and ``FakeMessagesServer`` play (``script.load_script``).
A run against the real API thus leaves a trajectory that tests, demos and benchmarks can
replay without a key or network, and a run that crashes leaves every reply up to the crash.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from runner.fakes.script import ScriptedCall, ScriptStep, dump_script
from runner.model import Message, ModelClient, ModelReply, ToolSpec


def step_from_reply(reply: ModelReply) -> ScriptStep:
    """The script step that replays ``reply``: its text, tool calls, usage and stop reason.

    Tool-call ids are not kept: the script format has none, each player numbers its own.
    """
    return ScriptStep(
        text=reply.text,
        tool_calls=tuple(ScriptedCall(c.name, dict(c.input)) for c in reply.tool_calls),
        usage=reply.usage,
        stop_reason=reply.stop_reason,
    )


class RecordingModel:
    """A ``ModelClient`` forwarding to ``inner`` and saving each reply as a step at ``path``.

    The file is rewritten atomically after every successful call (``dump_script``), so it is
    always a complete, loadable script. Failed calls are not recorded: a script has no way to
    say "this call failed", and the caller sees the error as before.
    """

    def __init__(self, inner: ModelClient, path: Path) -> None:
        self.inner = inner
        self.path = Path(path)
        # Same attribute the other clients expose, so callers that log it keep working.
        self.model: str = str(getattr(inner, "model", "recorded"))
        self.steps: list[ScriptStep] = []
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def complete(
        self,
        *,
        system: str,
        messages: Sequence[Message],
        tools: Sequence[ToolSpec],
        max_tokens: int = 4096,
    ) -> ModelReply:
        """``inner``'s reply, after appending it to the script file."""
        reply = self.inner.complete(
            system=system, messages=messages, tools=tools, max_tokens=max_tokens
        )
        self.steps.append(step_from_reply(reply))
        dump_script(self.steps, self.path)
        return reply
