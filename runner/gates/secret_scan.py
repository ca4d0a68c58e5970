"""The pre-push secret scan: a diff that adds a secret does not leave the machine.

Before the runner pushes the agent's branch it scans the diff it is about to push.
``check_before_push`` raises ``SecretsFound`` on any hit, and the caller posts ``report`` (or
``str(exc)``) in the status comment. Nothing here ever repeats a secret: a ``Finding`` holds the
path, the line, a kind and an 8-hex fingerprint (the start of the secret's SHA-256), enough to tell
two findings apart and to match them with a local ``grep`` by whoever has the repository, not
enough to use the secret.

What is scanned, and why:

* Only ADDED lines (``+`` lines) of the unified diff. A secret that was already in the repository
  before the task (context lines, or lines the agent removed) is not the agent's doing, is already
  on the remote, and blocking on it would make every task on that repository fail.
* Binary diffs (``Binary files ... differ``) carry no text to scan and are skipped; deleted files
  add nothing. A rename is reported under its new path.
* Two sets of detectors run on each added line:
  - our own regexes, unfiltered, for the tokens this App deals in: GitHub tokens (``ghp_``,
    ``gho_``, ``ghu_``, ``ghs_``, ``ghr_`` and fine-grained ``github_pat_``) and Anthropic keys
    (``sk-ant-``). These are exact shapes, so no heuristic may waive them;
  - detect-secrets' line-based plugins, used as a library (no subprocess, no baseline file),
    with the library's secret heuristics (UUIDs, sequences, templates, ``${VAR}``...) and three
    deliberate differences. Its ``pragma: allowlist secret`` comment is NOT honoured: the agent
    writes the diff, so it must not be able to waive the scan with a comment. Its "indirect
    reference" heuristic (``key = get_key(...)``) waives only the fuzzy detectors (entropy,
    keyword), not an exact shape such as an ``AKIA...`` key passed to a call. Its whole-file
    lockfile filter is narrowed: lockfiles (``package-lock.json``, ``yarn.lock``, ``uv.lock``,
    ``requirements*.txt``...) skip only the fuzzy detectors, whose integrity hashes they are
    full of, and still get every exact token pattern.
* A diff that unidiff cannot parse raises ``unidiff.UnidiffParseError``: the scan fails closed,
  so the caller does not push what it could not read.
* Git object ids (40 or 64 lowercase hex, e.g. a pinned commit) are not high-entropy findings: they
  are the commonest hex string in code and are not secrets; a hex secret of exactly that shape is
  the price paid.

detect-secrets keeps its configuration in a process-wide singleton; ``transient_settings`` swaps
it for ours for the duration of a scan and restores it. A lock serialises scans so two threads
cannot see each other's settings. No verification filter is configured, so no plugin ever makes a
network call to check a secret.
"""

from __future__ import annotations

import hashlib
import posixpath
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from fnmatch import fnmatch
from typing import Any

from detect_secrets.filters import heuristic
from detect_secrets.plugins.base import BasePlugin
from detect_secrets.settings import get_plugins, transient_settings
from detect_secrets.util.code_snippet import get_code_snippet
from unidiff.patch import PatchedFile, PatchSet

__all__ = ["Finding", "SecretsFound", "check_before_push", "report", "scan_diff"]


@dataclass(frozen=True)
class Finding:
    """One secret-shaped string on one added line; carries no part of the secret itself."""

    path: str
    line: int
    kind: str
    fingerprint: str


class SecretsFound(Exception):
    """Raised by ``check_before_push``; its message is ``report(findings)``, safe to post."""

    def __init__(self, findings: Sequence[Finding]) -> None:
        self.findings: tuple[Finding, ...] = tuple(findings)
        super().__init__(report(self.findings))


# --- our own patterns -------------------------------------------------------------------------

# Exact shapes (GitHub's documented token formats; Anthropic's key prefix). The look-behind keeps
# ``xghp_...`` from matching; lengths are minimums because both vendors may lengthen tokens.
_OWN_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("GitHub token", re.compile(r"(?<![A-Za-z0-9_])gh[pousr]_[A-Za-z0-9]{36,}")),
    ("GitHub token", re.compile(r"(?<![A-Za-z0-9_])github_pat_[A-Za-z0-9_]{82,}")),
    ("Anthropic API key", re.compile(r"(?<![A-Za-z0-9_-])sk-ant-[A-Za-z0-9_-]{20,}")),
)

