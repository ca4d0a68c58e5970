"""A small bash lexer for the command gate (``runner.gates.command_policy``): words, operators, redirections,
heredocs and the command substitutions inside them, following bash's quoting rules.

``shlex`` is not enough: it reads ``#`` inside a word as a comment (``a#b | sh`` hides the pipe)
and cannot see ``$(...)`` inside double quotes, heredoc bodies or process substitution.
"""

from __future__ import annotations

import codecs
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal


class ParseError(Exception):
    """The string is not complete bash (an unclosed quote, substitution or heredoc)."""


@dataclass
class Token:
    """A word (quotes removed, ``$...`` kept as written), an operator or a redirection."""

    kind: Literal["word", "op", "redir"]
    text: str
    subs: list[str] = field(default_factory=list)  # bodies of $(...), `...`, <(...) inside it
    target: str = ""  # redir: the file (or fd, or heredoc delimiter)
    body: str | None = None  # redir: a heredoc's or herestring's text


_OPS = ("&&", "||", ";;", "|&", ";", "|", "&", "(", ")")
_REDIRS = ("&>>", "<<<", "<<-", "&>", ">>", ">|", ">&", "<&", "<>", "<<", ">", "<")
_WORD_END = " \t\r\n;&|()<>"


class Lexer:
    """Splits a bash string into tokens; one pass, quoting as bash does it."""

    def __init__(self, src: str) -> None:
        self.src = src
        self.i = 0
        self.tokens: list[Token] = []
        self.heredocs: list[tuple[Token, bool, bool]] = []  # (redir, strip tabs, expands)

    def run(self) -> list[Token]:
        s = self.src
        while self.i < len(s):
            c = s[self.i]
            if c in " \t\r":
                self.i += 1
            elif s.startswith("\\\n", self.i):
                self.i += 2
            elif c == "\n":
                self.i += 1
                self.tokens.append(Token("op", "\n"))
                self._heredoc_bodies()
            elif c == "#":  # a comment only where a word would start
                end = s.find("\n", self.i)
                self.i = len(s) if end < 0 else end
            elif c in "<>" and s.startswith("(", self.i + 1):
                self.tokens.append(self._process_substitution())
            elif redir := _starts(s, self.i, _REDIRS):
                self.tokens.append(self._redirect(redir))
            elif op := _starts(s, self.i, _OPS):
                self.i += len(op)
                self.tokens.append(Token("op", op))
            else:
                self._word()
        return self.tokens

    def _word(self) -> None:
        text, quoted, subs = self.word_text()
        fd_number = not quoted and text.isdigit() and self.i < len(self.src) and self.src[self.i] in "<>"
        if not fd_number:  # `2>` is a redirection of fd 2, not the word "2"
            self.tokens.append(Token("word", text, subs))

    def word_text(self) -> tuple[str, bool, list[str]]:
        """(text, whether any of it was quoted, substitutions) of the word at the cursor."""
        s, quoted = self.src, False
        buf: list[str] = []
        subs: list[str] = []
        while self.i < len(s) and s[self.i] not in _WORD_END:
            c = s[self.i]
            if c == "'":
                buf.append(self._until("'", self.i + 1))
                quoted = True
            elif s.startswith("$'", self.i):
                buf.append(_ansi_c(self._until("'", self.i + 2)))
                quoted = True
            elif c == '"':
                self._double_quoted(buf, subs)
                quoted = True
            elif c == "\\":
                buf.append(s[self.i + 1: self.i + 2].replace("\n", ""))
                self.i += 2
            else:
                self._plain(c, buf, subs)
        return "".join(buf), quoted, subs

    def _plain(self, c: str, buf: list[str], subs: list[str]) -> None:
        """One unquoted character, or a whole ``$(...)``, ``${...}`` or backtick expansion."""
        s = self.src
        if s.startswith("$(", self.i):
            start = self.i
            body = self._balanced(self.i + 2)
            if not body.startswith("("):  # $((arithmetic)) runs nothing
                subs.append(body)
            buf.append(s[start: self.i])
        elif s.startswith("${", self.i):
            start = self.i
            self._until("}", self.i + 2)
            buf.append(s[start: self.i])
        elif c == "`":
            body = self._backtick()
            subs.append(body)
            buf.append(f"`{body}`")
        else:
            buf.append(c)
            self.i += 1

    def _double_quoted(self, buf: list[str], subs: list[str]) -> None:
        s = self.src
        self.i += 1
        while self.i < len(s) and s[self.i] != '"':
            if s[self.i] == "\\" and s[self.i + 1: self.i + 2] in ('"', "\\", "$", "`", "\n"):
                buf.append(s[self.i + 1].replace("\n", ""))
                self.i += 2
            elif s[self.i] in "$`":
                self._plain(s[self.i], buf, subs)
            else:
                buf.append(s[self.i])
                self.i += 1
        if self.i >= len(s):
            raise ParseError('a " is not closed')
        self.i += 1

    def _until(self, end: str, start: int) -> str:
        """Text from ``start`` to the next ``end`` (no escapes); the cursor moves past it."""
        stop = self.src.find(end, start)
        if stop < 0:
            raise ParseError(f"a {end} is not closed")
        self.i = stop + 1
        return self.src[start:stop]

    def _backtick(self) -> str:
        s = self.src
        j = self.i + 1
        while j < len(s) and s[j] != "`":
            j += 2 if s[j] == "\\" else 1
        if j >= len(s):
            raise ParseError("a ` is not closed")
        body = s[self.i + 1: j].replace("\\`", "`")
        self.i = j + 1
        return body

    def _balanced(self, start: int) -> str:
        """The text up to the ``)`` that closes the ``(`` just before ``start``."""
        s, depth, j = self.src, 1, start
        while j < len(s):
            c = s[j]
            if c == "\\":
                j += 2
                continue
            if c in "'\"`":
                j = _skip_quoted(s, j)
                continue
            depth += {"(": 1, ")": -1}.get(c, 0)
            if depth == 0:
                self.i = j + 1
                return s[start:j]
            j += 1
        raise ParseError("a ( is not closed")

    def _process_substitution(self) -> Token:
        start = self.i
        body = self._balanced(self.i + 2)
        return Token("word", self.src[start: self.i], [body])

    def _redirect(self, op: str) -> Token:
        self.i += len(op)
        while self.i < len(self.src) and self.src[self.i] in " \t":
            self.i += 1
        if self.src.startswith(("<(", ">("), self.i):
            word = self._process_substitution()
            return Token("redir", op, word.subs, target=word.text)
        text, quoted, subs = self.word_text()
        if not text and not quoted:
            raise ParseError(f"`{op}` has nothing to redirect to")
        tok = Token("redir", op, subs, target=text)
        if op == "<<<":
            tok.body = text
        elif op in ("<<", "<<-"):
            self.heredocs.append((tok, op == "<<-", not quoted))
        return tok

    def _heredoc_bodies(self) -> None:
        """Read the bodies of the heredocs opened on the line that just ended."""
        s = self.src
        for tok, strip_tabs, expands in self.heredocs:
            lines: list[str] = []
            while self.i < len(s):
                end = s.find("\n", self.i)
                end = len(s) if end < 0 else end
                line, self.i = s[self.i: end], end + 1
                if (line.lstrip("\t") if strip_tabs else line) == tok.target:
                    break
                lines.append(line)
            tok.body = "\n".join(lines)
            if expands:  # an unquoted delimiter: $(...) in the body runs
                tok.subs.extend(expansions(tok.body))
        self.heredocs = []


