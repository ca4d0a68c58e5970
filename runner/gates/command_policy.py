"""The command gate: which shell commands the agent may run (``runner.gates.approval`` says which
changes wait for a human).

The policy is data: ``CommandPolicy`` says what a ``run_command`` shell string may do inside
the sandbox (no root, no network into a shell, no writes outside ``/workspace`` and ``/tmp``, no
history rewriting, nothing written into ``.git``).

The command gate is a guardrail that explains the rules to the model in a sentence it can act on;
the sandbox (read-only system, no network, no credentials) is the fence. So it checks what a
command plainly says, every simple command of it: compound commands are split on ``;``, ``&&``,
``||``, ``|``, ``&`` and newlines; ``$(...)``, backticks and ``<(...)`` are checked as commands of
their own; wrappers (``env``, ``command``, ``nice``, ``timeout``, ``xargs``…) and directories are
stripped; ``bash -c``, ``eval`` and a heredoc fed to a shell are checked recursively. A command
built at run time (``$cmd``, ``python -c "os.system(...)"``) is out of its sight.

The split is ``runner.gates.shell_lex``, a small lexer that follows bash's quoting rules (``shlex``
misses ``a#b | sh`` and ``$(...)`` inside double quotes, heredocs and process substitution).
"""

from __future__ import annotations

import fnmatch
import posixpath
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from runner.gates.shell_lex import Lexer, ParseError, SimpleCommand, Token, pipelines

MAX_NESTING = 8  # bash -c inside eval inside $(...): deeper than this is refused, not followed
MAX_BRACE_WORDS = 64

# == (a) commands ================================================================================


@dataclass(frozen=True)
class Verdict:
    """Whether a command may run; ``reason`` is the sentence the model reads when it may not."""

    allowed: bool
    reason: str


ALLOWED = Verdict(True, "allowed")

GitTest = Literal["args", "moves_branch", "writes_config"]


@dataclass(frozen=True)
class GitRule:
    """A refused ``git`` subcommand.

    ``test`` "args": refused always when ``args`` is empty, else when any of ``args`` is given
    (``--amend``, short flags also inside clusters such as ``-fdx``). "moves_branch" (``reset``
    to anything but HEAD) and "writes_config" (``config`` that sets rather than reads) name
    predicates that a set of flags cannot express.
    """

    subcommand: str
    reason: str
    args: frozenset[str] = frozenset()
    test: GitTest = "args"


@dataclass(frozen=True)
class WriteRule:
    """Which arguments of a command are paths it writes, moves or deletes.

    ``targets``: "all" positional arguments, the "last" one (a copy's destination), or all
    "after_first" (chmod's mode, chown's owner come first). ``value_options`` take the next word
    as their value; ``target_options`` do too, and that value is a target (``cp -t DIR``).
    """

    verb: str
    targets: Literal["all", "last", "after_first"] = "all"
    value_options: frozenset[str] = frozenset()
    target_options: frozenset[str] = frozenset()
    deletes: bool = False


@dataclass(frozen=True)
class Wrapper:
    """A command that runs another one (``timeout 10 pytest``): what to skip to find it.

    ``positionals`` are arguments before the command (timeout's duration); ``lookup_options``
    mean nothing is run (``command -v sudo`` only looks ``sudo`` up).
    """

    value_options: frozenset[str] = frozenset()
    positionals: int = 0
    lookup_options: frozenset[str] = frozenset()


def _f(*items: str) -> frozenset[str]:
    return frozenset(items)


_NO_ROOT = ("there is no root in the sandbox and none is needed; install or change things "
            "inside /workspace instead")
_NO_POWER = "it would stop the machine; there is nothing to restart in the sandbox"
_NO_DISKS = "it formats or partitions disks, which a code change never needs"
_HISTORY = "it rewrites history; nightcrew commits your changes itself, so just edit the files"
_BRANCHES = "branches and refs are nightcrew's to manage"

DEFAULT_FORBIDDEN: Mapping[str, str] = {
    **dict.fromkeys(("sudo", "su", "doas", "pkexec", "runuser"), _NO_ROOT),
    **dict.fromkeys(("shutdown", "reboot", "halt", "poweroff", "init", "telinit"), _NO_POWER),
    **dict.fromkeys(("mkfs", "mke2fs", "mkswap", "fdisk", "sfdisk", "parted", "wipefs"), _NO_DISKS),
}