# --- detect-secrets configuration ---------------------------------------------------------------

_ENTROPY_PLUGINS = ("Base64HighEntropyString", "HexHighEntropyString")
_FUZZY_PLUGINS = frozenset({*_ENTROPY_PLUGINS, "KeywordDetector"})

# Plugins that judge one line on its own. Left out: IBM Cloud IAM / COS HMAC and Cloudant (keyword
# guesses with network verification) and IpPublicDetector (public IPs are not secrets).
_PLUGINS_USED: tuple[dict[str, Any], ...] = (
    {"name": "AWSKeyDetector"},
    {"name": "ArtifactoryDetector"},
    {"name": "AzureStorageKeyDetector"},
    {"name": "BasicAuthDetector"},
    {"name": "DiscordBotTokenDetector"},
    {"name": "GitHubTokenDetector"},
    {"name": "GitLabTokenDetector"},
    {"name": "JwtTokenDetector"},
    {"name": "MailchimpDetector"},
    {"name": "NpmDetector"},
    {"name": "OpenAIDetector"},
    {"name": "PrivateKeyDetector"},
    {"name": "PypiTokenDetector"},
    {"name": "SendGridDetector"},
    {"name": "SlackDetector"},
    {"name": "SoftlayerDetector"},
    {"name": "SquareOAuthDetector"},
    {"name": "StripeDetector"},
    {"name": "TelegramBotTokenDetector"},
    {"name": "TwilioKeyDetector"},
    # detect-secrets' own defaults: 4.5 bits/char for base64 and 3.0 for hex. Both only look
    # inside quoted strings (the library's non-eager mode), which keeps ordinary code quiet.
    {"name": "Base64HighEntropyString", "limit": 4.5},
    {"name": "HexHighEntropyString", "limit": 3.0},
    {"name": "KeywordDetector"},
)

# detect-secrets' default secret heuristics (minus the allowlist pragma and file filters, see the
# module docstring). Each is called with the keyword arguments it names.
_SECRET_FILTERS: tuple[Callable[..., bool], ...] = (
    heuristic.is_sequential_string,
    heuristic.is_potential_uuid,
    heuristic.is_likely_id_string,
    heuristic.is_templated_secret,
    heuristic.is_prefixed_with_dollar_sign,
    heuristic.is_not_alphanumeric_string,
)

_KIND_NAMES = {
    "AWS Access Key": "AWS access key",
    "Private Key": "Private key",
    "GitHub Token": "GitHub token",
    "Base64 High Entropy String": "High-entropy string",
    "Hex High Entropy String": "High-entropy string",
    "Secret Keyword": "Secret keyword",
}

# Lockfiles and hash-pinned requirement files: full of integrity hashes, never hand-written.
_LOCKFILE_NAMES = frozenset({
    "Brewfile.lock.json", "Cargo.lock", "Cartfile.resolved", "Gemfile.lock", "Package.resolved",
    "Pipfile.lock", "Podfile.lock", "bun.lock", "composer.lock", "flake.lock", "go.sum",
    "gradle.lockfile", "mix.lock", "npm-shrinkwrap.json", "package-lock.json", "packages.lock.json",
    "pdm.lock", "pnpm-lock.yaml", "poetry.lock", "pubspec.lock", "uv.lock", "yarn.lock",
})
_LOCKFILE_GLOBS = ("requirements*.txt", "constraints*.txt", "*.lock")

# Values a person writes to say "this is not a real secret", and environment-variable names (the
# commonest right-hand side of ``API_KEY_ENV = "..."``). Applied only to the human-chosen-password
# detectors (keyword, basic auth), never to token shapes or entropy.
_PLACEHOLDER = re.compile(
    r"example|placeholder|dummy|fake|sample|changeme|redacted|xxx|test|your[-_]|"
    r"not[-_]?(?:a[-_])?(?:real|secret)",
    re.IGNORECASE,
)
_PLACEHOLDER_EXACT = frozenset({"password", "passwd", "pass", "secret", "token", "key", "apikey"})
_ENV_VAR_NAME = re.compile(r"[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+")
_PASSWORD_PLUGINS = frozenset({"KeywordDetector", "BasicAuthDetector"})

