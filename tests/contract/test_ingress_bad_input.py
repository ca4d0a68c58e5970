"""Ingress against hostile and odd deliveries: the right status, and the exact intake queue.

Real Redis and RQ (the session's embedded server); bodies start from GitHub's example payloads.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import redis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr

from devhub.webhook_schemas import webhook_example
from github_app.ingress.app import MAX_BODY_BYTES, create_app
from github_app.ingress.signatures import sign
from github_app.settings import Settings
from tests.contract.inbox_helpers import payload_of, pumped, redis_url

SECRET = "test-secret-not-real"
ROTATED = "next-secret-not-real"
Headers = list[tuple[str, str]]


@pytest.fixture
def app(connection: redis.Redis, tmp_path: Path) -> FastAPI:
    settings = Settings(webhook_secrets=[SecretStr(SECRET), SecretStr(ROTATED)], data_dir=tmp_path)
    return create_app(settings, redis_url=redis_url(connection))


@pytest.fixture
def client(app: FastAPI) -> TestClient:
    return TestClient(app)


def headers_for(body: bytes, event: str | None = "issue_comment", *, secret: str = SECRET,
                delivery: str | None = None) -> Headers:
    """What GitHub sends with a body (drop or change entries to break it)."""
    headers = [("X-Hub-Signature-256", sign(secret, body)), ("Content-Type", "application/json"),
               ("X-GitHub-Delivery", delivery or str(uuid.uuid4()))]
    return headers + ([("X-GitHub-Event", event)] if event is not None else [])


def without(headers: Headers, name: str) -> Headers:
    return [(k, v) for k, v in headers if k.lower() != name.lower()]


def comment_body(text: str = "/nightcrew fix") -> bytes:
    payload = webhook_example("issue_comment", "created")
    payload["comment"]["body"] = text
    return json.dumps(payload).encode()


def post(client: TestClient, body: bytes, headers: Headers | None = None) -> Any:
    return client.post("/webhooks", content=body, headers=headers or headers_for(body))


def queued(connection: redis.Redis) -> list[tuple[str, str, str]]:
    """The intake queue as (kind, task, args), in order."""
    jobs = pumped(connection)
    return [(p["kind"], p["task"], p["args"]) for p in map(payload_of, jobs)]


TASK = "Codertocat/Hello-World#1"  # the issue of GitHub's issue_comment example


# --- headers -----------------------------------------------------------------------------------

def test_a_good_delivery_is_queued(client: TestClient, connection: redis.Redis) -> None:
    assert post(client, comment_body("/nightcrew fix now")).status_code == 202
    assert queued(connection) == [("start", TASK, "now")]


@pytest.mark.parametrize("event", [None, ""])
def test_missing_event_header_is_400(
    client: TestClient, connection: redis.Redis, event: str | None
) -> None:
    body = comment_body()
    response = post(client, body, headers_for(body, event=event))
    assert response.status_code == 400 and "X-GitHub-Event" in response.json()["message"]
    assert queued(connection) == []


def test_unknown_headers_are_ignored(client: TestClient, connection: redis.Redis) -> None:
    body = comment_body()
    extra = [("X-Forwarded-For", "10.0.0.1"), ("X-GitHub-Hook-ID", "1"), ("X-Whatever", "?")]
    assert post(client, body, headers_for(body) + extra).status_code == 202
    assert queued(connection) == [("start", TASK, "")]


def test_content_type_is_not_what_authenticates(client: TestClient, connection: redis.Redis) -> None:
    body = comment_body()
    headers = without(headers_for(body), "Content-Type") + [("Content-Type", "text/plain")]
    assert post(client, body, headers).status_code == 202
    assert queued(connection) == [("start", TASK, "")]


def test_event_names_are_exact(client: TestClient, connection: redis.Redis) -> None:
    # GitHub sends lower-case names; "Issue_Comment" is no event nightcrew handles.
    body = comment_body()
    response = post(client, body, headers_for(body, event="Issue_Comment"))
    assert response.status_code == 202 and response.json()["ignored"] is True
    assert queued(connection) == []


def test_without_a_delivery_id_the_delivery_is_still_taken(
    client: TestClient, connection: redis.Redis
) -> None:
    # GitHub always sends one; without it there is no redelivery check, the intake's
    # one-live-task-per-issue rule is what remains.
    body = comment_body()
    assert post(client, body, without(headers_for(body), "X-GitHub-Delivery")).status_code == 202
    assert queued(connection) == [("start", TASK, "")]


# --- signatures --------------------------------------------------------------------------------

def _signature_cases() -> list[Any]:
    body = comment_body()
    good = sign(SECRET, body)
    sha1 = "sha1=" + hmac.new(SECRET.encode(), body, hashlib.sha1).hexdigest()
    return [
        pytest.param([], id="none"),
        pytest.param([good.removeprefix("sha256=")], id="no sha256= prefix"),
        pytest.param(["sha256=" + good.removeprefix("sha256=").upper()], id="upper-case hex"),
        pytest.param([sha1], id="sha1 only"),
        pytest.param([f"{good}, {good}"], id="two in one header"),
        pytest.param(["sha256=00", good], id="bad one first"),
        pytest.param([sign(SECRET, body + b" ")], id="of another body"),
        pytest.param([sign("another-secret", body)], id="another secret"),
        pytest.param([sign("", body)], id="empty secret"),
    ]


@pytest.mark.parametrize("signatures", _signature_cases())
def test_bad_signatures_are_401_and_queue_nothing(
    client: TestClient, connection: redis.Redis, signatures: list[str]
) -> None:
    body = comment_body()
    headers = without(headers_for(body), "X-Hub-Signature-256")
    headers += [("X-Hub-Signature-256", s) for s in signatures]
    assert post(client, body, headers).status_code == 401
    assert queued(connection) == []


def test_the_first_signature_header_decides(client: TestClient, connection: redis.Redis) -> None:
    # A valid first signature authenticates the body; a junk second one adds nothing.
    body = comment_body()
    headers = headers_for(body) + [("X-Hub-Signature-256", "sha256=00")]
    assert post(client, body, headers).status_code == 202
    assert queued(connection) == [("start", TASK, "")]


def test_a_rotated_secret_is_accepted(client: TestClient, connection: redis.Redis) -> None:
    body = comment_body()
    assert post(client, body, headers_for(body, secret=ROTATED)).status_code == 202
    assert queued(connection) == [("start", TASK, "")]


def test_truncated_body(client: TestClient, connection: redis.Redis) -> None:
    body = comment_body()
    cut = body[: len(body) // 2]
    assert post(client, cut, headers_for(body)).status_code == 401  # signed before the cut
    response = post(client, cut, headers_for(cut))  # signed as cut: authentic, but not JSON
    assert response.status_code == 400 and "not JSON" in response.json()["message"]
    assert queued(connection) == []


# --- bodies ------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"action": "created", "comment": {"body": "\xff\xfe"}}', "not UTF-8"),
        (b"", "not JSON"),
        (b"payload=%7B%22action%22%3A%22created%22%7D", "not JSON"),  # a form-encoded hook
        (b"[" * 200_000 + b"]" * 200_000, "nested too deeply"),
        (b'["a JSON array"]', "must be a JSON object"),
        (b'"a JSON string"', "must be a JSON object"),
    ],
)
def test_bodies_that_are_not_json_objects_are_400(
    client: TestClient, connection: redis.Redis, body: bytes, reason: str
) -> None:
    response = post(client, body)
    assert response.status_code == 400 and reason in response.json()["message"]
    assert queued(connection) == []


@pytest.mark.parametrize(
    ("mutate", "where"),
    [
        (lambda p: p["issue"].update(number="1"), "issue.number"),
        (lambda p: p["comment"].pop("body"), "comment.body"),
        (lambda p: p["repository"].update(full_name="Hello-World"), "repository.full_name"),
        (lambda p: p.update(sender=None), "sender"),
    ],
)
def test_handled_events_missing_their_fields_are_400(
    client: TestClient, connection: redis.Redis, mutate: Callable[[dict[str, Any]], object],
    where: str,
) -> None:
    payload = json.loads(comment_body())
    mutate(payload)
    response = post(client, json.dumps(payload).encode())
    assert response.status_code == 400
    assert response.json()["message"].startswith(f"malformed issue_comment payload: {where}")
    assert queued(connection) == []


def test_unhandled_events_only_need_a_json_object(client: TestClient, connection: redis.Redis) -> None:
    body = b'{"action": 5, "sender": "not an object"}'
    response = post(client, body, headers_for(body, event="star"))
    assert response.status_code == 202 and response.json()["ignored"] is True
    assert queued(connection) == []


def _stream(chunks: int, counter: list[int]) -> AsyncIterator[bytes]:
    async def generate() -> AsyncIterator[bytes]:
        chunk = b" " * 2**20
        for _ in range(chunks):
            counter.append(1)
            yield chunk
    return generate()


def _post_streamed(app: FastAPI, chunks: int, headers: Headers, counter: list[int]) -> int:
    """POST a body of `chunks` MiB chunk by chunk, as a proxy streams it; the status code."""
    async def send() -> int:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://nightcrew") as http:
            response = await http.post("/webhooks", content=_stream(chunks, counter),
                                       headers=headers)
            return response.status_code
    return anyio.run(send)


def _streamed_signature(chunks: int) -> str:
    mac = hmac.new(SECRET.encode(), digestmod=hashlib.sha256)
    for _ in range(chunks):
        mac.update(b" " * 2**20)
    return "sha256=" + mac.hexdigest()


def test_a_26_mb_body_is_413_without_being_held(app: FastAPI, connection: redis.Redis) -> None:
    chunks = 26
    assert chunks * 2**20 > MAX_BODY_BYTES
    headers = [("X-GitHub-Event", "issues"), ("X-Hub-Signature-256", _streamed_signature(chunks))]
    counter: list[int] = []
    # Chunked, no length: ingress counts as it reads and stops past the cap.
    assert _post_streamed(app, chunks, headers, counter) == 413
    assert len(counter) == chunks
    # Declared length: answered before reading a byte.
    counter.clear()
    declared = [*headers, ("Content-Length", str(chunks * 2**20))]
    assert _post_streamed(app, chunks, declared, counter) == 413
    assert counter == []
    assert queued(connection) == []


# --- replays -----------------------------------------------------------------------------------

def test_a_replayed_delivery_is_acknowledged_once(client: TestClient, connection: redis.Redis) -> None:
    body = comment_body()
    headers = headers_for(body, delivery="72d3162e-cc78-11e3-81ab-4c9367dc0958")
    assert [post(client, body, headers).status_code for _ in range(3)] == [202, 200, 200]
    assert queued(connection) == [("start", TASK, "")]


def test_a_replay_under_a_new_delivery_id_is_queued_again(
    client: TestClient, connection: redis.Redis
) -> None:
    # The signature covers the body, not the headers: only the intake's one-live-task-per-issue
    # rule stops a replayed body with a fresh X-GitHub-Delivery.
    body = comment_body()
    assert post(client, body).status_code == post(client, body).status_code == 202
    assert queued(connection) == [("start", TASK, ""), ("start", TASK, "")]


# --- comments: size and spelling ---------------------------------------------------------------

def test_a_megabyte_comment_with_the_command_at_the_top(
    client: TestClient, connection: redis.Redis
) -> None:
    top = comment_body("/nightcrew fix keep it small\n" + "pasted log line\n" * 2**16)
    bottom = comment_body("pasted log line\n" * 2**16 + "/nightcrew fix")
    assert len(top) > 2**20
    assert post(client, top).status_code == 202
    response = post(client, bottom)
    assert response.status_code == 202 and response.json()["ignored"] is True
    assert queued(connection) == [("start", TASK, "keep it small")]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/NightCrew   fix", ("start", "")),
        ("\u200b/nightcrew fix", ("start", "")),
        ("\ufeff\t/nightcrew\u00a0STATUS", ("status", "")),
        ("/nightcrew budget +$5\r\n", ("budget", "+$5")),
        ("/nightcrew budget $5", ("budget", "$5")),
        ("@NightCrew please fix this", ("start", "please fix this")),
        ("/nightcrew frobnicate", ("unknown", "frobnicate")),
    ],
)
def test_commands_with_odd_spelling_are_queued(
    client: TestClient, connection: redis.Redis, text: str, expected: tuple[str, str]
) -> None:
    assert post(client, comment_body(text)).status_code == 202
    assert queued(connection) == [(expected[0], TASK, expected[1])]


@pytest.mark.parametrize(
    "text", ["/nightcrew-ish", "> /nightcrew fix", "mail me@nightcrew.dev", "```\n/nightcrew fix\n```"]
)
def test_lookalikes_queue_nothing(client: TestClient, connection: redis.Redis, text: str) -> None:
    response = post(client, comment_body(text))
    assert response.status_code == 202 and response.json()["ignored"] is True
    assert queued(connection) == []


def test_nightcrews_own_comment_never_queues(client: TestClient, connection: redis.Redis) -> None:
    payload = json.loads(comment_body("/nightcrew fix\n@nightcrew fix"))
    payload["sender"].update(login="nightcrew[bot]", type="Bot")
    payload["comment"]["user"].update(login="nightcrew[bot]", type="Bot")
    response = post(client, json.dumps(payload).encode())
    assert response.status_code == 202 and response.json()["ignored"] is True
    assert queued(connection) == []