DEFAULT_GIT_RULES: tuple[GitRule, ...] = (
    GitRule("push", "nightcrew pushes the branch itself after the tests pass"),
    GitRule("rebase", _HISTORY),
    GitRule("filter-branch", _HISTORY),
    GitRule("filter-repo", _HISTORY),
    GitRule("replace", _HISTORY),
    GitRule("commit", "amending rewrites history; nightcrew commits the changes itself",
            _f("--amend")),
    GitRule("reflog", "it destroys the record nightcrew recovers work from", _f("expire", "delete")),
    GitRule("prune", "it deletes objects nightcrew may need to recover work"),
    GitRule("gc", "it deletes objects nightcrew may need to recover work", _f("--prune")),
    GitRule("update-ref", _BRANCHES),
    GitRule("checkout", _BRANCHES, _f("--orphan")),
    GitRule("switch", _BRANCHES, _f("--orphan")),
    GitRule("branch", _BRANCHES, _f("-D", "-d", "--delete", "-f", "--force", "-M", "-m", "--move")),
    GitRule("remote", "remotes are nightcrew's to manage (and the sandbox has no network)",
            _f("add", "set-url", "remove", "rm", "rename", "set-head")),
    GitRule("clean", "`-x` also deletes ignored files, such as the dependencies the setup step "
                     "installed; use `git clean -fd` without -x", _f("-x", "-X")),
    GitRule("reset", "it moves the branch to another commit; nightcrew commits and pushes itself "
                     "— to undo edits use `git checkout -- <file>` or `git stash`",
            test="moves_branch"),
    GitRule("config", "the repository's git settings are nightcrew's (settings such as "
                      "core.hooksPath would run code when it commits); reading them is fine",
            test="writes_config"),
)

DEFAULT_WRITERS: Mapping[str, WriteRule] = {
    "rm": WriteRule("deletes", deletes=True),
    "rmdir": WriteRule("deletes", deletes=True),
    "unlink": WriteRule("deletes", deletes=True),
    "shred": WriteRule("destroys", value_options=_f("-n", "-s", "--iterations", "--size"), deletes=True),
    "mv": WriteRule("moves", value_options=_f("-S", "--suffix"),
                    target_options=_f("-t", "--target-directory"), deletes=True),
    "cp": WriteRule("writes", "last", _f("-S", "--suffix"), _f("-t", "--target-directory")),
    "ln": WriteRule("creates a link at", "last", _f("-S", "--suffix"), _f("-t", "--target-directory")),
    "install": WriteRule("writes", "last", _f("-m", "--mode", "-o", "--owner", "-g", "--group", "-S"),
                         _f("-t", "--target-directory")),
    "rsync": WriteRule("writes", "last", _f("-e", "--rsh", "--exclude", "--include", "-f", "--filter")),
    "touch": WriteRule("writes", value_options=_f("-d", "--date", "-t", "-r", "--reference")),
    "truncate": WriteRule("truncates", value_options=_f("-s", "--size", "-r", "--reference"),
                          deletes=True),
    "mkdir": WriteRule("creates", value_options=_f("-m", "--mode")),
    "tee": WriteRule("writes"),
    "chmod": WriteRule("changes the permissions of", "after_first", _f("--reference")),
    "chown": WriteRule("changes the owner of", "after_first", _f("--reference")),
    "chgrp": WriteRule("changes the group of", "after_first", _f("--reference")),
}

DEFAULT_WRAPPERS: Mapping[str, Wrapper] = {
    "env": Wrapper(_f("-u", "--unset", "-C", "--chdir")),
    "command": Wrapper(lookup_options=_f("-v", "-V")),
    "builtin": Wrapper(),
    "exec": Wrapper(_f("-a")),
    "nohup": Wrapper(),
    "time": Wrapper(_f("-f", "--format", "-o", "--output")),
    "nice": Wrapper(_f("-n", "--adjustment")),
    "ionice": Wrapper(_f("-c", "--class", "-n", "--classdata")),
    "timeout": Wrapper(_f("-s", "--signal", "-k", "--kill-after"), positionals=1),
    "stdbuf": Wrapper(_f("-i", "-o", "-e")),
    "setsid": Wrapper(),
    "unbuffer": Wrapper(),
    "xargs": Wrapper(_f("-I", "-n", "-P", "-L", "-d", "-E", "-s", "-a", "--max-args", "--max-procs",
                        "--delimiter", "--arg-file", "--replace")),
}


