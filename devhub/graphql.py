"""The stand-in's GraphQL endpoint: the review-thread corner of GitHub's GraphQL API.

Resolving a review thread is GraphQL-only on GitHub (there is no REST endpoint), and
`isResolved`/`isOutdated` come only from `reviewThreads`. This module parses a GraphQL document
(operations, variables, aliases, arguments; no fragments), runs it against a small object graph
and answers in GraphQL's shape: `{"data": ...}`, with `{"errors": [...]}` for what GitHub would
refuse. Only the selected fields are answered, as GraphQL does, and an unknown field is an error,
so a query the real API would reject is rejected here too.

Realism that matters to callers: a bot's `login` here has no `[bot]` suffix (`nightcrew`,
`__typename: "Bot"`), unlike REST's `nightcrew[bot]`; thread ids are `PRRT_...` node ids, not
comment ids; connections need `first` (at most 100) and page with opaque cursors.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from devhub.state import Issue, Repo, ReviewComment, Token, User, iso, node_id

JSON = dict[str, Any]
MAX_PAGE = 100
_THREAD_ID = re.compile(r"PRRT_kwDevHub(\d{8})")
_TOKEN = re.compile(
    r'(?P<skip>[\s,]+|#[^\n]*)|(?P<block>""")|(?P<string>"(?:[^"\\\n]|\\.)*")'
    r"|(?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)|(?P<name>[_A-Za-z][_0-9A-Za-z]*)"
    r"|(?P<punct>\.\.\.|[{}():\[\]!$=@|&])"
)


class GraphQLError(Exception):
    """An error entry of the answer; ``kind`` is GitHub's ``type`` (NOT_FOUND, FORBIDDEN...)."""

    def __init__(self, message: str, *, kind: str | None = None, path: list[str | int] | None = None,
                 line: int | None = None, column: int | None = None) -> None:
        super().__init__(message)
        self.message, self.kind, self.path = message, kind, path
        self.location = None if line is None else (line, column or 1)

    def entry(self) -> JSON:
        """The error as GitHub lists it."""
        out: JSON = {"message": self.message}
        if self.kind is not None:
            out["type"] = self.kind
        if self.path is not None:
            out["path"] = self.path
        if self.location is not None:
            out["locations"] = [{"line": self.location[0], "column": self.location[1]}]
        return out


# ---------------------------------------------------------------------------------- parsing


@dataclass(frozen=True)
class Var:
    """A `$name` in an argument."""

    name: str


@dataclass(frozen=True)
class Field:
    """One selected field: ``alias: name(args) { selections }``."""

    name: str
    alias: str | None
    args: Mapping[str, Any]
    selections: tuple[Field, ...]
    line: int
    column: int

    @property
    def key(self) -> str:
        """The name the field is answered under."""
        return self.alias or self.name


@dataclass(frozen=True)
class Operation:
    """A query or mutation of the document."""

    kind: str
    name: str | None
    defaults: Mapping[str, Any]
    selections: tuple[Field, ...]


