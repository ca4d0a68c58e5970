"""Signed webhook delivery, the way GitHub's Hookshot does it.

Payloads start from a real example body (`webhook_example`) and take the stand-in's objects
in place of the example's, trimmed to the example's keys: GitHub's webhook objects are not the
REST objects (e.g. no `user_view_type`, no label `archived_at`) and the schemas forbid extras.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import logging
import queue
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from devhub.webhook_schemas import webhook_example

log = logging.getLogger(__name__)
JSON = dict[str, Any]
USER_AGENT = "GitHub-Hookshot/devhub"
# Nested keys the examples may lack, but which the stand-in fills in for real.
_EXTRA_KEYS = {"pull_request", "assignee", "in_reply_to_id"}
# Keys whose example value may be null or empty: borrow the shape of a populated key.
_SHAPE_OF = {
    "assignee": "sender",
    "assignees": "sender",
    "merged_by": "sender",
    "closed_by": "sender",
    "requester": "sender",
    "requested_reviewers": "sender",
    "labels": "label",
}


def sign(secret: str, body: bytes) -> str:
    """`X-Hub-Signature-256`: HMAC-SHA256 of the exact body bytes."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def build_payload(event: str, action: str | None, objects: JSON) -> JSON:
    """A webhook body for `event`/`action`: the real example with the given objects substituted."""
    try:
        example, same_action = webhook_example(event, action), True
    except LookupError:
        # No example for this action (e.g. issues.closed): the objects of any other action of
        # the same event have the same shape.
        example, same_action = webhook_example(event, None), False
    mine = {"action": action, **objects} if action else dict(objects)
    payload = {key: _conform(value, example.get(key), key) for key, value in mine.items()}
    for key, value in example.items() if same_action else ():
        # Fill what the event carries but the stand-in does not model; never the example's
        # organization/enterprise, which would leak a foreign account into the payload.
        if key not in payload and key not in ("organization", "enterprise", "installation"):
            payload[key] = value
    return payload


def _conform(mine: Any, example: Any, key: str) -> Any:
    """`mine`, restricted to the keys GitHub sends for this object (learned from examples)."""
    template = example if _has_shape(example) else _borrowed_shape(key)
    if isinstance(mine, dict) and isinstance(template, dict):
        out = {}
        for sub, value in template.items():
            out[sub] = _conform(mine[sub], value, sub) if sub in mine else copy.deepcopy(value)
        for sub in _EXTRA_KEYS & (mine.keys() - template.keys()):
            out[sub] = _conform(mine[sub], None, sub)
        return out
    if isinstance(mine, list):
        item = template[0] if isinstance(template, list) and template else template
        return [_conform(m, item if isinstance(item, dict) else None, key) for m in mine]
    return mine


def _has_shape(value: Any) -> bool:
    return isinstance(value, dict) or (isinstance(value, list) and bool(value))


def _borrowed_shape(key: str) -> Any:
    return _templates().get(_SHAPE_OF[key]) if key in _SHAPE_OF else None


@cache
def _templates() -> dict[str, Any]:
    """The first populated example value seen under each key name, across the used events."""
    found: dict[str, Any] = {}
    for event, action in (("issues", "labeled"), ("issues", "assigned"), ("pull_request", "closed")):
        _collect(webhook_example(event, action), found)
    return found


def _collect(node: Any, found: dict[str, Any]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key not in found and isinstance(value, dict):
                found[key] = copy.deepcopy(value)
            _collect(value, found)
    elif isinstance(node, list):
        for item in node:
            _collect(item, found)


@dataclass
class Delivery:
    """One attempt to deliver a webhook, as `hub.deliveries` lists it."""

    event: str
    action: str | None
    delivery_id: str
    payload: JSON
    body: bytes
    headers: dict[str, str]
    url: str | None = None  # the hook's URL when the event happened (or was redelivered)
    status: int | None = None
    error: str | None = None
    redelivery: bool = False
    duration_s: float = 0.0


@dataclass
class _Outbox:
    jobs: queue.Queue[Delivery | None] = field(default_factory=queue.Queue)
    pending: int = 0
    idle: threading.Condition = field(default_factory=threading.Condition)


class Deliverer:
    """Sends deliveries from one worker thread, in order, and records every attempt."""

    def __init__(self, secret: str, url: str | None, *, app_id: int, hook_id: int = 1,
                 timeout: float = 10.0) -> None:
        self.url = url
        self.records: list[Delivery] = []
        self._secret = secret
        self._app_id = app_id
        self._hook_id = hook_id
        self._timeout = timeout
        self._outbox = _Outbox()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the worker thread (idempotent)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="devhub-deliveries", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Finish queued deliveries (up to `timeout`) and stop the worker."""
        if self._thread is not None:
            self._outbox.jobs.put(None)
            self._thread.join(timeout)
            self._thread = None

    def enqueue(self, event: str, action: str | None, payload: JSON) -> str:
        """Queue a new delivery of `payload`; return its delivery id."""
        body = json.dumps(payload, separators=(",", ":")).encode()
        delivery_id = str(uuid.uuid4())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "X-GitHub-Event": event,
            "X-GitHub-Delivery": delivery_id,
            "X-GitHub-Hook-ID": str(self._hook_id),
            "X-GitHub-Hook-Installation-Target-ID": str(self._app_id),
            "X-GitHub-Hook-Installation-Target-Type": "integration",
            "X-Hub-Signature-256": sign(self._secret, body),
        }
        # Sent where the hook pointed when the event happened, however long the queue: a URL
        # set later gets the events from then on, as on GitHub.
        self._put(Delivery(event, action, delivery_id, payload, body, headers, url=self.url))
        return delivery_id

    def redeliver(self, delivery_id: str) -> None:
        """Send a recorded delivery again, same body and same delivery id, as GitHub does."""
        original = next((d for d in self.records if d.delivery_id == delivery_id), None)
        if original is None:
            raise KeyError(f"no delivery {delivery_id}")
        self._put(Delivery(original.event, original.action, delivery_id, original.payload,
                           original.body, dict(original.headers), url=self.url, redelivery=True))

    def wait(self, timeout: float = 10.0) -> bool:
        """Block until every queued delivery was attempted; False on timeout."""
        with self._outbox.idle:
            return self._outbox.idle.wait_for(lambda: self._outbox.pending == 0, timeout)

    def _put(self, delivery: Delivery) -> None:
        with self._outbox.idle:
            self._outbox.pending += 1
        self._outbox.jobs.put(delivery)

    def _run(self) -> None:
        while (delivery := self._outbox.jobs.get()) is not None:
            self._send(delivery)
            self.records.append(delivery)
            with self._outbox.idle:
                self._outbox.pending -= 1
                self._outbox.idle.notify_all()

    def _send(self, delivery: Delivery) -> None:
        url = delivery.url
        if not url:
            delivery.error = "no webhook url configured"
            return
        request = urllib.request.Request(url, data=delivery.body, headers=delivery.headers, method="POST")
        started = time.monotonic()
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:
                delivery.status = response.status
        except urllib.error.HTTPError as exc:
            delivery.status = exc.code
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
            delivery.error = f"{type(exc).__name__}: {exc}"
        delivery.duration_s = time.monotonic() - started
        log.debug("delivered %s.%s %s -> %s %s", delivery.event, delivery.action,
                  delivery.delivery_id, delivery.status, delivery.error or "")