@dataclass(frozen=True)
class CommandPolicy:
    """What ``run_command`` may do: the rule tables ``check_command`` applies."""

    workspace: str = "/workspace"
    writable_roots: tuple[str, ...] = ("/workspace", "/tmp", "/var/tmp", "/dev/fd")
    writable_files: tuple[str, ...] = ("/dev/null", "/dev/stdout", "/dev/stderr", "/dev/tty")
    forbidden: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_FORBIDDEN))
    forbidden_prefixes: Mapping[str, str] = field(default_factory=lambda: {"mkfs.": _NO_DISKS})
    git_rules: tuple[GitRule, ...] = DEFAULT_GIT_RULES
    writers: Mapping[str, WriteRule] = field(default_factory=lambda: dict(DEFAULT_WRITERS))
    wrappers: Mapping[str, Wrapper] = field(default_factory=lambda: dict(DEFAULT_WRAPPERS))
    shells: frozenset[str] = _f("sh", "bash", "zsh", "dash", "ksh", "ash", "fish", "csh", "tcsh")
    # Matched with a version suffix stripped: python3.11 is python.
    interpreters: frozenset[str] = _f("python", "pypy", "perl", "ruby", "node", "nodejs", "php",
                                      "lua", "deno", "bun")
    evaluators: frozenset[str] = _f("eval", "source", ".")
    fetchers: frozenset[str] = _f("curl", "wget", "fetch", "aria2c", "http", "https", "xh", "nc",
                                  "ncat", "socat", "lynx", "w3m")


DEFAULT_POLICY = CommandPolicy()


def check_command(command: str, policy: CommandPolicy = DEFAULT_POLICY) -> Verdict:
    """Whether the agent may run ``command`` (a ``bash -c`` string, cwd ``policy.workspace``)."""
    try:
        reason = _Checker(policy).script(command, policy.workspace, depth=0)
    except ParseError as exc:
        reason = (f"refused: the command could not be read ({exc}); fix the quoting, or write a "
                  "script with edit_file and run that")
    return ALLOWED if reason is None else Verdict(False, reason)


_RESERVED = frozenset({"{", "}", "!", "if", "then", "elif", "else", "fi", "do", "done", "while",
                       "until", "[[", "]]"})
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\[[^]]*\])?\+?=")
_WRITE_REDIRS = frozenset({">", ">>", ">|", "&>", "&>>", "<>", ">&"})


# -- the checks ---------------------------------------------------------------------------------


