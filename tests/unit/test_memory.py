"""The failure log: what went wrong on a repository, remembered for the next task."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runner.agent.failure_log import FailureLog, FailureRecord


def rec(n: int, *, tried: str = "patched the parser", why: str = "tests still red") -> FailureRecord:
    return FailureRecord(task=f"issue #{n}", at=f"2026-11-{n % 28 + 1:02d}T03:00:00+00:00",
                         tried=tried, failed="halted", why=why)


def test_records_come_back_newest_first(tmp_path: Path) -> None:
    log = FailureLog(tmp_path, "octo", "repo")
    for n in range(1, 8):
        log.record(rec(n))
    assert [r.task for r in log.recent()] == [f"issue #{n}" for n in (7, 6, 5, 4, 3)]
    assert log.recent(2) == [rec(7), rec(6)]
    assert log.path == tmp_path / "memory" / "octo" / "repo.jsonl"


def test_an_empty_log_has_nothing(tmp_path: Path) -> None:
    log = FailureLog(tmp_path, "octo", "repo")
    assert log.recent() == []
    assert log.render() == []


def test_repositories_have_separate_logs_and_names_are_case_insensitive(tmp_path: Path) -> None:
    FailureLog(tmp_path, "Octo", "Repo").record(rec(1))
    assert FailureLog(tmp_path, "octo", "repo").recent() == [rec(1)]
    assert FailureLog(tmp_path, "octo", "other").recent() == []


@pytest.mark.parametrize(("owner", "repo"), [
    ("..", "repo"), ("octo", ".."), ("octo", "../../etc/passwd"), ("a/b", "repo"), ("", "repo"),
    ("octo", "re\\po"), ("octo", "re\x00po"),
])
def test_names_that_could_leave_the_directory_are_refused(tmp_path: Path, owner: str, repo: str) -> None:
    with pytest.raises(ValueError):
        FailureLog(tmp_path, owner, repo)


def test_corrupt_lines_are_skipped(tmp_path: Path) -> None:
    log = FailureLog(tmp_path, "octo", "repo")
    log.record(rec(1))
    with log.path.open("a") as f:
        f.write("{not json\n")
        f.write(json.dumps({"task": "issue #9", "at": 5}) + "\n")
        f.write("[1, 2]\n")
    log.record(rec(2))
    assert log.recent() == [rec(2), rec(1)]


def test_the_file_stays_bounded(tmp_path: Path) -> None:
    log = FailureLog(tmp_path, "octo", "repo", keep=10)
    for n in range(200):
        log.record(rec(n))
    lines = log.path.read_text().splitlines()
    assert len(lines) <= 10 + 50
    assert json.loads(lines[-1])["task"] == "issue #199"
    assert log.recent(1) == [rec(199)]


def test_each_record_is_one_line_even_with_newlines_inside(tmp_path: Path) -> None:
    log = FailureLog(tmp_path, "octo", "repo")
    log.record(rec(1, tried="1. read\n2. edit\n3. test"))
    assert len(log.path.read_text().splitlines()) == 1
    assert log.recent()[0].tried == "1. read\n2. edit\n3. test"


def test_render_gives_one_prompt_line_per_failure(tmp_path: Path) -> None:
    log = FailureLog(tmp_path, "octo", "repo")
    log.record(FailureRecord("issue #12", "2026-11-20T03:00:00+00:00",
                             "1. fix the regex\n2. run tests", "halted", "same failure 4 times"))
    assert log.render() == [
        "issue #12 (2026-11-20): tried 1. fix the regex 2. run tests; failed: halted; "
        "why: same failure 4 times"]


def test_render_fits_max_chars(tmp_path: Path) -> None:
    log = FailureLog(tmp_path, "octo", "repo")
    for n in range(5):
        log.record(rec(n, tried="x" * 500, why="y" * 500))
    lines = log.render(max_chars=1500)
    assert sum(len(line) for line in lines) <= 1500
    assert lines[0].startswith("issue #4 (")
    assert all("\n" not in line for line in lines)
    assert len(log.render(max_chars=100)) == 1


def test_concurrent_writers_neither_lose_nor_mangle_lines(tmp_path: Path) -> None:
    import threading

    def write(worker: int) -> None:
        log = FailureLog(tmp_path, "octo", "repo", keep=1000)
        for n in range(50):
            log.record(rec(n, tried=f"worker {worker}"))

    threads = [threading.Thread(target=write, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = FailureLog(tmp_path, "octo", "repo").path.read_text().splitlines()
    assert len(lines) == 400
    assert all(json.loads(line)["failed"] == "halted" for line in lines)
