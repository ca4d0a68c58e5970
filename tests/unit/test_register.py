"""The manifest flow's parts: app.yml read strictly and completed, GitHub's URLs, the state
check, and `.env` written 0600, atomically, never over an existing one without --force."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from github_app import envfile
from github_app.github import GitHubError, Retryable
from github_app.manifest import (
    AppCredentials,
    ManifestError,
    api_url,
    complete,
    load_app_yml,
    registration_url,
    state_matches,
    web_url,
)
from github_app.settings import load_settings
from runner.cli.register import (
    CHECKOUT_APP_YML,
    Registration,
    RegistrationRefused,
    find_app_yml,
    page_app,
    refuse_if_configured,
)

SETTINGS = ("NIGHTCREW_APP_ID", "NIGHTCREW_PRIVATE_KEY", "NIGHTCREW_PRIVATE_KEY_PATH",
            "NIGHTCREW_WEBHOOK_SECRET", "NIGHTCREW_GITHUB_API_URL", "NIGHTCREW_APP_SLUG")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    for name in SETTINGS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def credentials(app_private_key: str) -> AppCredentials:
    return AppCredentials(id=77, slug="nightcrew-acme", name="nightcrew acme", owner="acme",
                          html_url="https://github.com/apps/nightcrew-acme", pem=app_private_key,
                          webhook_secret="whsec-1", client_id="Iv23liabc", client_secret="cs-1")


class Exchanges:
    """A stand-in for GitHub's conversion that records the codes it was given."""

    def __init__(self, answer: AppCredentials | Exception) -> None:
        self.answer = answer
        self.codes: list[tuple[str, str]] = []

    def __call__(self, api: str, code: str) -> AppCredentials:
        self.codes.append((api, code))
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def registration(tmp_path: Path, exchange: Exchanges, *, force: bool = False,
                 github: str = "https://github.com") -> Registration:
    manifest = complete(load_app_yml(CHECKOUT_APP_YML), webhook_url="https://nc.example.com/webhooks",
                        redirect_url="http://127.0.0.1:9/callback", github_url=github)
    return Registration(manifest, github, None, tmp_path / ".env", force, exchange=exchange)


# -- app.yml and the manifest --------------------------------------------------------------


def test_app_yml_asks_for_least_privilege_and_the_events_nightcrew_routes() -> None:
    declared = load_app_yml(CHECKOUT_APP_YML)
    assert declared.default_permissions == {"issues": "write", "pull_requests": "write",
                                            "contents": "write", "checks": "read", "metadata": "read"}
    assert declared.default_events == ["issues", "issue_comment", "pull_request",
                                       "pull_request_review", "pull_request_review_comment"]
    assert declared.public is False and declared.name == "nightcrew"


def test_a_typo_in_app_yml_names_the_key(tmp_path: Path) -> None:
    path = tmp_path / "app.yml"
    path.write_text("name: x\ndefault_permisions:\n  issues: write\n")
    with pytest.raises(ManifestError, match="default_permisions: Extra inputs are not permitted"):
        load_app_yml(path)
    path.write_text("name: x\ndefault_permissions:\n  issues: all\n")
    with pytest.raises(ManifestError, match=r"default_permissions\.issues"):
        load_app_yml(path)


def test_the_manifest_takes_the_webhook_and_the_local_callback() -> None:
    done = complete(load_app_yml(CHECKOUT_APP_YML), webhook_url="https://nc.example.com/webhooks",
                    redirect_url="http://127.0.0.1:5000/callback", github_url="https://github.com")
    data = json.loads(done.model_dump_json(exclude_none=True))
    assert data["hook_attributes"] == {"url": "https://nc.example.com/webhooks", "active": True}
    assert data["redirect_url"] == "http://127.0.0.1:5000/callback"
    assert data["url"] == "https://nc.example.com" and data["public"] is False


def test_without_a_webhook_url_the_hook_is_inactive() -> None:
    done = complete(load_app_yml(CHECKOUT_APP_YML), webhook_url=None, redirect_url="http://127.0.0.1:1/cb",
                    github_url="https://ghe.example.com")
    assert done.hook_attributes is not None and not done.hook_attributes.active
    assert done.url == "https://ghe.example.com"
    with pytest.raises(ManifestError, match="--webhook-url"):
        complete(load_app_yml(CHECKOUT_APP_YML), webhook_url="nc.example.com/webhooks",
                 redirect_url="http://127.0.0.1:1/cb", github_url="https://github.com")


