"""The ``nightcrew`` command line."""

from __future__ import annotations

import logging
import sys
import threading
from pathlib import Path
from typing import Annotated

import redis
import typer

from github_app import errors, logs
from github_app.redis_conn import RedisUnavailable
from github_app.settings import SettingsError, load_settings

app = typer.Typer(
    name="nightcrew", no_args_is_help=True, add_completion=False,
    help="A self-hosted GitHub App that turns labeled issues into tested pull requests.",
)


# What ends a command on purpose: a setting that cannot work, git or GitHub refusing, the model
# API failing, Redis out of reach. Each is said in one line; anything else is a bug and keeps
# its traceback.
_ENDS_A_COMMAND = (errors.NightcrewError, RedisUnavailable, redis.ConnectionError, redis.TimeoutError)
_MOST_CHARS = 1000


def main() -> None:
    """Console-script entry point: an error nightcrew raises on purpose ends in one clear line
    on stderr (exit 2 for settings, 1 for the rest), never a traceback."""
    try:
        app()
    except SettingsError as exc:
        typer.echo(f"nightcrew: configuration error: {one_line(exc)}", err=True)
        sys.exit(2)
    except _ENDS_A_COMMAND as exc:
        typer.echo(f"nightcrew: {one_line(exc)}", err=True)
        sys.exit(1)


def one_line(exc: BaseException) -> str:
    """The error's message on one line (git's stderr has several), its type when it has none."""
    text = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    text = text or type(exc).__name__
    return text if len(text) <= _MOST_CHARS else text[:_MOST_CHARS - 1] + "…"


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind.")] = 8000,
) -> None:
    """Run the web app: POST /webhooks, GET /healthz."""
    import uvicorn

    from github_app.ingress.app import create_app

    logs.configure(json=True)
    web = create_app(load_settings())  # fails fast, before binding, on a missing secret
    uvicorn.run(web, host=host, port=port, log_level="warning", access_log=False)


@app.command()
def worker(
    burst: Annotated[bool, typer.Option(help="Exit when the queues are empty.")] = False,
    intake_only: Annotated[bool, typer.Option(
        help="Work the intake queue alone (a worker for tasks starts one of these beside it).")] = False,
) -> None:
    """Run a worker on the nightcrew queues (intake first, then tasks)."""
    from runner.worker.rq_worker import run_worker

    logs.configure(json=True)
    settings = load_settings()
    settings.require_app()
    run_worker(settings, burst=burst, intake_only=intake_only)


@app.command()
def devhub(
    port: Annotated[int, typer.Option(help="Port to bind (0 = any free port).")] = 0,
    webhook_url: Annotated[str | None, typer.Option(help="Where to deliver webhooks.")] = None,
    root: Annotated[Path, typer.Option(help="Directory for the stand-in's repositories.")] = Path(
        ".nightcrew/devhub"
    ),
) -> None:
    """Run the local GitHub stand-in alone and print its URL and App credentials."""
    from runner.cli.demo import start_devhub

    logs.configure(json=False, level=logging.WARNING)
    settings = load_settings()
    secrets = [s.get_secret_value() for s in settings.webhook_secrets] or ["devhub-secret"]
    hub, key_path = start_devhub(root.resolve(), port=port, webhook_secret=secrets[0],
                                 webhook_url=webhook_url)
    typer.echo(f"devhub listening on {hub.url}")
    typer.echo(f"  NIGHTCREW_GITHUB_API_URL={hub.url}")
    typer.echo(f"  NIGHTCREW_APP_ID={hub.app_id}")
    typer.echo(f"  NIGHTCREW_PRIVATE_KEY_PATH={key_path}")
    typer.echo(f"  NIGHTCREW_WEBHOOK_SECRET={secrets[0]}")
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        hub.stop()


@app.command()
def demo(
    json_output: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    keep: Annotated[bool, typer.Option(help="Keep the demo's data directory.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the PR.")] = 180.0,
) -> None:
    """Run the whole path locally: labeled issue → webhook → worker → tested PR."""
    from runner.cli.demo import run_demo

    logs.configure(json=True, level=logging.WARNING)
    result = run_demo(json_output=json_output, keep=keep, timeout=timeout)
    raise typer.Exit(0 if result.get("ok") else 1)


