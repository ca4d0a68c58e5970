"""Ingress on GitHub's real webhook payloads, against a real Redis and RQ."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from devhub.webhook_schemas import webhook_example
from github_app.ingress.app import MAX_BODY_BYTES, create_app
from github_app.ingress.signatures import sign
from github_app.queue.jobqueue import INSTALLATION_JOB, INTAKE_JOB
from github_app.queue.label_cache import remember_trigger_label
from github_app.settings import Settings, SettingsError
from tests.contract.inbox_helpers import payload_of, pumped, redis_url

SECRET = "test-secret-not-real"


@pytest.fixture
def client(connection: redis.Redis, tmp_path: Path) -> TestClient:
    settings = Settings(webhook_secrets=[SECRET], data_dir=tmp_path)
    return TestClient(create_app(settings, redis_url=redis_url(connection)))


def deliver(client: TestClient, event: str, payload: dict[str, Any] | bytes, *,
            secret: str | None = SECRET, delivery: str | None = None) -> Any:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    headers = {"X-GitHub-Event": event, "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
               "Content-Type": "application/json"}
    if secret is not None:
        headers["X-Hub-Signature-256"] = sign(secret, body)
    return client.post("/webhooks", content=body, headers=headers)


def labeled_payload(label: str = "nightcrew") -> dict[str, Any]:
    payload = webhook_example("issues", "labeled")
    payload["label"]["name"] = label
    payload["sender"]["type"] = "User"
    payload["installation"] = {"id": 42, "node_id": "x"}
    return payload


def intake_jobs(connection: redis.Redis) -> list[Any]:
    return pumped(connection)


def test_real_labeled_payload_is_verified_and_enqueued(client: TestClient, connection: redis.Redis) -> None:
    payload = labeled_payload()
    response = deliver(client, "issues", payload)
    assert response.status_code == 202, response.text
    [job] = intake_jobs(connection)
    assert job.func_name == INTAKE_JOB
    args = payload_of(job)
    repo = payload["repository"]["full_name"]
    assert args["task"] == f"{repo}#{payload['issue']['number']}"
    assert args["kind"] == "start" and args["installation_id"] == 42
    assert args["actor"] == payload["sender"]["login"]
    json.dumps(args)  # job arguments stay JSON-safe


def test_real_comment_payload_with_slash_command(client: TestClient, connection: redis.Redis) -> None:
    payload = webhook_example("issue_comment", "created")
    payload["comment"]["body"] = "Could you take this?\n/nightcrew fix keep it small"
    payload["sender"]["type"] = "User"
    assert deliver(client, "issue_comment", payload).status_code == 202
    [job] = intake_jobs(connection)
    assert payload_of(job)["args"] == "keep it small"
    assert payload_of(job)["comment_id"] == payload["comment"]["id"]


@pytest.mark.parametrize("secret", [None, "wrong-secret"])
def test_unsigned_or_wrongly_signed_is_401_and_enqueues_nothing(
    client: TestClient, connection: redis.Redis, secret: str | None
) -> None:
    assert deliver(client, "issues", labeled_payload(), secret=secret).status_code == 401
    assert intake_jobs(connection) == []


def test_tampered_body_is_401(client: TestClient, connection: redis.Redis) -> None:
    body = json.dumps(labeled_payload()).encode()
    headers = {"X-GitHub-Event": "issues", "X-Hub-Signature-256": sign(SECRET, body)}
    response = client.post("/webhooks", content=body.replace(b"nightcrew", b"nightcrex"), headers=headers)
    assert response.status_code == 401 and intake_jobs(connection) == []


def test_redelivery_is_acknowledged_once(client: TestClient, connection: redis.Redis) -> None:
    delivery = str(uuid.uuid4())
    first = deliver(client, "issues", labeled_payload(), delivery=delivery)
    second = deliver(client, "issues", labeled_payload(), delivery=delivery)
    assert (first.status_code, second.status_code) == (202, 200)
    assert second.json()["duplicate"] is True
    assert len(intake_jobs(connection)) == 1
    [job] = intake_jobs(connection)
    assert job.id == f"delivery-{delivery}"  # the delivery id is remembered with its job


def test_malformed_json_is_400(client: TestClient, connection: redis.Redis) -> None:
    assert deliver(client, "issues", b"{not json").status_code == 400
    assert deliver(client, "issues", b"[1, 2]").status_code == 400
    assert intake_jobs(connection) == []


def test_payload_missing_its_repository_is_400(client: TestClient, connection: redis.Redis) -> None:
    payload = labeled_payload()
    del payload["repository"]
    response = deliver(client, "issues", payload)
    assert response.status_code == 400 and "malformed issues payload" in response.json()["message"]


def test_unhandled_events_are_202_with_reason(client: TestClient, connection: redis.Redis) -> None:
    for event, action in (("push", None), ("issues", "opened"), ("ping", None)):
        response = deliver(client, event, webhook_example(event, action))
        assert response.status_code == 202 and response.json()["ignored"] is True
    assert intake_jobs(connection) == []


def test_bot_comments_never_enqueue(client: TestClient, connection: redis.Redis) -> None:
    payload = webhook_example("issue_comment", "created")
    payload["comment"]["body"] = "/nightcrew fix"
    payload["sender"].update(login="nightcrew[bot]", type="Bot")
    assert deliver(client, "issue_comment", payload).json()["ignored"] is True
    assert intake_jobs(connection) == []


def test_oversized_body_is_413(client: TestClient, connection: redis.Redis) -> None:
    body = b" " * (MAX_BODY_BYTES + 1)
    assert deliver(client, "issues", body).status_code == 413
    assert intake_jobs(connection) == []


def test_healthz_reports_redis(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"ok": True, "redis": True}


def test_app_refuses_to_start_without_a_webhook_secret(connection: redis.Redis, tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="NIGHTCREW_WEBHOOK_SECRET"):
        create_app(Settings(data_dir=tmp_path), redis_url=redis_url(connection))


def test_installation_events_enqueue_the_installation_job(client: TestClient, connection: redis.Redis) -> None:
    payload = webhook_example("installation", "created")
    assert deliver(client, "installation", payload).status_code == 202
    [job] = intake_jobs(connection)
    assert job.func_name == INSTALLATION_JOB
    assert job.args[0]["installation_id"] == payload["installation"]["id"]
    assert job.args[0]["action"] == "created"


def test_a_repo_with_its_own_trigger_label_is_routed_by_it(client: TestClient, connection: redis.Redis) -> None:
    payload = labeled_payload("robot")
    remember_trigger_label(connection, payload["repository"]["full_name"], "robot")
    assert deliver(client, "issues", payload).status_code == 202
    [job] = intake_jobs(connection)
    assert payload_of(job)["label"] == "robot"
    assert deliver(client, "issues", labeled_payload("bug")).json()["ignored"] is True
    # The server default is still routed; intake drops it for a repo that renamed its trigger.
    assert deliver(client, "issues", labeled_payload("nightcrew")).status_code == 202
    assert [payload_of(j)["label"] for j in intake_jobs(connection)] == ["robot", "nightcrew"]


def test_deliveries_without_an_id_are_not_mistaken_for_each_other(client: TestClient, connection: redis.Redis) -> None:
    def post(payload: dict[str, Any]) -> Any:
        body = json.dumps(payload).encode()
        return client.post("/webhooks", content=body, headers={
            "X-GitHub-Event": "issues", "X-Hub-Signature-256": sign(SECRET, body)})

    first, other = labeled_payload(), labeled_payload()
    other["issue"]["number"] += 1
    assert post(first).status_code == 202 and post(other).status_code == 202
    assert post(first).status_code == 200  # the same body again: a retry, not a new task
    assert len(intake_jobs(connection)) == 2
