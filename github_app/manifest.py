"""The GitHub App manifest: ``app.yml`` read strictly, completed for one registration.

GitHub's manifest flow (docs: "Registering a GitHub App from a manifest") has three steps: a
form POSTs ``manifest`` (a JSON string) to ``{github}/settings/apps/new`` (or
``/organizations/ORG/settings/apps/new``) with a random ``state`` in the query; GitHub sends
the browser back to ``redirect_url?code=…&state=…``; the code is traded within the hour for the
App's credentials (``POST /app-manifests/{code}/conversions``). This module is the pure part:
the manifest, the URLs, the state check and the credentials' shape. No network.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, urlencode, urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from github_app import errors

GITHUB_WEB_URL = "https://github.com"
GITHUB_API_URL = "https://api.github.com"
CODE_LIFETIME_S = 3600  # "You must complete all three steps … within one hour."
Access = Literal["read", "write", "admin"]


class ManifestError(errors.NightcrewError):
    """``app.yml`` or a registration option cannot make a manifest GitHub would take."""


class HookAttributes(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str
    active: bool = True


class AppManifest(BaseModel):
    """GitHub's manifest parameters; ``app.yml`` uses the same names (a typo is an error)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=34)  # GitHub's limit on an App's name
    url: str | None = None
    description: str = ""
    public: bool = False
    default_permissions: dict[str, Access] = Field(default_factory=dict)
    default_events: list[str] = Field(default_factory=list)
    hook_attributes: HookAttributes | None = None
    redirect_url: str | None = None
    callback_urls: list[str] = Field(default_factory=list, max_length=10)
    setup_url: str | None = None
    request_oauth_on_install: bool = False
    setup_on_update: bool = False


@dataclass(frozen=True)
class AppCredentials:
    """What GitHub hands back for a manifest code: the new App and its secrets."""

    id: int
    slug: str
    name: str
    owner: str
    html_url: str
    pem: str
    webhook_secret: str | None
    client_id: str
    client_secret: str

    @property
    def install_url(self) -> str:
        """Where a person installs the App on repositories."""
        return f"{self.html_url.rstrip('/')}/installations/new"


def load_app_yml(path: Path) -> AppManifest:
    """``app.yml`` parsed and checked; a bad file is one ``ManifestError`` naming the key."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ManifestError(f"{path}: cannot read it ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise ManifestError(f"{path}: not YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ManifestError(f"{path}: expected a mapping of manifest keys")
    try:
        return AppManifest.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "manifest"
        raise ManifestError(f"{path}: {where}: {first['msg']}") from None


def complete(declared: AppManifest, *, webhook_url: str | None, redirect_url: str,
             github_url: str) -> AppManifest:
    """The manifest to post: ``app.yml`` over the defaults this registration needs.

    The webhook goes to ``webhook_url``; without one it is created inactive (an App for the
    Action alone needs none) and its URL is only a placeholder GitHub requires. The homepage
    defaults to the webhook's origin, else the GitHub URL.
    """
    if webhook_url is not None:
        _check_url("--webhook-url", webhook_url)
    homepage = declared.url or (_origin(webhook_url) if webhook_url else github_url)
    hook = HookAttributes(url=webhook_url, active=True) if webhook_url else HookAttributes(
        url=homepage, active=False)
    return declared.model_copy(update={"url": homepage, "hook_attributes": hook,
                                       "redirect_url": redirect_url})


def manifest_json(manifest: AppManifest) -> str:
    """The form field GitHub reads: the manifest as a JSON string, unset keys left out."""
    return manifest.model_dump_json(exclude_none=True)


def web_url(github_url: str | None) -> str:
    """GitHub's web address: github.com by default, else the Enterprise host given."""
    url = (github_url or GITHUB_WEB_URL).rstrip("/")
    _check_url("--github-url", url)
    return url


def api_url(github_web_url: str) -> str:
    """The REST API for a GitHub web address: api.github.com, or GitHub Enterprise's /api/v3."""
    if github_web_url.rstrip("/") == GITHUB_WEB_URL:
        return GITHUB_API_URL
    return f"{github_web_url.rstrip('/')}/api/v3"


def registration_url(github_web_url: str, org: str | None, state: str) -> str:
    """Where the form POSTs: the personal or the organization's "new App" page, with ``state``."""
    base = github_web_url.rstrip("/")
    page = (f"{base}/organizations/{quote(org, safe='')}/settings/apps/new" if org
            else f"{base}/settings/apps/new")
    return f"{page}?{urlencode({'state': state})}"


def new_state() -> str:
    """An unguessable value that ties GitHub's redirect to this registration."""
    return secrets.token_urlsafe(32)


def state_matches(expected: str, received: str | None) -> bool:
    """Whether the redirect carries this registration's state (compared in constant time)."""
    return received is not None and hmac.compare_digest(expected.encode(), received.encode())


def credentials_from(data: dict[str, Any]) -> AppCredentials:
    """The conversion's answer (GitHub's ``integration`` plus its secrets) as credentials."""
    owner = data.get("owner") or {}
    return AppCredentials(
        id=int(data["id"]), slug=str(data.get("slug") or ""), name=str(data["name"]),
        owner=str(owner.get("login") or owner.get("slug") or ""), html_url=str(data["html_url"]),
        pem=str(data["pem"]), webhook_secret=data.get("webhook_secret"),
        client_id=str(data["client_id"]), client_secret=str(data["client_secret"]),
    )


def _check_url(option: str, url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ManifestError(f"{option}: {url!r} is not an http(s) URL")


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"
