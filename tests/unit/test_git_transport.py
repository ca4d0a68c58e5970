"""Which git failures are the transport's (retried, then the job waits) and which are not.

The texts are git 2.39's stderr (libcurl, ``LC_ALL=C``) as real runs printed them: against a
local server answering each status, closing or resetting the connection, a closed port, an
unknown host, a pack cut off halfway, and a real origin refusing a non-fast-forward or a missing ref.
``tests/e2e/test_git_transport.py`` produces the same failures live and checks the errors.
"""

from __future__ import annotations

import pytest

from github_app import errors
from runner.worker.jobs import through_github_waits
from runner.workspace import GitTransportError, WorkspaceError, is_transport_failure

URL = "http://127.0.0.1:40169/r.git/"

TRANSPORT = {
    "502 on info/refs": f"remote: Server Error\nfatal: unable to access '{URL}': The requested URL returned error: 502\n",
    "503 on info/refs": f"remote: Server Error\nfatal: unable to access '{URL}': The requested URL returned error: 503\n",
    "500 on info/refs": f"remote: Server Error\nfatal: unable to access '{URL}': The requested URL returned error: 500\n",
    "504 on info/refs": f"remote: Server Error\nfatal: unable to access '{URL}': The requested URL returned error: 504\n",
    "429 on info/refs": f"remote: Server Error\nfatal: unable to access '{URL}': The requested URL returned error: 429\n",
    "502 on receive-pack": ("error: RPC failed; HTTP 502 curl 22 The requested URL returned error: 502\n"
                            "send-pack: unexpected disconnect while reading sideband packet\n"
                            "fatal: the remote end hung up unexpectedly\nEverything up-to-date\n"),
    "500 on upload-pack": ("error: RPC failed; HTTP 500 curl 22 The requested URL returned error: 500\n"
                           "fatal: the remote end hung up unexpectedly\n"),
    "connection reset": f"fatal: unable to access '{URL}': Recv failure: Connection reset by peer\n",
    "connection closed": f"fatal: unable to access '{URL}': Empty reply from server\n",
    "closed port": ("fatal: unable to access 'http://127.0.0.1:9/r.git/': Failed to connect to "
                    "127.0.0.1 port 9 after 0 ms: Couldn't connect to server\n"),
    "unknown host": ("fatal: unable to access 'http://nosuchhost.invalid/r.git/': Could not resolve "
                     "host: nosuchhost.invalid\n"),
    "cut mid-pack": ("error: RPC failed; curl 18 transfer closed with 300991 bytes remaining to read\n"
                     "fetch-pack: unexpected disconnect while reading sideband packet\n"
                     "fatal: early EOF\nfatal: unpack-objects failed\n"),
}

NOT_TRANSPORT = {
    "401 without credentials": ("error: unable to read askpass response from '/bin/false'\n"
                                "fatal: could not read Username for 'http://127.0.0.1:40169': "
                                "terminal prompts disabled\n"),
    "401 with a refused token": "fatal: Authentication failed for 'http://127.0.0.1:40169/r.git/'\n",
    "403": f"remote: Server Error\nfatal: unable to access '{URL}': The requested URL returned error: 403\n",
    "404": f"remote: Server Error\nfatal: repository '{URL}' not found\n",
    "413 on receive-pack": ("error: RPC failed; HTTP 413 curl 22 The requested URL returned error: 413\n"
                            "send-pack: unexpected disconnect while reading sideband packet\n"
                            "fatal: the remote end hung up unexpectedly\nEverything up-to-date\n"),
    "non-fast-forward": (f"To {URL}\n ! [rejected]        HEAD -> y (non-fast-forward)\n"
                         f"error: failed to push some refs to '{URL}'\n"
                         "hint: Updates were rejected because a pushed branch tip is behind its remote\n"),
    "bad src ref": ("error: src refspec nosuchref does not match any\n"
                    f"error: failed to push some refs to '{URL}'\n"),
    "missing remote ref": "fatal: couldn't find remote ref refs/nope\n",
}


@pytest.mark.parametrize("stderr", TRANSPORT.values(), ids=TRANSPORT.keys())
def test_server_and_network_failures_are_the_transport(stderr: str) -> None:
    assert is_transport_failure(stderr)


@pytest.mark.parametrize("stderr", NOT_TRANSPORT.values(), ids=NOT_TRANSPORT.keys())
def test_refusals_and_bad_requests_are_not(stderr: str) -> None:
    assert not is_transport_failure(stderr)


def test_a_transport_error_is_a_retryable_workspace_error() -> None:
    error = GitTransportError("git push failed (exit 1): HTTP 502")
    assert isinstance(error, errors.Retryable) and isinstance(error, WorkspaceError)
    assert isinstance(WorkspaceError("x"), errors.NightcrewError)
    assert error.retry_after is None and not error.timed_out  # the job's own backoff applies


def test_the_job_waits_out_a_transport_error_and_runs_the_task_again() -> None:
    runs: list[bool] = []
    waited: list[float] = []

    def attempt(first: bool) -> str:
        runs.append(first)
        if len(runs) == 1:
            raise GitTransportError("git push failed (exit 1): The requested URL returned error: 502")
        return "done"

    assert through_github_waits(attempt, sleep=waited.append) == "done"
    assert runs == [True, False] and len(waited) == 1


def test_a_plain_workspace_error_is_not_waited_out() -> None:
    waited: list[float] = []

    def attempt(first: bool) -> str:
        raise WorkspaceError("git push failed (exit 1): ! [rejected] (non-fast-forward)")

    with pytest.raises(WorkspaceError):
        through_github_waits(attempt, sleep=waited.append)
    assert waited == []
