"""The signature a receiver checks: HMAC-SHA256 over the timestamp and the body.

Header `X-Canaryserve-Signature: t=<unix seconds>,v1=<hex>`, where the hex digest is
HMAC-SHA256(secret, f"{t}." + body), as Stripe signs its webhooks. The timestamp is inside
the signed bytes, so a receiver that refuses old timestamps also refuses replays.
`client.webhooks.verify` is the receiver's side.
"""

from __future__ import annotations

import hashlib
import hmac

__all__ = ["SIGNATURE_HEADER", "sign", "signature_header"]

SIGNATURE_HEADER = "X-Canaryserve-Signature"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of `{timestamp}.{body}` under `secret`."""
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signature_header(secret: str, timestamp: int, body: bytes) -> str:
    """The header value: `t=<timestamp>,v1=<signature>`."""
    return f"t={timestamp},v1={sign(secret, timestamp, body)}"
