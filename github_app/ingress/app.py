"""The web app: ``POST /webhooks`` and ``GET /healthz``.

Ingress makes no GitHub API call: verify, parse, route, append to the inbox (one Redis round
trip, which is also the dedupe), answer. Workers turn inbox entries into intake jobs.
Serve with ``uvicorn --factory github_app.ingress.app:create_app`` or ``nightcrew serve``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import re
from collections.abc import AsyncIterator
from typing import Any

import redis
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from github_app import logs
from github_app.ingress.events import IssuesEvent, parse_event
from github_app.ingress.inbox import DELIVERY_TTL_S, BatchingInbox, Entry
from github_app.ingress.routing import (
    Command,
    Ignore,
    InstallationChange,
    MalformedPayload,
    Route,
    UnknownCommand,
    route,
)
from github_app.ingress.signatures import verify
from github_app.queue.jobqueue import INSTALLATION_JOB, INTAKE_JOB
from github_app.queue.label_cache import TriggerLabels
from github_app.queue.payloads import IntakeJob
from github_app.redis_conn import connect_url
from github_app.redis_conn import redis_url as configured_redis_url
from github_app.settings import Settings, load_settings

MAX_BODY_BYTES = 25 * 1024 * 1024  # GitHub caps payloads at 25 MB
_PLAIN_DELIVERY = re.compile(r"[A-Za-z0-9-]{1,64}")
log = logs.get("nightcrew.ingress")


def create_app(
    settings: Settings | None = None,
    *,
    redis_url: str | None = None,
) -> FastAPI:
    """Build the web app; refuses to start without a webhook secret or a reachable Redis."""
    settings = settings or load_settings()
    secrets = settings.require_webhook_secrets()
    url = redis_url or configured_redis_url(settings)
    connection = connect_url(url)
    inbox = BatchingInbox(url, keep_s=DELIVERY_TTL_S)
    labels = TriggerLabels(connection)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await inbox.aclose()

    app = FastAPI(title="nightcrew", docs_url=None, redoc_url=None, openapi_url=None,
                  lifespan=lifespan)

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        try:
            redis_ok = bool(connection.ping())
        except redis.RedisError:
            redis_ok = False
        return {"ok": redis_ok, "redis": redis_ok}

    @app.post("/webhooks")
    async def webhooks(request: Request) -> JSONResponse:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            return _answer(413, "payload too large")
        body = await _read_capped(request)
        if body is None:
            return _answer(413, "payload too large")
        if not verify(secrets, body, request.headers.get("x-hub-signature-256")):
            log.warning("webhook.bad_signature", delivery=request.headers.get("x-github-delivery"))
            return _answer(401, "bad or missing X-Hub-Signature-256")
        event = request.headers.get("x-github-event", "")
        delivery = request.headers.get("x-github-delivery", "")
        if not event:
            return _answer(400, "X-GitHub-Event is required")
        try:
            decision, label = _decide(event, body, labels, settings)
        except MalformedPayload as exc:
            return _answer(400, f"malformed {event} payload: {exc}")
        if isinstance(decision, Ignore):
            log.info("webhook.ignored", github_event=event, delivery=delivery, reason=decision.reason)
            return _answer(202, decision.reason, ignored=True)
        func, args, what = _job(decision, delivery, label)
        try:
            # The delivery id is the intake job's id: dedupe and append are one atomic step,
            # so a redelivery is never lost to a half-done write nor run twice.
            first = await inbox.accept(Entry(_delivery_job_id(delivery, body), func, args))
        except redis.RedisError:
            log.error("webhook.enqueue_failed", github_event=event, delivery=delivery)
            return _answer(503, "queue unavailable; redeliver later")
        if not first:
            log.info("webhook.duplicate", github_event=event, delivery=delivery)
            return _answer(200, "duplicate delivery", duplicate=True)
        log.info("webhook.enqueued", github_event=event, delivery=delivery, task=what)
        return _answer(202, "queued", task=what)

    return app


async def _read_capped(request: Request) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _delivery_job_id(delivery: str, body: bytes) -> str:
    """An RQ-safe job id for a delivery: GitHub's GUIDs as they are, anything else hashed."""
    if _PLAIN_DELIVERY.fullmatch(delivery):
        return f"delivery-{delivery}"
    # A missing or odd delivery id: hash it with the body, so a retry of the same delivery is
    # still recognised and two different deliveries never collide.
    digest = hashlib.sha256(delivery.encode() + b"\0" + body).hexdigest()[:40]
    return f"delivery-h{digest}"


def _decide(
    event: str, body: bytes, labels: TriggerLabels, settings: Settings,
) -> tuple[Route, str | None]:
    """Parse and route; a label event is judged by its repo's trigger label (cached by intake)."""
    parsed = parse_event(event, body)
    trigger_label, label = settings.trigger_label, None
    if isinstance(parsed, IssuesEvent) and parsed.label is not None:
        label = parsed.label.name
        if label != trigger_label:
            # Only a label other than the default can be a repo's own trigger; the default one
            # is routed, and intake drops it if the repo renamed its trigger.
            trigger_label = labels.get(parsed.repository.full_name, trigger_label)
    decision = route(event, parsed, trigger_label=trigger_label, app_slug=settings.app_slug)
    return decision, label


def _job(
    decision: Command | UnknownCommand | InstallationChange, delivery: str, label: str | None,
) -> tuple[str, str | dict[str, Any], str]:
    """The intake-queue job for a decision: (dotted name, JSON-safe argument, what for the log)."""
    if isinstance(decision, InstallationChange):
        return INSTALLATION_JOB, dataclasses.asdict(decision), f"installation {decision.installation_id}"
    return INTAKE_JOB, _intake_job(decision, delivery, label).to_json(), str(decision.task)


def _intake_job(decision: Command | UnknownCommand, delivery: str, label: str | None) -> IntakeJob:
    """The intake job's argument: a typed, versioned record, never a client object."""
    job = IntakeJob(task=decision.task, actor=decision.actor, delivery=delivery, label=label,
                    installation_id=decision.installation_id, comment_id=decision.comment_id,
                    kind="unknown")
    if isinstance(decision, UnknownCommand):
        return dataclasses.replace(job, args=decision.verb)
    # IntakeJob has no field yet for own_pull_request, review_id or review_comment_id.
    return dataclasses.replace(job, kind=decision.kind, args=decision.args,
                               is_pull_request=decision.is_pull_request, trigger=decision.trigger)


def _answer(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"message": message, **extra}, status_code=status)