# GitHub's documentation example token body (the same 36 characters after every prefix), kept
# as SHA-256 so this file holds no token-shaped string. Vendored copies of GitHub's OpenAPI
# description are full of it.
_DOCUMENTED_EXAMPLES = frozenset({
    "7e498f91828a193cac5ecbe78ab47c6cae601d6d9edc40c59310c0e305db85ea",
})

# Characters of a token; used to widen a detect-secrets value to the whole token (see _whole_token).
_TOKEN_CHAR = re.compile(r"[A-Za-z0-9_-]")

_GIT_OBJECT_ID = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")

_SETTINGS_LOCK = threading.Lock()


@dataclass(frozen=True)
class _Hit:
    """A finding plus the secret text, kept inside this module to dedupe; never returned."""

    finding: Finding
    secret: str
    exact: bool


# --- diff walking ---------------------------------------------------------------------------------


def _added_lines(diff: str) -> Iterator[tuple[str, int, str]]:
    """Yield ``(new path, new line number, text)`` for each added line of a text file.

    Removed and context lines are never yielded: what was there before is not the agent's.
    """
    for patched in PatchSet.from_string(diff):
        if _skip_file(patched):
            continue
        path = patched.path
        for hunk in patched:
            for line in hunk:
                if line.is_added and line.target_line_no is not None:
                    yield path, int(line.target_line_no), str(line.value).rstrip("\r\n")


def _skip_file(patched: PatchedFile) -> bool:
    """Binary changes have no lines to read and deleted files add none."""
    return bool(patched.is_binary_file or patched.is_removed_file)


def is_lockfile(path: str) -> bool:
    """Whether ``path`` is machine-written dependency pinning, exempt from the fuzzy detectors."""
    name = posixpath.basename(path)
    return name in _LOCKFILE_NAMES or any(fnmatch(name, glob) for glob in _LOCKFILE_GLOBS)


# --- detectors ----------------------------------------------------------------------------------


def _fingerprint(secret: str) -> str:
    """First 8 hex of SHA-256: tells findings apart (and matches a local grep) without the secret."""
    return hashlib.sha256(secret.encode("utf-8", "surrogateescape")).hexdigest()[:8]


def _own_hits(path: str, number: int, text: str) -> Iterator[_Hit]:
    """Our exact token regexes; no heuristic may waive them."""
    for kind, pattern in _OWN_PATTERNS:
        for match in pattern.finditer(text):
            secret = match.group(0)
            if _is_documented_example(secret):
                continue
            yield _Hit(Finding(path, number, kind, _fingerprint(secret)), secret, exact=True)


def _is_documented_example(secret: str) -> bool:
    """GitHub's published example token is in every copy of its API description; not a leak."""
    body = secret.partition("_")[2].encode("utf-8", "surrogateescape")
    return hashlib.sha256(body).hexdigest() in _DOCUMENTED_EXAMPLES


def _is_placeholder(secret: str) -> bool:
    """A human-chosen 'password' that says it is fake, or that names an environment variable."""
    return bool(
        _PLACEHOLDER.search(secret)
        or secret.lower() in _PLACEHOLDER_EXACT
        or _ENV_VAR_NAME.fullmatch(secret)
    )


def _whole_token(value: str, line: str) -> str:
    """Widen a reported value to the run of token characters around it on the line.

    Some detect-secrets 1.5.0 regexes put a capture group on the prefix only
    (``(ghp|gho|...)_...``, ``(glpat|...)-...``), so the value they report is ``ghp`` or
    ``glpat``: every such token would get the same fingerprint, and it would not dedupe against
    our own match. Widening recovers the token; values already whole are unchanged.
    """
    start = line.find(value)
    if start < 0:
        return value
    end = start + len(value)
    while start > 0 and _TOKEN_CHAR.fullmatch(line[start - 1]):
        start -= 1
    while end < len(line) and _TOKEN_CHAR.fullmatch(line[end]):
        end += 1
    return line[start:end]


def _is_waived(secret: str, line: str, plugin: BasePlugin) -> bool:
    """detect-secrets' heuristics for strings that look like secrets but are not (UUIDs, ${X}...)."""
    name = _plugin_name(plugin)
    if _is_documented_example(secret):
        return True
    if name in _ENTROPY_PLUGINS and _GIT_OBJECT_ID.fullmatch(secret):
        return True
    if name in _FUZZY_PLUGINS and heuristic.is_indirect_reference(line):
        return True
    if name in _PASSWORD_PLUGINS and _is_placeholder(secret):
        return True
    arguments: dict[str, Any] = {"secret": secret, "line": line, "plugin": plugin}
    for waive in _SECRET_FILTERS:
        wanted = waive.__code__.co_varnames[: waive.__code__.co_argcount]
        if waive(**{name: arguments[name] for name in wanted}):
            return True
    return False