def test_github_and_enterprise_urls() -> None:
    assert web_url(None) == "https://github.com" and api_url("https://github.com") == "https://api.github.com"
    assert api_url(web_url("https://ghe.example.com/")) == "https://ghe.example.com/api/v3"
    assert registration_url("https://github.com", None, "s1") == "https://github.com/settings/apps/new?state=s1"
    assert (registration_url("https://ghe.example.com", "my org", "a+b")
            == "https://ghe.example.com/organizations/my%20org/settings/apps/new?state=a%2Bb")
    with pytest.raises(ManifestError, match="--github-url"):
        web_url("ghe.example.com")


def test_the_state_must_match_exactly() -> None:
    assert state_matches("abc", "abc")
    assert not state_matches("abc", None) and not state_matches("abc", "abd") and not state_matches("abc", "")


# -- .env ------------------------------------------------------------------------------------


def test_env_is_0600_whatever_the_umask_and_the_settings_read_it_back(
    tmp_path: Path, credentials: AppCredentials,
) -> None:
    old = os.umask(0)
    try:
        envfile.write(tmp_path / ".env", envfile.render(credentials, "https://ghe.example.com/api/v3"),
                      force=False)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / ".env").stat().st_mode) == 0o600
    settings = load_settings()
    assert settings.require_app() == (77, credentials.pem)
    assert settings.require_webhook_secrets() == ["whsec-1"]
    assert (settings.github_api_url, settings.app_slug) == ("https://ghe.example.com/api/v3", "nightcrew-acme")
    assert [p.name for p in tmp_path.iterdir()] == [".env"]  # no temporary file left behind


def test_an_existing_env_is_never_overwritten_without_force(tmp_path: Path, credentials: AppCredentials) -> None:
    env = tmp_path / ".env"
    env.write_text("ANTHROPIC_API_KEY=mine\n")
    with pytest.raises(envfile.EnvFileExists, match="--force"):
        envfile.write(env, envfile.render(credentials, "https://api.github.com"), force=False)
    assert env.read_text() == "ANTHROPIC_API_KEY=mine\n"
    assert [p.name for p in tmp_path.iterdir()] == [".env"]


def test_force_replaces_the_apps_lines_and_keeps_the_others(tmp_path: Path, credentials: AppCredentials) -> None:
    old = ('# mine\nANTHROPIC_API_KEY=mine\nNIGHTCREW_APP_ID=5\nNIGHTCREW_PRIVATE_KEY_PATH=/old.pem\n'
           'NIGHTCREW_WEBHOOK_SECRET="old"\nREDIS_URL=redis://localhost:6379\n')
    text = envfile.kept_lines(old) + envfile.render(credentials, "https://api.github.com")
    envfile.write(tmp_path / ".env", text, force=True)
    written = (tmp_path / ".env").read_text()
    assert written.startswith("# mine\nANTHROPIC_API_KEY=mine\nREDIS_URL=redis://localhost:6379\n")
    assert "NIGHTCREW_APP_ID=77\n" in written and "NIGHTCREW_APP_ID=5" not in written
    assert "/old.pem" not in written and '"old"' not in written
    assert stat.S_IMODE((tmp_path / ".env").stat().st_mode) == 0o600


# -- refusing to run -------------------------------------------------------------------------


def test_register_refuses_once_configured_or_when_env_exists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = tmp_path / ".env"
    refuse_if_configured(env, force=False)  # nothing configured, no .env: go ahead
    monkeypatch.setenv("NIGHTCREW_APP_ID", "12")
    with pytest.raises(RegistrationRefused, match="NIGHTCREW_APP_ID=12"):
        refuse_if_configured(env, force=False)
    monkeypatch.delenv("NIGHTCREW_APP_ID")
    env.write_text("NIGHTCREW_APP_ID=13\n")
    with pytest.raises(RegistrationRefused, match="NIGHTCREW_APP_ID=13"):
        refuse_if_configured(env, force=False)
    env.write_text("ANTHROPIC_API_KEY=mine\n")
    with pytest.raises(RegistrationRefused, match="exists; nightcrew register --force"):
        refuse_if_configured(env, force=False)
    refuse_if_configured(env, force=True)


