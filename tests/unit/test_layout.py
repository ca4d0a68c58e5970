"""The layering DESIGN.md promises, held by reading every product module's imports.

``github_app`` never imports ``runner``; the GitHub stand-in (``devhub``) and the model fakes
(``runner.fakes``) reach product code only where a command needs them; only adapters touch the
I/O SDKs and Redis; the tracker knows nothing of the queue. The lists below are the truth as
built: an import that is new, or one that is gone, fails a test until the list says so.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("github_app", "runner", "devhub")
ADAPTER_ONLY = {"githubkit", "anthropic", "rq", "subprocess", "docker"}
# The adapters, and the wiring points (worker entry, demo, doctor) that start processes and read RQ.
ADAPTERS = {
    "github_app/github.py": {"githubkit"},
    "github_app/manifest_conversion.py": {"githubkit"},  # the manifest code, traded without credentials
    "github_app/queue/jobqueue.py": {"rq"},
    "github_app/redis_conn.py": {"subprocess"},
    "devhub/git_http.py": {"subprocess"},
    "runner/model/anthropic.py": {"anthropic"},
    "runner/sandbox/bwrap.py": {"subprocess"},
    "runner/sandbox/docker.py": {"docker"},
    "runner/workspace.py": {"subprocess"},
    "runner/worker/procs.py": {"subprocess"},
    "runner/worker/rq_worker.py": {"rq"},
    "runner/cli/demo.py": {"rq"},
    "runner/cli/doctor.py": {"subprocess"},
    "runner/cli/review.py": {"subprocess"},  # `nightcrew review` diffs a local range with git
    "runner/context/rg.py": {"subprocess"},
}
# Redis holds the queue, locks, controls and the live event stream; nothing else talks to it.
REDIS_USERS = {
    "github_app/redis_conn.py",  # the connection (a real server, or the embedded one)
    "github_app/wiring.py",
    "github_app/ingress/app.py",
    "github_app/ingress/inbox.py",
    "github_app/queue/controls.py",
    "github_app/queue/installations.py",
    "github_app/queue/intake.py",
    "github_app/queue/jobqueue.py",
    "github_app/queue/label_cache.py",
    "github_app/queue/model_hold.py",
    "github_app/queue/reconcile.py",
    "github_app/queue/reviews.py",  # one review round running and one waiting per PR
    "github_app/queue/scheduler.py",
    "github_app/queue/stopper.py",
    "github_app/tracker/eventlog.py",  # the live event stream beside the JSONL file
    "runner/wiring.py",
    "runner/worker/rq_worker.py",
    "runner/worker/model_keys.py",
    "runner/cli/demo.py",
    "runner/cli/doctor.py",
    "runner/cli/main.py",  # ends a command on Redis being out of reach, in one line
}
# `nightcrew demo` and `nightcrew devhub` (through `runner.cli.demo.start_devhub`); tests and
# bench are free to use the stand-in.
DEVHUB_USERS = {"runner/cli/demo.py"}
# The demo and `nightcrew run --model scripted:FILE` use the model fakes; tests and bench too.
# (The one token estimate lives in `runner.context.tokens`; the script format, the cache
# simulation and the recorder are fakes: no other product module imports them.)
FAKES_USERS = {"runner/cli/demo.py", "runner/cli/local_run.py"}
# Ingress enqueues intake jobs (job names, the typed payload) and reads the trigger-label cache.
INGRESS_FROM_QUEUE = {"github_app.queue.jobqueue", "github_app.queue.label_cache",
                      "github_app.queue.payloads"}


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


@cache
def imported_modules(path: Path) -> frozenset[str]:
    """Every module ``path`` imports, anywhere in it; ``from a import b`` gives ``a`` and ``a.b``
    (``b`` may be a module), relative imports resolved."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *(node.module.split(".") if node.module else [])])
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return frozenset(found)


def imported_roots(path: Path) -> set[str]:
    return {name.split(".")[0] for name in imported_modules(path)}


def modules(*packages: str) -> list[Path]:
    return sorted(path for package in packages for path in (ROOT / package).rglob("*.py"))


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def under(names: frozenset[str] | set[str], prefix: str) -> set[str]:
    return {name for name in names if name == prefix or name.startswith(prefix + ".")}


def importers(prefix: str, *packages: str) -> set[str]:
    """The modules of ``packages`` that import ``prefix`` or anything below it."""
    return {rel(path) for path in modules(*packages) if under(imported_modules(path), prefix)}


def test_github_app_never_imports_runner() -> None:
    assert importers("runner", "github_app") == set()


def test_devhub_is_standalone() -> None:
    # The stand-in speaks GitHub's API; it knows nothing of the code that talks to it.
    assert importers("github_app", "devhub") == set()
    assert importers("runner", "devhub") == set()


def test_only_the_demo_commands_import_devhub() -> None:
    assert importers("devhub", "github_app", "runner") == DEVHUB_USERS


def test_only_the_demo_and_the_local_run_import_the_fakes() -> None:
    users = {name for name in importers("runner.fakes", *PRODUCT) if not name.startswith("runner/fakes/")}
    assert users == FAKES_USERS


def test_only_the_listed_modules_import_redis() -> None:
    assert importers("redis", *PRODUCT) == REDIS_USERS


def test_only_adapters_import_sdks_and_subprocess() -> None:
    found = {rel(path): imported_roots(path) & ADAPTER_ONLY for path in modules(*PRODUCT)}
    assert {name: sdks for name, sdks in found.items() if sdks} == ADAPTERS


def stage_imports(stage: str, other: str) -> set[str]:
    """The modules of ``other`` (a dotted package) that the modules of ``stage`` import."""
    prefix = other + "."
    return {".".join(name.split(".")[: other.count(".") + 2])
            for path in modules(stage) for name in imported_modules(path) if name.startswith(prefix)}


def test_the_tracker_knows_nothing_of_the_queue_or_ingress() -> None:
    for later in ("github_app.queue", "github_app.ingress", "github_app.wiring"):
        assert importers(later, "github_app/tracker") == set(), later


def test_ingress_takes_from_the_queue_only_what_it_enqueues() -> None:
    assert stage_imports("github_app/ingress", "github_app.queue") == INGRESS_FROM_QUEUE
    assert importers("github_app.tracker", "github_app/ingress") == set()
    assert importers("github_app.wiring", "github_app/ingress") == set()


def test_the_action_runs_without_redis_or_the_queue() -> None:
    # `nightcrew action` in a workflow job: the tracker is the whole task store there.
    assert importers("redis", "runner/action") == set()
    assert importers("github_app.queue", "runner/action") == set()
    assert importers("runner.worker", "runner/action") == set()
    assert importers("runner.wiring", "runner/action") == set()


def test_the_layout_check_sees_imports() -> None:
    # Guard against a scanner that finds nothing: known imports of each spelling are seen.
    assert "githubkit" in imported_roots(ROOT / "github_app/github.py")
    assert "anthropic" in imported_roots(ROOT / "runner/model/anthropic.py")
    assert "github_app.queue.controls" in imported_modules(ROOT / "runner/wiring.py")  # from pkg import mod
    assert "runner.cli.demo" in imported_modules(ROOT / "runner/cli/main.py")  # inside a function
    assert "devhub.openapi" in imported_modules(ROOT / "devhub/webhook_schemas.py")  # relative
    assert "devhub/git_http.py" in importers("subprocess", *PRODUCT)  # devhub is scanned
    assert len(modules(*PRODUCT)) > 80
