"""Figure: the agent loop's own time per step, with a zero-latency model and no sandbox cost.

One run plays the same scripted trajectory (plan, then read / search / edit / list / run_tests
steps on a real checked-out repository, 4 KB tool outputs) twice, side by side:

- nightcrew: the real ``Agent`` — planning, the budget's worst-case check before every call,
  mark_done, repeated-failure bookkeeping, status events, compaction checks — with the real
  ``Toolbox`` (path checks, edits, output truncation) and a sandbox that answers instantly;
- bare: a minimal loop over the same model and the same ``Toolbox`` calls, nothing else.

Both use ``ScriptedModel`` in-process, which still builds and checks each request the way the
API would (that cost is in both). The framework's time per step is nightcrew's per-step time
(excluding the sandbox, which costs nothing here); the difference to bare is what the loop's
guards add. Goal: < 50 ms per step.

Usage: .venv/bin/python bench/step_overhead.py [--steps 40] [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from runner.agent.loop import Agent, LoopLimits, StepEvent  # noqa: E402
from runner.agent.tools import Toolbox  # noqa: E402
from runner.fakes.script import ScriptStep  # noqa: E402
from runner.fakes.scripted import ScriptedModel  # noqa: E402
from runner.gates.budget import BudgetLimits, RunBudget  # noqa: E402
from runner.model import ToolCall  # noqa: E402
from runner.sandbox import ExecResult  # noqa: E402

OUTPUT = ("src/pkg/module.py:12: def handler(event):\n" * 100)[:4096]  # 4 KB of tool output


class InstantSandbox:
    """Answers every command at once with 4 KB of output: no process, no time."""

    def run(self, argv: Sequence[str], *, cwd: str = ".", timeout: float | None = None) -> ExecResult:
        if "pytest" in argv:
            return ExecResult(0, OUTPUT + "\n20 passed in 0.50s", "", 0.0)
        return ExecResult(0, OUTPUT, "", 0.0)


def make_repo(root: Path, files: int = 60) -> None:
    """A repository of ``files`` Python modules of ~60 lines each."""
    for i in range(files):
        package = root / "src" / "pkg" / f"sub{i % 6}"
        package.mkdir(parents=True, exist_ok=True)
        body = "".join(f"def function_{i}_{j}(value):\n    return value + {j}\n\n" for j in range(20))
        (package / f"module_{i}.py").write_text(body)


def trajectory(steps: int) -> list[dict[str, Any]]:
    """A plan, then a cycle of the tools a real run uses, then finish."""
    cycle: list[dict[str, Any]] = [
        {"name": "read_file", "input": {"path": "src/pkg/sub0/module_0.py", "start_line": 1, "end_line": 40}},
        {"name": "search", "input": {"pattern": "function_1_"}},
        {"name": "list_files", "input": {"path": "src"}},
        {"name": "run_tests", "input": {}},
        {"name": "edit_file", "input": {"path": "src/pkg/sub1/module_1.py",
                                        "search": "    return value + 3\n",
                                        "replace": "    return value + 3  # checked\n"}},
        {"name": "edit_file", "input": {"path": "src/pkg/sub1/module_1.py",
                                        "search": "    return value + 3  # checked\n",
                                        "replace": "    return value + 3\n"}},
    ]
    out: list[dict[str, Any]] = [{"text": "- [ ] Read\n- [ ] Edit\n- [ ] Test\nAcceptance:\n- [ ] green"}]
    for i in range(steps - 1):
        out.append({"text": f"Step {i}.", "tool_calls": [cycle[i % len(cycle)]]})
    out.append({"tool_calls": [{"name": "finish", "input": {"summary": "done"}}]})
    return out


def scripted(steps: int) -> ScriptedModel:
    return ScriptedModel([ScriptStep.from_json(s) for s in trajectory(steps)], model="claude-sonnet-4-5")


def run_nightcrew(repo: Path, steps: int) -> float:
    model = scripted(steps)
    tools = Toolbox(repo, InstantSandbox(), ["python", "-m", "pytest"])  # type: ignore[arg-type]
    budget = RunBudget(BudgetLimits(tokens=100_000_000, usd=1_000.0, wall_s=36_000, steps=10_000))
    events: list[StepEvent] = []
    agent = Agent(model, tools, limits=LoopLimits(max_iterations=steps + 5), budget=budget,
                  on_step=events.append)
    started = time.perf_counter()
    result = agent.run("Fix the handler. " * 40)
    elapsed = time.perf_counter() - started
    assert result.finished and result.steps == steps, (result.outcome, result.steps, result.stop_reason)
    return elapsed / steps


def run_bare(repo: Path, steps: int) -> float:
    """The least a tool-use loop can do: call, execute, append."""
    model = scripted(steps)
    tools = Toolbox(repo, InstantSandbox(), ["python", "-m", "pytest"])  # type: ignore[arg-type]
    started = time.perf_counter()
    model.complete(system="plan", messages=[{"role": "user", "content": "Fix the handler. " * 40}],
                   tools=[], max_tokens=1500)
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Fix the handler. " * 40}]
    for _ in range(steps):
        reply = model.complete(system="act", messages=messages, tools=tools.specs, max_tokens=4096)
        messages.append({"role": "assistant", "content": [
            {"type": "tool_use", "id": c.id, "name": c.name, "input": c.input} for c in reply.tool_calls]})
        results = []
        for c in reply.tool_calls:
            obs = tools.execute(ToolCall(c.id, c.name, c.input))
            results.append({"type": "tool_result", "tool_use_id": c.id, "content": obs.content})
        messages.append({"role": "user", "content": results})
    return (time.perf_counter() - started) / steps


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="nightcrew-steps-") as tmp:
        repo = Path(tmp)
        make_repo(repo)
        nightcrew, bare = [], []
        for _ in range(args.runs):  # interleaved, so machine noise hits both alike
            nightcrew.append(run_nightcrew(repo, args.steps))
            bare.append(run_bare(repo, args.steps))
    ours, base = statistics.median(nightcrew), statistics.median(bare)
    print(f"step overhead · {args.steps}-step scripted trajectory, zero-latency model, instant sandbox, "
          f"median of {args.runs} interleaved runs")
    print(f"  nightcrew loop {ours * 1000:7.2f} ms/step")
    print(f"  bare loop      {base * 1000:7.2f} ms/step")
    print(f"  ratio nightcrew/bare {ours / base:.2f} · guards add {(ours - base) * 1000:.2f} ms/step")
    print(f"goal: framework time per step < 50 ms   {'MET' if ours < 0.050 else 'NOT MET'} "
          f"({ours * 1000:.1f} ms)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