class _Checker:
    """Applies one ``CommandPolicy``; each method returns the refusal sentence, or None."""

    def __init__(self, policy: CommandPolicy) -> None:
        self.policy = policy

    def script(self, src: str, cwd: str | None, depth: int) -> str | None:
        """Check every simple command of ``src``, run in ``cwd`` (None = unknown)."""
        if depth > MAX_NESTING:
            return "refused: commands nested this deeply cannot be checked; run them one at a time"
        if _FORK_BOMB.search(src):
            return "refused: that is a fork bomb; it would exhaust the sandbox's processes"
        for pipeline in pipelines(Lexer(src).run()):
            fed_from_network = False
            for cmd in pipeline:
                problem, cwd = self.simple(cmd, cwd, depth, fed_from_network)
                if problem:
                    return problem
                fed_from_network = fed_from_network or self._fetches(cmd, depth)
        return None

    def simple(self, cmd: SimpleCommand, cwd: str | None, depth: int,
               fed_from_network: bool) -> tuple[str | None, str | None]:
        """(refusal, the cwd after it) for one simple command."""
        for src in [s for tok in cmd.words + cmd.redirs for s in tok.subs]:
            if problem := self.script(src, cwd, depth + 1):
                return problem, cwd
        for redir in cmd.redirs:
            if problem := self._redirect(redir, cwd):
                return problem, cwd
        name, args = self._resolve(cmd.words)
        if not name:
            return None, cwd
        if name in ("cd", "pushd"):
            return None, _cd(cwd, [a.text for a in args])
        return self.argv(name, args, cmd.redirs, cwd, depth, fed_from_network), cwd

    def argv(self, name: str, args: list[Token], redirs: list[Token], cwd: str | None, depth: int,
             fed_from_network: bool = False) -> str | None:
        """The refusal for running ``name args``, if any."""
        p, texts = self.policy, [a.text for a in args]
        shown = _shown(name, texts)
        why = p.forbidden.get(name) or next(
            (why for prefix, why in p.forbidden_prefixes.items() if name.startswith(prefix)), None)
        if why:
            return f"refused: `{shown}` — {why}"
        from_network = fed_from_network and self._reads_program_from_stdin(name, texts)
        if self._runs_code(name) and (from_network or self._network_code(args, redirs, depth)):
            return (f"refused: `{shown}` runs code fetched from the network; the sandbox has no "
                    "network, and nightcrew never runs downloaded scripts")
        if name in p.shells:
            return self._shell(args, redirs, cwd, depth)
        if name == "eval":
            return self.script(" ".join(texts), cwd, depth + 1)
        if name == "git":
            why = _git_refusal(texts, p.git_rules)
            return f"refused: `{shown}` — {why}" if why else None
        if name == "find":
            return self._find(args, redirs, cwd, depth)
        return self._writes(name, texts, cwd, shown)

    # -- names and wrappers

    def _resolve(self, words: list[Token]) -> tuple[str, list[Token]]:
        """(command name, its arguments): assignments, reserved words and wrappers skipped."""
        i = 0
        while i < len(words) and (words[i].text in _RESERVED or _ASSIGNMENT.match(words[i].text)):
            i += 1
        if i >= len(words):
            return "", []
        name = words[i].text.rsplit("/", 1)[-1]  # /usr/bin/rm is rm
        wrapper = self.policy.wrappers.get(name)
        if wrapper is None:
            return name, words[i + 1:]
        j = i + 1
        while j < len(words) and words[j].text.startswith("-") and words[j].text != "-":
            if words[j].text in wrapper.lookup_options:
                return "", []
            if words[j].text == "--":
                j += 1
                break
            j += 2 if words[j].text in wrapper.value_options else 1
        return self._resolve(words[j + wrapper.positionals:])

    def _runs_code(self, name: str) -> bool:
        """Whether ``name`` executes a program it is given (a shell, python, eval…)."""
        p = self.policy
        return name in p.shells or name in p.evaluators or name.rstrip("0123456789.") in p.interpreters

    def _reads_program_from_stdin(self, name: str, args: list[str]) -> bool:
        """``curl … | sh`` runs what it reads; ``curl … | python -m json.tool`` only parses it."""
        code_flag = r"-[a-zA-Z]*c[a-zA-Z]*" if name in self.policy.shells else r"-[a-zA-Z]*[cmeE][a-zA-Z]*"
        for arg in args:
            if arg in ("-", "-s"):
                return True
            if not arg.startswith("-") or re.fullmatch(code_flag, arg):
                return False  # a script file, or code given on the command line
        return name not in self.policy.evaluators

    def _fetches(self, cmd: SimpleCommand, depth: int) -> bool:
        """Whether this command's output can come from the network (``curl``, ``echo $(wget …)``)."""
        name, args = self._resolve(cmd.words)
        return name in self.policy.fetchers or self._network_code(args, cmd.redirs, depth)

    def _network_code(self, args: list[Token], redirs: list[Token], depth: int) -> bool:
        """Whether an argument or redirection substitutes a network fetch (``<(curl …)``)."""
        for src in [s for tok in args + redirs for s in tok.subs]:
            if depth > MAX_NESTING:
                return True
            try:
                stages = [c for p in pipelines(Lexer(src).run()) for c in p]
            except ParseError:
                return True
            if any(self._fetches(c, depth + 1) for c in stages):
                return True
        return False

    # -- commands that run other commands

    def _shell(self, args: list[Token], redirs: list[Token], cwd: str | None, depth: int) -> str | None:
        """``bash -c '…'`` and ``bash <<EOF`` are checked as the scripts they run."""
        texts, i, runs_string = [a.text for a in args], 0, False
        while i < len(texts) and texts[i][:1] in "-+" and texts[i] not in ("-", "--"):
            if re.fullmatch(r"-[a-zA-Z]*c[a-zA-Z]*", texts[i]):
                runs_string = True
            i += 2 if texts[i] in ("-o", "+o", "-O", "+O", "--rcfile", "--init-file") else 1
        i += 1 if i < len(texts) and texts[i] == "--" else 0
        if runs_string:
            return self.script(texts[i], cwd, depth + 1) if i < len(texts) else None
        if i >= len(texts):  # no script file: the shell reads stdin
            for redir in redirs:
                if redir.body is not None:
                    return self.script(redir.body, cwd, depth + 1)
        return None

    def _find(self, args: list[Token], redirs: list[Token], cwd: str | None, depth: int) -> str | None:
        """``find … -delete`` deletes under its roots; ``-exec cmd {} ;`` runs cmd on them."""
        texts = [a.text for a in args]
        split = next((k for k, t in enumerate(texts) if t[:1] in "-(!"), len(texts))
        roots = texts[:split] or ["."]
        # A root stands for the files found under it: `find . -delete` deletes files, not the repo.
        if "-delete" in texts:
            for root in roots:
                shown = _shown("find", texts)
                if self._path(_under(root), cwd, "deletes", True, shown):
                    return self._path(root, cwd, "deletes files under", False, shown) or (
                        f"refused: `{shown}` — it deletes files under `{root}`, outside the workspace")
        k = split
        while k < len(texts):
            if texts[k] in ("-exec", "-execdir", "-ok", "-okdir"):
                end = next((e for e in range(k + 1, len(texts)) if texts[e] in (";", "+")), len(texts))
                for root in roots:
                    inner = [Token("word", t.replace("{}", _under(root))) for t in texts[k + 1: end]]
                    name, rest = self._resolve(inner)
                    if name and (problem := self.argv(name, rest, [], cwd, depth + 1)):
                        return problem
                k = end
            k += 1
        return None

    # -- writes outside the workspace or into .git

    def _redirect(self, redir: Token, cwd: str | None) -> str | None:
        target = redir.target
        if redir.text not in _WRITE_REDIRS or (redir.text == ">&" and (target.isdigit() or target == "-")):
            return None
        return self._path(target, cwd, "writes", deletes=False, shown=f"{redir.text} {target}")

    def _writes(self, name: str, args: list[str], cwd: str | None, shown: str) -> str | None:
        """Refusal for a command that writes, moves or deletes outside the workspace or in .git."""
        targets, rule = _write_targets(name, args, self.policy.writers)
        if rule is None:
            return None
        if name == "rm" and _recursive(args):
            for target in targets:
                if target.startswith("$") and _known_dir(target, cwd) is None:
                    return (f"refused: `{shown}` — a path that starts with a variable deletes from "
                            "`/` when the variable is empty; write the path out")
        for target in targets:
            if problem := self._path(target, cwd, rule.verb, rule.deletes, shown):
                return problem
        return None

    def _path(self, target: str, cwd: str | None, verb: str, deletes: bool, shown: str) -> str | None:
        """Refusal for writing ``target``: outside the writable roots, into .git, or the repo itself."""
        p = self.policy
        for path in _brace_expand(target):
            where = _locate(path, cwd, p)
            said = f"`{path}`" + (f" (in `{cwd}`)" if cwd and cwd != p.workspace and
                                  not path.startswith(("/", "~", "$")) else "")
            if where == "outside":
                return (f"refused: `{shown}` — it {verb} {said}, outside the workspace; only "
                        f"{_listed_roots(p)} are writable")
            if where == "git":
                return (f"refused: `{shown}` — it {verb} {said}, the repository's git data; "
                        "`.git` is nightcrew's (it commits and pushes for you)")
            if deletes and where == "workspace":
                return (f"refused: `{shown}` — it {verb} {said}, the whole repository with its "
                        "`.git`; name the files or directories to delete instead")
        return None


