"""The vendored OpenAPI subset and the request/response checks built on it."""

from __future__ import annotations

import importlib.util
import json
import re
import statistics
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from devhub.openapi import DEFAULT_SPEC, OpenAPISpec

ROOT = Path(__file__).resolve().parents[2]
SPEC_DIR = DEFAULT_SPEC.parent

# The operations the brief lists; kept here independently of the vendoring script.
OPERATIONS = [
    ("GET", "/app/installations"),
    ("POST", "/app-manifests/{code}/conversions"),
    ("GET", "/installation/repositories"),
    ("POST", "/app/installations/{installation_id}/access_tokens"),
    ("GET", "/repos/{owner}/{repo}/installation"),
    ("GET", "/repos/{owner}/{repo}"),
    ("GET", "/repos/{owner}/{repo}/issues"),
    ("POST", "/repos/{owner}/{repo}/issues"),
    ("GET", "/repos/{owner}/{repo}/issues/{issue_number}"),
    ("PATCH", "/repos/{owner}/{repo}/issues/{issue_number}"),
    ("GET", "/repos/{owner}/{repo}/issues/{issue_number}/comments"),
    ("POST", "/repos/{owner}/{repo}/issues/{issue_number}/comments"),
    ("GET", "/repos/{owner}/{repo}/issues/comments/{comment_id}"),
    ("PATCH", "/repos/{owner}/{repo}/issues/comments/{comment_id}"),
    ("GET", "/repos/{owner}/{repo}/issues/{issue_number}/labels"),
    ("POST", "/repos/{owner}/{repo}/issues/{issue_number}/labels"),
    ("DELETE", "/repos/{owner}/{repo}/issues/{issue_number}/labels/{name}"),
    ("POST", "/repos/{owner}/{repo}/labels"),
    ("POST", "/repos/{owner}/{repo}/issues/{issue_number}/reactions"),
    ("POST", "/repos/{owner}/{repo}/issues/comments/{comment_id}/reactions"),
    ("GET", "/repos/{owner}/{repo}/pulls"),
    ("POST", "/repos/{owner}/{repo}/pulls"),
    ("GET", "/repos/{owner}/{repo}/pulls/{pull_number}"),
    ("PATCH", "/repos/{owner}/{repo}/pulls/{pull_number}"),
    ("GET", "/repos/{owner}/{repo}/pulls/{pull_number}/files"),
    ("GET", "/repos/{owner}/{repo}/pulls/{pull_number}/reviews"),
    ("POST", "/repos/{owner}/{repo}/pulls/{pull_number}/reviews"),
    ("GET", "/repos/{owner}/{repo}/pulls/{pull_number}/comments"),
    ("GET", "/repos/{owner}/{repo}/pulls/{pull_number}/reviews/{review_id}"),
    ("DELETE", "/repos/{owner}/{repo}/pulls/{pull_number}/reviews/{review_id}"),
    ("GET", "/repos/{owner}/{repo}/pulls/{pull_number}/reviews/{review_id}/comments"),
    ("POST", "/repos/{owner}/{repo}/pulls/{pull_number}/comments/{comment_id}/replies"),
    ("GET", "/repos/{owner}/{repo}/pulls/{pull_number}/commits"),
    ("GET", "/repos/{owner}/{repo}/compare/{basehead}"),
    ("GET", "/repos/{owner}/{repo}/collaborators/{username}/permission"),
    ("GET", "/repos/{owner}/{repo}/contents/{path}"),
    ("GET", "/repos/{owner}/{repo}/git/ref/{ref}"),
]

REVIEW = {
    "commit_id": "abc",
    "body": "LGTM with nits",
    "event": "COMMENT",
    "comments": [{"path": "src/app.py", "line": 12, "side": "RIGHT", "body": "typo"}],
}


@pytest.fixture(scope="module")
def spec() -> OpenAPISpec:
    return OpenAPISpec.load()


