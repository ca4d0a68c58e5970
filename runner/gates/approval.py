"""The approval gate: which kinds of change wait for a human before they are pushed.

``ApprovalPolicy`` (the repo's ``approval:`` config) is the data; ``classify_changes`` sorts the
work so far into dependency, workflow, security and architecture changes, and ``gate`` turns the
kinds the policy names into one question for a maintainer (``/nightcrew approve …``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from github_app.repo_config import ApprovalPolicy, ChangeKind

ChangeStatus = Literal["added", "modified", "deleted", "renamed"]


@dataclass(frozen=True)
class Change:
    """One changed file of the work so far, by its path relative to the repository root."""

    path: str
    status: ChangeStatus


@dataclass(frozen=True)
class ChangeRules:
    """Which paths are dependency manifests and which are CI configuration (glob patterns).

    Every change to a listed file counts, ``pyproject.toml`` included: telling a dependency edit
    from a formatter setting needs a TOML diff, and a question asked once too often costs a
    reply where a missed one costs a review.
    """

    dependencies: tuple[str, ...] = (
        "**/pyproject.toml", "**/requirements*.txt", "**/requirements/*.txt", "**/requirements*.in",
        "**/constraints*.txt", "**/setup.py", "**/setup.cfg", "**/Pipfile", "**/Pipfile.lock",
        "**/poetry.lock", "**/uv.lock", "**/pdm.lock", "**/environment.yml", "**/conda-lock.yml",
        "**/package.json", "**/package-lock.json", "**/npm-shrinkwrap.json", "**/yarn.lock",
        "**/pnpm-lock.yaml", "**/pnpm-workspace.yaml", "**/bun.lockb", "**/bun.lock", "**/deno.json",
        "**/deno.lock", "**/.npmrc", "**/.yarnrc.yml", "**/go.mod", "**/go.sum", "**/go.work",
        "**/Cargo.toml", "**/Cargo.lock", "**/Gemfile", "**/Gemfile.lock", "**/*.gemspec",
        "**/composer.json", "**/composer.lock", "**/build.gradle", "**/build.gradle.kts",
        "**/settings.gradle", "**/settings.gradle.kts", "**/gradle.lockfile",
        "**/gradle/libs.versions.toml", "**/pom.xml", "**/*.csproj", "**/packages.lock.json",
        "**/Directory.Packages.props", "**/mix.exs", "**/mix.lock", "**/pubspec.yaml",
        "**/pubspec.lock", "**/Package.swift", "**/Package.resolved", "**/Podfile", "**/Podfile.lock",
    )
    workflows: tuple[str, ...] = (
        ".github/workflows/**", ".github/actions/**", "action.yml", "action.yaml", ".gitlab-ci.yml",
        ".gitlab/ci/**", ".circleci/**", ".travis.yml", "azure-pipelines.yml", ".azure-pipelines/**",
        "Jenkinsfile", ".buildkite/**", "bitbucket-pipelines.yml", ".drone.yml", ".woodpecker.yml",
        ".woodpecker/**", "appveyor.yml", ".appveyor.yml",
    )


DEFAULT_CHANGE_RULES = ChangeRules()


def classify_changes(
    changes: Sequence[Change], policy: ApprovalPolicy, *,
    existing_top_level: set[str] | None = None, rules: ChangeRules = DEFAULT_CHANGE_RULES,
) -> dict[ChangeKind, list[str]]:
    """The change's kinds that may need approval, each with the paths that make it so.

    ``architecture`` lists ``name/`` for each new top-level directory (or ``src/name/`` package),
    plus every changed path when more than ``policy.architecture_files`` files changed.
    ``existing_top_level`` holds the names at the root of the base commit, and ``src/<name>``
    entries to see new packages under ``src/``; None skips the new-directory check.
    Matching is case-insensitive: on a case-insensitive checkout ``Auth/`` is ``auth/``.
    """
    paths = list(dict.fromkeys(c.path for c in changes))
    found: dict[ChangeKind, list[str]] = {
        "dependencies": [p for p in paths if _matches_any(p, rules.dependencies)],
        "workflows": [p for p in paths if _matches_any(p, rules.workflows)],
        "security": [p for p in paths if _matches_any(p, policy.security_paths)],
        "architecture": _architecture(changes, paths, policy, existing_top_level),
    }
    return {kind: hits for kind, hits in found.items() if hits}


def _architecture(changes: Sequence[Change], paths: list[str], policy: ApprovalPolicy,
                  existing_top_level: set[str] | None) -> list[str]:
    new_dirs = [] if existing_top_level is None else _new_directories(changes, existing_top_level)
    too_many = paths if len(paths) > policy.architecture_files else []
    return new_dirs + too_many


def _new_directories(changes: Sequence[Change], existing: set[str]) -> list[str]:
    """``name/`` for each directory an added file creates at the root (or under ``src/``).

    Dot-directories (``.github``, ``.vscode``) are configuration, not architecture; ``src/<pkg>``
    is judged only when ``existing`` lists what ``src/`` held.
    """
    known = set(existing) | {_top(c.path) for c in changes if c.status != "added"}
    knows_src = any(name.startswith("src/") for name in known)
    new: list[str] = []
    for change in changes:
        top = _top(change.path)
        if change.status not in ("added", "renamed") or not top or top.startswith("."):
            continue
        if top not in known:
            new.append(top + "/")
        elif top == "src" and knows_src and (pkg := _top(change.path, under="src/")) not in known:
            new.append(pkg + "/")
    return list(dict.fromkeys(n for n in new if n != "/"))


def _top(path: str, under: str = "") -> str:
    """The first directory of ``path`` (below ``under``); "" for a file at that level."""
    parts = path[len(under):].split("/") if path.startswith(under) else []
    return under + parts[0] if len(parts) > 1 else ""


def _matches_any(path: str, patterns: Iterable[str]) -> bool:
    return any(_glob(pattern).fullmatch(path) for pattern in patterns)


_GLOBS: dict[str, re.Pattern[str]] = {}


def _glob(pattern: str) -> re.Pattern[str]:
    """A glob as ``PurePath.full_match`` (3.13) reads it: ``**`` is any number of directories."""
    if pattern not in _GLOBS:
        segments = pattern.strip("/").split("/")
        regex = ""
        for index, segment in enumerate(segments):
            last = index == len(segments) - 1
            if segment == "**" and not last:
                regex += "(?:[^/]+/)*"
            elif segment == "**":  # a trailing ** also matches the directory itself
                regex = regex[:-1] + "(?:/.*)?" if regex else ".*"
            else:
                regex += _segment(segment) + ("" if last else "/")
        _GLOBS[pattern] = re.compile(regex, re.IGNORECASE)
    return _GLOBS[pattern]


def _segment(segment: str) -> str:
    """One path segment's glob as a regex: ``*`` and ``?`` never cross a ``/``."""
    out, i = "", 0
    while i < len(segment):
        c = segment[i]
        close = segment.find("]", i + 2) if c == "[" else -1
        if c == "*":
            out += "[^/]*"
        elif c == "?":
            out += "[^/]"
        elif close > 0:
            body = segment[i + 1: close]
            out += "[" + ("^" + body[1:] if body.startswith("!") else body).replace("\\", "\\\\") + "]"
            i = close
        else:
            out += re.escape(c)
        i += 1
    return out


