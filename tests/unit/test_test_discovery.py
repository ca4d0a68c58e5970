"""detect_test_command on small trees: the configured command first, then the detection rules."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runner.testrun import (
    CARGO_COMMAND,
    GO_COMMAND,
    NPM_COMMAND,
    PYTEST_COMMAND,
    Runner,
    TestCommand,
    as_test_command,
    detect_test_command,
    guess_runner,
)

PYTEST = TestCommand(list(PYTEST_COMMAND), "pytest")
NPM_DEFAULT_TEST = 'echo "Error: no test specified" && exit 1'  # what `npm init -y` writes


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def package_json(test_script: str | None) -> str:
    scripts = {} if test_script is None else {"test": test_script}
    return json.dumps({"name": "x", "version": "1.0.0", "scripts": scripts})


def test_detects_tests_dir(tmp_path: Path) -> None:
    (tmp_path / "tests").mkdir()
    assert detect_test_command(tmp_path) == PYTEST


def test_detects_nested_test_module(tmp_path: Path) -> None:
    write(tmp_path, {"pkg/sub/test_core.py": "def test_x(): pass\n"})
    assert detect_test_command(tmp_path) == PYTEST


def test_detects_pyproject_pytest_section(tmp_path: Path) -> None:
    write(tmp_path, {"pyproject.toml": "[tool.pytest.ini_options]\naddopts = '-q'\n"})
    assert detect_test_command(tmp_path) == PYTEST


def test_no_tests_no_command(tmp_path: Path) -> None:
    write(tmp_path, {"pyproject.toml": "[project]\nname = 'x'\n", "app.py": "print(1)\n",
                     ".venv/lib/test_vendored.py": "", "package.json": package_json(NPM_DEFAULT_TEST),
                     "Makefile": "build:\n\tcc x.c\n"})
    assert detect_test_command(tmp_path) is None


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"go.mod": "module example.com/x\n\ngo 1.19\n"}, TestCommand(list(GO_COMMAND), "go")),
        ({"Cargo.toml": "[package]\nname = 'x'\n"}, TestCommand(list(CARGO_COMMAND), "cargo")),
        ({"package.json": package_json("jest")}, TestCommand(list(NPM_COMMAND), "npm")),
        ({"tox.ini": "[tox]\nenv_list = py311\n"}, TestCommand(["tox"], "tox")),
        ({"pyproject.toml": "[tool.tox]\nenv_list = ['py311']\n"}, TestCommand(["tox"], "tox")),
        ({"noxfile.py": "import nox\n"}, TestCommand(["nox"], "nox")),
        ({"Makefile": ".PHONY: test\ntest: build\n\t./run-tests\n"}, TestCommand(["make", "test"], "make")),
        ({"Makefile": "all check test:: build\n\t./t\n"}, TestCommand(["make", "test"], "make")),
    ],
)
def test_detects_each_ecosystem(tmp_path: Path, files: dict[str, str], expected: TestCommand) -> None:
    assert detect_test_command(write(tmp_path, files)) == expected


@pytest.mark.parametrize(
    "files",
    [
        {"package.json": package_json(NPM_DEFAULT_TEST)},
        {"package.json": package_json(None)},
        {"package.json": package_json("  ")},
        {"package.json": "{not json"},
        {"package.json": "[1, 2]"},
        {"Makefile": "test := $(wildcard t/*)\nbuild:\n\tcc x.c\n"},
        {"Makefile": "test ::= x\n"},
        # make reads GNUmakefile first, so a test rule in the Makefile beside it is never run
        {"GNUmakefile": "build:\n\tcc x.c\n", "Makefile": "test:\n\t./t\n"},
    ],
)
def test_ignores_what_does_not_run_tests(tmp_path: Path, files: dict[str, str]) -> None:
    assert detect_test_command(write(tmp_path, files)) is None


@pytest.mark.parametrize(
    ("files", "runner"),
    [
        # explicit pytest config beats every other marker (a PyO3 crate's Cargo.toml, say)
        ({"pyproject.toml": "[tool.pytest.ini_options]\n", "Cargo.toml": "", "tox.ini": "[tox]\n"},
         "pytest"),
        # pytest, not tox: tox builds its own virtualenvs from the network the test phase lacks
        ({"tox.ini": "[tox]\n", "tests/test_a.py": ""}, "pytest"),
        ({"tox.ini": "[tox]\n[pytest]\naddopts = -q\n"}, "pytest"),
        ({"go.mod": "module x\n", "scripts/test_release.py": "", "Makefile": "test:\n\tgo test\n"},
         "go"),
        ({"package.json": package_json("vitest run"), "tests/test_api.py": ""}, "npm"),
        # a tests/ directory is the weakest signal: JS and C projects have one too
        ({"package.json": package_json("mocha"), "tests/x.spec.js": ""}, "npm"),
        ({"Makefile": "test:\n\t./t/run\n", "tests/run.c": ""}, "make"),
        ({"noxfile.py": "", "Makefile": "test:\n\tnox\n"}, "nox"),
    ],
)
def test_detection_order(tmp_path: Path, files: dict[str, str], runner: Runner) -> None:
    command = detect_test_command(write(tmp_path, files))
    assert command is not None and command.runner == runner


def test_configured_command_wins_and_runs_in_a_shell(tmp_path: Path) -> None:
    write(tmp_path, {"go.mod": "module x\n", "tests/test_a.py": ""})
    command = detect_test_command(tmp_path, "cd api && npx jest --ci")
    assert command == TestCommand(["sh", "-c", "cd api && npx jest --ci"], "npm")


def test_blank_configured_command_falls_back_to_detection(tmp_path: Path) -> None:
    write(tmp_path, {"go.mod": "module x\n"})
    assert detect_test_command(tmp_path, "  ") == TestCommand(list(GO_COMMAND), "go")


@pytest.mark.parametrize(
    ("command", "runner"),
    [
        ("pytest -x tests/unit", "pytest"),
        ("python -m pytest", "pytest"),
        ("uv run pytest -q", "pytest"),
        ("pip install -e . && .venv/bin/pytest", "pytest"),
        ("tox -e py311", "tox"),
        ("nox -s tests", "nox"),
        ("go test -race ./...", "go"),
        ("gotestsum -- ./...", "go"),
        ("cargo test --workspace", "cargo"),
        ("npm run test:unit", "npm"),
        ("yarn test", "npm"),
        ("node --test", "npm"),
        ("cd backend && make test", "make"),
        ("./scripts/check.sh", "custom"),
        ("go vet ./...", "custom"),  # go alone is not `go test`
        ("python -m unittest discover", "custom"),
    ],
)
def test_guesses_runner_from_a_shell_command(command: str, runner: Runner) -> None:
    assert guess_runner(command) == runner


def test_plain_argv_from_old_callers_becomes_a_test_command() -> None:
    assert as_test_command(list(PYTEST_COMMAND)) == PYTEST
    assert as_test_command(None) == PYTEST
    assert as_test_command(["cargo", "test"]).runner == "cargo"
    assert as_test_command(PYTEST) is PYTEST