def concrete(template: str) -> str:
    """A request path for a template: numeric ids, names elsewhere."""
    return re.sub(
        r"\{(\w+)\}", lambda m: "7" if m.group(1).endswith(("_id", "_number")) else "x", template
    )


def vendor_script() -> ModuleType:
    """scripts/vendor_github_data.py, imported as a module."""
    module_spec = importlib.util.spec_from_file_location(
        "vendor_github_data", ROOT / "scripts/vendor_github_data.py"
    )
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def local_refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [r for v in node.values() for r in local_refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in local_refs(v)]
    return []


def resolve(doc: Any, ref: str) -> Any:
    assert ref.startswith("#/"), ref
    for token in ref[2:].split("/"):
        doc = doc[token.replace("~1", "/").replace("~0", "~")]
    return doc


# -- the vendored file -------------------------------------------------------------------


def test_subset_has_exactly_the_listed_operations(spec: OpenAPISpec) -> None:
    listed = sorted((m, t) for m, t in OPERATIONS)
    assert [(m, t) for m, t, _ in spec.operations()] == listed
    assert [(m.upper(), t) for m, t in vendor_script().OPERATIONS] == OPERATIONS


def test_every_ref_in_the_subset_resolves() -> None:
    doc = json.loads(DEFAULT_SPEC.read_text())
    refs = set(local_refs(doc))
    assert len(refs) > 50
    for ref in refs:
        assert resolve(doc, ref) is not None, ref


def test_subset_says_it_is_trimmed_and_is_small() -> None:
    doc = json.loads(DEFAULT_SPEC.read_text())
    assert doc["openapi"] == "3.0.3" and doc["info"]["version"] == "23.0.2"
    assert "Trimmed" in doc["info"]["x-nightcrew-trimmed"]
    total = sum(p.stat().st_size for p in SPEC_DIR.iterdir())
    assert total < 2_000_000


def test_no_request_schema_uses_allof() -> None:
    # Strict mode judges each object schema on its own, which allOf would defeat.
    doc = json.loads(DEFAULT_SPEC.read_text())
    bodies = [
        op["requestBody"] for i in doc["paths"].values() for op in i.values() if "requestBody" in op
    ]
    assert len(bodies) == 13
    seen: set[str] = set()
    todo = set(local_refs(bodies))
    while todo:
        ref = todo.pop()
        seen.add(ref)
        todo |= set(local_refs(resolve(doc, ref))) - seen
    assert "allOf" not in json.dumps([bodies, [resolve(doc, r) for r in seen]])


def test_subset_is_a_fixed_point_of_the_vendoring_script() -> None:
    # Trimming the trimmed file must give it back byte for byte: the $ref closure is exact
    # and the serialization deterministic (the tarballs themselves are not available offline).
    script = vendor_script()
    text = DEFAULT_SPEC.read_text(encoding="utf-8")
    assert script.dump(script.trim_openapi(json.loads(text))) == text


def test_notice_names_sources_hashes_and_licence() -> None:
    notice = (SPEC_DIR / "NOTICE.md").read_text()
    for package in (
        "@octokit/openapi@23.0.2",
        "@octokit/webhooks-examples@7.6.1",
        "@octokit/webhooks-schemas@7.6.1",
    ):
        assert package in notice
    assert len(re.findall(r"`[0-9a-f]{64}`", notice)) == 3
    assert "bash scripts/vendor_github_data.sh" in notice and "MIT License" in notice


# -- routing -----------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "template"), OPERATIONS)
def test_each_operation_routes_to_itself(spec: OpenAPISpec, method: str, template: str) -> None:
    route = spec.match(method, concrete(template))
    assert route is not None and route.template == template
    assert spec.check_request(method, concrete(template), None).operation_id == route.operation_id


def test_contents_path_with_slashes_and_query(spec: OpenAPISpec) -> None:
    route = spec.match("GET", "/repos/octo/hello/contents/src/pkg/mod.py?ref=main")
    assert route is not None and route.operation_id == "repos/get-content"
    assert route.params == {"owner": "octo", "repo": "hello", "path": "src/pkg/mod.py"}
    assert (
        spec.check_request("GET", "/repos/octo/hello/contents/src/pkg/mod.py?ref=main", None).errors
        == []
    )


