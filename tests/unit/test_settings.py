"""Settings: a missing or invalid setting stops start-up with one line naming the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from github_app.settings import SettingsError, load_settings
from runner.sandbox.docker import DEFAULT_IMAGE


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no stray .env
    for name in ("NIGHTCREW_APP_ID", "NIGHTCREW_PRIVATE_KEY", "NIGHTCREW_PRIVATE_KEY_PATH",
                 "NIGHTCREW_WEBHOOK_SECRET", "NIGHTCREW_GITHUB_API_URL", "REDIS_URL",
                 "NIGHTCREW_SANDBOX", "NIGHTCREW_SANDBOX_IMAGE", "NIGHTCREW_DOCKER_URL"):
        monkeypatch.delenv(name, raising=False)


def test_invalid_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NIGHTCREW_APP_ID", "twelve")
    with pytest.raises(SettingsError, match=r"^NIGHTCREW_APP_ID: .*integer"):
        load_settings()


def test_bad_urls_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NIGHTCREW_GITHUB_API_URL", "api.github.com")
    with pytest.raises(SettingsError, match="^NIGHTCREW_GITHUB_API_URL"):
        load_settings()
    monkeypatch.delenv("NIGHTCREW_GITHUB_API_URL")
    monkeypatch.setenv("REDIS_URL", "http://localhost")
    with pytest.raises(SettingsError, match="^REDIS_URL"):
        load_settings()


def test_missing_webhook_secret_is_refused() -> None:
    with pytest.raises(SettingsError, match="NIGHTCREW_WEBHOOK_SECRET is required"):
        load_settings().require_webhook_secrets()


def test_secret_rotation_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NIGHTCREW_WEBHOOK_SECRET", "new, old")
    assert load_settings().require_webhook_secrets() == ["new", "old"]


def test_private_key_from_dotenv_file_or_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text("NIGHTCREW_APP_ID=7\nNIGHTCREW_PRIVATE_KEY=line1\\nline2\n")
    assert load_settings().require_app() == (7, "line1\nline2")
    (tmp_path / ".env").unlink()
    monkeypatch.setenv("NIGHTCREW_APP_ID", "7")
    monkeypatch.setenv("NIGHTCREW_PRIVATE_KEY_PATH", str(tmp_path / "missing.pem"))
    with pytest.raises(SettingsError, match="^NIGHTCREW_PRIVATE_KEY_PATH: cannot read"):
        load_settings().require_app()


def test_app_id_required_to_talk_to_github() -> None:
    with pytest.raises(SettingsError, match="NIGHTCREW_APP_ID is required"):
        load_settings().require_app()


def test_sandbox_backend_defaults_to_bwrap_and_docker_is_chosen_by_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    default = load_settings()
    assert (default.sandbox, default.sandbox_image, default.docker_url) == ("bwrap", DEFAULT_IMAGE, None)
    monkeypatch.setenv("NIGHTCREW_SANDBOX", " Docker ")
    monkeypatch.setenv("NIGHTCREW_SANDBOX_IMAGE", "registry.example/nightcrew-py:3.12")
    monkeypatch.setenv("NIGHTCREW_DOCKER_URL", "tcp://10.0.0.5:2375")
    chosen = load_settings()
    assert (chosen.sandbox, chosen.sandbox_image, chosen.docker_url) == (
        "docker", "registry.example/nightcrew-py:3.12", "tcp://10.0.0.5:2375")


def test_unknown_sandbox_backend_stops_start_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NIGHTCREW_SANDBOX", "podman")
    with pytest.raises(SettingsError, match=r"^NIGHTCREW_SANDBOX: .*'bwrap' or 'docker'$"):
        load_settings()
    monkeypatch.setenv("NIGHTCREW_SANDBOX", "docker")
    monkeypatch.setenv("NIGHTCREW_DOCKER_URL", "/var/run/docker.sock")
    with pytest.raises(SettingsError, match=r"^NIGHTCREW_DOCKER_URL: .*unix://"):
        load_settings()
    monkeypatch.setenv("NIGHTCREW_DOCKER_URL", "")
    monkeypatch.setenv("NIGHTCREW_SANDBOX_IMAGE", "")
    with pytest.raises(SettingsError, match=r"^NIGHTCREW_SANDBOX_IMAGE: "):
        load_settings()
