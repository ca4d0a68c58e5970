"""Figure: recall and size of the agent's initial context package, vs plain BM25 over files.

Task set (`bench/data/context_tasks.json`, loaded by `bench/context_tasks.py`): real bug fixes in
real projects, taken from PyPI alone (GitHub is not reachable here). For each project we took an
sdist at a fixed version X and its patch release X+1, diffed the two unpacked trees, and read the
bug-fix entries of X+1's changelog. Each task is one such entry: an issue-like title and body
written as a user would report the symptom (some with a traceback or an error message, some only
describing behaviour; no file path of the fix unless it would appear in a pasted traceback), and
the source files of X that the fix changed in X+1 (tests, docs, changelog, version bumps and
packaging metadata left out; a fix that only touched tests is no task). The context is built on
the unpacked sdist of X, so the fixed code is the buggy code the issue is about, and the sdist's
sha256 is pinned. Entries whose report would have to describe the fix itself, enhancements and
dependency bumps were left out (see the data file's `source` for every task's changelog entry).

Two systems answer every task in the same run, at the same token budget and the same estimate
(`ceil(len(text) / 4)`):

- nightcrew: `runner.context.build_context(repo_dir, IssueText(...), token_budget, max_files=15)`;
  a file is in the context if it is in `pkg.files` (the package quotes code from it).
- BM25 over files: every source file of the sdist is a document (identifiers split on snake and
  camel case, Okapi BM25 with k1=1.5, b=0.75), the query is the issue title and body, and whole
  files go in in score order until the budget; the first file that no longer fits goes in as its
  beginning when at least 200 tokens are left, then the package is closed (at most 15 files).

Recall(all) is the share of tasks whose fixed files are all in the package, recall(any) the
share with at least one. Goals: recall(all) >= 80 % with every package <= 4,200 tokens, and
ahead of BM25 on recall(all). Two figures without a goal keep that file-level count honest:
recall(code), the share of tasks where, for every fixed file, the package quotes a line within
3 lines of one the fix changed (each task stores those line ranges of the base version, taken
from the X..X+1 diff hunks of that fix; nightcrew's quoted lines are read from the `  123 |`
numbering of its snippets, BM25's are the whole or cut files), and the share of tasks whose
fixed files are all among BM25's top 15 file names, which says how much of a 15-file package's
lead comes from naming many files rather than from ranking.

Usage: .venv/bin/python bench/context.py [--budget 4200] [--only PROJECT] [--json] [--per-task]
Downloads the sdists once with pip (cache: $NIGHTCREW_BENCH_CACHE or ~/.cache/nightcrew-bench).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from context_tasks import Task, TaskSetError, iter_tasks  # noqa: E402
from context_tasks import load as load_tasks  # noqa: E402

GOAL_RECALL = 0.80
MAX_FILES = 15
MIN_PARTIAL_TOKENS = 200
CODE_SLACK = 3  # a quoted line this close to a changed line shows the fix site
SOURCE_SUFFIXES = {
    ".py", ".pyi", ".pyx", ".pxd", ".c", ".h", ".js", ".ts", ".css", ".html", ".j2", ".sh", ".cfg",
    ".toml", ".ini",
}
SKIP_DIRS = {".git", "__pycache__", "node_modules", "build", "dist", ".tox", ".venv"}


def tokens_of(text: str) -> int:
    """nightcrew's estimate: about four characters per token."""
    return math.ceil(len(text) / 4)


# ---------------------------------------------------------------- BM25 baseline

_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|\d+")
_CAMEL = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")
_STOP = frozenset(
    "a an and are as at be but by for from has have if in into is it its not of on or so that the "
    "then this to was were will with self none true false return def class import".split()
)


def terms(text: str) -> list[str]:
    """Identifiers and their snake/camel parts, lower-cased, without stop words."""
    out: list[str] = []
    for word in _WORD.findall(text):
        parts = [p for chunk in word.split("_") for p in _CAMEL.findall(chunk)]
        lowered = word.lower().strip("_")
        if len(parts) > 1 and lowered:
            out.append(lowered)
        out.extend(p.lower() for p in parts)
    return [t for t in out if len(t) > 1 and t not in _STOP]


@dataclass
class BM25:
    docs: list[Counter[str]]
    k1: float = 1.5
    b: float = 0.75
    idf: dict[str, float] = field(init=False)
    lengths: list[int] = field(init=False)
    avgdl: float = field(init=False)

    def __post_init__(self) -> None:
        self.lengths = [sum(d.values()) for d in self.docs]
        self.avgdl = (sum(self.lengths) / len(self.docs)) if self.docs else 1.0
        df: Counter[str] = Counter()
        for d in self.docs:
            df.update(d.keys())
        n = len(self.docs)
        self.idf = {t: math.log(1 + (n - f + 0.5) / (f + 0.5)) for t, f in df.items()}

    def scores(self, query: list[str]) -> list[float]:
        q = Counter(query)
        out = []
        for d, dl in zip(self.docs, self.lengths, strict=True):
            norm = self.k1 * (1 - self.b + self.b * dl / self.avgdl)
            s = 0.0
            for t, qf in q.items():
                tf = d.get(t)
                if tf:
                    s += qf * self.idf[t] * tf * (self.k1 + 1) / (tf + norm)
            out.append(s)
        return out


