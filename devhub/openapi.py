"""Check requests to, and answers of, the GitHub stand-in against GitHub's OpenAPI description.

Plain jsonschema, not openapi-core: it is 20-50x faster, honours OAS 3.0 `nullable`, and
routes `{path}`/`{ref}` parameters that contain slashes (see shared/research/github-data.md).
"""

from __future__ import annotations

import copy
import functools
import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast
from urllib.parse import parse_qsl, unquote, urlsplit

from jsonschema import Draft4Validator, ValidationError
from jsonschema.exceptions import best_match
from jsonschema.protocols import Validator
from jsonschema.validators import extend
from referencing import Registry
from referencing.jsonschema import DRAFT4

DEFAULT_SPEC = Path(__file__).with_name("spec") / "openapi-subset.json"
BASE_URI = "urn:github:openapi"
HTTP_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})
MAX_MESSAGE = 200
# Last parameters whose values GitHub takes with literal slashes (file paths, git refs,
# branch names, `base...head`, label names); any other parameter is one segment.
GREEDY_PARAMS = frozenset({"path", "ref", "branch", "basehead", "name"})

KeywordFn = Any  # jsonschema's keyword callables are untyped in its stubs


@dataclass(frozen=True)
class Route:
    """A request matched to an operation of the spec."""

    operation_id: str
    method: str
    template: str
    params: dict[str, str]