def _starts(s: str, i: int, options: Sequence[str]) -> str:
    return next((o for o in options if s.startswith(o, i)), "")


def _skip_quoted(s: str, j: int) -> int:
    """Index just past the quoted string (or backtick span) that starts at ``j``."""
    quote, k = s[j], j + 1
    while k < len(s) and s[k] != quote:
        k += 2 if s[k] == "\\" and quote != "'" else 1
    if k >= len(s):
        raise ParseError(f"a {quote} is not closed")
    return k + 1


def _ansi_c(text: str) -> str:
    """``$'\\x72m'`` is ``rm``: decode the escapes, or keep the text if they are not valid."""
    try:
        return codecs.decode(text, "unicode_escape")
    except UnicodeDecodeError:
        return text


def expansions(text: str) -> list[str]:
    """Command substitutions in text that bash expands as if double-quoted (a heredoc body)."""
    lexer = Lexer(text)
    buf: list[str] = []
    subs: list[str] = []
    while lexer.i < len(text):
        if text[lexer.i] == "\\":
            lexer.i += 2
        elif text[lexer.i] in "$`":
            lexer._plain(text[lexer.i], buf, subs)
        else:
            lexer.i += 1
    return subs


# -- simple commands and pipelines --------------------------------------------------------------


@dataclass
class SimpleCommand:
    words: list[Token] = field(default_factory=list)
    redirs: list[Token] = field(default_factory=list)


def pipelines(tokens: list[Token]) -> list[list[SimpleCommand]]:
    """Tokens grouped as pipelines of simple commands (``a | b`` is one pipeline of two)."""
    pipelines: list[list[SimpleCommand]] = [[SimpleCommand()]]
    for tok in tokens:
        if tok.kind == "word":
            pipelines[-1][-1].words.append(tok)
        elif tok.kind == "redir":
            pipelines[-1][-1].redirs.append(tok)
        elif tok.text in ("|", "|&"):
            pipelines[-1].append(SimpleCommand())
        else:
            pipelines.append([SimpleCommand()])
    return [[cmd for cmd in p if cmd.words or cmd.redirs] for p in pipelines if p]
