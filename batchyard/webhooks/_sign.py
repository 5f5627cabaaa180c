"""Standard Webhooks signing, for the calls batchyard makes itself (`--notify`).

Owns `sign` and `signed_headers`: `webhook-id`, `webhook-timestamp` and `webhook-signature:
v1,<base64 HMAC-SHA256 of "id.timestamp.body">`, keyed by the base64 part of a `whsec_`
secret (or the raw secret's bytes), which is what OpenAI signs with and what the openai
SDK's `webhooks.unwrap` verifies. Pure: the timestamp is passed in.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

__all__ = ["sign", "signed_headers"]


def _key(secret: str) -> bytes:
    if secret.startswith("whsec_"):
        return base64.b64decode(secret.removeprefix("whsec_"))
    return secret.encode()


def sign(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value of one delivery."""
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signed_headers(secret: str, webhook_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, webhook_id, timestamp, body),
    }