@app.command()
def context(
    repo: Annotated[Path, typer.Option(help="The repository (a checkout) to gather context from.")],
    issue_file: Annotated[Path, typer.Option(help="Markdown file: `# title`, then the body.")],
    budget: Annotated[int | None, typer.Option(help="Token budget (default: the repo's config, else 4,200).")] = None,
    max_files: Annotated[int | None, typer.Option(help="Most files to quote (default: config, else 15).")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    estimate: Annotated[bool, typer.Option(help="Add the expected tokens and dollars of a run.")] = False,
) -> None:
    """Show exactly what the agent would see first, without any model call."""
    from runner.context.command import context_command

    code, text = context_command(repo, issue_file, budget, max_files, as_json=json_output,
                                 estimate=estimate)
    typer.echo(text, err=code != 0)
    raise typer.Exit(code)


@app.command(name="run")
def run_command(
    task: Annotated[str | None, typer.Argument(help="What to do, as an issue would say it.")] = None,
    repo: Annotated[Path, typer.Option(help="The local git repository to work on.")] = Path("."),
    issue_file: Annotated[Path | None, typer.Option(help="Markdown file: `# title`, then the body.")] = None,
    model: Annotated[str | None, typer.Option(
        help="`scripted:FILE` to play a script, or a model id for every role (default: per role).")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print one JSON object at the end.")] = False,
) -> None:
    """Run the agent on a local git repository, without GitHub; leaves a branch with the work."""
    from runner.cli.local_run import RunError, as_json, model_factory, read_task, render_summary, run_local

    logs.configure(json=False, level=logging.WARNING)
    settings = load_settings()
    try:
        report = run_local(repo, read_task(task, issue_file), model_factory(model),
                           data_dir=settings.data_dir.resolve(), test_timeout_s=settings.test_timeout_s,
                           model_wait_max_s=settings.model_wait_max_s)
    except RunError as exc:
        typer.echo(f"nightcrew run: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(as_json(report) if json_output else render_summary(report))
    raise typer.Exit(0 if report["outcome"] == "finished" and report["green"] else 1)


@app.command()
def review(
    base: Annotated[str, typer.Option(help="The base ref (what the pull request would merge into).")],
    head: Annotated[str, typer.Option(help="The head ref (the pull request's branch).")] = "HEAD",
    repo: Annotated[Path, typer.Option(help="The local git repository.")] = Path("."),
    findings: Annotated[Path | None, typer.Option(help="A JSON list of findings to place.")] = None,
    model: Annotated[str | None, typer.Option(
        help="Ask the review model: `scripted:FILE`, or a model id (needs ANTHROPIC_API_KEY).")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    max_inline: Annotated[int | None, typer.Option(
        min=1, help="Most inline comments (default: the repo's config, else 10).")] = None,
) -> None:
    """Review a local range base...head without GitHub: print the review it would post."""
    from runner.cli.review import LocalRange, review_command

    logs.configure(json=False, level=logging.WARNING)
    typer.echo(review_command(LocalRange(repo, base, head), findings_file=findings, model=model,
                              as_json=json_output, max_inline=max_inline))


@app.command()
def register(
    org: Annotated[str | None, typer.Option(help="Create the App for this organization (default: your account).")] = None,
    github_url: Annotated[str | None, typer.Option(
        help="GitHub's web address (default https://github.com; GitHub Enterprise: https://HOST).")] = None,
    webhook_url: Annotated[str | None, typer.Option(
        help="The public URL GitHub delivers webhooks to (https://HOST/webhooks); none: inactive.")] = None,
    env_file: Annotated[Path, typer.Option(help="Where the credentials go.")] = Path(".env"),
    force: Annotated[bool, typer.Option(
        help="Register even though an App is configured; add to an existing .env (its other lines kept).")] = False,
    port: Annotated[int, typer.Option(help="Port of the local page on 127.0.0.1 (0 = any free port).")] = 0,
    no_browser: Annotated[bool, typer.Option(help="Print the page's URL only; do not open a browser.")] = False,
    app_yml: Annotated[Path | None, typer.Option(help="The App's manifest (default: ./app.yml).")] = None,
) -> None:
    """Create the GitHub App in one click (GitHub's manifest flow) and write its credentials to .env."""
    from runner.cli.register import register_command

    raise typer.Exit(register_command(
        github_url=github_url, org=org, webhook_url=webhook_url, env_file=env_file, force=force,
        port=port, open_browser=not no_browser, app_yml=app_yml, echo=typer.echo))


@app.command()
def reconcile(
    json_output: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Rebuild the queue from the tracker: every queued or running task Redis lost is queued again."""
    import json

    from github_app.queue.reconcile import reconcile_from_settings

    logs.configure(json=True, level=logging.WARNING)
    report = reconcile_from_settings(load_settings())
    if json_output:
        typer.echo(json.dumps({"seen": report.seen, "known": report.known,
                               "resubmitted": report.resubmitted, "refused": report.refused}))
        return
    typer.echo(f"{report.seen} active task(s) on the tracker, {report.known} known to Redis, "
               f"{len(report.resubmitted)} queued again, {len(report.refused)} refused")
    for task, why in report.refused:
        typer.echo(f"  refused {task}: {why}")


@app.command()
def action(
    phase: Annotated[str, typer.Argument(
        help="run (intake, then work), intake (record the event's request), work (the PR's "
             "review or revision, then every queued task) or finalize (the last step).")] = "run",
    job_status: Annotated[str, typer.Option(
        help="finalize: the job's status (${{ job.status }}): success, failure or cancelled.")] = "success",
    max_minutes: Annotated[float, typer.Option(
        help="work: start no queued task after this many minutes (the job's limit is 360).")] = 300.0,
) -> None:
    """Run as a GitHub Actions step: the event file routed like the App's webhooks, the task in
    this process (no Redis), outputs (conclusion, pr_url, cost_usd) and the job summary."""
    from runner.cli.action import run_action

    if phase not in ("run", "intake", "work", "finalize"):
        raise typer.BadParameter(f"unknown phase {phase!r}: run, intake, work or finalize")
    if job_status not in ("success", "failure", "cancelled"):
        raise typer.BadParameter(f"unknown job status {job_status!r}: success, failure or cancelled")
    raise typer.Exit(run_action(phase, job_status=job_status, max_minutes=max_minutes))  # type: ignore[arg-type]


@app.command()
def doctor(
    json_output: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    sandbox_only: Annotated[bool, typer.Option(
        "--sandbox-only", help="Only the sandbox and its isolation probes (the Action's self-test).",
    )] = False,
) -> None:
    """Check the installation: settings, Redis, git, rg, the sandbox and each isolation property."""
    from runner.cli.doctor import run_doctor

    raise typer.Exit(run_doctor(json_output=json_output, sandbox_only=sandbox_only))


if __name__ == "__main__":
    main()
