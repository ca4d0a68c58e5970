"""The register page clicked through in headless Chromium (Debian's `chromium`, driven by
Playwright without its own browser build): the command's page → the stand-in's "new App" form →
the redirect back → "Registered". A forged redirect shows the refusal. Screenshots of each page
are kept in test-artifacts/register/."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from devhub import DevHub
from tests.e2e.register_helpers import start_register

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "register"
TIMEOUT_MS = 120_000  # generous: the machine is shared


def test_the_register_page_in_chromium(devhub: DevHub, tmp_path: Path) -> None:
    if not CHROMIUM.exists():
        pytest.skip(f"no {CHROMIUM}: install Debian's package `chromium` (apt-get install -y chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (the dev extra) is not installed")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    site = tmp_path / "site"
    site.mkdir()
    register = start_register("--github-url", devhub.url, "--org", "acme",
                              "--webhook-url", "https://nightcrew.example.com/webhooks", cwd=site)
    try:
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch_persistent_context(
                str(tmp_path / "chromium-profile"), executable_path=str(CHROMIUM), args=ARGS,
                headless=True, viewport={"width": 1000, "height": 900})
            try:
                page = browser.pages[0] if browser.pages else browser.new_page()
                page.set_default_timeout(TIMEOUT_MS)

                page.goto(f"{register.url}/callback?code={'a' * 40}&state=forged")
                assert "not from the registration" in page.inner_text("#refused")
                page.screenshot(path=str(ARTIFACTS / "0-forged-state-refused.png"), full_page=True)

                page.goto(register.url + "/")
                assert page.inner_text("#app-name") == "nightcrew"
                page.screenshot(path=str(ARTIFACTS / "1-register-page.png"), full_page=True)
                with page.expect_navigation():
                    page.click("#register")
                assert page.url.startswith(f"{devhub.url}/organizations/acme/settings/apps/new?state=")
                assert page.input_value("#app-name") == "nightcrew"
                assert "pull_request_review_comment" in page.inner_text("#events")
                page.screenshot(path=str(ARTIFACTS / "2-github-new-app-form.png"), full_page=True)

                page.fill("#app-name", "acme nightcrew")  # a person may rename it on GitHub's page
                with page.expect_navigation():
                    page.click("#create")
                page.wait_for_selector("#registered")
                assert page.url.startswith(register.url + "/callback?code=")
                assert page.get_attribute("#install", "href") == (
                    f"{devhub.url}/apps/acme-nightcrew/installations/new")
                page.screenshot(path=str(ARTIFACTS / "3-registered.png"), full_page=True)
            finally:
                browser.close()
        assert register.finish() == 0
    finally:
        register.stop()

    (app,) = devhub.manifests.apps
    assert (app.owner, app.slug) == ("acme", "acme-nightcrew")
    env = site / ".env"
    assert stat.S_IMODE(env.stat().st_mode) == 0o600
    assert f"NIGHTCREW_APP_ID={app.id}\n" in env.read_text()
    assert "NIGHTCREW_APP_SLUG=acme-nightcrew\n" in env.read_text()
    for shot in ("0-forged-state-refused", "1-register-page", "2-github-new-app-form", "3-registered"):
        assert (ARTIFACTS / f"{shot}.png").stat().st_size > 1000
