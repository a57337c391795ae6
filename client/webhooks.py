"""The receiver's side of canaryserve's webhooks: check the signature of a delivery.

    from client.webhooks import verify
    event = verify(secret, request.headers["X-Canaryserve-Signature"], raw_body)

The header is `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>." + body under the secret>`.
Verify the raw bytes as received (before any JSON parsing), compare in constant time, and
refuse old timestamps so a captured delivery cannot be replayed (5 minutes by default).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

__all__ = ["SIGNATURE_HEADER", "InvalidSignature", "verify"]

SIGNATURE_HEADER = "X-Canaryserve-Signature"


class InvalidSignature(ValueError):
    """The delivery is not from a server holding the secret, or is too old."""


def verify(
    secret: str,
    header: str,
    body: bytes,
    *,
    tolerance_s: float = 300.0,
    now: float | None = None,
) -> dict[str, Any]:
    """The event (the parsed JSON body) when `header` signs `body` under `secret` and its
    timestamp is within `tolerance_s` of `now`; InvalidSignature otherwise."""
    fields: dict[str, list[str]] = {}
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        fields.setdefault(key, []).append(value)
    try:
        timestamp = int(fields["t"][0])
    except (KeyError, ValueError):
        raise InvalidSignature(f"no timestamp in {SIGNATURE_HEADER}: {header!r}") from None
    now = time.time() if now is None else now
    if abs(now - timestamp) > tolerance_s:
        raise InvalidSignature(
            f"timestamp {timestamp} is {abs(now - timestamp):.0f} s from now (over {tolerance_s:g})"
        )
    expected = hmac.new(
        secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256
    ).hexdigest()
    if not any(hmac.compare_digest(expected, given) for given in fields.get("v1", [])):
        raise InvalidSignature("signature does not match the body under this secret")
    event: dict[str, Any] = json.loads(body)
    return event