def _listed_roots(p: CommandPolicy) -> str:
    """"/workspace, /tmp and /var/tmp": the writable places a model needs to know about."""
    roots = [r for r in p.writable_roots if not r.startswith("/dev")]
    return ", ".join(roots[:-1]) + " and " + roots[-1] if len(roots) > 1 else "".join(roots)


# Names are bounded so that a long word costs linear time, not quadratic, to scan.
_FORK_BOMB = re.compile(
    r"(?P<n>[^\s(){}|;&]{1,64})\s*\(\s*\)\s*\{[^}]*?(?P=n)\s*\|\s*&?\s*(?P=n)"
    r"|function\s+(?P<m>[^\s(){}|;&]{1,64})\s*\{[^}]*?(?P=m)\s*\|\s*&?\s*(?P=m)"
)


def _shown(name: str, args: Sequence[str], limit: int = 60) -> str:
    """The command as the refusal quotes it: short, and with no backtick to break the quote."""
    text = " ".join([name, *args]).replace("`", "'").replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _under(root: str) -> str:
    """A file under ``find``'s root: what ``{}`` and ``-delete`` act on (not the root itself)."""
    return root.rstrip("/") + "/{}"


def _cd(cwd: str | None, args: list[str]) -> str | None:
    """The directory after ``cd args``; None when it depends on something only bash knows."""
    paths = [a for a in args if not (a.startswith("-") and len(a) > 1)]
    if not paths:
        return "~"
    path = paths[0]
    if path.startswith(("~", "/")):
        return path
    known = _known_dir(path, cwd)
    if known is not None:
        return known
    if path == "-" or "$" in path or "`" in path or cwd is None:
        return None
    return _join(cwd, path)