def _plugin_name(plugin: BasePlugin) -> str:
    """The class name detect-secrets' settings know the plugin by."""
    return type(plugin).__name__


def _library_hits(
    plugins: Sequence[BasePlugin], path: str, number: int, text: str
) -> Iterator[_Hit]:
    """Run detect-secrets' plugins on one line, as its own diff scan does (quoted strings only)."""
    fuzzy_allowed = not is_lockfile(path)
    context = get_code_snippet(lines=[text], line_number=1)
    for plugin in plugins:
        name = _plugin_name(plugin)
        fuzzy = name in _FUZZY_PLUGINS
        if fuzzy and not fuzzy_allowed:
            continue
        for potential in plugin.analyze_line(
            filename=path, line=text, line_number=number, context=context
        ):
            secret = potential.secret_value
            if not secret:
                continue
            if not fuzzy:
                secret = _whole_token(secret, text)
            if _is_waived(secret, text, plugin):
                continue
            kind = _KIND_NAMES.get(potential.type, potential.type)
            yield _Hit(Finding(path, number, kind, _fingerprint(secret)), secret, exact=not fuzzy)


def _dedupe(hits: Iterable[_Hit]) -> list[Finding]:
    """One finding per secret per line, under its most precise kind.

    A quoted GitHub token is matched by our regex, by detect-secrets' GitHubTokenDetector (whose
    1.5.0 regex has a capture group, so the value it reports is just the ``ghp`` prefix) and by
    the base64 entropy check: the report should count it once. So exact detectors win over fuzzy
    ones, longer matches over shorter, and a hit overlapping one already kept on its line goes.
    """
    ordered = sorted(hits, key=lambda hit: (not hit.exact, -len(hit.secret)))
    kept: dict[tuple[str, int], list[_Hit]] = {}
    for hit in ordered:
        same_line = kept.setdefault((hit.finding.path, hit.finding.line), [])
        if not any(hit.secret in k.secret or k.secret in hit.secret for k in same_line):
            same_line.append(hit)
    findings = (hit.finding for line_hits in kept.values() for hit in line_hits)
    return sorted(findings, key=lambda f: (f.path, f.line, f.kind, f.fingerprint))


# --- public API ---------------------------------------------------------------------------------


def scan_diff(diff: str) -> list[Finding]:
    """Findings on the added lines of a unified git diff, sorted by path, line and kind."""
    lines = list(_added_lines(diff))
    if not lines:
        return []
    hits: list[_Hit] = []
    with _SETTINGS_LOCK, transient_settings({"plugins_used": [dict(p) for p in _PLUGINS_USED]}):
        plugins: list[BasePlugin] = list(get_plugins())
        for path, number, text in lines:
            hits.extend(_own_hits(path, number, text))
            hits.extend(_library_hits(plugins, path, number, text))
    return _dedupe(hits)


def report(findings: Sequence[Finding]) -> str:
    """A short markdown paragraph for the status comment: kinds, counts and places, no secrets."""
    if not findings:
        return "No secrets found in the diff."
    counts: dict[str, int] = {}
    for finding in findings:
        counts[finding.kind] = counts.get(finding.kind, 0) + 1
    summary = ", ".join(f"{count} × {kind}" for kind, count in sorted(counts.items()))
    places = ", ".join(
        f"`{finding.path}:{finding.line}` ({finding.kind}, fingerprint `{finding.fingerprint}`)"
        for finding in findings
    )
    noun = "secret" if len(findings) == 1 else "secrets"
    return (
        f"**Push blocked:** the diff adds {len(findings)} possible {noun} ({summary}) at {places}. "
        "The values are not shown here; remove them (use an environment variable or the "
        "repository's secret store) and push again."
    )


def check_before_push(diff: str) -> None:
    """Raise ``SecretsFound`` if the diff adds anything secret-shaped; return quietly otherwise."""
    findings = scan_diff(diff)
    if findings:
        raise SecretsFound(findings)
