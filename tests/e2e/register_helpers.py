"""`nightcrew register` as a person runs it: the real command in a subprocess, its page's URL
read from what it prints, and the HTML forms a browser would submit."""

from __future__ import annotations

import os
import queue
import re
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

WAIT_S = 120  # generous: the machine is shared; nothing here depends on being fast


@dataclass
class Form:
    action: str
    fields: dict[str, str]


class _Forms(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[Form] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag == "form":
            self.forms.append(Form(values.get("action", ""), {}))
        elif tag == "input" and self.forms and "name" in values:
            self.forms[-1].fields[values["name"]] = values.get("value", "")


def only_form(page: str) -> Form:
    """The one form of a page, with its inputs' values (entities decoded, as a browser sends them)."""
    parser = _Forms()
    parser.feed(page)
    assert len(parser.forms) == 1, page
    return parser.forms[0]


def clean_env(tmp_path: Path) -> dict[str, str]:
    """The environment without any nightcrew setting (so none is configured already)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NIGHTCREW_", "REDIS_URL"))}
    return {**env, "NIGHTCREW_DATA_DIR": str(tmp_path / "data"), "PYTHONUNBUFFERED": "1"}


@dataclass
class RegisterProcess:
    """A running `nightcrew register`; ``url`` is its local page."""

    proc: subprocess.Popen[str]
    url: str = ""
    lines: list[str] = field(default_factory=list)
    _queue: queue.Queue[str | None] = field(default_factory=queue.Queue)

    def start_reading(self) -> None:
        def pump() -> None:
            assert self.proc.stdout is not None
            for line in self.proc.stdout:
                self._queue.put(line.rstrip("\n"))
            self._queue.put(None)

        threading.Thread(target=pump, daemon=True).start()
        while True:
            line = self._queue.get(timeout=WAIT_S)
            assert line is not None, f"register ended early: {self.lines} {self.stderr()}"
            self.lines.append(line)
            found = re.search(r"Open (http://127\.0\.0\.1:\d+)/ ", line)
            if found:
                self.url = found.group(1)
                return

    def finish(self) -> int:
        """Wait for the command to end; its exit code (the rest of its output in ``lines``)."""
        code = self.proc.wait(timeout=WAIT_S)
        while (line := self._queue.get(timeout=WAIT_S)) is not None:
            self.lines.append(line)
        return code

    def stderr(self) -> str:
        return self.proc.stderr.read() if self.proc.stderr and self.proc.poll() is not None else ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=WAIT_S)


def start_register(*args: str, cwd: Path) -> RegisterProcess:
    """``nightcrew register --no-browser ARGS`` in ``cwd``, once its page is up."""
    proc = subprocess.Popen([sys.executable, "-m", "runner.cli", "register", "--no-browser", *args],
                            cwd=cwd, env=clean_env(cwd), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    running = RegisterProcess(proc)
    try:
        running.start_reading()
    except BaseException:
        running.stop()
        raise
    return running
