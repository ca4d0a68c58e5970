"""Figure: the share of input tokens read from the prompt cache after step 2, on a replayed run.

A 25-step trajectory (plan, then reads, searches, edits and test runs on a real repository with
4 KB tool outputs) is replayed through the real ``Agent`` loop and the production
``AnthropicModel`` adapter against the local ``FakeMessagesServer``, which bills every request
the way Anthropic's prefix cache does (``runner.fakes.cache_sim``: breakpoints, the 20-block
lookback, minimum prefix sizes, five-minute lifetime). Side by side in one run:

- nightcrew: tools, system prompt and the last message of each request marked (each turn reads
  the previous turn's prefix and writes only the new part);
- baseline: only tools and system marked (the common "cache the system prompt" setup).

Printed: cache-read share of input tokens over the calls after step 2, for both, and the cost
of the whole run each way. Goal: >= 80 %.

Usage: .venv/bin/python bench/cache.py [--steps 25]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.step_overhead import InstantSandbox, make_repo, trajectory  # noqa: E402
from runner.agent.loop import Agent, LoopLimits  # noqa: E402
from runner.agent.tools import Toolbox  # noqa: E402
from runner.fakes.cache_sim import cache_read_share  # noqa: E402
from runner.fakes.messages_server import FakeMessagesServer  # noqa: E402
from runner.fakes.script import ScriptStep  # noqa: E402
from runner.model import ModelReply, Usage  # noqa: E402
from runner.model.anthropic import AnthropicModel  # noqa: E402


class Metered:
    """Keeps each call's usage and cost, in order."""

    def __init__(self, inner: AnthropicModel) -> None:
        self.inner = inner
        self.model = inner.model
        self.usages: list[Usage] = []
        self.cost = 0.0

    def complete(self, **kwargs: Any) -> ModelReply:
        reply = self.inner.complete(**kwargs)
        self.usages.append(reply.usage)
        self.cost += reply.cost_usd
        return reply


def replay(repo: Path, steps: int, *, cache_messages: bool) -> Metered:
    server = FakeMessagesServer([ScriptStep.from_json(s) for s in trajectory(steps)])
    url = server.start()
    try:
        model = Metered(AnthropicModel("claude-sonnet-4-5", api_key="bench-key-not-secret",
                                       base_url=url, cache_messages=cache_messages))
        tools = Toolbox(repo, InstantSandbox(), ["python", "-m", "pytest"])  # type: ignore[arg-type]
        result = Agent(model, tools, limits=LoopLimits(max_iterations=steps + 5)).run(  # type: ignore[arg-type]
            "Fix the handler so it returns the right value. " * 20)
        assert result.finished, (result.outcome, result.stop_reason)
        return model
    finally:
        server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=25)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="nightcrew-cache-") as tmp:
        repo = Path(tmp)
        make_repo(repo)
        ours = replay(repo, args.steps, cache_messages=True)
        base = replay(repo, args.steps, cache_messages=False)
    share, base_share = cache_read_share(ours.usages), cache_read_share(base.usages)
    print(f"prompt cache · {args.steps}-step replayed trajectory through Agent + AnthropicModel → "
          "FakeMessagesServer (Anthropic prefix-cache rules), claude-sonnet-4-5 prices")
    print(f"  nightcrew (tools+system+last message marked) cache reads {share:6.1%} of input after step 2 "
          f"· run ${ours.cost:.4f}")
    print(f"  baseline  (tools+system marked)             cache reads {base_share:6.1%} of input after step 2 "
          f"· run ${base.cost:.4f}")
    print(f"  ratio: cost nightcrew/baseline {ours.cost / base.cost:.2f}")
    print(f"goal: >= 80 % cache reads after step 2   {'MET' if share >= 0.8 else 'NOT MET'} ({share:.1%})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
