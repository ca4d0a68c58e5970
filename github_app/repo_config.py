"""Per-repository config: ``.github/nightcrew.yml``, read from the repository, validated strictly.

A typo is an error that names the field and the line, never a silently ignored setting;
defaults apply only where the file is absent. Parsing is pure (text in, ``RepoConfig`` out);
``load_repo_config`` adds the one read through a ``ConfigSource``.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import ErrorDetails

CONFIG_PATH = ".github/nightcrew.yml"
CONFIG_PATHS = (CONFIG_PATH, ".github/nightcrew.yaml")
MAX_CONFIG_BYTES = 64 * 1024
MAX_DEPTH = 10  # the schema nests 3 deep; PyYAML's composer recurses, so bound it before composing
MAX_PROBLEMS_SHOWN = 10
CONFIG_ERROR_MARKER = "<!-- nightcrew:config-error -->"

Permission = Literal["admin", "maintain", "write", "triage", "read"]
ChangeKind = Literal["dependencies", "workflows", "security", "architecture"]
ModelRole = Literal["planner", "executor", "summarizer"]
_CORE_TAGS = frozenset(
    f"tag:yaml.org,2002:{name}" for name in ("str", "int", "float", "bool", "null", "seq", "map")
)
_MODEL_ID = r"^[A-Za-z0-9][A-Za-z0-9._:/@-]{0,127}$"
# How bad a review finding is, least first (``runner.review.findings``).
Severity = Literal["info", "low", "medium", "high", "critical"]


class _Section(BaseModel):
    """Base of every config section: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class TriggerPolicy(_Section):
    """Who may start nightcrew on this repository (``trust.check_actor`` applies it)."""

    min_permission: Permission = Field(
        default="write", description="Lowest repository role that may trigger a task."
    )
    users: tuple[str, ...] = Field(default=(), description="Logins allowed whatever their role.")
    deny_users: tuple[str, ...] = Field(default=(), description="Logins never allowed; wins over the rest.")

    @field_validator("users", "deny_users")
    @classmethod
    def _casefold(cls, logins: tuple[str, ...]) -> tuple[str, ...]:
        # GitHub logins are case-insensitive; compare them folded.
        return tuple(login.strip().lower() for login in logins)


class Caps(_Section):
    """Concurrency limits."""

    per_repository: int = Field(default=2, ge=1, strict=True, description="Tasks running at once here.")


class Budget(_Section):
    """Spend limits for one task; the server's own limits still cap these."""

    usd: float = Field(default=2.0, gt=0, allow_inf_nan=False, description="Dollars of model spend.")
    tokens: int = Field(default=2_000_000, gt=0, strict=True, description="Model tokens, in and out.")
    wall_minutes: int = Field(default=60, gt=0, strict=True, description="Wall-clock minutes.")
    steps: int = Field(default=50, gt=0, strict=True, description="Agent loop steps.")


class ModelRouting(_Section):
    """Which model plays which role; unset means the server's default model."""

    planner: str | None = Field(default=None, pattern=_MODEL_ID, description="Model id that plans.")
    executor: str | None = Field(default=None, pattern=_MODEL_ID, description="Model id that edits.")
    summarizer: str | None = Field(
        default=None, pattern=_MODEL_ID, description="Model id that summarizes and reviews."
    )

    def model_for(self, role: ModelRole, default: str) -> str:
        """The model id for ``role``, or ``default`` (the server's choice) if the repo names none."""
        chosen: str | None = getattr(self, role)
        return chosen or default


class ApprovalPolicy(_Section):
    """Which kinds of change wait for a human before they are pushed."""

    require_for: tuple[ChangeKind, ...] = Field(
        default=("dependencies", "workflows", "security", "architecture"),
        description="Change kinds that need a maintainer's `/nightcrew approve`.",
    )
    security_paths: tuple[str, ...] = Field(
        default=("**/auth/**", "**/security/**", "**/*secret*", "**/*crypto*", "**/permissions*",
                 "SECURITY.md", "CODEOWNERS", ".github/CODEOWNERS"),
        description="Glob patterns of security-sensitive paths (changes to them are `security`).",
    )
    architecture_files: int = Field(
        default=15, ge=1, strict=True,
        description="A change touching more files than this is `architecture`.",
    )


