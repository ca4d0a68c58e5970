"""The App's credentials written to a ``.env`` file: mode 0600, atomically, never over one
that exists unless asked.

The names are the ones ``github_app.settings`` reads (``NIGHTCREW_APP_ID``,
``NIGHTCREW_PRIVATE_KEY``, ``NIGHTCREW_WEBHOOK_SECRET``, ``NIGHTCREW_APP_SLUG``,
``NIGHTCREW_GITHUB_API_URL``), plus the OAuth client id and secret, kept for what needs them.
The file is written whole to a temporary file beside it and moved into place, so a reader
sees the old file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from dotenv.parser import parse_stream

from github_app import errors
from github_app.manifest import AppCredentials

MODE = 0o600
# Written by `nightcrew register`; a forced rewrite replaces these and keeps every other line.
OWN_KEYS = ("NIGHTCREW_APP_ID", "NIGHTCREW_APP_SLUG", "NIGHTCREW_GITHUB_API_URL",
            "NIGHTCREW_WEBHOOK_SECRET", "NIGHTCREW_CLIENT_ID", "NIGHTCREW_CLIENT_SECRET",
            "NIGHTCREW_PRIVATE_KEY")
# Left out of a forced rewrite too: they would name an earlier App's key or derive from its secret.
REPLACED_KEYS = (*OWN_KEYS, "NIGHTCREW_PRIVATE_KEY_PATH")


class EnvFileExists(errors.NightcrewError):
    """The ``.env`` file exists and overwriting it was not asked for."""


def render(credentials: AppCredentials, api_url: str, *, now: datetime | None = None) -> str:
    """The lines for one App (the key as one double-quoted line with ``\\n`` escapes)."""
    stamp = (now or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"# The GitHub App {credentials.name!r} ({credentials.html_url}), "
        f"registered by `nightcrew register` on {stamp}.",
        f"NIGHTCREW_APP_ID={credentials.id}",
        f"NIGHTCREW_APP_SLUG={credentials.slug}" if credentials.slug else "",
        f"NIGHTCREW_GITHUB_API_URL={api_url}",
        f"NIGHTCREW_WEBHOOK_SECRET={credentials.webhook_secret}" if credentials.webhook_secret else "",
        f"NIGHTCREW_CLIENT_ID={credentials.client_id}",
        f"NIGHTCREW_CLIENT_SECRET={credentials.client_secret}",
        f'NIGHTCREW_PRIVATE_KEY="{_escaped(credentials.pem)}"',
    ]
    return "".join(line + "\n" for line in lines if line)


def kept_lines(existing: str) -> str:
    """The lines of an existing file a rewrite keeps: all but the App's own settings."""
    kept = [binding.original.string for binding in parse_stream(io.StringIO(existing))
            if binding.key not in REPLACED_KEYS]
    text = "".join(kept)
    return text if not text or text.endswith("\n") else text + "\n"


def write(path: Path, text: str, *, force: bool) -> None:
    """Write ``text`` to ``path`` with mode 0600, atomically.

    Without ``force`` an existing file is left as it is (``EnvFileExists``), also when one
    appears while this runs: the new file is linked into place, which fails if the name is taken.
    With ``force`` it replaces the old file in one rename.
    """
    path = path.absolute()
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with _exclusive(temporary) as handle:
        handle.write(text.encode("utf-8"))
        handle.flush()
        os.fsync(handle.fileno())
    try:
        if force:
            os.replace(temporary, path)
        else:
            try:
                os.link(temporary, path)
            except FileExistsError:
                raise EnvFileExists(f"{path} exists; nightcrew register --force replaces it") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
    _sync_directory(path.parent)


@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[BinaryIO]:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # a leftover of a run that was killed
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, MODE)
    os.fchmod(fd, MODE)  # whatever the umask says
    with os.fdopen(fd, "wb") as handle:
        yield handle


def _sync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _escaped(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