@dataclass
class _Parser:
    text: str
    tokens: list[tuple[str, str, int]] = field(default_factory=list)  # kind, value, offset
    at: int = 0

    def __post_init__(self) -> None:
        offset = 0
        while offset < len(self.text):
            match = _TOKEN.match(self.text, offset)
            if match is None or match.lastgroup == "block":
                self.fail(f"Parse error on \"{self.text[offset:offset + 10]}\"", offset)
            assert match is not None and match.lastgroup is not None
            if match.lastgroup != "skip":
                self.tokens.append((match.lastgroup, match.group(), offset))
            offset = match.end()

    def fail(self, message: str, offset: int | None = None) -> None:
        if offset is None:
            offset = self.tokens[self.at][2] if self.at < len(self.tokens) else len(self.text)
        line = self.text.count("\n", 0, offset) + 1
        column = offset - (self.text.rfind("\n", 0, offset) + 1) + 1
        raise GraphQLError(message, line=line, column=column)

    def peek(self) -> tuple[str, str, int] | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def take(self, value: str | None = None, kind: str | None = None) -> tuple[str, str, int]:
        token = self.peek()
        if token is None:
            self.fail("Parse error on end of input")
        assert token is not None
        if (value is not None and token[1] != value) or (kind is not None and token[0] != kind):
            self.fail(f"Parse error on \"{token[1]}\" ({token[0].upper()}), expected {value or kind}")
        self.at += 1
        return token

    def skip(self, value: str) -> bool:
        token = self.peek()
        if token is not None and token[1] == value and token[0] == "punct":
            self.at += 1
            return True
        return False

    def document(self) -> list[Operation]:
        operations = []
        while self.peek() is not None:
            operations.append(self.operation())
        if not operations:
            self.fail("Parse error on end of input")
        return operations

    def operation(self) -> Operation:
        token = self.peek()
        assert token is not None
        if token[1] == "{":
            return Operation("query", None, {}, self.selection_set())
        kind = self.take(kind="name")[1]
        if kind not in ("query", "mutation"):
            self.fail(f"Parse error on \"{kind}\"" + (" (fragments are not supported here)"
                                                      if kind == "fragment" else ""))
        name = self.take(kind="name")[1] if (nxt := self.peek()) and nxt[0] == "name" else None
        defaults: dict[str, Any] = {}
        if self.skip("("):
            while not self.skip(")"):
                self.take("$")
                variable = self.take(kind="name")[1]
                self.take(":")
                self.type_ref()
                if self.skip("="):
                    defaults[variable] = self.value()
        return Operation(kind, name, defaults, self.selection_set())

    def type_ref(self) -> None:
        if self.skip("["):
            self.type_ref()
            self.take("]")
        else:
            self.take(kind="name")
        self.skip("!")

    def selection_set(self) -> tuple[Field, ...]:
        self.take("{")
        fields = []
        while not self.skip("}"):
            if (token := self.peek()) is not None and token[1] == "...":
                self.fail("Parse error on \"...\" (fragments are not supported here)")
            fields.append(self.field())
        return tuple(fields)

    def field(self) -> Field:
        name_token = self.take(kind="name")
        alias, name = None, name_token[1]
        if self.skip(":"):
            alias, name = name, self.take(kind="name")[1]
        args: dict[str, Any] = {}
        if self.skip("("):
            while not self.skip(")"):
                arg = self.take(kind="name")[1]
                self.take(":")
                args[arg] = self.value()
        if (token := self.peek()) is not None and token[1] == "@":
            self.fail("Parse error on \"@\" (directives are not supported here)")
        selections = self.selection_set() if (token := self.peek()) and token[1] == "{" else ()
        offset = name_token[2]
        line = self.text.count("\n", 0, offset) + 1
        column = offset - (self.text.rfind("\n", 0, offset) + 1) + 1
        return Field(name, alias, args, selections, line, column)

    def value(self) -> Any:
        kind, text, _ = self.take()
        if text == "$" and kind == "punct":
            return Var(self.take(kind="name")[1])
        if kind == "string":
            return json.loads(text)
        if kind == "number":
            return float(text) if any(c in text for c in ".eE") else int(text)
        if kind == "name":
            return {"true": True, "false": False, "null": None}.get(text, text)
        if text == "[":
            items = []
            while not self.skip("]"):
                items.append(self.value())
            return items
        if text == "{":
            fields: dict[str, Any] = {}
            while not self.skip("}"):
                key = self.take(kind="name")[1]
                self.take(":")
                fields[key] = self.value()
            return fields
        self.fail(f"Parse error on \"{text}\"")


def parse(text: str) -> list[Operation]:
    """The operations of a GraphQL document; raises `GraphQLError` as GitHub's parser would."""
    return _Parser(text).document()


# -------------------------------------------------------------------------------- executing


@dataclass(frozen=True)
class Obj:
    """A GraphQL object: its type name and a resolver per field (called with the arguments)."""

    typename: str
    fields: Mapping[str, Callable[[Mapping[str, Any]], Any]]


def _arguments(raw: Mapping[str, Any], variables: Mapping[str, Any]) -> dict[str, Any]:
    def bind(value: Any) -> Any:
        if isinstance(value, Var):
            return variables.get(value.name)
        if isinstance(value, list):
            return [bind(v) for v in value]
        if isinstance(value, dict):
            return {k: bind(v) for k, v in value.items()}
        return value

    return {name: bind(value) for name, value in raw.items()}


