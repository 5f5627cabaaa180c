"""`--notify URL`: one signed call when a run finishes.

Owns building the `batchyard.run.finished` event and POSTing it, signed the Standard
Webhooks way with the `notify_secret` setting (the same headers OpenAI sends, so the
receiver can verify it with the openai SDK's `webhooks.unwrap`, or any Standard Webhooks
library). The same `webhook-id` is sent on every attempt, so the receiver can drop a
repeat. A 2xx is success; anything else is recorded as a failed attempt (the run is
finished all the same). Never retries by itself: `watch`/`poll` try again next round.
"""

from __future__ import annotations

import json
from typing import Any

import httpx2

from batchyard.webhooks._sign import signed_headers

__all__ = ["EVENT_TYPE", "finished_event", "send"]

EVENT_TYPE = "batchyard.run.finished"


def finished_event(event_id: str, created_at: int, data: dict[str, Any]) -> bytes:
    event = {
        "id": event_id,
        "object": "event",
        "type": EVENT_TYPE,
        "created_at": created_at,
        "data": data,
    }
    return json.dumps(event, separators=(",", ":")).encode()


async def send(
    url: str,
    body: bytes,
    *,
    secret: str,
    webhook_id: str,
    timestamp: int,
    transport: httpx2.AsyncBaseTransport | None = None,
    timeout: float = 10.0,
) -> str | None:
    """POST the signed event; None when the receiver answered 2xx, else why not."""
    headers = signed_headers(secret, webhook_id, timestamp, body)
    headers["user-agent"] = "batchyard"
    try:
        async with httpx2.AsyncClient(
            transport=transport, timeout=timeout, follow_redirects=False
        ) as client:
            answer = await client.post(url, content=body, headers=headers)
    except httpx2.HTTPError as exc:
        return f"{type(exc).__name__}: {exc}"
    if 200 <= answer.status_code < 300:
        return None
    return f"{url} answered {answer.status_code}"
