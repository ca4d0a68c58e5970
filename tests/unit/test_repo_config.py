"""`.github/nightcrew.yml`: strict schema, errors that name the field and the line, safe YAML."""

from __future__ import annotations

import pytest

from github_app.repo_config import (
    CONFIG_ERROR_MARKER,
    CONFIG_PATH,
    MAX_CONFIG_BYTES,
    RepoConfig,
    RepoConfigError,
    load_repo_config,
    parse_repo_config,
    render_config_error,
)
from github_app.trust import check_actor
from tests.unit.fakes import FakeHost

FULL = """\
# every setting, as a user would write it
trigger_label: fix-me
allowed:
  min_permission: maintain
  users: [Alice]
  deny_users: [mallory]
caps:
  per_repository: 4
budget:
  usd: 7.5
  tokens: 500000
  wall_minutes: 30
  steps: 80
models:
  planner: claude-opus-4-5
  executor: claude-sonnet-4-5
setup:
  - pip install -e .[dev]
test: pytest -q
approval:
  require_for: [dependencies, workflows]
rules:
  - Type every function.
review:
  self_review: false
  on_open: no
  model: claude-haiku-4-5
  max_inline_comments: 4
  max_rounds: 1
  fix_severity: medium
"""


def error_for(text: str) -> RepoConfigError:
    with pytest.raises(RepoConfigError) as caught:
        parse_repo_config(text)
    return caught.value


def test_defaults_when_the_file_is_empty_or_only_comments() -> None:
    for text in ("", "\n\n", "# nothing yet\n  # still nothing\n", "---\n"):
        assert parse_repo_config(text) == RepoConfig()
    config = RepoConfig()
    assert config.trigger_label == "nightcrew" and config.caps.per_repository == 2
    assert (config.budget.usd, config.budget.tokens) == (2.0, 2_000_000)
    assert (config.budget.wall_minutes, config.budget.steps) == (60, 50)
    assert config.allowed.min_permission == "write" and config.test is None
    assert set(config.approval.require_for) == {"dependencies", "workflows", "security", "architecture"}
    assert config.review.self_review and not config.review.on_open
    assert (config.review.max_inline_comments, config.review.max_rounds) == (10, 2)
    assert config.review.fix_severity == "high" and config.review.model is None


def test_every_field_is_read() -> None:
    config = parse_repo_config(FULL)
    assert config.trigger_label == "fix-me"
    assert config.allowed.min_permission == "maintain" and config.allowed.users == ("alice",)
    assert config.caps.per_repository == 4
    assert (config.budget.usd, config.budget.tokens, config.budget.steps) == (7.5, 500_000, 80)
    assert config.budget.wall_minutes == 30
    assert config.models.model_for("planner", "srv") == "claude-opus-4-5"
    assert config.models.model_for("summarizer", "srv") == "srv"  # unset: the server's model
    assert config.setup == ("pip install -e .[dev]",) and config.test == "pytest -q"
    assert config.approval.require_for == ("dependencies", "workflows")
    assert config.rules == ("Type every function.",)
    assert not config.review.self_review and not config.review.on_open
    assert (config.review.max_inline_comments, config.review.max_rounds) == (4, 1)
    assert config.review.fix_severity == "medium" and config.review.model == "claude-haiku-4-5"


def test_a_partial_file_keeps_the_other_defaults() -> None:
    config = parse_repo_config("budget:\n  usd: 10\n")
    assert config.budget.usd == 10 and config.budget.steps == 50 and config.trigger_label == "nightcrew"


def test_trigger_policy_feeds_the_trust_check() -> None:
    allowed = parse_repo_config(FULL).allowed
    def refused(actor: str, permission: str) -> bool:
        return check_actor(actor, permission, min_permission=allowed.min_permission,
                           allow_users=allowed.users, deny_users=allowed.deny_users) is not None
    assert not refused("carol", "maintain") and refused("carol", "write")
    assert not refused("ALICE", "read")  # allow-listed
    assert refused("Mallory", "admin")  # deny wins


def test_bad_value_names_the_nested_field_and_its_line() -> None:
    err = error_for("trigger_label: x\n# spend\nbudget:\n  usd: 0\n")
    assert (err.field, err.line) == ("budget.usd", 4)
    assert str(err) == ".github/nightcrew.yml line 4: budget.usd: Input should be greater than 0"


@pytest.mark.parametrize(
    ("text", "field", "line"),
    [
        ("caps:\n  per_repository: 0\n", "caps.per_repository", 2),
        ("budget:\n  tokens: -1\n", "budget.tokens", 2),
        ("budget:\n  wall_minutes: 1.5\n", "budget.wall_minutes", 2),
        ("budget:\n  steps: yes\n", "budget.steps", 2),  # YAML's `yes` is a boolean, not 1
        ("budget:\n  usd: .inf\n", "budget.usd", 2),
        ("allowed:\n  min_permission: owner\n", "allowed.min_permission", 2),
        ("trigger_label: ''\n", "trigger_label", 1),
        ("trigger_label: " + "x" * 51 + "\n", "trigger_label", 1),
        ("test: 5\n", "test", 1),
        ("setup:\n  - make\n  - 3\n", "setup[1]", 3),
        ("approval:\n  require_for:\n    - workflows\n    - deps\n", "approval.require_for[1]", 4),
        ("review:\n  on_open: maybe\n", "review.on_open", 2),
        ("models:\n  planner: 'gpt 4!'\n", "models.planner", 2),
    ],
)
def test_each_field_is_validated(text: str, field: str, line: int) -> None:
    err = error_for(text)
    assert (err.field, err.line) == (field, line), str(err)