class _Run:
    """One execution: the variables, and the errors gathered (GraphQL keeps partial data)."""

    def __init__(self, variables: Mapping[str, Any]) -> None:
        self.variables = variables
        self.errors: list[GraphQLError] = []
        self.invalid = False  # a field that does not exist: GitHub answers no data at all

    def select(self, selections: tuple[Field, ...], obj: Obj, path: list[str | int]) -> JSON:
        out: JSON = {}
        for selected in selections:
            where = [*path, selected.key]
            if selected.name == "__typename":
                out[selected.key] = obj.typename
                continue
            resolver = obj.fields.get(selected.name)
            if resolver is None:
                self.invalid = True
                self.errors.append(GraphQLError(
                    f"Field '{selected.name}' doesn't exist on type '{obj.typename}'",
                    path=where, line=selected.line, column=selected.column))
                continue
            try:
                value = resolver(_arguments(selected.args, self.variables))
            except GraphQLError as error:
                error.path = where
                error.location = (selected.line, selected.column)
                self.errors.append(error)
                value = None
            out[selected.key] = self.complete(value, selected, where)
        return out

    def complete(self, value: Any, selected: Field, path: list[str | int]) -> Any:
        if value is None:
            return None
        if isinstance(value, list):
            return [self.complete(v, selected, [*path, i]) for i, v in enumerate(value)]
        if isinstance(value, Obj):
            if not selected.selections:
                self.invalid = True
                self.errors.append(GraphQLError(
                    f"Field must have selections (field '{selected.name}' returns "
                    f"{value.typename} but has no selections. Did you mean '{selected.name} {{ ... }}'?)",
                    path=path, line=selected.line, column=selected.column))
                return None
            return self.select(selected.selections, value, path)
        if selected.selections:
            self.invalid = True
            self.errors.append(GraphQLError(
                f"Selections can't be made on scalars (field '{selected.name}')",
                path=path, line=selected.line, column=selected.column))
            return None
        return value


# ------------------------------------------------------------------------- the object graph


class ThreadBackend(Protocol):
    """What the graph needs from the hub (called with the hub's state lock held)."""

    @property
    def url(self) -> str: ...

    def graph_repo(self, token: Token, owner: str, name: str) -> Repo | None: ...
    def graph_can_write(self, token: Token, repo: Repo) -> bool: ...
    def graph_outdated(self, repo: Repo, issue: Issue, root: ReviewComment) -> bool: ...
    def graph_thread(self, token: Token, thread_id: str) -> tuple[Repo, Issue, int] | None: ...


def thread_node_id(root_id: int) -> str:
    """A review thread's node id (`PRRT_...`), named after its first comment."""
    return node_id("PRRT", root_id)


def thread_root_of(thread_id: str) -> int | None:
    """The first comment's id of a thread node id, if it is one."""
    match = _THREAD_ID.fullmatch(thread_id)
    return int(match.group(1)) if match else None


def threads_of(issue: Issue) -> list[list[ReviewComment]]:
    """The pull request's review threads (submitted comments only), oldest first."""
    threads: dict[int, list[ReviewComment]] = {}
    for comment in issue.review_comments():
        threads.setdefault(comment.thread_root, []).append(comment)
    return [threads[root] for root in sorted(threads)]


def graph_login(user: User) -> str:
    """How GraphQL spells a login: a bot's has no `[bot]` suffix."""
    return user.login.removesuffix("[bot]") if user.type == "Bot" else user.login


def _actor(base: str, user: User) -> Obj:
    login = graph_login(user)
    url = f"{base}/apps/{login}" if user.type == "Bot" else f"{base}/{login}"
    return Obj(user.type if user.type == "Bot" else "User", {
        "login": lambda _: login,
        "url": lambda _: url,
        "id": lambda _: node_id("BOT" if user.type == "Bot" else "U", user.id),
        "databaseId": lambda _: user.id,
    })


