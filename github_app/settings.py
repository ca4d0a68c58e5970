"""Process settings from the environment and a `.env` file.

Every setting has the name an operator types; a missing or invalid one stops start-up with one
line that names the variable (``SettingsError``), never a pydantic traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from github_app import errors
from github_app.tracker.checkpoint import checkpoint_key

DEFAULT_GITHUB_API_URL = "https://api.github.com"
# The Docker backend's image (runner/sandbox/docker.py, built by scripts/podman_service.sh).
DEFAULT_SANDBOX_IMAGE = "nightcrew/empty"
DOCKER_URL_SCHEMES = ("unix://", "tcp://", "http://", "https://", "ssh://")


class SettingsError(errors.NightcrewError):
    """A setting is missing or invalid; the message names the environment variable."""


class Settings(BaseSettings):
    """nightcrew's settings; field aliases are the environment variable names."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", populate_by_name=True
    )

    app_id: int | None = Field(default=None, gt=0, validation_alias="NIGHTCREW_APP_ID")
    private_key: SecretStr | None = Field(default=None, validation_alias="NIGHTCREW_PRIVATE_KEY")
    private_key_path: Path | None = Field(
        default=None, validation_alias="NIGHTCREW_PRIVATE_KEY_PATH"
    )
    # GitHub rotates secrets by letting several be valid at once: a comma-separated list.
    webhook_secrets: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list, validation_alias="NIGHTCREW_WEBHOOK_SECRET"
    )
    # Signs the checkpoint block in status comments; unset = derived from the first webhook secret.
    checkpoint_secret: SecretStr | None = Field(
        default=None, validation_alias="NIGHTCREW_CHECKPOINT_SECRET"
    )
    github_api_url: str = Field(
        default=DEFAULT_GITHUB_API_URL, validation_alias="NIGHTCREW_GITHUB_API_URL"
    )
    data_dir: Path = Field(default=Path(".nightcrew"), validation_alias="NIGHTCREW_DATA_DIR")
    redis_url: str | None = Field(default=None, validation_alias="REDIS_URL")
    # A comma-separated list rotates: a key the API refuses (401/403) is skipped for the next.
    anthropic_api_key: SecretStr | None = Field(default=None, validation_alias="ANTHROPIC_API_KEY")
    # How long one model API outage (overloaded, rate limited, 5xx, unreachable) is waited out
    # before the task pauses (resumable); waits follow the API's retry-after.
    model_wait_max_s: float = Field(default=1800.0, ge=0.0, le=24 * 3600.0,
                                    validation_alias="NIGHTCREW_MODEL_WAIT_MAX_S")
    # While every model API key is refused, one worker probes them this often (seconds).
    model_probe_interval_s: int = Field(default=30, ge=1, le=3600,
                                        validation_alias="NIGHTCREW_MODEL_PROBE_INTERVAL")
    trigger_label: str = Field(default="nightcrew", min_length=1,
                               validation_alias="NIGHTCREW_TRIGGER_LABEL")
    app_slug: str = Field(default="nightcrew", min_length=1, validation_alias="NIGHTCREW_APP_SLUG")
    # Strong plans, cheaper executes, cheapest summarizes; a repo's `models:` overrides each.
    planner_model: str = Field(default="claude-opus-4-5", validation_alias="NIGHTCREW_MODEL")
    executor_model: str = Field(default="claude-sonnet-4-5", validation_alias="NIGHTCREW_EXECUTOR_MODEL")
    summarizer_model: str = Field(default="claude-haiku-4-5",
                                  validation_alias="NIGHTCREW_SUMMARIZER_MODEL")
    cap_per_installation: int = Field(
        default=3, ge=1, validation_alias="NIGHTCREW_CAP_PER_INSTALLATION"
    )
    # Fleet-wide running tasks; unset = one per live worker on the task queue.
    max_running: int | None = Field(default=None, ge=1, validation_alias="NIGHTCREW_MAX_RUNNING")
    test_timeout_s: float = Field(default=600.0, gt=0, validation_alias="NIGHTCREW_TEST_TIMEOUT")
    # How fast a killed worker's task comes back: its heartbeat lapses, a worker's maintenance
    # pass notices (workers block at most worker_ttl - 15 s between passes) and re-dispatches.
    heartbeat_ttl_s: int = Field(default=20, ge=2, le=600, validation_alias="NIGHTCREW_HEARTBEAT_TTL")
    worker_ttl_s: int = Field(default=40, ge=20, le=3600, validation_alias="NIGHTCREW_WORKER_TTL")
    maintenance_interval_s: int = Field(default=15, ge=1, le=3600,
                                        validation_alias="NIGHTCREW_MAINTENANCE_INTERVAL")
    # `/nightcrew cancel|pause` on a running task: it stops itself at its next step; one that has
    # not within this many seconds (a hung command, a long model call) is killed and finished
    # from outside by a worker's maintenance pass.
    stop_grace_s: float = Field(default=60.0, ge=1.0, le=24 * 3600.0,
                                validation_alias="NIGHTCREW_STOP_GRACE_S")
    # Where a worker runs commands: bubblewrap on this host, or a container per command through
    # the Docker Engine API (DOCKER_HOST or the default socket unless NIGHTCREW_DOCKER_URL says).
    sandbox: Literal["bwrap", "docker"] = Field(default="bwrap", validation_alias="NIGHTCREW_SANDBOX")
    sandbox_image: str = Field(default=DEFAULT_SANDBOX_IMAGE, min_length=1,
                               validation_alias="NIGHTCREW_SANDBOX_IMAGE")
    docker_url: str | None = Field(default=None, validation_alias="NIGHTCREW_DOCKER_URL")

    @field_validator("webhook_secrets", mode="before")
    @classmethod
    def _split_secrets(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("private_key", "private_key_path", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        # `NIGHTCREW_PRIVATE_KEY=` in a .env template means "not this one", not an empty key.
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("private_key")
    @classmethod
    def _pem_key(cls, value: SecretStr | None) -> SecretStr | None:
        # Checked here, not at the first GitHub call: a worker with a key that cannot sign would
        # start, take tasks and fail every one of them.
        problem = None if value is None else private_key_problem(
            value.get_secret_value().replace("\\n", "\n"))
        if problem is not None:
            raise ValueError(problem)
        return value

    @field_validator("private_key_path")
    @classmethod
    def _pem_key_file(cls, value: Path | None) -> Path | None:
        if value is None:
            return None
        try:
            text = value.read_text()
        except OSError as exc:
            raise ValueError(f"cannot read {value}: {exc.strerror}") from None
        except UnicodeDecodeError:
            text = ""  # a binary (DER) file: not PEM either
        problem = private_key_problem(text)
        if problem is not None:
            raise ValueError(f"{value}: {problem}")
        return value

    @field_validator("data_dir")
    @classmethod
    def _directory(cls, value: Path) -> Path:
        if value.exists() and not value.is_dir():
            raise ValueError(f"{value} exists and is not a directory")
        return value

    @field_validator("github_api_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("sandbox", mode="before")
    @classmethod
    def _sandbox_name(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("docker_url")
    @classmethod
    def _docker_scheme(cls, value: str | None) -> str | None:
        if value and not value.startswith(DOCKER_URL_SCHEMES):
            raise ValueError(f"must start with {', '.join(DOCKER_URL_SCHEMES[:-1])} or "
                             f"{DOCKER_URL_SCHEMES[-1]}")
        return value or None

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str | None) -> str | None:
        if value and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value or None

    def app_private_key(self) -> str:
        """The App's PEM private key, from the variable or the file it names."""
        if self.private_key is not None:
            return self.private_key.get_secret_value().replace("\\n", "\n")
        if self.private_key_path is not None:
            try:
                return self.private_key_path.read_text()
            except OSError as exc:
                raise SettingsError(
                    f"NIGHTCREW_PRIVATE_KEY_PATH: cannot read {self.private_key_path}: "
                    f"{exc.strerror}"
                ) from None
        raise SettingsError("NIGHTCREW_PRIVATE_KEY or NIGHTCREW_PRIVATE_KEY_PATH is required")

    def require_webhook_secrets(self) -> list[str]:
        """The webhook secrets; the web app refuses to start without one."""
        secrets = [s.get_secret_value() for s in self.webhook_secrets]
        if not secrets:
            raise SettingsError(
                "NIGHTCREW_WEBHOOK_SECRET is required: the web app will not accept unsigned webhooks"
            )
        return secrets

    def checkpoint_key(self) -> bytes:
        """The key that signs checkpoint blocks; never the raw webhook secret (see checkpoint.py).

        A dedicated secret is better: the fallback is the newest webhook secret, and rotating it
        turns every stored checkpoint into a "tampered" one.
        """
        secret = self.checkpoint_secret.get_secret_value() if self.checkpoint_secret else ""
        if not secret and self.webhook_secrets:
            secret = self.webhook_secrets[0].get_secret_value()
        if not secret:
            raise SettingsError(
                "NIGHTCREW_CHECKPOINT_SECRET is required (or NIGHTCREW_WEBHOOK_SECRET to derive it "
                "from): checkpoints are signed"
            )
        return checkpoint_key(secret)

    def require_app(self) -> tuple[int, str]:
        """App id and private key, needed by anything that talks to GitHub as the App."""
        if self.app_id is None:
            raise SettingsError("NIGHTCREW_APP_ID is required to talk to GitHub as the App")
        return self.app_id, self.app_private_key()


def load_settings(**overrides: Any) -> Settings:
    """Read settings; turn validation errors into one line naming the variable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        name = str(first["loc"][0]) if first["loc"] else "settings"
        message = first["msg"].removeprefix("Value error, ")  # pydantic's prefix to our own
        raise SettingsError(f"{_env_name(name)}: {message}") from None


def private_key_problem(pem: str) -> str | None:
    """Why ``pem`` cannot sign the App's tokens (RS256 needs a PEM RSA private key), or None.

    The answer never quotes the key: it goes into a start-up error line.
    """
    if "-----BEGIN" not in pem:
        return ("not a PEM private key (the App's key, downloaded from its GitHub settings, "
                "starts with -----BEGIN RSA PRIVATE KEY-----)")
    if "PRIVATE KEY-----" not in pem:
        return "a public key or certificate, not the App's private key"
    try:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
    except TypeError:
        return "an encrypted private key: nightcrew needs it without a passphrase"
    except (ValueError, UnsupportedAlgorithm):
        return "not a readable PEM private key (cut short, or not a key)"
    if not isinstance(key, rsa.RSAPrivateKey):
        kind = type(key).__name__.removesuffix("PrivateKey")
        return f"not an RSA private key ({kind}); GitHub App keys are RSA"
    return None


def _env_name(field_or_alias: str) -> str:
    field = Settings.model_fields.get(field_or_alias)
    if field is not None and isinstance(field.validation_alias, str):
        return field.validation_alias
    return field_or_alias
