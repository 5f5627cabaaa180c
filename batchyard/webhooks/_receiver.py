"""The webhook receiver: OpenAI's batch events in, "poll this batch now" marks out.

Owns the ASGI app that `batchyard webhooks serve` runs. Each POST is verified with the
openai SDK's own `client.webhooks.unwrap` and the webhook secret (`OPENAI_WEBHOOK_SECRET`):
a bad, missing or stale signature (more than 5 minutes old: a replay) gets 400 and changes
nothing. A verified `batch.completed`, `batch.failed`, `batch.expired` or
`batch.cancelled` is recorded once per `webhook-id` (a retried delivery is answered 200
and changes nothing) and marks its batch to be polled in the run's next round. Polling
stays the truth: the event itself is never applied, and a lost event only costs the
normal poll interval. Other event types are acknowledged and ignored.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import openai
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from batchyard.store import Store

__all__ = ["BATCH_EVENTS", "receiver_app"]

BATCH_EVENTS = ("batch.completed", "batch.failed", "batch.expired", "batch.cancelled")


def receiver_app(
    store: Store, secret: str, *, path: str = "/", on_event: Callable[[Any], None] | None = None
) -> Starlette:
    """The receiver as an ASGI app answering POST `path`."""
    sdk = openai.OpenAI(api_key="unused-for-verification", webhook_secret=secret)

    async def receive(request: Request) -> JSONResponse:
        body = await request.body()
        headers = dict(request.headers)
        try:
            event = sdk.webhooks.unwrap(body, headers)
        except (openai.InvalidWebhookSignatureError, ValueError) as exc:
            # ValueError: a missing or malformed header or body (the SDK's own checks)
            return JSONResponse({"error": f"Webhook refused: {exc}"}, status_code=400)
        event_type = str(getattr(event, "type", ""))
        if event_type not in BATCH_EVENTS:
            return JSONResponse({"ignored": event_type})
        batch_id = json.loads(body).get("data", {}).get("id")
        receipt = store.record_webhook(headers["webhook-id"], event_type, batch_id)
        if on_event is not None and not receipt.duplicate:
            on_event(event)
        return JSONResponse(
            {"duplicate": receipt.duplicate, "run_id": receipt.run_id, "shard": receipt.shard}
        )

    return Starlette(routes=[Route(path, receive, methods=["POST"])])
