"""Trim GitHub's OpenAPI description and octokit webhook data into devhub/spec/.

Run through scripts/vendor_github_data.sh, which fetches and unpacks the pinned tarballs.
Output is deterministic (sorted keys, compact JSON) so a rerun reproduces it byte for byte.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema

# The REST operations nightcrew (and so its GitHub stand-in) uses.
OPERATIONS: tuple[tuple[str, str], ...] = (
    ("get", "/app/installations"),
    ("post", "/app-manifests/{code}/conversions"),  # `nightcrew register` (the manifest flow)
    ("get", "/installation/repositories"),
    ("post", "/app/installations/{installation_id}/access_tokens"),
    ("get", "/repos/{owner}/{repo}/installation"),
    ("get", "/repos/{owner}/{repo}"),
    ("get", "/repos/{owner}/{repo}/issues"),
    ("post", "/repos/{owner}/{repo}/issues"),
    ("get", "/repos/{owner}/{repo}/issues/{issue_number}"),
    ("patch", "/repos/{owner}/{repo}/issues/{issue_number}"),
    ("get", "/repos/{owner}/{repo}/issues/{issue_number}/comments"),
    ("post", "/repos/{owner}/{repo}/issues/{issue_number}/comments"),
    ("get", "/repos/{owner}/{repo}/issues/comments/{comment_id}"),
    ("patch", "/repos/{owner}/{repo}/issues/comments/{comment_id}"),
    ("get", "/repos/{owner}/{repo}/issues/{issue_number}/labels"),
    ("post", "/repos/{owner}/{repo}/issues/{issue_number}/labels"),
    ("delete", "/repos/{owner}/{repo}/issues/{issue_number}/labels/{name}"),
    ("post", "/repos/{owner}/{repo}/labels"),
    ("post", "/repos/{owner}/{repo}/issues/{issue_number}/reactions"),
    ("post", "/repos/{owner}/{repo}/issues/comments/{comment_id}/reactions"),
    ("get", "/repos/{owner}/{repo}/pulls"),
    ("post", "/repos/{owner}/{repo}/pulls"),
    ("get", "/repos/{owner}/{repo}/pulls/{pull_number}"),
    ("patch", "/repos/{owner}/{repo}/pulls/{pull_number}"),
    ("get", "/repos/{owner}/{repo}/pulls/{pull_number}/files"),
    ("get", "/repos/{owner}/{repo}/pulls/{pull_number}/reviews"),
    ("post", "/repos/{owner}/{repo}/pulls/{pull_number}/reviews"),
    ("get", "/repos/{owner}/{repo}/pulls/{pull_number}/comments"),
    ("get", "/repos/{owner}/{repo}/pulls/{pull_number}/reviews/{review_id}"),
    ("delete", "/repos/{owner}/{repo}/pulls/{pull_number}/reviews/{review_id}"),
    ("get", "/repos/{owner}/{repo}/pulls/{pull_number}/reviews/{review_id}/comments"),
    ("post", "/repos/{owner}/{repo}/pulls/{pull_number}/comments/{comment_id}/replies"),
    ("get", "/repos/{owner}/{repo}/pulls/{pull_number}/commits"),
    ("get", "/repos/{owner}/{repo}/compare/{basehead}"),
    ("get", "/repos/{owner}/{repo}/collaborators/{username}/permission"),
    ("get", "/repos/{owner}/{repo}/contents/{path}"),
    ("get", "/repos/{owner}/{repo}/git/ref/{ref}"),
)

# Operation keys worth keeping; descriptions, docs links and x-github metadata are bulk.
OPERATION_KEYS = ("operationId", "summary", "parameters", "requestBody", "responses")

WEBHOOK_EVENTS: tuple[str, ...] = (
    "issues",
    "issue_comment",
    "pull_request",
    "pull_request_review",
    "pull_request_review_comment",
    "installation",
    "installation_repositories",
    "ping",
    "push",
)

PACKAGES = {
    "openapi": ("@octokit/openapi", "octokit-openapi-{version}.tgz"),
    "examples": ("@octokit/webhooks-examples", "octokit-webhooks-examples-{version}.tgz"),
    "schemas": ("@octokit/webhooks-schemas", "octokit-webhooks-schemas-{version}.tgz"),
}

TRIM_NOTE = (
    "Trimmed by nightcrew (scripts/vendor_github_data.sh): only the operations its GitHub "
    "stand-in serves, with their 2xx/4xx responses and the transitive closure of $refs they "
    "use. Operation descriptions, tags, externalDocs and x-github/x-octokit metadata are dropped."
)


def dump(data: Any) -> str:
    """Serialize deterministically and compactly."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n"