def source_files(repo: Path) -> dict[str, str]:
    """Every text source file of the tree, by path relative to it."""
    files: dict[str, str] = {}
    for p in sorted(repo.rglob("*")):
        rel = p.relative_to(repo)
        if (not p.is_file() or p.suffix not in SOURCE_SUFFIXES
                or any(part in SKIP_DIRS or part.endswith(".egg-info") for part in rel.parts)):
            continue
        raw = p.read_bytes()
        if b"\0" in raw or len(raw) > 1_000_000:
            continue
        files[rel.as_posix()] = raw.decode("utf-8", errors="replace")
    return files


@dataclass
class Package:
    files: list[str]
    tokens: int
    ranked: list[str] = field(default_factory=list)  # BM25 only: the top files, whatever the budget
    # line ranges of each file that the package quotes; None when the system does not say
    quoted: dict[str, list[tuple[int, int]]] | None = None


def bm25_context(repo: Path, title: str, body: str, budget: int) -> Package:
    files = source_files(repo)
    names = list(files)
    index = BM25([Counter(terms(f"{n}\n{files[n]}")) for n in names])
    ranked = sorted(zip(index.scores(terms(f"{title}\n{body}")), names, strict=True), key=lambda x: -x[0])
    chosen: list[str] = []
    quoted: dict[str, list[tuple[int, int]]] = {}
    used = tokens_of(f"## The issue\n{title}\n\n{body}\n")  # the issue is in the package, as in nightcrew's
    for score, name in ranked:
        if score <= 0 or len(chosen) >= MAX_FILES:
            break
        block = f"### {name}\n{files[name]}\n"
        cost = tokens_of(block)
        if used + cost <= budget:
            chosen.append(name)
            quoted[name] = [(1, files[name].count("\n") + 1)]
            used += cost
            continue
        left = budget - used
        if left >= MIN_PARTIAL_TOKENS:  # the file's beginning, cut to what is left
            head = block[: left * 4]
            chosen.append(name)
            quoted[name] = [(1, head.count("\n") - 1)]  # whole lines after the "### path" line
            used += tokens_of(head)
        break
    return Package(chosen, used, [n for s, n in ranked[:MAX_FILES] if s > 0], quoted)


# ---------------------------------------------------------------- nightcrew

_NUMBERED = re.compile(r"^\s*(\d+) \|", re.M)


def numbered_lines(pkg: Any) -> dict[str, list[tuple[int, int]]] | None:
    """The file lines a package's snippets quote, from their `  123 | code` numbering, if any."""
    out: dict[str, list[tuple[int, int]]] = {}
    for s in getattr(pkg, "snippets", ()):
        path, text = getattr(s, "path", None), getattr(s, "text", "")
        if path:
            out.setdefault(path, []).extend((int(n), int(n)) for n in _NUMBERED.findall(text))
    return out if any(out.values()) else None



def nightcrew_builder() -> tuple[Callable[[Path, Task, int], Package] | None, str]:
    try:
        from runner.context import IssueText, build_context
    except Exception as e:  # noqa: BLE001 - any import failure means "not available"
        return None, f"{type(e).__name__}: {e}"

    def build(repo: Path, task: Task, budget: int) -> Package:
        issue = IssueText(title=task.title, body=task.body, author="bench", origin="issue")
        pkg = build_context(repo, issue, token_budget=budget, max_files=MAX_FILES)
        return Package(list(pkg.files), int(pkg.tokens), quoted=numbered_lines(pkg))

    return build, ""


# ---------------------------------------------------------------- the run


@dataclass
class Result:
    task: str
    project: str
    hit_all: bool
    hit_any: bool
    tokens: int
    seconds: float
    files: list[str]
    missed: list[str]
    ranked_hit_all: bool
    code_hit: bool | None  # every fixed file has a line the fix changed quoted (None: unknown)


def run_system(build: Callable[[Path, Task, int], Package], cases: list[tuple[Path, Task]],
               budget: int) -> list[Result]:
    out = []
    for repo, task in cases:
        t0 = time.perf_counter()
        pkg = build(repo, task, budget)
        dt = time.perf_counter() - t0
        got = set(pkg.files)
        missed = [f for f in task.fixed_files if f not in got]
        out.append(Result(task.id, task.project, not missed, len(missed) < len(task.fixed_files),
                          pkg.tokens, dt, pkg.files, missed,
                          all(f in pkg.ranked for f in task.fixed_files), code_hit(pkg, task)))
    return out


def code_hit(pkg: Package, task: Task) -> bool | None:
    if pkg.quoted is None or not task.fix_lines:
        return None
    return all(
        any(a <= hb + CODE_SLACK and ha - CODE_SLACK <= b for a, b in pkg.quoted.get(f, []) for ha, hb in hunks)
        for f, hunks in task.fix_lines.items()
    )