class PullRequestPolicy(_Section):
    """What happens when the tests do not pass after the change."""

    on_failing_tests: Literal["draft", "none"] = Field(
        default="draft",
        description="`draft`: open a draft PR with the failure report; `none`: open no PR.",
    )


class ContextPolicy(_Section):
    """The first context the agent sees: how much, from how many files."""

    token_budget: int = Field(default=4_200, ge=500, le=100_000, strict=True,
                              description="Tokens of initial context (conventions, code, tests).")
    max_files_per_task: int = Field(default=15, ge=1, le=200, strict=True,
                                    description="Files the initial context may quote from.")


class AgentPolicy(_Section):
    """The plan-act-test loop's limits."""

    max_iterations: int = Field(default=30, ge=1, le=500, strict=True,
                                description="Executor steps (model calls) per task.")
    log_truncation_limit: int = Field(default=8_000, ge=500, le=200_000, strict=True,
                                      description="Characters of command output the model sees (head + tail).")
    repeat_failure_limit: int = Field(default=4, ge=2, le=20, strict=True,
                                      description="Halt when the same failure repeats this many times.")
    compact_at_tokens: int = Field(default=60_000, ge=2_000, le=1_000_000, strict=True,
                                   description="Compact the conversation into a handoff summary past this size.")


class ReviewPolicy(_Section):
    """When nightcrew reviews pull requests."""

    self_review: bool = Field(
        default=True, strict=True,
        description="Review nightcrew's own PRs when opened or marked ready, and fix what it finds.")
    on_open: bool = Field(
        default=False, strict=True,
        description="Also review PRs people open (when opened or marked ready; never per push).")
    model: str | None = Field(default=None, pattern=_MODEL_ID,
                              description="Model id that reviews; unset = the summarizer (cheap).")
    max_inline_comments: int = Field(default=10, ge=1, le=50, strict=True,
                                     description="Inline comments per round; the rest go to the summary.")
    max_rounds: int = Field(default=2, ge=0, le=10, strict=True,
                            description="Fix rounds on nightcrew's own PRs before handing to humans.")
    fix_severity: Severity = Field(default="high",
                                   description="Open findings this severe or more go back to the builder.")
    move_within: int = Field(default=3, ge=0, le=20, strict=True,
                             description="Lines a finding just outside the diff may move to reach it.")


class RepoConfig(_Section):
    """The whole ``.github/nightcrew.yml``."""

    trigger_label: str = Field(
        default="nightcrew", min_length=1, max_length=50, description="Issue label that starts a task."
    )
    allowed: TriggerPolicy = Field(default_factory=TriggerPolicy, description="Who may trigger.")
    caps: Caps = Field(default_factory=Caps, description="Concurrency limits.")
    budget: Budget = Field(default_factory=Budget, description="Per-task spend limits.")
    models: ModelRouting = Field(default_factory=ModelRouting, description="Model per role.")
    setup: tuple[str, ...] = Field(
        default=(), description="Shell commands that install dependencies (network on, no secrets)."
    )
    test: str | None = Field(
        default=None, min_length=1, description="Shell command that runs the tests; unset = detect."
    )
    approval: ApprovalPolicy = Field(
        default_factory=ApprovalPolicy, description="Changes that need a human."
    )
    rules: tuple[str, ...] = Field(default=(), description="House conventions the agent must follow.")
    review: ReviewPolicy = Field(default_factory=ReviewPolicy, description="Review behaviour.")
    context: ContextPolicy = Field(default_factory=ContextPolicy, description="Initial context size.")
    pull_request: PullRequestPolicy = Field(default_factory=PullRequestPolicy,
                                            description="Pull requests when tests fail.")
    agent: AgentPolicy = Field(default_factory=AgentPolicy, description="Agent loop limits.")


