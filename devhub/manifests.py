"""The stand-in's side of GitHub's App manifest flow: the "new App" form and the code conversion.

A page POSTs ``manifest`` (a JSON string) to ``/settings/apps/new?state=…`` or
``/organizations/{org}/settings/apps/new?state=…``. Like GitHub, the stand-in checks the
manifest (``url`` and ``hook_attributes.url`` required, permission levels, each default event
one an App can subscribe to with the permissions asked for) and shows a page with the App's
name, what it asks for, and a **Create GitHub App** button; a manifest it refuses gets a 422
page saying why. The button registers the App (its own RSA key, webhook secret, client id and
secret) and redirects to the manifest's ``redirect_url`` with ``code`` and ``state``.
``POST /app-manifests/{code}/conversions`` (routed and checked like every REST call, in
``devhub.server``) trades the code, once and within the hour, for the App and its secrets.

The signed-in person is ``octocat`` (the stand-in's resident human); an organization's App
is owned by the organization.
"""

from __future__ import annotations

import html
import json
import re
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from devhub.state import DOCS, JSON, HubState, iso, node_id, user_json, utcnow

CODE_LIFETIME = timedelta(hours=1)  # "You must complete all three steps … within one hour."
SIGNED_IN = "octocat"
LEVELS = ("read", "write", "admin")
# The events an App may subscribe to that the stand-in knows, and the permissions (any one of
# them) that allow each. `installation` and `installation_repositories` are not among them:
# GitHub sends those to every App with an active webhook.
EVENT_PERMISSIONS: dict[str, tuple[str, ...]] = {
    "issues": ("issues",),
    "issue_comment": ("issues", "pull_requests"),
    "label": ("metadata",),
    "pull_request": ("pull_requests",),
    "pull_request_review": ("pull_requests",),
    "pull_request_review_comment": ("pull_requests",),
    "pull_request_review_thread": ("pull_requests",),
    "push": ("contents",),
    "create": ("contents",),
    "delete": ("contents",),
    "check_run": ("checks",),
    "check_suite": ("checks",),
    "status": ("statuses",),
    "workflow_run": ("actions",),
}
FORM_PATHS = ("/settings/apps/new", "/organizations/{org}/settings/apps/new")


@dataclass
class RegisteredApp:
    """An App created through the manifest flow, with every secret GitHub generates for it."""

    id: int
    slug: str
    name: str
    owner: str
    owner_type: str
    manifest: JSON
    pem: str
    public_pem: str
    webhook_secret: str | None
    client_id: str
    client_secret: str
    created_at: datetime


@dataclass
class Code:
    app: RegisteredApp
    expires_at: datetime
    used: bool = False