def p90(xs: list[int]) -> float:
    ys = sorted(xs)
    return float(ys[min(len(ys) - 1, math.ceil(0.9 * len(ys)) - 1)])


def summary(results: list[Result]) -> dict[str, Any]:
    n = len(results)
    toks = [r.tokens for r in results]
    return {
        "tasks": n,
        "recall_all": sum(r.hit_all for r in results) / n,
        "recall_any": sum(r.hit_any for r in results) / n,
        "recall_code": (None if any(r.code_hit is None for r in results)
                        else sum(bool(r.code_hit) for r in results) / n),
        "tokens_mean": statistics.fmean(toks),
        "tokens_p90": p90(toks),
        "tokens_max": max(toks),
        "seconds_mean": statistics.fmean(r.seconds for r in results),
        "files_mean": statistics.fmean(len(r.files) for r in results),
        "by_project": {
            p: sum(r.hit_all for r in results if r.project == p) / sum(r.project == p for r in results)
            for p in sorted({r.project for r in results})
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", type=int, default=4200, help="token budget of a package (default 4200)")
    parser.add_argument("--only", metavar="PROJECT", help="run the tasks of one project only, e.g. click")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--per-task", action="store_true", help="also print each task's misses")
    args = parser.parse_args()

    try:
        cases = list(iter_tasks(args.only))
    except TaskSetError as e:
        print(f"bench/context.py: {e}", file=sys.stderr)
        return 2
    if not cases:
        known = sorted({t.project for t in load_tasks()[1]})
        print(f"bench/context.py: no task for project {args.only!r} (projects: {', '.join(known)})",
              file=sys.stderr)
        return 2

    systems: dict[str, Callable[[Path, Task, int], Package]] = {
        "bm25": lambda repo, t, budget: bm25_context(repo, t.title, t.body, budget),
    }
    nc, why = nightcrew_builder()
    if nc is not None:
        systems = {"nightcrew": nc, **systems}
    results = {name: run_system(build, cases, args.budget) for name, build in systems.items()}
    figures = {name: summary(rs) for name, rs in results.items()}

    goal_recall = goal_ahead = False
    if "nightcrew" in figures:
        n, b = figures["nightcrew"], figures["bm25"]
        goal_recall = n["recall_all"] >= GOAL_RECALL and n["tokens_max"] <= args.budget
        goal_ahead = n["recall_all"] > b["recall_all"]
    projects = sorted({t.project for _, t in cases})

    if args.json:
        print(json.dumps({
            "budget": args.budget, "tasks": len(cases), "projects": projects, "systems": figures,
            "nightcrew_unavailable": why or None,
            "bm25_top_files_recall_all": sum(r.ranked_hit_all for r in results["bm25"]) / len(cases),
            "goals": {"recall_at_budget": goal_recall, "ahead_of_bm25": goal_ahead},
            "per_task": {name: [r.__dict__ for r in rs] for name, rs in results.items()} if args.per_task else None,
        }, indent=2))
        return 0

    print(f"context retrieval: {len(cases)} tasks over {len(projects)} projects "
          f"({', '.join(projects)}), budget {args.budget:,} tokens")
    if why:
        print(f"nightcrew: not available ({why}); BM25 only")
    print(f"{'system':<10} {'recall(all)':>11} {'recall(any)':>11} {'recall(code)':>12} {'tok mean':>9} "
          f"{'tok p90':>8} {'tok max':>8} {'s/task':>7}")
    for name, f in figures.items():
        code = "n/a" if f["recall_code"] is None else f"{f['recall_code']:.1%}"
        print(f"{name:<10} {f['recall_all']:>10.1%} {f['recall_any']:>11.1%} {code:>12} "
              f"{f['tokens_mean']:>9,.0f} {f['tokens_p90']:>8,.0f} {f['tokens_max']:>8,} "
              f"{f['seconds_mean']:>7.3f}")
    if "bm25" in results:
        ranked = sum(r.ranked_hit_all for r in results["bm25"]) / len(cases)
        print(f"reference, not a package: BM25's top {MAX_FILES} file names hold all fixed files in "
              f"{ranked:.1%} of tasks (files per package: "
              + ", ".join(f"{n} {f['files_mean']:.1f}" for n, f in figures.items()) + ")")
    for name, f in figures.items():
        print(f"{name} recall(all) by project: "
              + ", ".join(f"{p} {v:.0%}" for p, v in f["by_project"].items()))
    if args.per_task:
        for name, rs in results.items():
            for r in rs:
                if r.missed:
                    print(f"  {name} miss {r.task}: {', '.join(r.missed)} (got {', '.join(r.files[:6])})")
                elif r.code_hit is False:
                    print(f"  {name} files but not the changed lines: {r.task}")
    mark = {True: "MET", False: "NOT MET"}
    print(f"goal: >= {GOAL_RECALL:.0%} at <= {args.budget:,} tokens: {mark[goal_recall]}")
    print(f"goal: ahead of BM25: {mark[goal_ahead]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