@dataclass(frozen=True)
class ConfigProblem:
    """One thing wrong with the file, located as precisely as the file allows."""

    message: str
    field: str | None = None
    line: int | None = None  # 1-based
    source: str | None = None  # the text of that line, for quoting back


class RepoConfigError(Exception):
    """The config file is unusable; the task must not start. The first problem is the headline."""

    def __init__(self, path: str, problems: list[ConfigProblem]) -> None:
        self.path = path
        self.problems = tuple(problems)
        first = self.problems[0]
        self.field, self.line, self.message = first.field, first.line, first.message
        more = len(self.problems) - 1
        super().__init__(_describe(path, first) + (f" (and {more} more)" if more else ""))


class ConfigSource(Protocol):
    """Where config files come from (``GitHost`` is one)."""

    def read_file(self, owner: str, repo: str, path: str, ref: str | None = None) -> str | None: ...


class _Mark(Protocol):
    """A PyYAML position (pure-Python and libyaml marks both fit)."""

    line: int


class _ConfigLoader(yaml.SafeLoader):
    """SafeLoader that leaves dates as text: the schema has none, and a bad one raises ValueError."""


_ConfigLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def load_repo_config(
    host: ConfigSource, owner: str, repo: str, ref: str | None = None
) -> RepoConfig:
    """The repository's config at ``ref`` (default branch if None); defaults if there is no file.

    Pass only a trusted ref: the file decides who may trigger, so a PR head must never supply it.
    """
    for path in CONFIG_PATHS:
        text = host.read_file(owner, repo, path, ref)
        if text is not None:
            return parse_repo_config(text, path=path)
    return RepoConfig()


@dataclass(frozen=True)
class _Checkout:
    """A ``ConfigSource`` over a checkout on disk (owner, repo and ref are the checkout's own)."""

    root: Path

    def read_file(self, owner: str, repo: str, path: str, ref: str | None = None) -> str | None:
        file = self.root / path
        return file.read_text(encoding="utf-8", errors="replace") if file.is_file() else None


def load_local_config(checkout: Path) -> RepoConfig:
    """The config of a repository checked out at ``checkout`` (``nightcrew run`` / ``context``)."""
    return load_repo_config(_Checkout(checkout), "", "")


def parse_repo_config(text: str, *, path: str = CONFIG_PATH) -> RepoConfig:
    """Validate the file's text; raises ``RepoConfigError`` naming the field and line."""
    size = len(text.encode("utf-8"))
    if size > MAX_CONFIG_BYTES:
        limit = MAX_CONFIG_BYTES // 1024
        raise _error(path, [ConfigProblem(f"the file is {size} bytes; the limit is {limit} KB")], text)
    problems = _check_events(text)
    if problems:
        raise _error(path, problems, text)
    root, data = _read_yaml(text, path)
    if root is None:
        return RepoConfig()
    try:
        return RepoConfig.model_validate(data)
    except ValidationError as exc:
        raise _error(path, [_locate(root, error) for error in exc.errors()], text) from None


def render_config_error(err: RepoConfigError) -> str:
    """The one issue comment that says the config is broken, where, and what to do."""
    shown = err.problems[:MAX_PROBLEMS_SHOWN]
    report = "\n".join(_problem_lines(problem) for problem in shown)
    hidden = len(err.problems) - len(shown)
    if hidden:
        report += f"\n… and {hidden} more"
    return "\n".join([
        CONFIG_ERROR_MARKER,
        f"**nightcrew did not start this task:** `{err.path}` is not valid.",
        "",
        _fenced(report),
        "",
        f"Fix `{err.path}` on the default branch (or delete it to use the defaults), then "
        "trigger the task again: re-add the label or comment `/nightcrew fix`.",
    ])


# -- YAML, safely and with line numbers --------------------------------------------------------


