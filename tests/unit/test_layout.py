"""The layering DESIGN.md promises: github_app never imports runner; only adapters touch I/O SDKs."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ADAPTER_ONLY = {"githubkit", "anthropic", "rq", "subprocess", "docker"}
# The adapters, and the two wiring points (worker entry, demo) that start processes and read RQ.
ADAPTERS = {
    "github_app/github.py": {"githubkit"},
    "github_app/queue/jobqueue.py": {"rq"},
    "github_app/redis_conn.py": {"subprocess"},
    "devhub/git_http.py": {"subprocess"},
    "runner/model/anthropic.py": {"anthropic"},
    "runner/sandbox/bwrap.py": {"subprocess"},
    "runner/sandbox/cgroups.py": {"subprocess"},
    "runner/sandbox/docker.py": {"docker"},
    "runner/workspace.py": {"subprocess"},
    "runner/worker/procs.py": {"subprocess"},
    "runner/worker/rq_worker.py": {"rq"},
    "runner/cli/demo.py": {"rq"},
    "runner/cli/doctor.py": {"subprocess"},
    "runner/context/rg.py": {"subprocess"},
}


def imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def test_github_app_never_imports_runner() -> None:
    offenders = [str(p.relative_to(ROOT)) for p in modules("github_app") if "runner" in imported_roots(p)]
    assert offenders == []


def test_only_adapters_import_sdks_and_subprocess() -> None:
    offenders = {}
    for path in modules("github_app") + modules("runner"):
        name = str(path.relative_to(ROOT))
        extra = (imported_roots(path) & ADAPTER_ONLY) - ADAPTERS.get(name, set())
        if extra:
            offenders[name] = sorted(extra)
    assert offenders == {}


def test_the_layout_check_sees_imports() -> None:
    # Guard against a scanner that finds nothing: the known adapters really import their SDKs.
    assert "githubkit" in imported_roots(ROOT / "github_app/github.py")
    assert "anthropic" in imported_roots(ROOT / "runner/model/anthropic.py")