_VARIABLE_DIRS = {"$PWD": "", "${PWD}": "", "$(pwd)": "", "$TMPDIR": "/tmp", "${TMPDIR}": "/tmp",
                  "$HOME": "~", "${HOME}": "~"}


def _known_dir(path: str, cwd: str | None) -> str | None:
    """``path`` with a leading ``$PWD``/``$HOME``/``$TMPDIR`` replaced; None if it has no such start."""
    for var, value in _VARIABLE_DIRS.items():
        if path == var or path.startswith(var + "/"):
            base = cwd if value == "" else value
            return None if base is None else base + path[len(var):]
    return None


def _join(cwd: str, path: str) -> str:
    if path.startswith(("/", "~")):
        return path
    return f"{cwd}/{path}"


def _locate(path: str, cwd: str | None, p: CommandPolicy) -> Literal["outside", "git", "workspace", "ok"]:
    """Where writing ``path`` lands: outside, in .git, the workspace root itself, or fine."""
    resolved = _known_dir(path, cwd) or path
    if resolved.startswith("~"):
        return "outside"
    if resolved.startswith("$") or "`" in resolved:
        return "ok"  # built at run time; the sandbox still fences it
    if not resolved.startswith("/"):
        if cwd is None:
            return "git" if _in_git(resolved.split("/")) else "ok"
        resolved = _join(cwd, resolved)
        if resolved.startswith("~"):
            return "outside"
    norm = "/" + posixpath.normpath(resolved).lstrip("/")
    workspace = p.workspace.rstrip("/")
    if norm == workspace:
        return "workspace"
    if norm.startswith(workspace + "/"):
        return "git" if _in_git(norm[len(workspace) + 1:].split("/")) else "ok"
    if norm in p.writable_files or any(norm == r or norm.startswith(r.rstrip("/") + "/")
                                       for r in p.writable_roots):
        return "ok"
    return "outside"


def _in_git(parts: Iterable[str]) -> bool:
    """Whether a path component is ``.git``, or a glob bash would expand to it (``.g*``)."""
    return any(part == ".git" or (part.startswith(".") and fnmatch.fnmatchcase(".git", part))
               for part in parts)


def _brace_expand(word: str) -> list[str]:
    """``/{etc,usr}`` is ``/etc`` and ``/usr``, as bash expands it (bounded)."""
    match = re.search(r"\{([^{}]*,[^{}]*)\}", word)
    if match is None:
        return [word]
    out: list[str] = []
    for alt in match.group(1).split(","):
        out.extend(_brace_expand(word[: match.start()] + alt + word[match.end():]))
        if len(out) >= MAX_BRACE_WORDS:
            break
    return out[:MAX_BRACE_WORDS]


def _write_targets(name: str, args: list[str],
                   writers: Mapping[str, WriteRule]) -> tuple[list[str], WriteRule | None]:
    """The paths ``name args`` writes, and the rule that says so (None: it writes no files)."""
    if name == "dd":
        return [a[3:] for a in args if a.startswith("of=")], WriteRule("writes")
    if name == "sed":
        return _sed_targets(args)
    rule = writers.get(name)
    if rule is None:
        return [], None
    positionals, targets = _split_options(args, rule.value_options | rule.target_options,
                                          rule.target_options)
    if rule.targets == "last":
        positionals = positionals[-1:] if not targets else []
    elif rule.targets == "after_first":
        positionals = positionals[1:]
    return targets + positionals, rule


def _split_options(args: list[str], value_options: frozenset[str],
                   target_options: frozenset[str]) -> tuple[list[str], list[str]]:
    """(positional arguments, values of ``target_options``)."""
    positionals: list[str] = []
    targets: list[str] = []
    i, options_done = 0, False
    while i < len(args):
        arg = args[i]
        if options_done or not arg.startswith("-") or arg == "-":
            positionals.append(arg)
        elif arg == "--":
            options_done = True
        elif arg in value_options:
            if arg in target_options and i + 1 < len(args):
                targets.append(args[i + 1])
            i += 1
        elif "=" in arg and arg.split("=", 1)[0] in target_options:
            targets.append(arg.split("=", 1)[1])
        i += 1
    return positionals, targets


