"""``nightcrew register``: GitHub's App manifest flow from a local page, credentials into ``.env``.

The command serves one page on 127.0.0.1 whose button POSTs ``app.yml`` (completed by
``github_app.manifest.complete``) to GitHub's "new App" page with a random ``state``. GitHub
sends the browser back to ``/callback?code=…&state=…`` here: a missing or wrong state is refused
and nothing is exchanged (the page says so, the command keeps waiting for its own answer);
the right one has its code traded for the App's credentials
(``github_app.manifest_conversion``) and written to ``.env`` (``github_app.envfile``). It
refuses to start once an App is configured, and never replaces a ``.env`` without ``--force``.
"""

from __future__ import annotations

import html
import socket
import threading
import time
import webbrowser
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import uvicorn
from fastapi import FastAPI
from starlette.responses import HTMLResponse

from github_app import envfile, errors
from github_app.github import GitHubError, Retryable
from github_app.manifest import (
    CODE_LIFETIME_S,
    AppCredentials,
    AppManifest,
    ManifestError,
    api_url,
    complete,
    load_app_yml,
    manifest_json,
    new_state,
    registration_url,
    state_matches,
    web_url,
)
from github_app.manifest_conversion import convert_manifest_code
from github_app.settings import load_settings

CHECKOUT_APP_YML = Path(__file__).resolve().parents[2] / "app.yml"
CALLBACK_PATH = "/callback"
Exchange = Callable[[str, str], AppCredentials]  # (API URL, code) → the App


class RegistrationRefused(errors.NightcrewError):
    """Registering now would lose something: an App is configured, or ``.env`` exists."""


@dataclass
class Outcome:
    """How the flow ended: the App and where its credentials went, or why not."""

    credentials: AppCredentials | None = None
    env_file: Path | None = None
    error: str | None = None


@dataclass
class Registration:
    """One registration: the manifest, its state, and what GitHub's answer led to."""

    manifest: AppManifest
    github: str  # GitHub's web URL
    org: str | None
    env_file: Path
    force: bool
    exchange: Exchange = convert_manifest_code
    state: str = field(default_factory=new_state)
    outcome: Outcome | None = None
    refused: int = 0  # redirects with a missing or wrong state
    done: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def api(self) -> str:
        return api_url(self.github)

    @property
    def form_action(self) -> str:
        return registration_url(self.github, self.org, self.state)

    def callback(self, code: str | None, state: str | None) -> tuple[int, str]:
        """GitHub's redirect: (HTTP status, page). Only this registration's state is taken."""
        if not state_matches(self.state, state) or not code:
            with self._lock:
                self.refused += 1
            return 400, _page("Not this registration", (
                "<h1 id=\"refused\">Refused: this answer is not from the registration "
                "<code>nightcrew register</code> started</h1><p>The <code>state</code> it carries "
                "is missing or wrong, so its code was not exchanged and nothing was written. Use the "
                "button on the command's own page.</p>"))
        with self._lock:
            if self.outcome is not None:
                return 409, _page("Already done", "<h1>This registration is finished</h1>"
                                  "<p>Start <code>nightcrew register</code> again for another App.</p>")
            self.outcome = self._finish(code)
        self.done.set()
        return _outcome_page(self.outcome)

    def _finish(self, code: str) -> Outcome:
        try:
            credentials = self.exchange(self.api, code)
        except Retryable as exc:
            return Outcome(error=f"{exc}. GitHub may have created the App all the same: look in your "
                           "GitHub App settings and delete it before you run nightcrew register again")
        except GitHubError as exc:
            return Outcome(error=str(exc))
        return Outcome(credentials, self._save(credentials))

    def _save(self, credentials: AppCredentials) -> Path:
        """Write the credentials; if ``.env`` appeared meanwhile, beside it (they exist once)."""
        existing = self.env_file.read_text(encoding="utf-8") if self.force and self.env_file.exists() else ""
        text = envfile.kept_lines(existing) + envfile.render(credentials, self.api)
        try:
            envfile.write(self.env_file, text, force=self.force)
            return self.env_file
        except envfile.EnvFileExists:
            aside = self.env_file.with_name(f"{self.env_file.name}.app-{credentials.id}")
            envfile.write(aside, text, force=False)
            return aside


def register_command(*, github_url: str | None, org: str | None, webhook_url: str | None,
                     env_file: Path, force: bool, port: int, open_browser: bool,
                     app_yml: Path | None, echo: Callable[[str], None]) -> int:
    """Run the flow until GitHub's answer comes back (or an hour passes); the exit code."""
    refuse_if_configured(env_file, force=force)
    github = web_url(github_url)
    declared = load_app_yml(find_app_yml(app_yml))
    with LocalPage(port) as page:
        registration = Registration(
            complete(declared, webhook_url=webhook_url, redirect_url=page.url + CALLBACK_PATH,
                     github_url=github), github, org, env_file.absolute(), force)
        page.serve(registration)
        echo(f"Open {page.url}/ and press the button to create the App on {github}"
             f"{f' for {org}' if org else ''}. Waiting (an hour at most; Ctrl-C stops).")
        if open_browser:
            webbrowser.open(page.url + "/")
        if not registration.done.wait(CODE_LIFETIME_S):
            echo("nightcrew register: no answer from GitHub within the hour; nothing was written")
            return 1
    return report(registration, echo)