@dataclass
class ManifestApps:
    """The Apps registered through manifests and their codes (single-use, one hour)."""

    state: HubState
    keypair: Callable[[], tuple[str, str]]  # (private PEM, public PEM), as GitHub makes an App's key
    clock: Callable[[], datetime] = utcnow
    apps: list[RegisteredApp] = field(default_factory=list)
    codes: dict[str, Code] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def problems(self, manifest: Any, name: str | None) -> list[str]:
        """Why GitHub would refuse this manifest (and the name typed, unless None), in its own
        wording where known."""
        if not isinstance(manifest, dict):
            return ["Manifest must be a JSON object"]
        found: list[str] = []
        if name is None:
            pass  # the form page: the person may still type or change the name
        elif not name.strip():
            found.append("Name can't be blank")
        elif len(name) > 34:
            found.append("Name is too long (maximum is 34 characters)")
        elif any(app.slug == slugify(name) for app in self.apps):
            found.append("Name has already been taken")
        if not _is_url(manifest.get("url")):
            found.append("Url must be a valid URL")
        hook = manifest.get("hook_attributes")
        if not isinstance(hook, dict) or not _is_url(hook.get("url")):
            found.append("Hook url must be a valid URL")
        if manifest.get("redirect_url") is not None and not _is_url(manifest.get("redirect_url")):
            found.append("Redirect url must be a valid URL")
        permissions = manifest.get("default_permissions") or {}
        if not isinstance(permissions, dict) or any(v not in LEVELS for v in permissions.values()):
            found.append("Default permissions must be read, write or admin")
            permissions = {}
        events = manifest.get("default_events") or []
        if not isinstance(events, list):
            return [*found, "Default events must be a list"]
        unsupported = [e for e in events if e not in EVENT_PERMISSIONS]
        if unsupported:
            found.append(f"Default events unsupported: {', '.join(map(str, unsupported))}")
        unpermitted = [e for e in events if e in EVENT_PERMISSIONS
                       and not any(p in permissions for p in EVENT_PERMISSIONS[e])]
        if unpermitted:
            found.append(f"Default events are not supported by permissions: {', '.join(unpermitted)}")
        return found

    def register(self, manifest: JSON, name: str, owner: str, owner_type: str) -> RegisteredApp:
        """Create the App (its key, secrets and id), as the button on GitHub's page does."""
        private, public = self.keypair()
        hook = manifest.get("hook_attributes") or {}
        app = RegisteredApp(
            id=self.state.next_id(), slug=slugify(name), name=name, owner=owner,
            owner_type=owner_type, manifest=manifest, pem=private, public_pem=public,
            webhook_secret=secrets.token_hex(20) if hook.get("active", True) else None,
            client_id="Iv23li" + secrets.token_hex(7), client_secret=secrets.token_hex(20),
            created_at=self.clock(),
        )
        with self._lock:
            self.apps.append(app)
        return app

    def issue_code(self, app: RegisteredApp) -> str:
        """A temporary code for the redirect."""
        code = secrets.token_hex(20)
        with self._lock:
            self.codes[code] = Code(app, self.clock() + CODE_LIFETIME)
        return code

    def expire_codes(self) -> None:
        """Age every code past its hour (as a test would otherwise wait for)."""
        with self._lock:
            for code in self.codes.values():
                code.expires_at = self.clock() - timedelta(seconds=1)

    def convert(self, base_url: str, code: str) -> tuple[int, JSON]:
        """``POST /app-manifests/{code}/conversions``: (201, the App with its secrets) once per
        code within its hour; GitHub's 404 for a code that is unknown, used or expired."""
        with self._lock:
            entry = self.codes.get(code)
            if entry is None or entry.used or entry.expires_at <= self.clock():
                return 404, {"message": "Not Found", "documentation_url": DOCS}
            entry.used = True
        return 201, conversion_json(base_url, self.state, entry.app)


def conversion_json(base: str, state: HubState, app: RegisteredApp) -> JSON:
    """GitHub's ``integration`` with ``client_id``, ``client_secret``, ``webhook_secret``, ``pem``."""
    manifest = app.manifest
    owner = state.user(app.owner, "Organization" if app.owner_type == "Organization" else "User")
    return {
        "id": app.id,
        "slug": app.slug,
        "node_id": node_id("A", app.id),
        "client_id": app.client_id,
        "owner": user_json(base, owner),
        "name": app.name,
        "description": manifest.get("description") or None,
        "external_url": manifest["url"],
        "html_url": f"{base}/apps/{app.slug}",
        "created_at": iso(app.created_at),
        "updated_at": iso(app.created_at),
        "permissions": {"metadata": "read", **(manifest.get("default_permissions") or {})},
        "events": list(manifest.get("default_events") or []),
        "client_secret": app.client_secret,
        "webhook_secret": app.webhook_secret,
        "pem": app.pem,
    }