def _connection(items: list[Any], args: Mapping[str, Any], name: str, node: Callable[[Any], Obj]) -> Obj:
    """A cursor connection over `items`, paged by `first`/`after` (or `last`/`before`)."""
    first, last = args.get("first"), args.get("last")
    if first is None and last is None:
        raise GraphQLError(f"You must provide a `first` or `last` value to properly paginate the "
                           f"`{name}` connection.", kind="MISSING_PAGINATION_BOUNDARIES")
    for bound, value in (("first", first), ("last", last)):
        if value is not None and (not isinstance(value, int) or value < 0 or value > MAX_PAGE):
            raise GraphQLError(f"Requesting {value} records on the `{name}` connection exceeds the "
                               f"`{bound}` limit of {MAX_PAGE} records.", kind="EXCESSIVE_PAGINATION")
    start, end = 0, len(items)
    if args.get("after") is not None:
        start = _cursor_index(args["after"]) + 1
    if args.get("before") is not None:
        end = min(end, _cursor_index(args["before"]))
    if first is not None:
        end = min(end, start + first)
    if last is not None:
        start = max(start, end - last)
    window = list(enumerate(items))[start:end]

    def page_info(_: Mapping[str, Any]) -> Obj:
        return Obj("PageInfo", {
            "hasNextPage": lambda _: end < len(items),
            "hasPreviousPage": lambda _: start > 0,
            "endCursor": lambda _: _cursor(window[-1][0]) if window else None,
            "startCursor": lambda _: _cursor(window[0][0]) if window else None,
        })

    def edge(index: int, item: Any) -> Obj:
        return Obj(f"{name[0].upper()}{name[1:]}Edge", {
            "cursor": lambda _: _cursor(index), "node": lambda _: node(item)})

    return Obj(f"{name[0].upper()}{name[1:]}Connection", {
        "nodes": lambda _: [node(item) for _, item in window],
        "edges": lambda _: [edge(i, item) for i, item in window],
        "pageInfo": page_info,
        "totalCount": lambda _: len(items),
    })


def _cursor(index: int) -> str:
    return base64.b64encode(f"cursor:v2:{index}".encode()).decode()


def _cursor_index(cursor: Any) -> int:
    try:
        text = base64.b64decode(str(cursor), validate=True).decode()
        prefix, _, index = text.rpartition(":")
        if prefix == "cursor:v2":
            return int(index)
    except ValueError:
        pass
    raise GraphQLError(f"`{cursor}` does not appear to be a valid cursor.")