def _check_events(text: str) -> list[ConfigProblem]:
    """Syntax, nesting depth, aliases and tags, from the (non-recursive) event stream."""
    depth = 0
    try:
        for event in yaml.parse(text, Loader=_ConfigLoader):
            line = _line_of(event.start_mark)
            if isinstance(event, yaml.AliasEvent):
                return [ConfigProblem("anchors and aliases (*name) are not supported", line=line)]
            tag = getattr(event, "tag", None)
            if tag is not None and tag not in _CORE_TAGS and tag != "!":
                shown = tag.replace("tag:yaml.org,2002:", "!!")
                return [ConfigProblem(f"the YAML tag {shown} is not allowed", line=line)]
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    return [ConfigProblem(f"nested deeper than {MAX_DEPTH} levels", line=line)]
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
    except yaml.YAMLError as exc:
        return [_syntax_problem(exc, text)]
    return []


def _read_yaml(text: str, path: str) -> tuple[yaml.MappingNode | None, Any]:
    """(node tree with marks, plain values) of the one document; (None, None) if it is empty."""
    loader = _ConfigLoader(text)
    try:
        root = loader.get_single_node()
        if root is None or root.tag == "tag:yaml.org,2002:null":  # empty, comments, a bare `---`
            return None, None
        if not isinstance(root, yaml.MappingNode):
            raise _error(path, [_not_a_mapping(root)], text)
        problems = list(_key_problems(root, ()))
        if problems:
            raise _error(path, problems, text)
        # Only core tags get this far (see _check_events), so constructing executes nothing.
        return root, loader.construct_document(root)
    except yaml.YAMLError as exc:  # e.g. a second document
        raise _error(path, [_syntax_problem(exc, text)], text) from None
    finally:
        loader.dispose()


def _line_of(mark: _Mark | None) -> int | None:
    """1-based line of a mark (PyYAML counts from 0)."""
    return mark.line + 1 if mark is not None else None


def _syntax_problem(exc: yaml.YAMLError, text: str) -> ConfigProblem:
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        message = ": ".join(part for part in (exc.context, exc.problem) if part) or "invalid YAML"
        return ConfigProblem(f"YAML syntax: {message}", line=_line_of(mark))
    if isinstance(exc, yaml.reader.ReaderError):  # a control character, or undecodable bytes
        line = text.count("\n", 0, max(exc.position, 0)) + 1
        return ConfigProblem(f"YAML syntax: {exc.reason} (character #x{exc.character:04x})", line=line)
    return ConfigProblem(f"YAML syntax: {exc}")


def _not_a_mapping(root: yaml.Node) -> ConfigProblem:
    kind = "a list" if isinstance(root, yaml.SequenceNode) else "a single value"
    return ConfigProblem(
        f"the file must be a mapping of settings ('key: value' lines), not {kind}",
        line=root.start_mark.line + 1,
    )


def _key_problems(node: yaml.Node, at: tuple[str, ...]) -> Iterator[ConfigProblem]:
    if isinstance(node, yaml.SequenceNode):
        for item in node.value:
            yield from _key_problems(item, at)
    if not isinstance(node, yaml.MappingNode):
        return
    seen: dict[str, int] = {}
    for key, value in node.value:
        line = key.start_mark.line + 1
        if not isinstance(key, yaml.ScalarNode) or key.tag != "tag:yaml.org,2002:str":
            # `on:` or `yes:` is a boolean to YAML, which is never what was meant here.
            shown = f"'{key.value}'" if isinstance(key, yaml.ScalarNode) else "this key"
            yield ConfigProblem(f"{shown} is not a plain name to YAML; quote it", _dotted(at) or None, line)
            continue
        name: str = key.value
        if name in seen:
            yield ConfigProblem(f"duplicate key (first on line {seen[name]})", _dotted((*at, name)), line)
        seen.setdefault(name, line)
        yield from _key_problems(value, (*at, name))


# -- pydantic errors back to the file ----------------------------------------------------------


