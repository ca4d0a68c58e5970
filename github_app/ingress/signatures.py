"""Webhook signatures: HMAC-SHA256 over the raw body, compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable


def sign(secret: str, body: bytes) -> str:
    """The ``X-Hub-Signature-256`` value GitHub sends for this body."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify(secrets: Iterable[str], body: bytes, signature: str | None) -> bool:
    """True when the signature matches the body under any current secret (rotation)."""
    if not signature or not signature.startswith("sha256="):
        return False
    # Compare against every secret so timing does not reveal which one matched.
    matched = False
    for secret in secrets:
        if hmac.compare_digest(sign(secret, body), signature):
            matched = True
    return matched
