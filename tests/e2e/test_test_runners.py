"""Real `go test`, `cargo test` and `npm test` on tiny generated projects, detected and counted.

The runs go through a plain subprocess runner that speaks the Sandbox protocol: the point here
is the runners' real output, not the jail (tests/e2e/test_sandbox_bwrap.py covers that).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from runner.sandbox import ExecResult
from runner.testrun import TestReport, detect_test_command, run_tests

pytestmark = pytest.mark.e2e

GO_MOD = "module example.com/calc\n\ngo 1.19\n"
GO_TEST = """\
package calc

import "testing"

func add(a, b int) int { return a + b }

func TestAdd(t *testing.T) {
	if add(1, 2) != 3 {
		t.Fatal("1 + 2 != 3")
	}
}

func TestAddWrong(t *testing.T) {
	if add(2, 2) != 5 {
		t.Errorf("add(2, 2) = %d, want 5", add(2, 2))
	}
}

func TestSkipped(t *testing.T) { t.Skip("not today") }

func TestTable(t *testing.T) {
	for _, name := range []string{"one", "two"} {
		t.Run(name, func(t *testing.T) {
			if name == "two" {
				t.Error("two is wrong")
			}
		})
	}
}
"""
CARGO_TOML = '[package]\nname = "calc"\nversion = "0.1.0"\nedition = "2021"\n\n[dependencies]\n'
LIB_RS = """\
pub fn add(a: i32, b: i32) -> i32 { a + b }

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn adds() { assert_eq!(add(1, 2), 3); }
    #[test]
    fn adds_wrong() { assert_eq!(add(2, 2), 5); }
    #[test]
    #[ignore]
    fn slow() {}
}
"""
IT_RS = "#[test]\nfn integration() { assert_eq!(calc::add(3, 4), 7); }\n"
NODE_TEST = """\
const test = require('node:test');
const assert = require('node:assert');
test('adds', () => { assert.strictEqual(1 + 2, 3); });
test('adds wrong', () => { assert.strictEqual(2 + 2, 5); });
test('skipped', { skip: true }, () => {});
"""
PACKAGE_JSON = '{"name": "calc", "version": "1.0.0", "scripts": {"test": "node --test"}}\n'


class SubprocessSandbox:
    """Runs argv in the workspace with a fixed environment; no isolation, only the protocol."""

    def __init__(self, workspace: Path, env: dict[str, str]) -> None:
        self.workspace = workspace
        self.env = env

    def run(self, argv: Sequence[str], *, cwd: str = ".", timeout: float | None = None) -> ExecResult:
        started = time.monotonic()
        try:
            done = subprocess.run(list(argv), cwd=self.workspace / cwd, env=self.env, text=True,
                                  capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as exc:
            return ExecResult(137, str(exc.stdout or ""), str(exc.stderr or ""),
                              time.monotonic() - started, killed="wall_timeout")
        return ExecResult(done.returncode, done.stdout, done.stderr, time.monotonic() - started)


def toolchain_env(tmp: Path) -> dict[str, str]:
    """Caches and homes in temp dirs, and no network: GOPROXY=off, cargo offline."""
    # rustup's cargo finds its toolchains under the real home, which HOME no longer points at
    rustup = {"RUSTUP_HOME": os.environ.get("RUSTUP_HOME", str(Path.home() / ".rustup"))}
    return {**rustup,
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp / "home"), "LANG": "C.UTF-8",
        "GOCACHE": str(tmp / "gocache"), "GOPATH": str(tmp / "gopath"), "GOFLAGS": "-mod=mod",
        "GOPROXY": "off", "GOTOOLCHAIN": "local", "GOTELEMETRY": "off",
        "CARGO_HOME": str(tmp / "cargo-home"), "CARGO_TARGET_DIR": str(tmp / "cargo-target"),
        "CARGO_NET_OFFLINE": "true", "npm_config_cache": str(tmp / "npm-cache"),
        "npm_config_update_notifier": "false",
    }


def run_project(tmp_path: Path, files: dict[str, str], runner: str) -> TestReport:
    project = tmp_path / "project"
    for name, text in files.items():
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(text)
    command = detect_test_command(project)
    assert command is not None and command.runner == runner
    return run_tests(SubprocessSandbox(project, toolchain_env(tmp_path)), command, timeout=60)


def counts(report: TestReport) -> tuple[int, int, int, int]:
    return report.passed, report.failed, report.errors, report.skipped


def require(tool: str) -> None:
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed on this machine")


def test_go_test_counts_leaf_tests(tmp_path: Path) -> None:
    require("go")
    report = run_project(tmp_path, {"go.mod": GO_MOD, "calc_test.go": GO_TEST}, "go")
    # TestAdd and TestTable/one pass; TestAddWrong and TestTable/two fail; TestTable is their parent
    assert counts(report) == (2, 2, 0, 1), report.output
    assert report.exit_code == 1 and not report.green


def test_go_build_failure_is_an_error(tmp_path: Path) -> None:
    require("go")
    broken = GO_TEST.replace("return a + b", "return a + undefined")
    report = run_project(tmp_path, {"go.mod": GO_MOD, "calc_test.go": broken}, "go")
    assert counts(report) == (0, 0, 1, 0), report.output


def test_cargo_test_sums_unit_and_integration_results(tmp_path: Path) -> None:
    require("cargo")
    files = {"Cargo.toml": CARGO_TOML, "src/lib.rs": LIB_RS, "tests/it.rs": IT_RS}
    report = run_project(tmp_path, files, "cargo")
    # --no-fail-fast: the integration test still runs after the unit tests failed
    assert counts(report) == (2, 1, 0, 1), report.output
    assert report.exit_code != 0 and not report.green


def test_npm_test_with_node_test_runner(tmp_path: Path) -> None:
    require("npm")
    report = run_project(tmp_path, {"package.json": PACKAGE_JSON, "calc.test.js": NODE_TEST}, "npm")
    assert counts(report) == (1, 1, 0, 1), report.output
