"""The stand-in's holds: which requests a hold catches (by method and path, by the refs a git
push updates, and only while its condition holds)."""

from __future__ import annotations

import gzip

from devhub import DevHub, Hold
from devhub.git_http import pushed_refs

OLD, NEW, ZERO = "a" * 40, "b" * 40, "0" * 40
PUSH_PATH = "/o/r.git/git-receive-pack"


def pkt(line: str) -> bytes:
    data = line.encode()
    return b"%04x" % (len(data) + 4) + data


def test_the_refs_of_a_push_are_read_from_its_commands() -> None:
    body = (pkt(f"{OLD} {NEW} refs/heads/nightcrew/issue-1\0report-status side-band-64k\n")
            + pkt(f"{NEW} {ZERO} refs/nightcrew/wip/1\n") + b"0000" + b"PACK\x00\x00\x00\x02")
    assert pushed_refs(body) == ("refs/heads/nightcrew/issue-1", "refs/nightcrew/wip/1")
    assert pushed_refs(gzip.compress(body), "gzip") == pushed_refs(body)
    assert pushed_refs(b"") == () and pushed_refs(b"zzzz") == ()


def test_a_hold_by_ref_takes_only_pushes_updating_that_ref() -> None:
    hold = Hold("POST", r"/o/r\.git/git-receive-pack", refs=r"refs/heads/.*")
    assert not hold.take("POST", PUSH_PATH, ("refs/nightcrew/wip/1",))
    assert not hold.take("POST", PUSH_PATH, None)  # not a push it could see into
    assert hold.take("POST", PUSH_PATH, ("refs/heads/nightcrew/issue-1", "refs/nightcrew/wip/1"))
    assert hold.spent and hold.arrived.is_set()
    assert not hold.take("POST", PUSH_PATH, ("refs/heads/nightcrew/issue-1",))  # count=1


def test_a_hold_without_refs_ignores_them() -> None:
    hold = Hold("POST", r"/o/r\.git/git-receive-pack", count=None)
    assert hold.matches("POST", PUSH_PATH, None) and hold.matches("POST", PUSH_PATH, ("refs/x",))
    assert not hold.matches("GET", PUSH_PATH) and not hold.spent


def test_a_hold_with_a_condition_waits_for_it(devhub: DevHub) -> None:
    ready = False
    hold = devhub.hold(Hold("PATCH", r"/repos/o/r/issues/comments/\d+", delay=0, when=lambda: ready))
    assert devhub._wait_hold("PATCH", "/repos/o/r/issues/comments/7") and hold.held == 0
    ready = True
    assert devhub._wait_hold("PATCH", "/repos/o/r/issues/comments/7") and hold.held == 1
    assert devhub._wait_hold("PATCH", "/repos/o/r/issues/comments/7") and hold.held == 1  # spent
