"""Batch events delivered to webhook URLs, signed the Standard Webhooks way.

Owns the endpoints that receive events (from `[webhooks]` and `/_sim/webhooks`), the
deliveries: one per event and subscribed endpoint, made when a batch ends `completed`,
`failed`, `expired` or `cancelled` (batch_engine calls `enqueue`), and sending them with
retries on the simulated clock.

A delivery is a POST of the event JSON (built from the SDK's `Batch*WebhookEvent` types:
`{"id": "evt_…", "created_at", "data": {"id": "batch_…"}, "type", "object": "event"}`) with
`webhook-id` (the same on every retry), `webhook-timestamp` and `webhook-signature:
v1,<base64 HMAC-SHA256 of "id.timestamp.body">`, keyed by the secret's base64 part after
`whsec_` (or its raw bytes), exactly what `client.webhooks.unwrap()` verifies. A 2xx is
delivered; anything else (3xx included, redirects are not followed), a timeout or a refused
connection fails the attempt and the next comes `retry_seconds[n]` simulated seconds
later, never past `give_up_seconds` after the event.

Nothing here advances batches or runs by itself: a served simulator's pump (app.py) and
`POST /_sim/webhooks/deliver` call `advance_all` then `deliver_due`. It never bills.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import httpx2
from openai.types.webhooks import (
    BatchCancelledWebhookEvent,
    BatchCompletedWebhookEvent,
    BatchExpiredWebhookEvent,
    BatchFailedWebhookEvent,
)

from batchyard.simulator.config import WebhookEndpointSettings
from batchyard.simulator.state import SimState

__all__ = [
    "USER_AGENT",
    "Delivery",
    "Endpoint",
    "Hooks",
    "deliver_due",
    "enqueue",
    "hooks",
    "new_secret",
    "sign",
]

USER_AGENT = "OpenAI/1.0 (+https://platform.openai.com/docs/webhooks)"
_EVENTS: dict[str, Any] = {
    "batch.completed": BatchCompletedWebhookEvent,
    "batch.failed": BatchFailedWebhookEvent,
    "batch.expired": BatchExpiredWebhookEvent,
    "batch.cancelled": BatchCancelledWebhookEvent,
}


def new_secret() -> str:
    """A signing secret shaped like OpenAI's: `whsec_` + base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def sign(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value for one attempt (Standard Webhooks, v1)."""
    key = (
        base64.b64decode(secret.removeprefix("whsec_"))
        if secret.startswith("whsec_")
        else secret.encode()
    )
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


@dataclass
class Endpoint:
    id: str
    url: str
    secret: str
    events: list[str]

    def public(self) -> dict[str, Any]:
        """What the admin routes show: never the secret, only its last characters."""
        hint = f"whsec_…{self.secret[-4:]}" if self.secret.startswith("whsec_") else "…"
        return {"id": self.id, "url": self.url, "events": self.events, "secret_hint": hint}


@dataclass
class Delivery:
    """One event on its way to one endpoint."""

    webhook_id: str
    endpoint_id: str
    url: str
    secret: str
    type: str
    batch_id: str
    body: bytes  # fixed when the event happens; every attempt sends the same bytes
    event_at: float  # simulated
    next_at: float  # simulated time of the next attempt
    attempts: list[dict[str, Any]] = field(default_factory=list)
    state: str = "pending"  # "pending", "sending", "delivered" or "failed" (gave up)

    def public(self) -> dict[str, Any]:
        return {
            "webhook_id": self.webhook_id,
            "endpoint_id": self.endpoint_id,
            "url": self.url,
            "type": self.type,
            "batch_id": self.batch_id,
            "event_at": self.event_at,
            "state": self.state,
            "next_at": self.next_at if self.state == "pending" else None,
            "attempts": self.attempts,
        }


