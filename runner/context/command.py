"""``nightcrew context``: show the initial context a task would get, and what a run may cost.

A plain function returning (exit code, text) so the CLI can register it and tests can call it.
No model is ever called: the estimate is arithmetic on the context size.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from github_app.repo_config import RepoConfigError, load_local_config
from runner.context import rg
from runner.context.build import build_context
from runner.context.package import ContextPackage, IssueText
from runner.model import Usage
from runner.model.prices import cost_usd

# The per-step model behind --estimate (see ``estimate_run``).
SYSTEM_TOKENS = 3_000        # system prompt + tool definitions, cached after the first step
BASE_STEPS = 8               # a small fix in a small repository: read, edit, test, finish
STEPS_PER_DOUBLING = 2       # each doubling of the repository past 50 files adds search steps
MAX_STEPS = 40
OBSERVATION_TOKENS = 900     # new input per step: a tool result (file read, test output)
OUTPUT_TOKENS = 350          # the model's reply per step: a thought and a tool call


@dataclass(frozen=True)
class RunEstimate:
    """Expected steps, tokens and dollars of one task run."""

    steps: int
    tokens: int
    usd: float

    def to_json(self) -> dict[str, Any]:
        return {"steps": self.steps, "tokens": self.tokens, "usd": round(self.usd, 4)}


def estimate_run(context_tokens: int, repo_files: int, model: str) -> RunEstimate:
    """Expected cost of a run, from the context size and the repository's size.

    steps  n = min(MAX_STEPS, BASE_STEPS + STEPS_PER_DOUBLING * ceil(log2(1 + files / 50)))
    prefix P = SYSTEM_TOKENS + context_tokens, written to the cache once (cache-write price)
    step i (1..n) re-reads the cached prefix plus the conversation so far,
        cache_read_i = P + (i - 1) * (OBSERVATION_TOKENS + OUTPUT_TOKENS)   (i > 1; step 1 writes P)
        input_i = OBSERVATION_TOKENS (uncached new input), output_i = OUTPUT_TOKENS
    tokens = sum of all four kinds; usd = ``runner.model.prices.cost_usd`` of that usage.
    """
    steps = min(MAX_STEPS, BASE_STEPS + STEPS_PER_DOUBLING * math.ceil(math.log2(1 + repo_files / 50)))
    prefix, turn = SYSTEM_TOKENS + context_tokens, OBSERVATION_TOKENS + OUTPUT_TOKENS
    reads = sum(prefix + (i - 1) * turn for i in range(2, steps + 1))
    usage = Usage(input_tokens=OBSERVATION_TOKENS * steps, output_tokens=OUTPUT_TOKENS * steps,
                  cache_write_tokens=prefix, cache_read_tokens=reads)
    return RunEstimate(steps, usage.total_tokens, cost_usd(model, usage))


def read_issue_file(path: Path) -> IssueText:
    """An issue from markdown: an optional first ``# title`` line, then the body."""
    text = path.read_text(errors="replace")
    first, _, rest = text.partition("\n")
    if first.startswith("# "):
        return IssueText(title=first[2:].strip(), body=rest.strip(), origin=f"file {path.name}")
    return IssueText(title=path.stem, body=text.strip(), origin=f"file {path.name}")


def context_command(repo: Path, issue_file: Path, budget: int | None = None, max_files: int | None = None,
                    as_json: bool = False, estimate: bool = False,
                    model: str = "claude-sonnet-4-5") -> tuple[int, str]:
    """Build the context for ``issue_file`` on ``repo``; (exit code, text to print).

    ``budget`` and ``max_files`` override the repository config when given; exit 2 with one
    line when the config or the inputs are unusable.
    """
    try:
        config = load_local_config(repo)
        issue = read_issue_file(issue_file)
    except RepoConfigError as exc:
        return 2, f"nightcrew: {exc}"
    except OSError as exc:
        return 2, f"nightcrew: cannot read {exc.filename}: {exc.strerror}"
    budget = budget if budget is not None else config.context.token_budget
    max_files = max_files if max_files is not None else config.context.max_files_per_task
    package = build_context(repo, issue, token_budget=budget, max_files=max_files, rules=config.rules)
    run = estimate_run(package.tokens, len(rg.list_files(repo)), model) if estimate else None
    return 0, _output(package, run, as_json)


def _output(package: ContextPackage, run: RunEstimate | None, as_json: bool) -> str:
    if as_json:
        data = package.to_json() | ({"estimate": run.to_json()} if run else {})
        return json.dumps(data, indent=2)
    layers = ", ".join(f"{name} {tokens}" for name, tokens in package.layers.items())
    header = f"context: {package.tokens}/{package.budget} tokens · {len(package.files)} files · {layers}"
    if package.removed:
        header += " · removed hidden text: " + ", ".join(f"{k} {v}" for k, v in package.removed.items())
    if run:
        header += f"\nestimate: ~{run.steps} steps · ~{run.tokens} tokens · ~${run.usd:.2f}"
    return f"{header}\n\n{package.render()}"