def _locate(root: yaml.MappingNode, error: ErrorDetails) -> ConfigProblem:
    """Map a pydantic error's ``loc`` onto the YAML node it came from."""
    node: yaml.Node = root
    found: list[str | int] = []
    line = root.start_mark.line + 1
    for part in error["loc"]:
        step = _child(node, part)
        if step is None:  # a union tag or similar: not in the file
            break
        key, node = step
        found.append(part)
        line = key.start_mark.line + 1
    message = _message(error, tuple(found))
    return ConfigProblem(message, _dotted(tuple(found)) or None, line)


def _child(node: yaml.Node, part: str | int) -> tuple[yaml.Node, yaml.Node] | None:
    """(node that names it, node that holds it) for one ``loc`` step, if present."""
    if isinstance(node, yaml.MappingNode) and isinstance(part, str):
        for key, value in node.value:
            if key.value == part:
                return key, value
    if isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
        item: yaml.Node = node.value[part]
        return item, item
    return None


def _message(error: ErrorDetails, found: tuple[str | int, ...]) -> str:
    """pydantic's message, reworded where it speaks Python rather than YAML."""
    kind = error["type"]
    if kind == "extra_forbidden" and found and isinstance(found[-1], str):
        return _unknown_field(found[-1], _fields_at(found[:-1]))
    if kind in ("tuple_type", "list_type"):
        return "should be a list ('- item' lines)"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return "should be a mapping ('key: value' lines)"
    if kind == "string_type":  # YAML read a bare 5, true or 1.0 as a number or a boolean
        return "should be text; put the value in quotes"
    if kind == "string_pattern_mismatch":  # only model ids carry a pattern
        return "is not a model id (like 'claude-sonnet-4-5')"
    return error["msg"]


def _unknown_field(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    if close:
        return f"unknown field (did you mean '{close[0]}'?)"
    return "unknown field; known here: " + ", ".join(known)


def _fields_at(path: tuple[str | int, ...]) -> list[str]:
    """Field names of the section at ``path`` (RepoConfig at the top)."""
    model: type[BaseModel] = RepoConfig
    for part in path:
        info = model.model_fields.get(str(part))
        annotation = info.annotation if info else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return list(model.model_fields)


def _dotted(path: tuple[str | int, ...]) -> str:
    """`budget.usd`, `setup[1]`."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


# -- errors and rendering ----------------------------------------------------------------------


def _error(path: str, problems: list[ConfigProblem], text: str) -> RepoConfigError:
    """The error for ``problems``, in file order, each with the line of the file it points at."""
    lines = text.splitlines()
    quoted = [ConfigProblem(p.message, p.field, p.line, _source(lines, p.line)) for p in problems]
    quoted.sort(key=lambda p: p.line or 0)
    return RepoConfigError(path, quoted)


def _source(lines: list[str], line: int | None) -> str | None:
    if line is None or not 0 < line <= len(lines):
        return None
    return lines[line - 1]


def _what(problem: ConfigProblem) -> str:
    return f"{problem.field}: {problem.message}" if problem.field else problem.message


def _describe(path: str, problem: ConfigProblem) -> str:
    """`.github/nightcrew.yml line 4: budget.usd: Input should be greater than 0`."""
    if problem.line is None:
        return f"{path}: {_what(problem)}"
    return f"{path} line {problem.line}: {_what(problem)}"


def _problem_lines(problem: ConfigProblem) -> str:
    """`line 4: budget.usd: …` and, under it, the offending line of the file."""
    head = f"line {problem.line}: {_what(problem)}" if problem.line else _what(problem)
    if problem.source is None:
        return _printable(head, 300)
    return f"{_printable(head, 300)}\n  {problem.line:>4} | {_printable(problem.source, 200)}"


def _printable(text: str, limit: int) -> str:
    """One line of untrusted text, without control characters, at most ``limit`` long."""
    clean = "".join(ch if ch.isprintable() else "\N{REPLACEMENT CHARACTER}" for ch in text)
    return clean if len(clean) <= limit else clean[: limit - 1] + "…"


def _fenced(text: str) -> str:
    """A code block no text can close early: the fence outruns any backtick run inside it."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}text\n{text}\n{fence}"
