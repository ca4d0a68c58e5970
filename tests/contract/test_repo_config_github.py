"""Repo config read through the real adapter (`GitHubKitHost.read_file`) from the stand-in."""

from __future__ import annotations

import pytest

from devhub import DevHub
from github_app.github import GitHubApp, GitHubError, GitHubKitHost
from github_app.repo_config import CONFIG_PATH, RepoConfig, RepoConfigError, load_repo_config
from tests.conftest import DEVHUB_APP_ID

OWNER = "octo"
CONFIG = """\
trigger_label: night-fix
budget:
  usd: 3.5   # dollars
test: pytest -q
rules:
  - Keep changes small — ünïcode survives the trip.
"""


def host_for(devhub: DevHub, app_private_key: str, repo: str, files: dict[str, str]) -> GitHubKitHost:
    devhub.install(OWNER)
    devhub.create_repo(OWNER, repo, files)
    app = GitHubApp(DEVHUB_APP_ID, app_private_key, devhub.url)
    return app.host(app.installation_for(OWNER, repo))


def test_config_is_read_from_the_repository(devhub: DevHub, app_private_key: str) -> None:
    host = host_for(devhub, app_private_key, "app", {"README.md": "# app\n", CONFIG_PATH: CONFIG})
    assert host.read_file(OWNER, "app", CONFIG_PATH) == CONFIG
    assert host.read_file(OWNER, "app", CONFIG_PATH, ref="main") == CONFIG
    config = load_repo_config(host, OWNER, "app")
    assert (config.trigger_label, config.budget.usd, config.test) == ("night-fix", 3.5, "pytest -q")
    assert config.rules == ("Keep changes small — ünïcode survives the trip.",)


def test_absent_file_means_defaults(devhub: DevHub, app_private_key: str) -> None:
    host = host_for(devhub, app_private_key, "bare", {"README.md": "# bare\n"})
    assert host.read_file(OWNER, "bare", CONFIG_PATH) is None
    assert load_repo_config(host, OWNER, "bare") == RepoConfig()


def test_yaml_extension_is_accepted_too(devhub: DevHub, app_private_key: str) -> None:
    files = {".github/nightcrew.yaml": "caps:\n  per_repository: 5\n"}
    host = host_for(devhub, app_private_key, "alt", files)
    assert load_repo_config(host, OWNER, "alt").caps.per_repository == 5


def test_broken_file_is_an_error_with_the_line(devhub: DevHub, app_private_key: str) -> None:
    broken = "trigger_label: x\nbudget:\n  usd: 1\nreviw:\n  on_open: false\n"
    host = host_for(devhub, app_private_key, "broken", {CONFIG_PATH: broken})
    with pytest.raises(RepoConfigError) as caught:
        load_repo_config(host, OWNER, "broken")
    assert (caught.value.field, caught.value.line) == ("reviw", 4)
    assert "did you mean 'review'" in str(caught.value)


def test_a_directory_is_not_a_file(devhub: DevHub, app_private_key: str) -> None:
    host = host_for(devhub, app_private_key, "dir", {CONFIG_PATH: "test: make\n"})
    with pytest.raises(GitHubError, match="not a file"):
        host.read_file(OWNER, "dir", ".github")
