"""``nightcrew review``: review a local range ``base...head`` without GitHub.

The diff is ``git diff -M base...head`` (what a PR from head into base shows); the findings come
from a JSON file or from the review model, and are placed exactly as a review round places them
(``runner.review.placement``). Nothing is posted: the review it would post is printed.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

from github_app.errors import NightcrewError
from github_app.repo_config import RepoConfigError, load_local_config
from runner.review.findings import Finding, FindingError, parse_findings
from runner.review.placement import DiffError, Placement, PullDiff, place, placement_json, review_summary

MAX_FILES = 30  # changed files read at the head for the model, as a review round reads them
GIT_TIMEOUT_S = 60.0


class ReviewError(NightcrewError):
    """The local review cannot run; the message is one line for the person at the terminal."""


@dataclass(frozen=True)
class LocalRange:
    """A repository and the range to review."""

    repo: Path
    base: str
    head: str

    @property
    def name(self) -> str:
        return f"{self.base}...{self.head}"


def review_command(span: LocalRange, *, findings_file: Path | None, model: str | None,
                   as_json: bool, max_inline: int | None) -> str:
    """Place the findings (from the file, or asked of ``model``) on the range's diff; the text
    to print."""
    if (findings_file is None) == (model is None):
        raise ReviewError("give either --findings FILE or --model SPEC")
    for ref in (span.base, span.head):
        if not ref or ref.startswith("-"):
            raise ReviewError(f"{ref!r} is not a git ref")
    diff_text = git(span.repo, "diff", "-M", "--no-color", "--no-ext-diff", "--src-prefix=a/",
                    "--dst-prefix=b/", span.name, "--")
    try:
        diff = PullDiff.from_text(diff_text)
    except DiffError as exc:
        raise ReviewError(f"git diff {span.name}: {exc}") from None
    policy = _policy(span.repo)
    cost = None
    if findings_file is not None:
        findings = read_findings(findings_file)
    else:
        assert model is not None
        findings, cost = ask_model(span, diff_text, diff, model)
    placement = place(findings, diff, max_inline=max_inline or policy[0], move_within=policy[1])
    if as_json:
        return json.dumps(placement_json(placement), indent=2)
    return render(span, placement, cost)


def git(repo: Path, *args: str) -> str:
    """git's output in ``repo``; a refusal (no repository, a bad ref) is a ``ReviewError``."""
    try:
        result = subprocess.run(["git", "-c", "core.quotePath=true", "-C", str(repo), *args],
                                capture_output=True, timeout=GIT_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ReviewError(f"git {args[0]} in {repo}: {exc}") from None
    if result.returncode != 0:
        why = result.stderr.decode("utf-8", errors="replace").strip().splitlines()
        raise ReviewError(f"git {args[0]} in {repo} failed: {why[0] if why else 'exit ' + str(result.returncode)}")
    return result.stdout.decode("utf-8", errors="replace")


def read_findings(path: Path) -> list[Finding]:
    """The findings of a JSON file (a list, or ``{"findings": [...]}``)."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReviewError(f"--findings {path}: no such file") from None
    except OSError as exc:
        raise ReviewError(f"--findings {path}: {exc.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ReviewError(f"--findings {path}: not JSON ({exc})") from None
    try:
        return parse_findings(raw)
    except FindingError as exc:
        raise ReviewError(f"--findings {path}: {exc}") from None


def ask_model(span: LocalRange, diff_text: str, diff: PullDiff, spec: str) -> tuple[list[Finding], float]:
    """The review model's findings on the range, and what asking cost."""
    from runner.cli.local_run import RunError, model_factory
    from runner.review.reviewer import review_diff

    try:
        client = model_factory(spec)(spec)
    except RunError as exc:
        raise ReviewError(str(exc)) from None
    subjects = git(span.repo, "log", "--format=%s", f"{span.base}..{span.head}", "--").strip()
    answer = review_diff(client, title=f"Local review of {span.name}",
                         description=subjects or "(no commit messages)", diff=diff_text,
                         files=files_at_head(span, diff), author="local")
    return answer.findings, answer.cost_usd


def files_at_head(span: LocalRange, diff: PullDiff) -> dict[str, str]:
    """The changed text files as they are at the head (deleted and binary files have none)."""
    files: dict[str, str] = {}
    wanted = [f.path for f in diff.files.values() if f.status != "removed" and not f.binary]
    for path in wanted[:MAX_FILES]:
        try:
            files[path] = git(span.repo, "show", f"{span.head}:{path}")
        except ReviewError:  # a submodule or a path git cannot show: the diff still has it
            continue
    return files


def _policy(repo: Path) -> tuple[int, int]:
    """(inline comments per round, lines a finding may move) from the repository's config."""
    try:
        review = load_local_config(repo).review
    except RepoConfigError as exc:
        raise ReviewError(f"the repository's config is invalid: {exc}") from None
    return review.max_inline_comments, review.move_within


def render(span: LocalRange, placement: Placement, cost_usd: float | None) -> str:
    """The review as it would be posted: each inline comment by place, then the summary."""
    lines = [f"Review of {span.name} in {span.repo} (not posted)"]
    if cost_usd is not None:
        lines.append(f"review model cost: ${cost_usd:.4f}")
    for comment in placement.comments:
        where = (f"{comment.path}:{comment.start_line}-{comment.line}" if comment.start_line
                 else f"{comment.path}:{comment.line}")
        moved = f", moved from line {comment.moved_from}" if comment.moved_from is not None else ""
        lines += ["", f"── {where} ({comment.side}{moved})"]
        lines += [f"   {text}" if text else "" for text in comment.body.splitlines()]
    lines += ["", "── summary", review_summary(placement)]
    return "\n".join(lines)