def slugify(name: str) -> str:
    """An App's slug from its name, as GitHub makes it (lower case, dashes)."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def router(apps: ManifestApps) -> APIRouter:
    """The web pages of the flow (not REST: no OpenAPI operation describes them)."""
    pages = APIRouter()

    async def form(request: Request, org: str | None = None) -> Response:
        fields = await _form_fields(request)
        state = request.query_params.get("state") or fields.get("state", "")
        try:
            manifest = json.loads(fields.get("manifest", ""))
        except ValueError:
            manifest = None
        name = str(manifest.get("name") or "") if isinstance(manifest, dict) else ""
        problems = apps.problems(manifest, None)
        if problems:
            return HTMLResponse(_refusal_page(problems), status_code=422)
        assert isinstance(manifest, dict)
        action = request.url.path.rstrip("/") + "/create"
        return HTMLResponse(_form_page(manifest, name, org or SIGNED_IN, action,
                                       fields.get("manifest", ""), state))

    async def create(request: Request, org: str | None = None) -> Response:
        fields = await _form_fields(request)
        try:
            manifest = json.loads(fields.get("manifest", ""))
        except ValueError:
            manifest = None
        name = fields.get("name", "").strip()
        problems = apps.problems(manifest, name)
        if problems:
            return HTMLResponse(_refusal_page(problems), status_code=422)
        assert isinstance(manifest, dict)
        app = apps.register(manifest, name, org or SIGNED_IN, "Organization" if org else "User")
        query = {"code": apps.issue_code(app)}
        if fields.get("state"):
            query["state"] = fields["state"]
        target = manifest.get("redirect_url") or f"{apps.state.base_url}/apps/{app.slug}"
        separator = "&" if urlsplit(target).query else "?"
        return RedirectResponse(f"{target}{separator}{urlencode(query)}", status_code=302)

    async def org_form(request: Request, org: str) -> Response:
        return await form(request, org)

    async def org_create(request: Request, org: str) -> Response:
        return await create(request, org)

    pages.add_api_route(FORM_PATHS[0], form, methods=["POST"])
    pages.add_api_route(FORM_PATHS[0] + "/create", create, methods=["POST"])
    pages.add_api_route(FORM_PATHS[1], org_form, methods=["POST"])
    pages.add_api_route(FORM_PATHS[1] + "/create", org_create, methods=["POST"])
    return pages


async def _form_fields(request: Request) -> dict[str, str]:
    # A browser form is application/x-www-form-urlencoded; parsed here without python-multipart.
    body = (await request.body()).decode("utf-8", "replace")
    return {key: values[0] for key, values in parse_qs(body, keep_blank_values=True).items()}


def _form_page(manifest: JSON, name: str, account: str, action: str, raw: str, state: str) -> str:
    permissions = manifest.get("default_permissions") or {}
    hook = manifest.get("hook_attributes") or {}
    rows = "".join(f"<li><code>{html.escape(k)}</code>: {html.escape(str(v))}</li>"
                   for k, v in sorted(permissions.items()))
    events = ", ".join(html.escape(str(e)) for e in manifest.get("default_events") or []) or "none"
    webhook = (html.escape(str(hook.get("url"))) if hook.get("active", True)
               else "inactive")
    return _page("Create GitHub App", f"""
<h1>Create GitHub App for {html.escape(account)}</h1>
<form method="post" action="{html.escape(action)}">
  <label>GitHub App name <input type="text" name="name" id="app-name" value="{html.escape(name)}"></label>
  <p>{html.escape(str(manifest.get("description") or ""))}</p>
  <h2>Permissions</h2><ul id="permissions">{rows}</ul>
  <h2>Events</h2><p id="events">{events}</p>
  <h2>Webhook</h2><p id="webhook">{webhook}</p>
  <input type="hidden" name="manifest" value="{html.escape(raw)}">
  <input type="hidden" name="state" value="{html.escape(state)}">
  <button type="submit" id="create">Create GitHub App</button>
</form>""")


def _refusal_page(problems: list[str]) -> str:
    items = "".join(f"<li>{html.escape(p)}</li>" for p in problems)
    return _page("Invalid GitHub App configuration",
                 f"<h1>Invalid GitHub App configuration</h1><ul id=\"errors\">{items}</ul>")


def _page(title: str, body: str) -> str:
    return (f"<!doctype html><html><head><meta charset=\"utf-8\"><link rel=\"icon\" href=\"data:,\"><title>{html.escape(title)} · devhub"
            f"</title></head><body style=\"font-family:sans-serif;max-width:40em;margin:2em auto\">"
            f"{body}</body></html>")


def _is_url(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)