def report(registration: Registration, echo: Callable[[str], None]) -> int:
    """Say what happened on the terminal; the exit code."""
    outcome = registration.outcome
    assert outcome is not None
    if outcome.credentials is None:
        echo(f"nightcrew register: {outcome.error}; nothing was written")
        return 1
    app = outcome.credentials
    echo(f"Registered the GitHub App {app.name!r} (id {app.id}) for {app.owner}.")
    if outcome.env_file != registration.env_file:
        echo(f"{registration.env_file} appeared meanwhile and was left alone: the credentials are "
             f"in {outcome.env_file} (mode 0600); move them into place.")
    else:
        echo(f"Credentials written to {outcome.env_file} (mode 0600).")
    echo(f"Install it on your repositories: {app.install_url}")
    return 0


def refuse_if_configured(env_file: Path, *, force: bool) -> None:
    """Stop before anything is created: an App is configured, or ``.env`` would be replaced."""
    if force:
        return
    settings = load_settings(_env_file=env_file)
    if settings.app_id is not None:
        raise RegistrationRefused(
            f"an App is configured already (NIGHTCREW_APP_ID={settings.app_id}, from the "
            f"environment or {env_file}); nightcrew register --force registers a new one")
    if env_file.exists():
        raise RegistrationRefused(
            f"{env_file} exists; nightcrew register --force adds the App to it (its other "
            "settings are kept)")


def find_app_yml(explicit: Path | None) -> Path:
    """``--app-yml``, else ``app.yml`` here, else the one in nightcrew's checkout."""
    for candidate in (explicit, Path("app.yml"), CHECKOUT_APP_YML):
        if candidate is not None and (candidate.is_file() or candidate is explicit):
            return candidate
    raise ManifestError("no app.yml here or in nightcrew's checkout; pass --app-yml PATH")


class LocalPage:
    """The command's web server on 127.0.0.1 (the port is bound first: it is in the manifest)."""

    def __init__(self, port: int) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._socket.bind(("127.0.0.1", port))
        except OSError as exc:
            self._socket.close()
            raise RegistrationRefused(f"--port {port}: cannot listen there ({exc.strerror})") from None
        self.url = f"http://127.0.0.1:{self._socket.getsockname()[1]}"
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def serve(self, registration: Registration) -> None:
        config = uvicorn.Config(page_app(registration), log_config=None, access_log=False,
                                lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._socket]},
                                        name="nightcrew-register", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RegistrationRefused("the local page did not start")
            time.sleep(0.01)

    def __enter__(self) -> LocalPage:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(10)
        self._socket.close()


def page_app(registration: Registration) -> FastAPI:
    """The two pages: the button (``/``) and GitHub's way back (``/callback``)."""
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

    @app.get("/")
    def start() -> HTMLResponse:
        if registration.outcome is not None:
            return HTMLResponse(_outcome_page(registration.outcome)[1])
        return HTMLResponse(start_page(registration))

    @app.get(CALLBACK_PATH)
    def callback(code: str | None = None, state: str | None = None) -> HTMLResponse:
        status, page = registration.callback(code, state)
        return HTMLResponse(page, status_code=status)

    return app


def start_page(registration: Registration) -> str:
    """The page with the button: what will be created, where, with which permissions."""
    manifest = registration.manifest
    hook = manifest.hook_attributes
    rows = "".join(f"<li><code>{html.escape(name)}</code>: {level}</li>"
                   for name, level in sorted(manifest.default_permissions.items()))
    events = ", ".join(f"<code>{html.escape(e)}</code>" for e in manifest.default_events)
    webhook = (f"<code>{html.escape(hook.url)}</code>" if hook is not None and hook.active
               else "none (inactive: an App for the Action alone)")
    account = f"the organization <b>{html.escape(registration.org)}</b>" if registration.org else "your account"
    host = urlsplit(registration.github).netloc
    return _page("Register nightcrew", f"""
<h1>Register the nightcrew GitHub App</h1>
<p>This creates the GitHub App <b id="app-name">{html.escape(manifest.name)}</b> for {account} on
<b>{html.escape(host)}</b>. GitHub shows it once more before it is created; its credentials
come back here and are written to <code>{html.escape(str(registration.env_file))}</code>
(mode 0600).</p>
<h2>Permissions</h2><ul>{rows}</ul>
<h2>Events</h2><p>{events} (GitHub also sends <code>installation</code> events to every App)</p>
<h2>Webhook</h2><p>{webhook}</p>
<form method="post" action="{html.escape(registration.form_action)}">
  <input type="hidden" name="manifest" value="{html.escape(manifest_json(manifest))}">
  <button type="submit" id="register">Create the GitHub App on {html.escape(host)}</button>
</form>""")


def _outcome_page(outcome: Outcome) -> tuple[int, str]:
    if outcome.credentials is None:
        return 400, _page("Registration failed", (
            f"<h1 id=\"failed\">GitHub did not hand over the App</h1><p>{html.escape(outcome.error or '')}"
            "</p><p>Nothing was written.</p>"))
    app = outcome.credentials
    return 200, _page("Registered", (
        f"<h1 id=\"registered\">Registered {html.escape(app.name)}</h1>"
        f"<p>Its id, private key, webhook secret and client secret are in "
        f"<code>{html.escape(str(outcome.env_file))}</code> (mode 0600).</p>"
        f"<p><a id=\"install\" href=\"{html.escape(app.install_url)}\">Install it on your "
        "repositories</a>, then start <code>nightcrew serve</code> and <code>nightcrew worker</code>.</p>"))


def _page(title: str, body: str) -> str:
    return (f"<!doctype html><html><head><meta charset=\"utf-8\"><link rel=\"icon\" href=\"data:,\"><title>{html.escape(title)} · nightcrew"
            f"</title></head><body style=\"font-family:sans-serif;max-width:42em;margin:2em auto\">"
            f"{body}</body></html>")