def test_git_ref_with_slashes_and_full_url(spec: OpenAPISpec) -> None:
    route = spec.match("GET", "https://api.github.com/repos/octo/hello/git/ref/heads/feature/x")
    assert route is not None and route.params["ref"] == "heads/feature/x"


def test_literal_segment_beats_parameter(spec: OpenAPISpec) -> None:
    route = spec.match("GET", "/repos/o/r/issues/comments/5")
    assert route is not None and route.operation_id == "issues/get-comment"


def test_label_names_are_decoded(spec: OpenAPISpec) -> None:
    route = spec.match("DELETE", "/repos/o/r/issues/3/labels/nightcrew%3Aqueued")
    assert route is not None and route.params["name"] == "nightcrew:queued"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/repos/octo/hello/nonexistent"),
        ("GET", "/repos/octo/hello/nonexistent"),
        ("PUT", "/repos/o/r/pulls"),
    ],
)
def test_no_route(spec: OpenAPISpec, method: str, path: str) -> None:
    assert spec.match(method, path) is None
    check = spec.check_request(method, path, {})
    assert check.operation_id is None and check.errors == [f"no operation for {method} {path}"]


# -- requests: the research note's table -------------------------------------------------

VALID = [
    ("POST", "/repos/octo/hello/pulls/7/reviews", REVIEW),
    ("PATCH", "/repos/octo/hello/issues/comments/99", {"body": "edited"}),
    ("POST", "/repos/octo/hello/issues/3/comments", {"body": "hello"}),
    ("POST", "/repos/octo/hello/issues/3/labels", {"labels": ["nightcrew:queued"]}),
    ("DELETE", "/repos/octo/hello/issues/3/labels/agent:working", None),
    ("POST", "/repos/octo/hello/issues/3/reactions", {"content": "eyes"}),
    ("POST", "/repos/octo/hello/issues/comments/99/reactions", {"content": "+1"}),
    (
        "POST",
        "/repos/octo/hello/pulls",
        {"title": "Fix", "head": "nightcrew/issue-3", "base": "main", "body": "Fixes #3"},
    ),
    ("PATCH", "/repos/octo/hello/pulls/7", {"state": "closed"}),
    ("POST", "/repos/octo/hello/labels", {"name": "nightcrew", "color": "5319e7"}),
    ("POST", "/repos/octo/hello/issues", {"title": "t", "labels": ["bug"], "milestone": None}),
    ("PATCH", "/repos/octo/hello/issues/3", {"milestone": None}),
    (
        "PATCH",
        "/repos/octo/hello/issues/3",
        {"state": "closed", "state_reason": None, "labels": ["a"]},
    ),
    ("GET", "/repos/octo/hello/collaborators/alice/permission", None),
    (
        "POST",
        "/app/installations/42/access_tokens",
        {"repositories": ["hello"], "permissions": {"contents": "write"}},
    ),
    ("POST", "/app/installations/42/access_tokens", None),
]