def _sed_targets(args: list[str]) -> tuple[list[str], WriteRule | None]:
    """``sed -i`` edits its file arguments in place; any other sed writes nothing."""
    in_place = any(a == "--in-place" or a.startswith("--in-place=") or re.match(r"-[nErsuz]*i", a)
                   for a in args)
    if not in_place:
        return [], None
    value_options = frozenset({"-e", "--expression", "-f", "--file", "-l", "--line-length"})
    positionals, _ = _split_options(args, value_options, frozenset())
    has_script_option = any(a in value_options or a.startswith(("--expression=", "--file="))
                            for a in args)
    files = positionals if has_script_option else positionals[1:]
    return [f for f in files if f], WriteRule("edits")


def _recursive(args: list[str]) -> bool:
    return any(a == "--recursive" or re.fullmatch(r"-[a-zA-Z]*[rR][a-zA-Z]*", a) for a in args)


# -- git ----------------------------------------------------------------------------------------

_GIT_VALUE_GLOBALS = frozenset({"-C", "-c", "--git-dir", "--work-tree", "--namespace", "--config-env"})
_RESET_MODES = frozenset({"--hard", "--soft", "--mixed", "--merge", "--keep"})
_REVISION = re.compile(
    r"^(?:[\w./-]*(?:[~^]\d*)+|[0-9a-f]{7,40}|ORIG_HEAD|FETCH_HEAD|(?:origin|upstream)/\S+|.*@\{.*)$")
_CONFIG_READS = frozenset({"--get", "--get-all", "--get-regexp", "--get-urlmatch", "--list", "-l",
                           "get", "list"})
_CONFIG_WRITES = frozenset({"--unset", "--unset-all", "--add", "--replace-all", "--edit", "-e",
                            "--rename-section", "--remove-section", "set", "unset", "edit",
                            "rename-section", "remove-section"})
_CONFIG_VALUE_OPTIONS = frozenset({"-f", "--file", "--blob", "--type", "--default", "--comment"})


def _git_refusal(args: list[str], rules: Iterable[GitRule]) -> str | None:
    """The reason the ``git`` invocation ``args`` is refused, if a rule refuses it."""
    i = 0
    while i < len(args) and args[i].startswith("-"):
        i += 2 if args[i] in _GIT_VALUE_GLOBALS else 1
    if i >= len(args):
        return None
    sub, rest = args[i], args[i + 1:]
    for rule in rules:
        if rule.subcommand == sub and _GIT_TESTS[rule.test](rule, rest):
            return rule.reason
    return None


def _has_any(rule: GitRule, args: list[str]) -> bool:
    """Always for a rule without args; else whether one of them is given (also ``-fdx``, ``--x=y``)."""
    if not rule.args:
        return True
    for arg in args:
        if arg in rule.args or arg.split("=", 1)[0] in rule.args:
            return True
        if re.fullmatch(r"-[a-zA-Z]{2,}", arg) and any(f"-{ch}" in rule.args for ch in arg[1:]):
            return True
    return False


def _moves_branch(rule: GitRule, args: list[str]) -> bool:
    """``git reset`` to a commit other than HEAD (unstaging files or ``--hard`` alone is fine)."""
    before_paths = args[: args.index("--")] if "--" in args else args
    positionals = [a for a in before_paths if not a.startswith("-")]
    if not positionals or positionals[0] in ("HEAD", "@"):
        return False
    return bool(_RESET_MODES & set(args)) or bool(_REVISION.match(positionals[0]))


def _writes_config(rule: GitRule, args: list[str]) -> bool:
    """``git config`` that sets, unsets or edits (two positionals set: ``git config k v``)."""
    if any(a in _CONFIG_WRITES for a in args):
        return True
    if any(a in _CONFIG_READS for a in args):
        return False
    positionals, _ = _split_options(args, _CONFIG_VALUE_OPTIONS, frozenset())
    return len(positionals) >= 2


_GIT_TESTS: Mapping[GitTest, Callable[[GitRule, list[str]], bool]] = {
    "args": _has_any, "moves_branch": _moves_branch, "writes_config": _writes_config,
}
