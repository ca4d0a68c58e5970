"""`nightcrew register` end to end against the stand-in: the command's page → GitHub's "new App"
form → the redirect back → the code's conversion → `.env` (contents, mode 0600) → the settings
read the App back. A forged or missing state is refused and nothing is exchanged; a used code is
GitHub's 404, said plainly, with nothing written."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from devhub import DevHub
from github_app.manifest import complete, load_app_yml
from github_app.settings import load_settings
from runner.cli.register import CHECKOUT_APP_YML, Registration
from tests.e2e.register_helpers import clean_env, only_form, start_register

pytestmark = pytest.mark.e2e

WEBHOOK = "https://nightcrew.example.com/webhooks"


def test_one_click_registration_writes_an_env_the_settings_read(
    devhub: DevHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    site = tmp_path / "site"
    site.mkdir()
    register = start_register("--github-url", devhub.url, "--webhook-url", WEBHOOK, cwd=site)
    try:
        form = only_form(httpx.get(register.url + "/").text)
        action = urlsplit(form.action)
        assert f"{action.scheme}://{action.netloc}{action.path}" == f"{devhub.url}/settings/apps/new"
        manifest = json.loads(form.fields["manifest"])
        assert manifest["default_permissions"] == {
            "issues": "write", "pull_requests": "write", "contents": "write", "checks": "read",
            "metadata": "read"}
        assert manifest["default_events"] == ["issues", "issue_comment", "pull_request",
                                              "pull_request_review", "pull_request_review_comment"]
        assert manifest["hook_attributes"] == {"url": WEBHOOK, "active": True}
        assert manifest["redirect_url"] == register.url + "/callback"
        assert manifest["public"] is False and manifest["url"] == "https://nightcrew.example.com"

        # Someone else's redirect (a forged state, or none) is refused; its code never exchanged.
        for params in ({"code": "a" * 40, "state": "forged"}, {"code": "a" * 40}):
            refused = httpx.get(register.url + "/callback", params=params)
            assert refused.status_code == 400 and "Refused" in refused.text

        confirm = only_form(httpx.post(form.action, data=form.fields).text)  # GitHub's page
        assert confirm.fields["name"] == "nightcrew"
        created = httpx.post(devhub.url + confirm.action, data=confirm.fields)
        assert created.status_code == 302
        back = urlsplit(created.headers["location"])
        assert f"{back.scheme}://{back.netloc}{back.path}" == register.url + "/callback"
        assert parse_qs(back.query)["state"] == parse_qs(action.query)["state"]
        done = httpx.get(created.headers["location"])
        assert done.status_code == 200 and "Registered nightcrew" in done.text
        assert register.finish() == 0
    finally:
        register.stop()

    (app,) = devhub.manifests.apps
    assert [r.status for r in devhub.requests_for("apps/create-from-manifest")] == [201]
    assert f"Install it on your repositories: {devhub.url}/apps/nightcrew/installations/new" in register.lines
    env = site / ".env"
    assert stat.S_IMODE(env.stat().st_mode) == 0o600
    text = env.read_text()
    assert f"NIGHTCREW_CLIENT_ID={app.client_id}\n" in text
    assert f"NIGHTCREW_CLIENT_SECRET={app.client_secret}\n" in text

    monkeypatch.chdir(site)
    for name in ("NIGHTCREW_APP_ID", "NIGHTCREW_PRIVATE_KEY", "NIGHTCREW_PRIVATE_KEY_PATH",
                 "NIGHTCREW_WEBHOOK_SECRET", "NIGHTCREW_GITHUB_API_URL", "NIGHTCREW_APP_SLUG"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings()
    assert settings.require_app() == (app.id, app.pem)
    assert settings.require_webhook_secrets() == [app.webhook_secret]
    assert (settings.github_api_url, settings.app_slug) == (devhub.url + "/api/v3", "nightcrew")


def test_a_used_code_is_githubs_404_said_plainly_and_nothing_is_written(
    devhub: DevHub, tmp_path: Path,
) -> None:
    manifest = complete(load_app_yml(CHECKOUT_APP_YML), webhook_url=WEBHOOK,
                        redirect_url="http://127.0.0.1:9/callback", github_url=devhub.url)
    registration = Registration(manifest, devhub.url, None, tmp_path / ".env", force=False)
    created = httpx.post(f"{devhub.url}/settings/apps/new/create", data={
        "manifest": manifest.model_dump_json(exclude_none=True), "name": "nightcrew",
        "state": registration.state})
    code = parse_qs(urlsplit(created.headers["location"]).query)["code"][0]
    assert httpx.post(f"{devhub.url}/app-manifests/{code}/conversions").status_code == 201

    status, page = registration.callback(code, registration.state)
    assert status == 400
    assert "does not know this manifest code (404)" in page and "Nothing was written" in page
    assert not (tmp_path / ".env").exists()
    again, _ = registration.callback(code, registration.state)
    assert again == 409  # the registration is over; start again for another App


def test_register_refuses_once_an_app_is_configured_and_leaves_env_alone(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("NIGHTCREW_APP_ID=5\nANTHROPIC_API_KEY=kept\n")
    proc = subprocess.run([sys.executable, "-m", "runner.cli", "register", "--no-browser"],
                          cwd=tmp_path, env=clean_env(tmp_path), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"nightcrew: an App is configured already (NIGHTCREW_APP_ID=5, from the environment or "
        f"{Path('.env')}); nightcrew register --force registers a new one"]
    assert env.read_text() == "NIGHTCREW_APP_ID=5\nANTHROPIC_API_KEY=kept\n"