def iter_refs(node: Any) -> Iterator[str]:
    """Yield every "$ref" string below node."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from iter_refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from iter_refs(item)


def pointer_parts(ref: str) -> list[str]:
    """Split a local JSON pointer ("#/a/b~1c") into unescaped parts."""
    if not ref.startswith("#/"):
        raise ValueError(f"only local $refs are expected, got {ref!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in ref[2:].split("/")]


def resolve(doc: Any, ref: str) -> Any:
    """Follow a local JSON pointer inside doc."""
    node = doc
    for part in pointer_parts(ref):
        node = node[part]
    return node


def ref_closure(doc: Any, roots: Any) -> set[str]:
    """All local $refs reachable from roots, following refs through doc."""
    seen: set[str] = set()
    todo = set(iter_refs(roots))
    while todo:
        ref = todo.pop()
        if ref not in seen:
            seen.add(ref)
            todo.update(set(iter_refs(resolve(doc, ref))) - seen)
    return seen


def trim_operation(operation: dict[str, Any]) -> dict[str, Any]:
    """Keep the keys a validator needs and only 2xx/4xx responses."""
    kept = {k: copy.deepcopy(operation[k]) for k in OPERATION_KEYS if k in operation}
    kept["responses"] = {
        code: response for code, response in kept["responses"].items() if code[0] in "24"
    }
    return kept


REDACTED_KEY = "(GitHub's documentation example private key, removed when vendored)"


def redact_private_keys(node: Any) -> Any:
    """``node`` with every PEM private key (GitHub's examples carry one, e.g. the manifest
    conversion's ``pem``) replaced by a plain note: no key material is committed, and the
    value stays a string, as the schema says."""
    if isinstance(node, dict):
        return {k: redact_private_keys(v) for k, v in node.items()}
    if isinstance(node, list):
        return [redact_private_keys(v) for v in node]
    if isinstance(node, str) and "-----BEGIN" in node and "PRIVATE KEY-----" in node:
        return REDACTED_KEY
    return node


def trim_openapi(spec: dict[str, Any]) -> dict[str, Any]:
    """The spec reduced to OPERATIONS plus the components they reference."""
    paths: dict[str, dict[str, Any]] = {}
    for method, template in OPERATIONS:
        item = spec["paths"][template]
        target = paths.setdefault(template, {})
        if "parameters" in item:
            target["parameters"] = copy.deepcopy(item["parameters"])
        target[method] = trim_operation(item[method])
    components: dict[str, dict[str, Any]] = {}
    for ref in ref_closure(spec, paths):
        section, name = pointer_parts(ref)[1:]
        components.setdefault(section, {})[name] = resolve(spec, ref)
    info = dict(spec["info"], **{"x-nightcrew-trimmed": TRIM_NOTE})
    return redact_private_keys(
        {"openapi": spec["openapi"], "info": info, "paths": paths, "components": components})


def schema_roots(definitions: dict[str, Any]) -> list[str]:
    """Definition names for the vendored events: per event and per event+action."""
    names = []
    for event in WEBHOOK_EVENTS:
        names += [n for n in definitions if n == f"{event}_event" or n.startswith(f"{event}$")]
    return sorted(names)


def trim_schemas(schema: dict[str, Any]) -> dict[str, Any]:
    """The draft-07 definitions for WEBHOOK_EVENTS with their $ref closure."""
    definitions = schema["definitions"]
    roots = [{"$ref": f"#/definitions/{name}"} for name in schema_roots(definitions)]
    refs = ref_closure(schema, roots)
    kept = {pointer_parts(ref)[1]: definitions[pointer_parts(ref)[1]] for ref in refs}
    return {"$schema": schema["$schema"], "definitions": kept}


def definition_for(event: str, body: dict[str, Any]) -> str:
    """The schema definition an example body is checked against."""
    action = body.get("action")
    return f"{event}${action}" if isinstance(action, str) else f"{event}$event"


def pick_examples(event: str, bodies: list[Any], schema: dict[str, Any]) -> list[Any]:
    """One schema-valid body per action, plus the event's first invalid one, in source order.

    Valid bodies carrying `installation` win, since GitHub App deliveries always have one.
    The first invalid body stays so tests show that GitHub's examples drift from the schema.
    """
    validity = []
    for body in bodies:
        validator = jsonschema.Draft7Validator(
            {"$ref": f"#/definitions/{definition_for(event, body)}", **schema}
        )
        validity.append(validator.is_valid(body))
    chosen: dict[Any, int] = {}
    for index, body in enumerate(bodies):
        action, rank = body.get("action"), (validity[index], "installation" in body)
        best = chosen.get(action)
        if best is None or rank > (validity[best], "installation" in bodies[best]):
            chosen[action] = index
    keep = set(chosen.values())
    invalid = [i for i, ok in enumerate(validity) if not ok]
    keep.update(invalid[:1])
    return [bodies[i] for i in sorted(keep)]


def trim_examples(index: list[dict[str, Any]], schema: dict[str, Any]) -> dict[str, Any]:
    """{event: [bodies]} for WEBHOOK_EVENTS."""
    by_name = {entry["name"]: entry for entry in index}
    return {e: pick_examples(e, by_name[e]["examples"], schema) for e in WEBHOOK_EVENTS}


def sha256(path: Path) -> str:
    """Hex sha256 of a file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def package_version(package_dir: Path) -> str:
    """Version from an unpacked package.json."""
    return str(json.loads((package_dir / "package.json").read_text())["version"])


def notice(dirs: dict[str, Path], tarballs: Path) -> str:
    """NOTICE.md: provenance, how to regenerate, and licences."""
    rows = []
    for key, (name, tgz) in PACKAGES.items():
        version = package_version(dirs[key])
        digest = sha256(tarballs / tgz.format(version=version))
        rows.append(f"| `{name}@{version}` | `{tgz.format(version=version)}` | `{digest}` |")
    openapi_license = (dirs["openapi"] / "LICENSE").read_text().strip()
    return NOTICE_TEMPLATE.format(rows="\n".join(rows), openapi_license=openapi_license)


NOTICE_TEMPLATE = """\
# Vendored GitHub data

Generated by `bash scripts/vendor_github_data.sh` (which runs `scripts/vendor_github_data.py`);
do not edit by hand. Rerunning it reproduces these files byte for byte: the tarballs are pinned
by sha256 below, and the output is compact JSON with sorted keys.

| package | tarball (`npm pack`) | sha256 |
|---|---|---|
{rows}

## Files
- `openapi-subset.json`: `package/generated/api.github.com.json` of `@octokit/openapi`
  (GitHub's REST API description, OpenAPI 3.0.3), **trimmed** to the operations the GitHub
  stand-in serves (listed in `OPERATIONS` in the script), each with only `operationId`,
  `summary`, `parameters`, `requestBody` and its 2xx/4xx `responses`, plus the transitive
  closure of the `components` (schemas, parameters, responses, headers, examples) they `$ref`.
  `info.x-nightcrew-trimmed` says so inside the file. The example private key GitHub's docs
  show (the manifest conversion's `pem`) is replaced by a note: no key material is vendored.
- `webhook-examples.json`: `{{event: [bodies]}}` from `package/api.github.com/index.json` of
  `@octokit/webhooks-examples`, **trimmed** to the events issues, issue_comment, pull_request,
  pull_request_review, pull_request_review_comment, installation, installation_repositories,
  ping and push; per event, one body per action that passes the schema (preferring bodies
  with `installation`), plus the event's first body that fails it (GitHub's examples lag the
  schema), in the package's order.
- `webhook-schemas.json`: the draft-07 `definitions` of `package/schema.json` of
  `@octokit/webhooks-schemas` for those events (`<event>_event`, `<event>$<action>`,
  `ping$event`, `push$event`) with their transitive `$ref` closure.

## Licences
All three packages are published under the MIT licence (`"license": "MIT"` in each
`package.json`).

### @octokit/openapi (from the tarball's `LICENSE`)

```
{openapi_license}
```

### @octokit/webhooks-examples and @octokit/webhooks-schemas

These tarballs ship no licence file; their `package.json` declares `MIT` and their README
points to `LICENSE.md` in the source repository `github:octokit/webhooks`. The MIT terms are
the same as reproduced above, with the copyright held by that repository's contributors.
"""


def write(out: Path, name: str, text: str) -> None:
    """Write one output file as UTF-8 with LF line ends."""
    (out / name).write_text(text, encoding="utf-8", newline="\n")
    print(f"{name}: {len(text.encode())} bytes")


def main() -> None:
    """Parse arguments and write the four vendored files."""
    parser = argparse.ArgumentParser(description=__doc__)
    for key in ("openapi", "examples", "schemas"):
        parser.add_argument(f"--{key}", type=Path, required=True, help="unpacked package/ dir")
    parser.add_argument("--tarballs", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    dirs: dict[str, Path] = {k: getattr(args, k) for k in ("openapi", "examples", "schemas")}

    spec = json.loads((dirs["openapi"] / "generated/api.github.com.json").read_text())
    schema = json.loads((dirs["schemas"] / "schema.json").read_text())
    index = json.loads((dirs["examples"] / "api.github.com/index.json").read_text())
    schemas = trim_schemas(schema)
    write(args.out, "openapi-subset.json", dump(trim_openapi(spec)))
    write(args.out, "webhook-schemas.json", dump(schemas))
    write(args.out, "webhook-examples.json", dump(trim_examples(index, schemas)))
    write(args.out, "NOTICE.md", notice(dirs, args.tarballs))


if __name__ == "__main__":
    main()