@dataclass
class ThreadGraph:
    """The Query and Mutation roots for one caller."""

    hub: ThreadBackend
    token: Token
    actor: User

    def query(self) -> Obj:
        return Obj("Query", {"repository": self._repository})

    def mutation(self) -> Obj:
        return Obj("Mutation", {
            "resolveReviewThread": lambda args: self._resolve(args, resolved=True),
            "unresolveReviewThread": lambda args: self._resolve(args, resolved=False),
        })

    def _repository(self, args: Mapping[str, Any]) -> Obj:
        owner, name = str(args.get("owner")), str(args.get("name"))
        repo = self.hub.graph_repo(self.token, owner, name)
        if repo is None:
            raise GraphQLError(f"Could not resolve to a Repository with the name '{owner}/{name}'.",
                               kind="NOT_FOUND")
        return Obj("Repository", {
            "id": lambda _: node_id("R", repo.id),
            "name": lambda _: repo.name,
            "nameWithOwner": lambda _: repo.full_name,
            "pullRequest": lambda a: self._pull(repo, a),
        })

    def _pull(self, repo: Repo, args: Mapping[str, Any]) -> Obj:
        number = args.get("number")
        issue = repo.issues.get(number) if isinstance(number, int) else None
        if issue is None or issue.pull is None:
            raise GraphQLError(f"Could not resolve to a PullRequest with the number of {number}.",
                               kind="NOT_FOUND")
        pull = issue.pull
        return Obj("PullRequest", {
            "id": lambda _: node_id("PR", repo.id * 100_000 + issue.number),
            "number": lambda _: issue.number,
            "title": lambda _: issue.title,
            "isDraft": lambda _: pull.draft,
            "headRefOid": lambda _: pull.head_sha,
            "baseRefOid": lambda _: pull.base_sha,
            "reviewThreads": lambda a: _connection(
                threads_of(issue), a, "reviewThreads", lambda t: self._thread(repo, issue, t)),
        })

    def _thread(self, repo: Repo, issue: Issue, comments: list[ReviewComment]) -> Obj:
        root = comments[0]
        resolver = issue.resolved_threads.get(root.id)
        outdated = self.hub.graph_outdated(repo, issue, root)
        can_write = self.hub.graph_can_write(self.token, repo)
        return Obj("PullRequestReviewThread", {
            "id": lambda _: thread_node_id(root.id),
            "isResolved": lambda _: resolver is not None,
            "isOutdated": lambda _: outdated,
            "isCollapsed": lambda _: resolver is not None,
            "path": lambda _: root.path,
            "line": lambda _: None if outdated else root.line,
            "originalLine": lambda _: root.line,
            "startLine": lambda _: None if outdated else root.start_line,
            "originalStartLine": lambda _: root.start_line,
            "diffSide": lambda _: root.side,
            "startDiffSide": lambda _: root.start_side,
            "resolvedBy": lambda _: None if resolver is None else _actor(self.hub.url, resolver),
            "viewerCanResolve": lambda _: can_write and resolver is None,
            "viewerCanUnresolve": lambda _: can_write and resolver is not None,
            "comments": lambda a: _connection(comments, a, "comments",
                                              lambda c: self._comment(repo, issue, c, outdated)),
        })

    def _comment(self, repo: Repo, issue: Issue, comment: ReviewComment, outdated: bool) -> Obj:
        base = self.hub.url
        return Obj("PullRequestReviewComment", {
            "id": lambda _: node_id("PRRC", comment.id),
            "databaseId": lambda _: comment.id,
            "body": lambda _: comment.body,
            "author": lambda _: _actor(base, comment.user),
            "createdAt": lambda _: iso(comment.created_at),
            "url": lambda _: f"{base}/{repo.full_name}/pull/{issue.number}#discussion_r{comment.id}",
            "path": lambda _: comment.path,
            "diffHunk": lambda _: comment.diff_hunk,
            "line": lambda _: None if outdated else comment.line,
            "originalLine": lambda _: comment.line,
            "outdated": lambda _: outdated,
            "replyTo": lambda _: None if comment.in_reply_to is None else Obj(
                "PullRequestReviewComment", {"databaseId": lambda _: comment.in_reply_to}),
        })

    def _resolve(self, args: Mapping[str, Any], *, resolved: bool) -> Obj:
        verb = "ResolveReviewThread" if resolved else "UnresolveReviewThread"
        given = args.get("input")
        if not isinstance(given, dict) or not isinstance(given.get("threadId"), str):
            raise GraphQLError(f"Argument 'input' on Field '{verb[0].lower()}{verb[1:]}' has an "
                               "invalid value. Expected type '" + verb + "Input!'.")
        found = self.hub.graph_thread(self.token, given["threadId"])
        if found is None:
            raise GraphQLError(f"Could not resolve to a node with the global id of '{given['threadId']}'",
                               kind="NOT_FOUND")
        repo, issue, root = found
        if not self.hub.graph_can_write(self.token, repo):
            raise GraphQLError(f"{self.actor.login} does not have the correct permissions to execute "
                               f"`{verb}`", kind="FORBIDDEN")
        if resolved:
            issue.resolved_threads.setdefault(root, self.actor)
        else:
            issue.resolved_threads.pop(root, None)
        thread = next(t for t in threads_of(issue) if t[0].id == root)
        mutation_id = given.get("clientMutationId")
        return Obj(f"{verb}Payload", {
            "thread": lambda _: self._thread(repo, issue, thread),
            "clientMutationId": lambda _: mutation_id,
        })


def execute(graph: ThreadGraph, document: Any, variables: Any, operation_name: Any) -> JSON:
    """Answer one GraphQL request body's fields as GitHub would (always a JSON object)."""
    if not isinstance(document, str) or not document.strip():
        return {"errors": [{"message": "A query attribute must be specified and must be a string."}]}
    if variables is not None and not isinstance(variables, dict):
        return {"errors": [{"message": "Variables are invalid JSON."}]}
    try:
        operations = parse(document)
    except GraphQLError as error:
        return {"errors": [error.entry()]}
    if operation_name is not None:
        operations = [o for o in operations if o.name == operation_name]
        if not operations:
            return {"errors": [{"message": f'Unknown operation named "{operation_name}".'}]}
    if len(operations) != 1:
        return {"errors": [{"message": "An operation name is required"}]}
    [operation] = operations
    run = _Run({**operation.defaults, **(variables or {})})
    root = graph.query() if operation.kind == "query" else graph.mutation()
    data = run.select(operation.selections, root, [])
    if run.invalid:
        return {"errors": [e.entry() for e in run.errors]}
    answer: JSON = {"data": data}
    if run.errors:
        answer["errors"] = [e.entry() for e in run.errors]
    return answer