@dataclass(frozen=True)
class Gate:
    """Approval needed before anything is pushed: the kinds, and the question for a human."""

    kinds: tuple[ChangeKind, ...]
    question: str


_KIND_WORDS: Mapping[ChangeKind, str] = {
    "dependencies": "edits dependency manifests",
    "workflows": "edits CI workflows",
    "security": "touches security-sensitive paths",
    "architecture": "changes the architecture",
}
_KIND_ORDER: tuple[ChangeKind, ...] = ("dependencies", "workflows", "security", "architecture")
MAX_PATHS_SHOWN = 5


def gate(classes: Mapping[ChangeKind, Sequence[str]], policy: ApprovalPolicy) -> Gate | None:
    """The question to ask when the change has a kind ``policy.require_for`` gates; else None."""
    kinds = tuple(k for k in _KIND_ORDER if classes.get(k) and k in policy.require_for)
    if not kinds:
        return None
    parts = [_describe(kind, list(classes[kind]), policy) for kind in kinds]
    what = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    question = (f"This change {what}. Reply `/nightcrew approve {' '.join(kinds)}` to continue "
                "or `/nightcrew cancel`.")
    return Gate(kinds, question)


def _describe(kind: ChangeKind, paths: list[str], policy: ApprovalPolicy) -> str:
    if kind != "architecture":
        return f"{_KIND_WORDS[kind]} ({_listed(paths)})"
    new_dirs = [p for p in paths if p.endswith("/")]
    files = [p for p in paths if not p.endswith("/")]
    said = []
    if new_dirs:
        said.append(f"adds new top-level directories ({_listed(new_dirs)})")
    if files:
        said.append(f"touches {len(files)} files (more than {policy.architecture_files})")
    return " and ".join(said)


def _listed(paths: list[str]) -> str:
    shown = ", ".join(f"`{p}`" for p in paths[:MAX_PATHS_SHOWN])
    more = len(paths) - MAX_PATHS_SHOWN
    return shown + (f" and {more} more" if more > 0 else "")