def test_wrong_shapes_say_so_in_yaml_terms() -> None:
    err = error_for("rules: always write tests\n")
    assert (err.field, err.line, err.message) == ("rules", 1, "should be a list ('- item' lines)")
    err = error_for("\nbudget: 5\n")
    assert (err.field, err.line) == ("budget", 2) and "mapping" in err.message
    assert "quotes" in error_for("trigger_label: 42\n").message


def test_unknown_field_gets_a_suggestion_and_its_line() -> None:
    err = error_for("trigger_label: x\nbudget:\n  usd: 1\n\n\n\nreviw:\n  self_review: false\n")
    assert (err.field, err.line) == ("reviw", 7)
    assert str(err) == ".github/nightcrew.yml line 7: reviw: unknown field (did you mean 'review'?)"
    nested = error_for("budget:\n  dollars: 3\n")
    assert (nested.field, nested.line) == ("budget.dollars", 2)
    assert "known here: usd, tokens, wall_minutes, steps" in nested.message


def test_every_problem_is_reported_in_file_order() -> None:
    err = error_for("review:\n  on_open: 3\nbudget:\n  usd: 0\ncaps:\n  per_repository: 0\n")
    assert [(p.field, p.line) for p in err.problems] == [
        ("review.on_open", 2), ("budget.usd", 4), ("caps.per_repository", 6)
    ]
    assert str(err).endswith("(and 2 more)")


def test_yaml_syntax_error_gives_the_line() -> None:
    err = error_for("trigger_label: x\nsetup: [make\ntest: pytest\n")
    assert err.line == 3 and err.field is None and err.message.startswith("YAML syntax:")
    assert error_for("test: ok\nbudget:\n\tusd: 1\n").line == 3  # a tab


def test_yaml_traps_are_errors_not_surprises() -> None:
    assert error_for("test: a\ntest: b\n").message == "duplicate key (first on line 1)"
    on = error_for("review:\n  on: true\n")  # `on` is a boolean to YAML 1.1
    assert (on.field, on.line) == ("review", 2) and "quote it" in on.message
    assert "aliases" in error_for("rules: &r [a]\nsetup: *r\n").message
    assert error_for("test: a\n---\ntest: b\n").line == 2
    # A date-looking string stays a string rather than crashing the date parser.
    assert parse_repo_config("test: 2024-13-45\n").test == "2024-13-45"


@pytest.mark.parametrize("tag", ["!!python/object/apply:os.system ['true']", "!!python/name:os.system",
                                 "!!binary aGk=", "!custom x"])
def test_tags_are_refused_before_anything_is_constructed(tag: str) -> None:
    err = error_for(f"trigger_label: x\nrules: {tag}\n")
    assert err.line == 2 and "is not allowed" in err.message


def test_top_level_must_be_a_mapping() -> None:
    for text in ("- a\n- b\n", "just words\n", "42\n"):
        err = error_for(text)
        assert err.line == 1 and "must be a mapping" in err.message


def test_oversize_and_deeply_nested_files_are_refused() -> None:
    big = error_for("rules:\n" + "  - x\n" * (MAX_CONFIG_BYTES // 6 + 1))
    assert "limit is 64 KB" in big.message and big.line is None
    deep = error_for("rules: " + "[" * 5000 + "]" * 5000 + "\n")  # would overflow the composer
    assert "nested deeper" in deep.message


def test_control_characters_are_a_syntax_error_with_a_line() -> None:
    err = error_for("test: ok\nrules: [\x07]\n")
    assert err.line == 2 and "#x0007" in err.message


def test_the_comment_names_field_and_line_and_quotes_the_line() -> None:
    err = error_for("trigger_label: x\nbudget:\n  usd: 0\n")
    body = render_config_error(err)
    assert body.startswith(CONFIG_ERROR_MARKER)
    assert "did not start" in body and f"`{CONFIG_PATH}`" in body and "/nightcrew fix" in body
    assert "line 3: budget.usd: Input should be greater than 0" in body
    assert "   3 |   usd: 0" in body


def test_the_comment_cannot_be_broken_out_of_by_the_file() -> None:
    hostile = '"```\\n@everyone <img src=x>": 1\n'
    body = render_config_error(error_for(f"test: ok\n{hostile}"))
    fence = next(line for line in body.splitlines() if line.startswith("```"))
    assert fence == "````text"  # longer than the ``` inside, so it cannot close early
    before, rest = body.split(fence, 1)
    block, after = rest.split("\n````\n", 1)
    assert "@everyone" in block and "<img" in block and "\ufffd" in block  # the newline, defused
    assert "@everyone" not in before + after and "<img" not in before + after


def test_the_comment_lists_at_most_ten_problems() -> None:
    text = "".join(f"x{i}: 1\n" for i in range(14))
    body = render_config_error(error_for(text))
    assert "line 10: x9" in body and "x10" not in body and "… and 4 more" in body


def test_load_uses_defaults_only_when_no_file_exists() -> None:
    host = FakeHost()
    assert load_repo_config(host, "o", "r") == RepoConfig()
    host.files[".github/nightcrew.yaml"] = "trigger_label: alt\n"
    assert load_repo_config(host, "o", "r").trigger_label == "alt"
    host.files[CONFIG_PATH] = "trigger_label: main\n"
    assert load_repo_config(host, "o", "r").trigger_label == "main"  # .yml wins
    host.files[CONFIG_PATH] = "budget:\n  usd: -1\n"
    with pytest.raises(RepoConfigError, match=r"nightcrew\.yml line 2: budget\.usd"):
        load_repo_config(host, "o", "r")