@dataclass(frozen=True)
class RequestCheck:
    """The outcome of checking one request; no errors means GitHub would accept its shape."""

    operation_id: str | None
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when the request has no errors."""
        return not self.errors


@dataclass(frozen=True)
class _Param:
    """A path or query parameter with its (resolved) schema."""

    name: str
    location: str
    required: bool
    schema: Mapping[str, Any]


@dataclass(frozen=True)
class _Operation:
    """What checking needs to know about one operation, precomputed at load."""

    operation_id: str
    method: str
    template: str
    pointer: str
    params: tuple[_Param, ...]
    body_schema: str | None
    body_required: bool


@dataclass(frozen=True)
class _Template:
    """A path template split into segments; None marks a `{param}` segment."""

    template: str
    segments: tuple[str | None, ...]
    names: tuple[str, ...]

    @property
    def rank(self) -> tuple[bool, ...]:
        """Sort key: a literal segment ranks above a parameter at the same position."""
        return tuple(s is None for s in self.segments)

    @property
    def greedy(self) -> bool:
        """Whether the last segment is a parameter that may contain slashes."""
        return self.segments[-1] is None and self.names[-1] in GREEDY_PARAMS


def _nullable(keyword: KeywordFn) -> KeywordFn:
    """Wrap a keyword so that OAS 3.0 `nullable: true` lets null through."""

    def check(validator: Validator, value: Any, instance: Any, schema: Any) -> Iterator[Any]:
        if instance is None and schema.get("nullable") is True:
            return
        yield from keyword(validator, value, instance, schema) or ()

    return check


def _strict_properties(
    validator: Validator, properties: Any, instance: Any, schema: Any
) -> Iterator[ValidationError]:
    """`properties`, and also flag names the schema does not declare (typos like `bdy`).

    Sound only where an object's properties are declared in one place: under `allOf` each
    branch would call the others' properties unknown. No request schema in the subset uses
    `allOf` (a test keeps it so), and responses are never checked strictly.
    """
    yield from _BASE_KEYWORDS["properties"](validator, properties, instance, schema) or ()
    if not isinstance(instance, dict) or "additionalProperties" in schema:
        return
    if "patternProperties" in schema:
        return
    unknown = sorted(set(instance) - set(properties))
    if unknown:
        yield ValidationError(f"unknown properties {unknown} (allowed: {sorted(properties)})")


_BASE_KEYWORDS: dict[str, KeywordFn] = dict(Draft4Validator.VALIDATORS)
_NULLABLE_KEYWORDS = {
    k: _nullable(_BASE_KEYWORDS[k]) for k in ("type", "enum", "oneOf", "anyOf", "allOf")
}
# jsonschema's stubs leave `extend` untyped; give it the type it has.
_extend = cast(Callable[[type[Validator], dict[str, KeywordFn]], type[Validator]], extend)
# OAS 3.0 schemas are a Draft 4 dialect; `nullable` is the extension that matters here.
OAS30Validator = _extend(Draft4Validator, _NULLABLE_KEYWORDS)
StrictOAS30Validator = _extend(
    Draft4Validator, {**_NULLABLE_KEYWORDS, "properties": _strict_properties}
)


def error_text(error: ValidationError, root: str = "<body>") -> str:
    """One short line for a validation error: `comments/0: 'path' is a required property`."""
    leaf = best_match([error]) or error
    where = "/".join(str(part) for part in leaf.absolute_path) or root
    message = leaf.message
    if len(message) > MAX_MESSAGE:
        # Messages start with the offending value's repr; keep the verdict at the end.
        message = message[: MAX_MESSAGE // 2] + " … " + message[-MAX_MESSAGE // 2 :]
    return f"{where}: {message}"


def errors_of(validator: Validator, instance: Any, root: str = "<body>") -> list[str]:
    """All errors of instance under validator as short lines, in a stable order."""
    return sorted(error_text(e, root) for e in validator.iter_errors(instance))


def _escape(token: str) -> str:
    """Escape one JSON pointer token."""
    return token.replace("~", "~0").replace("/", "~1")


def _request_path(path: str) -> str:
    """The path part of a request target: no scheme/host, query or fragment."""
    if "://" in path:
        path = urlsplit(path).path
    return path.split("?", 1)[0].split("#", 1)[0]


def _split(path: str) -> list[str]:
    """Path segments, ignoring a trailing slash."""
    return _request_path(path).strip("/").split("/")


def _query_of(path: str) -> dict[str, str]:
    """Query parameters carried in the request target itself."""
    if "?" not in path:
        return {}
    return dict(parse_qsl(path.split("?", 1)[1].split("#", 1)[0], keep_blank_values=True))


def _compile(template: str) -> _Template:
    """Split a template like /repos/{owner}/{repo} into literal and parameter segments."""
    segments: list[str | None] = []
    names: list[str] = []
    for part in template.strip("/").split("/"):
        if part.startswith("{") and part.endswith("}"):
            segments.append(None)
            names.append(part[1:-1])
        else:
            segments.append(part)
    return _Template(template, tuple(segments), tuple(names))


def _bind(t: _Template, parts: list[str]) -> dict[str, str] | None:
    """Path params if parts fit t; a greedy last param takes the remaining segments."""
    fixed = len(t.segments) - 1 if len(parts) > len(t.segments) else len(t.segments)
    values: list[str] = []
    for literal, part in zip(t.segments[:fixed], parts, strict=False):
        if literal is None:
            values.append(unquote(part))
        elif literal != part:
            return None
    if fixed < len(t.segments):
        values.append(unquote("/".join(parts[fixed:])))
    return dict(zip(t.names, values, strict=True))


def _scalar_errors(name: str, value: str, schema: Mapping[str, Any]) -> list[str]:
    """Check a path/query string against a simple parameter schema (type, enum, bounds)."""
    kind = schema.get("type")
    if kind == "integer" and not re.fullmatch(r"-?\d+", value):
        return [f"{name}: {value!r} is not an integer"]
    if kind == "boolean" and value not in ("true", "false"):
        return [f"{name}: {value!r} is not a boolean"]
    if kind == "number" and not re.fullmatch(r"-?\d+(\.\d+)?([eE][-+]?\d+)?", value):
        return [f"{name}: {value!r} is not a number"]
    if "enum" in schema and value not in [str(v) for v in schema["enum"]]:
        return [f"{name}: {value!r} is not one of {schema['enum']}"]
    if kind in ("integer", "number"):
        number = float(value)
        if "minimum" in schema and number < schema["minimum"]:
            return [f"{name}: {value} is less than the minimum of {schema['minimum']}"]
        if "maximum" in schema and number > schema["maximum"]:
            return [f"{name}: {value} is greater than the maximum of {schema['maximum']}"]
    return []


class OpenAPISpec:
    """Routes requests to operations of an OpenAPI 3.0 document and validates bodies."""

    def __init__(self, document: Mapping[str, Any]) -> None:
        """Index the document's operations; validators are built on first use."""
        self.document = document
        resource = DRAFT4.create_resource(document)
        self._registry: Registry[Any] = Registry().with_resource(BASE_URI, resource)
        self._validators: dict[tuple[str, bool], Validator] = {}
        self._operations: dict[tuple[str, str], _Operation] = {}
        self._exact: dict[tuple[str, int], list[_Template]] = {}
        self._greedy: dict[str, list[_Template]] = {}
        for template, item in document["paths"].items():
            for method in HTTP_METHODS.intersection(item):
                self._operations[(method, template)] = self._operation(template, item, method)
                self._index(method, _compile(template))
        for group in [*self._exact.values(), *self._greedy.values()]:
            # Most literal first; for greedy ones the longest (most specific) first.
            group.sort(key=lambda t: (-len(t.segments), t.rank))

    @classmethod
    def load(cls, path: Path | None = None) -> OpenAPISpec:
        """Load a spec file; without a path, the vendored subset (loaded once per process)."""
        if path is None:
            return _default_spec()
        return cls(json.loads(Path(path).read_text(encoding="utf-8")))

    # -- routing ---------------------------------------------------------------------------

    def match(self, method: str, path: str) -> Route | None:
        """The operation for METHOD PATH; exact segment counts win over a greedy last param."""
        method, parts = method.lower(), _split(path)
        exact = self._exact.get((method, len(parts)), [])
        greedy = [t for t in self._greedy.get(method, []) if len(t.segments) < len(parts)]
        for t in [*exact, *greedy]:
            params = _bind(t, parts)
            if params is not None:
                op = self._operations[(method, t.template)]
                return Route(op.operation_id, op.method, t.template, params)
        return None

    def _index(self, method: str, t: _Template) -> None:
        """File a template under its method and segment count (and as greedy if it is)."""
        self._exact.setdefault((method, len(t.segments)), []).append(t)
        if t.greedy:
            self._greedy.setdefault(method, []).append(t)

    def operations(self) -> list[tuple[str, str, str]]:
        """(METHOD, template, operationId) of every operation, sorted."""
        ops = self._operations.items()
        return sorted((m.upper(), t, op.operation_id) for (m, t), op in ops)

    # -- requests --------------------------------------------------------------------------

    def check_request(
        self,
        method: str,
        path: str,
        body: object | None,
        query: Mapping[str, str] | None = None,
        *,
        strict: bool = True,
    ) -> RequestCheck:
        """Check a request's path params, query and JSON body against its operation."""
        route = self.match(method, path)
        if route is None:
            return RequestCheck(None, [f"no operation for {method.upper()} {_request_path(path)}"])
        op = self._operations[(route.method, route.template)]
        errors = self._path_errors(op, route.params)
        errors += self._query_errors(op, {**_query_of(path), **(query or {})}, strict)
        errors += self._body_errors(op, body, strict)
        return RequestCheck(op.operation_id, errors)

    def _path_errors(self, op: _Operation, values: Mapping[str, str]) -> list[str]:
        """Type/enum errors of the path parameters."""
        errors: list[str] = []
        for p in op.params:
            if p.location == "path" and p.name in values:
                errors += _scalar_errors(p.name, values[p.name], p.schema)
        return errors

    def _query_errors(self, op: _Operation, query: Mapping[str, str], strict: bool) -> list[str]:
        """Missing, undeclared (strict) and mistyped query parameters."""
        declared = {p.name: p for p in op.params if p.location == "query"}
        errors = [
            f"query: {n!r} is required"
            for n, p in declared.items()
            if p.required and n not in query
        ]
        for name, value in query.items():
            if name in declared:
                errors += _scalar_errors(name, value, declared[name].schema)
            elif strict:
                errors.append(f"query: unknown parameter {name!r} (allowed: {sorted(declared)})")
        return errors

    def _body_errors(self, op: _Operation, body: object | None, strict: bool) -> list[str]:
        """Errors of the JSON body; GitHub ignores a body where the operation defines none."""
        if body is None:
            return ["<body>: a request body is required"] if op.body_required else []
        if op.body_schema is None:
            return []
        return errors_of(self._validator(op.body_schema, strict), body)

    # -- responses -------------------------------------------------------------------------

    def check_response(self, method: str, path: str, status: int, body: object) -> list[str]:
        """Errors of a response body against the operation's declared response for status."""
        route = self.match(method, path)
        if route is None:
            return [f"no operation for {method.upper()} {_request_path(path)}"]
        op = self._operations[(route.method, route.template)]
        pointer = self._response_pointer(op, status)
        if pointer is None:
            return [f"status {status} is not a declared response of {op.operation_id}"]
        schema = self._json_schema_pointer(pointer)
        if schema is None:
            return [] if body in (None, b"", "") else [f"<body>: status {status} has no body"]
        return errors_of(self._validator(schema, False), body)

    def response_example(self, method: str, path: str, status: int) -> Any:
        """A deep copy of the spec's first JSON example for that response, or None."""
        route = self.match(method, path)
        if route is None:
            return None
        pointer = self._response_pointer(self._operations[(route.method, route.template)], status)
        media = self._media(pointer) if pointer else None
        if media is None:
            return None
        for example in (media[1].get("examples") or {}).values():
            value = self._deref(example).get("value")
            # GitHub's spec sometimes puts the $ref to a components/examples entry *inside*
            # `value` (e.g. issues/get), so that entry's own `value` is the body.
            if isinstance(value, Mapping) and "$ref" in value:
                value = self._deref(value).get("value")
            return copy.deepcopy(value)
        return copy.deepcopy(media[1].get("example"))

    # -- internals -------------------------------------------------------------------------

    def _operation(self, template: str, item: Mapping[str, Any], method: str) -> _Operation:
        """Precompute parameters and the request body pointer of one operation."""
        pointer = f"#/paths/{_escape(template)}/{method}"
        spec = item[method]
        params: dict[tuple[str, str], _Param] = {}
        for raw in [*item.get("parameters", []), *spec.get("parameters", [])]:
            p = self._deref(raw)
            schema = self._deref(p.get("schema", {}))
            params[(p["name"], p["in"])] = _Param(
                p["name"], p["in"], bool(p.get("required")), schema
            )
        body_pointer, body_required = None, False
        if "requestBody" in spec:
            body_ptr = self._ref_target(spec["requestBody"], f"{pointer}/requestBody")
            body_pointer = self._json_schema_pointer(body_ptr)
            body_required = bool(self._deref(spec["requestBody"]).get("required"))
        return _Operation(
            operation_id=spec.get("operationId", f"{method} {template}"),
            method=method,
            template=template,
            pointer=pointer,
            params=tuple(params.values()),
            body_schema=body_pointer,
            body_required=body_required,
        )

    def _response_pointer(self, op: _Operation, status: int) -> str | None:
        """Pointer to the response object for status (exact, then 2XX-style, then default)."""
        responses = self._resolve(f"{op.pointer}/responses")
        for key in (str(status), f"{status // 100}XX", "default"):
            if key in responses:
                return self._ref_target(responses[key], f"{op.pointer}/responses/{key}")
        return None

    def _media(self, pointer: str) -> tuple[str, Mapping[str, Any]] | None:
        """The JSON media type entry (name, object) of a request body or response."""
        content = self._resolve(pointer).get("content") or {}
        names = [n for n in content if n == "application/json"] or [
            n for n in content if "json" in n
        ]
        return (names[0], content[names[0]]) if names else None

    def _json_schema_pointer(self, pointer: str) -> str | None:
        """Pointer to the JSON schema of a request body or response, if it has one."""
        media = self._media(pointer)
        if media is None or "schema" not in media[1]:
            return None
        return f"{pointer}/content/{_escape(media[0])}/schema"

    def _validator(self, pointer: str, strict: bool) -> Validator:
        """A cached validator for the schema at pointer; `$ref`s resolve within the document."""
        key = (pointer, strict)
        if key not in self._validators:
            cls = StrictOAS30Validator if strict else OAS30Validator
            self._validators[key] = cls({"$ref": f"{BASE_URI}{pointer}"}, registry=self._registry)
        return self._validators[key]

    def _resolve(self, pointer: str) -> Any:
        """The node at a local pointer ("#/a/b")."""
        node: Any = self.document
        for token in pointer[2:].split("/"):
            node = node[token.replace("~1", "/").replace("~0", "~")]
        return node

    def _ref_target(self, node: Mapping[str, Any], pointer: str) -> str:
        """Follow a `$ref` chain from node (found at pointer) to the pointer it ends at."""
        while "$ref" in node:
            pointer = node["$ref"]
            node = self._resolve(pointer)
        return pointer

    def _deref(self, node: Mapping[str, Any]) -> Mapping[str, Any]:
        """node, or what its `$ref` chain points to."""
        while "$ref" in node:
            node = self._resolve(node["$ref"])
        return node


@functools.cache
def _default_spec() -> OpenAPISpec:
    """The vendored subset, parsed once per process (load and indexing take a while)."""
    return OpenAPISpec(json.loads(DEFAULT_SPEC.read_text(encoding="utf-8")))
