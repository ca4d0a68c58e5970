"""Settings: a missing or invalid setting stops start-up with one line naming the variable."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from github_app.settings import SettingsError, load_settings
from runner.sandbox.docker import DEFAULT_IMAGE


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no stray .env
    for name in ("NIGHTCREW_APP_ID", "NIGHTCREW_PRIVATE_KEY", "NIGHTCREW_PRIVATE_KEY_PATH",
                 "NIGHTCREW_WEBHOOK_SECRET", "NIGHTCREW_GITHUB_API_URL", "REDIS_URL",
                 "NIGHTCREW_SANDBOX", "NIGHTCREW_SANDBOX_IMAGE", "NIGHTCREW_DOCKER_URL",
                 "NIGHTCREW_DATA_DIR", "NIGHTCREW_TEST_TIMEOUT", "NIGHTCREW_TRIGGER_LABEL",
                 "NIGHTCREW_APP_SLUG"):
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


def test_private_key_from_dotenv_file_or_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, app_private_key: str,
) -> None:
    escaped = app_private_key.strip().replace("\n", "\\n")  # one line, as a .env holds it
    (tmp_path / ".env").write_text(f"NIGHTCREW_APP_ID=7\nNIGHTCREW_PRIVATE_KEY={escaped}\n")
    assert load_settings().require_app() == (7, app_private_key.strip())
    (tmp_path / ".env").unlink()
    monkeypatch.setenv("NIGHTCREW_APP_ID", "7")
    (tmp_path / "app.pem").write_text(app_private_key)
    monkeypatch.setenv("NIGHTCREW_PRIVATE_KEY_PATH", str(tmp_path / "app.pem"))
    assert load_settings().require_app() == (7, app_private_key)


def _pem(key: PrivateKeyTypes, fmt: serialization.PrivateFormat = serialization.PrivateFormat.PKCS8,
         encryption: serialization.KeySerializationEncryption | None = None) -> str:
    return key.private_bytes(serialization.Encoding.PEM, fmt,
                             encryption or serialization.NoEncryption()).decode()


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def unusable_keys(rsa_key: rsa.RSAPrivateKey) -> dict[str, tuple[str, str]]:
    """Keys that cannot sign an App's JWT: (text, what the error line says)."""
    public = rsa_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                serialization.PublicFormat.SubjectPublicKeyInfo)
    good = _pem(rsa_key, serialization.PrivateFormat.TraditionalOpenSSL)
    return {
        "not PEM": ("SHA256:0aXKYmYJ5fFhJ7bKbE1x2c1y0vM", "not a PEM private key"),
        "a GitHub token": ("ghp_" + "x" * 36, "not a PEM private key"),
        "the public key": (public.decode(), "a public key or certificate"),
        "cut short": (good[: len(good) // 2] + "\n-----END RSA PRIVATE KEY-----\n",
                      "not a readable PEM private key"),
        "encrypted": (_pem(rsa_key, encryption=serialization.BestAvailableEncryption(b"pw")),
                      "encrypted private key"),
        "EC": (_pem(ec.generate_private_key(ec.SECP256R1())), "not an RSA private key (EC)"),
        "Ed25519": (_pem(ed25519.Ed25519PrivateKey.generate()), "not an RSA private key (Ed25519)"),
    }


KINDS = ["not PEM", "a GitHub token", "the public key", "cut short", "encrypted", "EC", "Ed25519"]


@pytest.mark.parametrize("kind", KINDS)
def test_a_private_key_that_cannot_sign_stops_start_up_naming_the_variable(
    kind: str, monkeypatch: pytest.MonkeyPatch, rsa_key: rsa.RSAPrivateKey,
) -> None:
    text, why = unusable_keys(rsa_key)[kind]
    monkeypatch.setenv("NIGHTCREW_PRIVATE_KEY", text)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    line = str(caught.value)
    assert line.startswith("NIGHTCREW_PRIVATE_KEY: ") and why in line and "\n" not in line
    secret_lines = [chunk for chunk in text.splitlines() if len(chunk) > 20 and "-----" not in chunk]
    assert secret_lines and not any(chunk in line for chunk in secret_lines)  # never quoted
    assert "Value error" not in line


@pytest.mark.parametrize("kind", KINDS)
def test_a_private_key_file_that_cannot_sign_stops_start_up_naming_the_variable(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rsa_key: rsa.RSAPrivateKey,
) -> None:
    text, why = unusable_keys(rsa_key)[kind]
    (tmp_path / "app.pem").write_text(text)
    monkeypatch.setenv("NIGHTCREW_PRIVATE_KEY_PATH", str(tmp_path / "app.pem"))
    with pytest.raises(SettingsError, match=rf"^NIGHTCREW_PRIVATE_KEY_PATH: {tmp_path}/app.pem: ") as caught:
        load_settings()
    assert why in str(caught.value) and "\n" not in str(caught.value)


def test_a_key_path_that_cannot_be_read_stops_start_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for path, why in [(tmp_path / "missing.pem", "No such file or directory"),
                      (tmp_path, "Is a directory")]:
        monkeypatch.setenv("NIGHTCREW_PRIVATE_KEY_PATH", str(path))
        with pytest.raises(SettingsError, match=rf"^NIGHTCREW_PRIVATE_KEY_PATH: cannot read {path}: {why}$"):
            load_settings()
    (tmp_path / "app.der").write_bytes(b"\x30\x82\x04\xa4\xff\xfe")  # a binary (DER) file
    monkeypatch.setenv("NIGHTCREW_PRIVATE_KEY_PATH", str(tmp_path / "app.der"))
    with pytest.raises(SettingsError, match="^NIGHTCREW_PRIVATE_KEY_PATH: .*not a PEM private key"):
        load_settings()


def test_an_empty_key_variable_is_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NIGHTCREW_APP_ID", "7")
    monkeypatch.setenv("NIGHTCREW_PRIVATE_KEY", "")
    monkeypatch.setenv("NIGHTCREW_PRIVATE_KEY_PATH", " ")
    settings = load_settings()
    assert settings.private_key is None and settings.private_key_path is None
    with pytest.raises(SettingsError, match="NIGHTCREW_PRIVATE_KEY or NIGHTCREW_PRIVATE_KEY_PATH is required"):
        settings.require_app()


@pytest.mark.parametrize(("name", "value", "why"), [
    ("NIGHTCREW_APP_ID", "0", "greater than 0"),
    ("NIGHTCREW_APP_ID", "-3", "greater than 0"),
    ("NIGHTCREW_TEST_TIMEOUT", "0", "greater than 0"),
    ("NIGHTCREW_TRIGGER_LABEL", "", "at least 1 character"),
    ("NIGHTCREW_APP_SLUG", "", "at least 1 character"),
])
def test_other_values_that_cannot_work_stop_start_up(
    name: str, value: str, why: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=rf"^{name}: .*{why}"):
        load_settings()


def test_a_data_dir_that_is_a_file_stops_start_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "data").write_text("not a directory")
    monkeypatch.setenv("NIGHTCREW_DATA_DIR", str(tmp_path / "data"))
    with pytest.raises(SettingsError, match=r"^NIGHTCREW_DATA_DIR: .*exists and is not a directory$"):
        load_settings()
    monkeypatch.setenv("NIGHTCREW_DATA_DIR", str(tmp_path / "new" / "data"))  # made when needed
    assert load_settings().data_dir == tmp_path / "new" / "data"


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