def test_app_yml_is_found_here_first_then_in_the_checkout(tmp_path: Path) -> None:
    assert find_app_yml(None) == CHECKOUT_APP_YML
    (tmp_path / "app.yml").write_text("name: here\n")
    assert find_app_yml(None) == Path("app.yml")
    assert find_app_yml(tmp_path / "other.yml") == tmp_path / "other.yml"  # then load_app_yml says it is missing


# -- the page and GitHub's redirect --------------------------------------------------------


def test_the_page_posts_the_manifest_with_its_state(tmp_path: Path, credentials: AppCredentials) -> None:
    reg = registration(tmp_path, Exchanges(credentials))
    page = TestClient(page_app(reg)).get("/").text
    assert f'action="https://github.com/settings/apps/new?state={reg.state}"' in page
    assert 'name="manifest"' in page and "&quot;default_events&quot;" in page
    assert 'id="register"' in page


def test_a_wrong_or_missing_state_is_refused_and_nothing_is_exchanged(
    tmp_path: Path, credentials: AppCredentials,
) -> None:
    exchanges = Exchanges(credentials)
    reg = registration(tmp_path, exchanges)
    client = TestClient(page_app(reg))
    for params in ({"code": "c1", "state": "forged"}, {"code": "c1"}, {"state": reg.state}):
        answer = client.get("/callback", params=params)
        assert answer.status_code == 400 and "Refused" in answer.text
    assert exchanges.codes == [] and reg.refused == 3 and not reg.done.is_set()
    assert not (tmp_path / ".env").exists()


def test_the_right_state_exchanges_the_code_once_and_writes_env(
    tmp_path: Path, credentials: AppCredentials,
) -> None:
    exchanges = Exchanges(credentials)
    reg = registration(tmp_path, exchanges, github="https://ghe.example.com")
    client = TestClient(page_app(reg))
    answer = client.get("/callback", params={"code": "c1", "state": reg.state})
    assert answer.status_code == 200 and "https://github.com/apps/nightcrew-acme/installations/new" in answer.text
    assert exchanges.codes == [("https://ghe.example.com/api/v3", "c1")] and reg.done.is_set()
    assert stat.S_IMODE((tmp_path / ".env").stat().st_mode) == 0o600
    assert client.get("/callback", params={"code": "c1", "state": reg.state}).status_code == 409
    assert exchanges.codes == [("https://ghe.example.com/api/v3", "c1")]


@pytest.mark.parametrize(("error", "said"), [
    (GitHubError("GitHub does not know this manifest code (404)", 404), "does not know this manifest code"),
    (GitHubError("the manifest code's conversion: GitHub answered 422 (Validation Failed)", 422), "422"),
    (Retryable("the manifest code's conversion: GitHub answered 502", 502), "delete it before"),
])
def test_githubs_refusal_is_shown_and_nothing_is_written(
    tmp_path: Path, error: Exception, said: str,
) -> None:
    reg = registration(tmp_path, Exchanges(error))
    answer = TestClient(page_app(reg)).get("/callback", params={"code": "c1", "state": reg.state})
    assert answer.status_code == 400 and said in answer.text and "Nothing was written" in answer.text
    assert reg.outcome is not None and reg.outcome.credentials is None and reg.done.is_set()
    assert not (tmp_path / ".env").exists()


def test_an_env_that_appeared_meanwhile_is_left_alone_and_the_app_saved_beside_it(
    tmp_path: Path, credentials: AppCredentials,
) -> None:
    reg = registration(tmp_path, Exchanges(credentials))
    (tmp_path / ".env").write_text("SOMEONE=else\n")
    TestClient(page_app(reg)).get("/callback", params={"code": "c1", "state": reg.state})
    assert (tmp_path / ".env").read_text() == "SOMEONE=else\n"
    assert reg.outcome is not None and reg.outcome.env_file == tmp_path / ".env.app-77"
    assert "NIGHTCREW_APP_ID=77" in (tmp_path / ".env.app-77").read_text()