INVALID = [
    (
        "POST",
        "/repos/octo/hello/pulls/7/reviews",
        {**REVIEW, "comments": [{"line": 12, "body": "typo"}]},
        "comments/0: 'path' is a required property",
    ),
    (
        "POST",
        "/repos/octo/hello/pulls/7/reviews",
        {**REVIEW, "event": "LGTM"},
        "event: 'LGTM' is not one of ['APPROVE', 'REQUEST_CHANGES', 'COMMENT']",
    ),
    (
        "POST",
        "/repos/octo/hello/issues/3/comments",
        {"text": "hi"},
        "<body>: 'body' is a required property",
    ),
    (
        "POST",
        "/repos/octo/hello/issues/comments/99/reactions",
        {"content": "thumbsup"},
        "content: 'thumbsup' is not one of "
        "['+1', '-1', 'laugh', 'confused', 'heart', 'hooray', 'rocket', 'eyes']",
    ),
    (
        "POST",
        "/repos/octo/hello/pulls",
        {"title": "t", "head": "h"},
        "<body>: 'base' is a required property",
    ),
    (
        "POST",
        "/app/installations/42/access_tokens",
        {"permissions": {"contents": "admin"}},
        "permissions/contents: 'admin' is not one of ['read', 'write']",
    ),
    (
        "POST",
        "/repos/octo/hello/issues/3/comments",
        {"body": "x", "bdy": "y"},
        "<body>: unknown properties ['bdy'] (allowed: ['body'])",
    ),
    ("POST", "/repos/octo/hello/issues/3/comments", None, "<body>: a request body is required"),
    ("PATCH", "/repos/octo/hello/issues/3", {"state": None}, "state: None is not of type 'string'"),
    ("POST", "/repos/octo/hello/issues/3/labels", {"labels": []}, "labels: [] should be non-empty"),
]


@pytest.mark.parametrize(("method", "path", "body"), VALID)
def test_valid_requests(spec: OpenAPISpec, method: str, path: str, body: object) -> None:
    check = spec.check_request(method, path, body)
    assert check.operation_id is not None and check.errors == [] and check.ok


@pytest.mark.parametrize(("method", "path", "body", "error"), INVALID)
def test_invalid_requests(
    spec: OpenAPISpec, method: str, path: str, body: object, error: str
) -> None:
    check = spec.check_request(method, path, body)
    assert error in check.errors, check.errors
    assert not check.ok


def test_typo_passes_when_not_strict(spec: OpenAPISpec) -> None:
    assert spec.check_request(
        "POST", "/repos/o/r/issues/3/comments", {"body": "x", "bdy": "y"}, strict=False
    ).ok


def test_strict_reaches_nested_objects(spec: OpenAPISpec) -> None:
    body = {"permissions": {"content": "write"}}  # `contents` misspelt
    errors = spec.check_request("POST", "/app/installations/1/access_tokens", body).errors
    assert len(errors) == 1 and errors[0].startswith("permissions: unknown properties ['content']")


def test_bare_label_array_is_not_in_this_spec_version(spec: OpenAPISpec) -> None:
    # GitHub's own description says a bare array also works, but the schema declares only
    # the {"labels": [...]} form; clients should send that.
    assert spec.check_request("POST", "/repos/o/r/issues/3/labels", ["bug"]).errors == [
        "<body>: ['bug'] is not of type 'object'"
    ]


def test_body_on_an_operation_without_one_is_ignored_like_github(spec: OpenAPISpec) -> None:
    assert spec.check_request("GET", "/repos/o/r/pulls/7", {"anything": 1}).ok


def test_query_parameters(spec: OpenAPISpec) -> None:
    assert spec.check_request(
        "GET", "/repos/o/r/pulls", None, {"state": "open", "per_page": "100"}
    ).ok
    errors = spec.check_request(
        "GET", "/repos/o/r/pulls?state=bogus", None, {"per_page": "many", "foo": "1"}
    ).errors
    assert "state: 'bogus' is not one of ['open', 'closed', 'all']" in errors
    assert "per_page: 'many' is not an integer" in errors
    assert any(e.startswith("query: unknown parameter 'foo'") for e in errors)
    assert spec.check_request("GET", "/repos/o/r/pulls", None, {"foo": "1"}, strict=False).ok


def test_path_parameter_types(spec: OpenAPISpec) -> None:
    assert spec.check_request("GET", "/repos/o/r/issues/abc", None).errors == [
        "issue_number: 'abc' is not an integer"
    ]


def test_request_check_is_sub_millisecond(spec: OpenAPISpec) -> None:
    review = {**REVIEW, "comments": REVIEW["comments"] * 5}
    timings = []
    for _ in range(300):
        start = time.perf_counter()
        spec.check_request("POST", "/repos/octo/hello/pulls/7/reviews", review)
        timings.append(time.perf_counter() - start)
    assert statistics.median(timings) < 0.001


