"""The stand-in's manifest flow: the form refuses what GitHub refuses, the button registers an
App and redirects with code and state, and the code converts once, within the hour, checked
against GitHub's OpenAPI description like every REST call."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from cryptography.hazmat.primitives import serialization

from devhub import DevHub

MANIFEST: dict[str, Any] = {
    "name": "octo-nightcrew",
    "url": "https://nightcrew.example.com",
    "hook_attributes": {"url": "https://nightcrew.example.com/webhooks"},
    "redirect_url": "http://127.0.0.1:9/callback",
    "default_permissions": {"issues": "write", "pull_requests": "write", "checks": "read"},
    "default_events": ["issues", "issue_comment", "pull_request"],
}


def create(hub: DevHub, manifest: dict[str, Any], *, state: str = "s-1", name: str | None = None,
           org: str | None = None) -> httpx.Response:
    base = f"/organizations/{org}/settings/apps/new" if org else "/settings/apps/new"
    form = {"manifest": json.dumps(manifest), "state": state, "name": name or manifest["name"]}
    return httpx.post(f"{hub.url}{base}/create", data=form)


def code_of(response: httpx.Response) -> str:
    assert response.status_code == 302, response.text
    return parse_qs(urlsplit(response.headers["location"]).query)["code"][0]


def test_the_form_shows_the_manifest_and_keeps_the_state(devhub: DevHub) -> None:
    page = httpx.post(f"{devhub.url}/settings/apps/new?state=s-1",
                      data={"manifest": json.dumps(MANIFEST)})
    assert page.status_code == 200
    assert 'value="octo-nightcrew"' in page.text and "Create GitHub App" in page.text
    assert 'name="state" value="s-1"' in page.text and "pull_requests" in page.text


@pytest.mark.parametrize(("change", "said"), [
    ({"default_events": ["issues", "installation"]}, "Default events unsupported: installation"),
    ({"default_events": ["push"]}, "Default events are not supported by permissions: push"),
    ({"url": None}, "Url must be a valid URL"),
    ({"hook_attributes": {"active": False}}, "Hook url must be a valid URL"),
    ({"default_permissions": {"issues": "all"}}, "Default permissions must be read, write or admin"),
])
def test_the_form_refuses_what_github_refuses(devhub: DevHub, change: dict[str, Any], said: str) -> None:
    page = httpx.post(f"{devhub.url}/settings/apps/new", data={"manifest": json.dumps({**MANIFEST, **change})})
    assert page.status_code == 422 and said in page.text
    assert devhub.manifests.apps == []


def test_the_button_registers_the_app_and_redirects_with_code_and_state(devhub: DevHub) -> None:
    answer = create(devhub, MANIFEST)
    location = urlsplit(answer.headers["location"])
    assert (location.netloc, location.path) == ("127.0.0.1:9", "/callback")
    assert parse_qs(location.query)["state"] == ["s-1"]
    (app,) = devhub.manifests.apps
    assert (app.name, app.slug, app.owner) == ("octo-nightcrew", "octo-nightcrew", "octocat")


def test_the_code_converts_once_into_the_app_and_its_secrets(devhub: DevHub) -> None:
    code = code_of(create(devhub, MANIFEST, org="acme", name="Acme Night Crew"))
    first = httpx.post(f"{devhub.url}/app-manifests/{code}/conversions")
    assert first.status_code == 201
    data = first.json()
    app = devhub.manifests.apps[0]
    assert (data["id"], data["slug"], data["owner"]["login"]) == (app.id, "acme-night-crew", "acme")
    assert data["html_url"] == f"{devhub.url}/apps/acme-night-crew"
    assert data["permissions"] == {"metadata": "read", **MANIFEST["default_permissions"]}
    assert data["events"] == MANIFEST["default_events"]
    assert data["webhook_secret"] and data["client_secret"] and data["client_id"].startswith("Iv")
    key = serialization.load_pem_private_key(data["pem"].encode(), password=None)
    assert key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode() == app.public_pem
    again = httpx.post(f"{devhub.url}/app-manifests/{code}/conversions")
    assert again.status_code == 404 and again.json()["message"] == "Not Found"


def test_an_expired_or_unknown_code_is_not_found_and_enterprise_paths_route(devhub: DevHub) -> None:
    code = code_of(create(devhub, MANIFEST))
    devhub.manifests.expire_codes()
    assert httpx.post(f"{devhub.url}/api/v3/app-manifests/{code}/conversions").status_code == 404
    assert httpx.post(f"{devhub.url}/api/v3/app-manifests/nope/conversions").status_code == 404
    assert [r.operation_id for r in devhub.requests] == ["apps/create-from-manifest"] * 2


def test_an_inactive_webhook_gets_no_secret_and_names_are_unique(devhub: DevHub) -> None:
    inactive = {**MANIFEST, "hook_attributes": {"url": "https://example.com", "active": False}}
    code = code_of(create(devhub, inactive))
    assert httpx.post(f"{devhub.url}/app-manifests/{code}/conversions").json()["webhook_secret"] is None
    taken = create(devhub, MANIFEST)
    assert taken.status_code == 422 and "Name has already been taken" in taken.text
