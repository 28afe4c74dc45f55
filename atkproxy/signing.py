"""Standard Webhooks signatures for callbacks (pure): https://www.standardwebhooks.com/

A receiver checks that a callback comes from this proxy and was not altered or replayed:
`webhook-signature` holds `v1,<base64 HMAC-SHA256(key, "<id>.<timestamp>.<body>")>` once per
configured secret (space separated), so a receiver that knows either the old or the new secret
verifies during a rotation. `webhook-id` is the job id: the same on every retry of one
callback, so a receiver deduplicates on it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Sequence

PREFIX = "whsec_"


def decode_secret(secret: str) -> bytes:
    """The key of a `whsec_<base64>` secret (the prefix is optional); ValueError if malformed."""
    text = secret.strip().removeprefix(PREFIX)
    try:
        key = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("a signing secret must be whsec_ followed by base64") from None
    if len(key) < 16:
        raise ValueError("a signing secret must hold at least 16 bytes (24 base64 characters)")
    return key


def signature(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    # the prefix and the body are fed apart: joining them would copy a large body
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode(), hashlib.sha256)
    mac.update(body)
    digest = mac.digest()
    return "v1," + base64.b64encode(digest).decode()


def signed_headers(
    msg_id: str, timestamp: int, body: bytes, keys: Sequence[bytes]
) -> dict[str, str]:
    """The three Standard Webhooks headers; one signature per key."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(signature(k, msg_id, timestamp, body) for k in keys),
    }