# -- responses ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("POST", "/app/installations/1/access_tokens", 201),
        ("GET", "/repos/o/r/installation", 200),
        ("GET", "/repos/o/r/issues/3", 200),
        ("PATCH", "/repos/o/r/issues/3", 200),
        ("POST", "/repos/o/r/issues/3/comments", 201),
        ("GET", "/repos/o/r/issues/3/comments", 200),
        ("PATCH", "/repos/o/r/issues/comments/9", 200),
        ("POST", "/repos/o/r/issues/3/labels", 200),
        ("DELETE", "/repos/o/r/issues/3/labels/bug", 200),
        ("POST", "/repos/o/r/issues/3/reactions", 201),
        ("POST", "/repos/o/r/pulls/7/reviews", 200),
        ("GET", "/repos/o/r/pulls/7/files", 200),
        ("GET", "/repos/o/r/pulls/7/comments", 200),
        ("GET", "/repos/o/r/contents/src/a.py", 200),
        ("GET", "/repos/o/r/git/ref/heads/main", 200),
    ],
)
def test_spec_response_examples_pass_check_response(
    spec: OpenAPISpec, method: str, path: str, status: int
) -> None:
    example = spec.response_example(method, path, status)
    assert example is not None
    assert spec.check_response(method, path, status, example) == []


@pytest.mark.parametrize(
    ("method", "path", "error"),
    [
        ("GET", "/repos/o/r", "<body>: 'language' is a required property"),
        (
            "GET",
            "/repos/o/r/collaborators/a/permission",
            "user: 'role_name' is a required property",
        ),
        ("GET", "/repos/o/r/pulls/7", "requested_teams/0: 'type' is a required property"),
    ],
)
def test_some_of_githubs_own_examples_break_its_schema(
    spec: OpenAPISpec, method: str, path: str, error: str
) -> None:
    # Known drift in @octokit/openapi 23.0.2: a stand-in must not serve these examples verbatim.
    assert error in spec.check_response(method, path, 200, spec.response_example(method, path, 200))


def test_comment_without_id_is_rejected(spec: OpenAPISpec) -> None:
    comment = spec.response_example("GET", "/repos/o/r/issues/comments/9", 200)
    del comment["id"]
    assert spec.check_response("GET", "/repos/o/r/issues/comments/9", 200, comment) == [
        "<body>: 'id' is a required property"
    ]


def test_error_responses_and_undeclared_statuses(spec: OpenAPISpec) -> None:
    not_found = {"message": "Not Found", "documentation_url": "https://docs.github.com/rest"}
    assert spec.check_response("GET", "/repos/o/r/issues/3", 404, not_found) == []
    assert spec.check_response("GET", "/repos/o/r/issues/3", 404, {"message": 5}) == [
        "message: 5 is not of type 'string'"
    ]
    assert spec.check_response("GET", "/repos/o/r/issues/3", 500, {}) == [
        "status 500 is not a declared response of issues/get"
    ]
    assert spec.check_response("GET", "/repos/o/r/nope", 200, {}) == [
        "no operation for GET /repos/o/r/nope"
    ]


def test_response_nullable_fields(spec: OpenAPISpec) -> None:
    issue = spec.response_example("GET", "/repos/o/r/issues/3", 200)
    issue.update(milestone=None, closed_at=None, assignee=None, body=None)
    assert spec.check_response("GET", "/repos/o/r/issues/3", 200, issue) == []
    issue["title"] = None
    assert spec.check_response("GET", "/repos/o/r/issues/3", 200, issue) == [
        "title: None is not of type 'string'"
    ]


def test_load_default_is_cached_and_explicit_path_loads(spec: OpenAPISpec) -> None:
    assert OpenAPISpec.load() is spec
    again = OpenAPISpec.load(DEFAULT_SPEC)
    assert again is not spec and again.operations() == spec.operations()