@dataclass
class Hooks:
    endpoints: dict[str, Endpoint] = field(default_factory=dict)
    deliveries: list[Delivery] = field(default_factory=list)

    def add(self, settings: WebhookEndpointSettings) -> Endpoint:
        endpoint = Endpoint(
            "we_" + secrets.token_hex(12),
            settings.url,
            settings.secret.get_secret_value(),
            list(settings.events),
        )
        self.endpoints[endpoint.id] = endpoint
        return endpoint


def hooks(state: SimState) -> Hooks:
    """The webhook endpoints and deliveries of `state`, set up from its config on first use."""
    found = state.extra.get("webhooks")
    if not isinstance(found, Hooks):
        found = Hooks()
        for settings in state.config.webhooks.endpoints:
            found.add(settings)
        state.extra["webhooks"] = found
    return found


def enqueue(state: SimState, event_type: str, batch_id: str, at: float) -> None:
    """A batch ended: one delivery per endpoint subscribed to `event_type`."""
    registry = hooks(state)
    if event_type not in _EVENTS or not registry.endpoints:
        return
    event = _EVENTS[event_type](
        id="evt_" + secrets.token_hex(16),
        created_at=int(at),
        data={"id": batch_id},
        type=event_type,
        object="event",
    )
    body = event.model_dump_json().encode()
    for endpoint in registry.endpoints.values():
        if event_type in endpoint.events:
            registry.deliveries.append(
                Delivery(
                    "wh_" + secrets.token_hex(16),
                    endpoint.id,
                    endpoint.url,
                    endpoint.secret,
                    event_type,
                    batch_id,
                    body,
                    at,
                    at,
                )
            )
            state.stats["webhooks_enqueued"] += 1


async def _attempt(client: httpx2.AsyncClient, state: SimState, delivery: Delivery) -> None:
    settings = state.config.webhooks
    at = state.now()
    stamp = int(time.time()) if settings.timestamp_clock == "real" else int(at)
    headers = {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": delivery.webhook_id,
        "webhook-timestamp": str(stamp),
        "webhook-signature": sign(delivery.secret, delivery.webhook_id, stamp, delivery.body),
    }
    record: dict[str, Any] = {"at": at, "status": None, "error": None}
    try:
        answer = await client.post(delivery.url, content=delivery.body, headers=headers)
        record["status"] = answer.status_code
        ok = 200 <= answer.status_code < 300
    except Exception as exc:  # refused, reset, timed out, a bad URL: each fails the attempt
        # (broad on purpose: a delivery must never be left half-sent)
        record["error"] = f"{type(exc).__name__}: {exc}"
        ok = False
    delivery.attempts.append(record)
    if ok:
        delivery.state = "delivered"
        state.stats["webhooks_delivered"] += 1
        return
    state.stats["webhooks_failed_attempts"] += 1
    failures = len(delivery.attempts)
    retries = settings.retry_seconds
    later = at + retries[failures - 1] if failures <= len(retries) else None
    if later is None or later - delivery.event_at > settings.give_up_seconds:
        delivery.state = "failed"
        state.stats["webhooks_given_up"] += 1
    else:
        delivery.state, delivery.next_at = "pending", later


async def deliver_due(
    state: SimState, transport: httpx2.AsyncBaseTransport | None = None
) -> list[Delivery]:
    """Attempt every delivery due by the simulated now (at the same time); returns them.

    `transport` lets a test deliver in-process (an httpx2.ASGITransport to its receiver).
    Call `batch_engine.advance_all(state)` first so events due by now exist.
    """
    now = state.now()
    due = [d for d in hooks(state).deliveries if d.state == "pending" and d.next_at <= now]
    if not due:
        return []
    for delivery in due:
        delivery.state = "sending"  # a concurrent round must not send it twice
    timeout = state.config.webhooks.timeout_seconds
    async with httpx2.AsyncClient(
        transport=transport, timeout=timeout, follow_redirects=False
    ) as client:
        await asyncio.gather(*(_attempt(client, state, d) for d in due))
    return due
