"""Webhooks: OpenAI's batch events in (optional; polling stays the truth), and a signed
call out when a run finishes.

Owns `receiver_app` (the ASGI app of `batchyard webhooks serve`: verifies each delivery
with the openai SDK's `webhooks.unwrap`, de-duplicates on `webhook-id`, marks the batch
to be polled in the next round), the `--notify` call (`finished_event`, `send`) and
Standard Webhooks signing (`sign`, `signed_headers`). It changes the store only through
its methods (`record_webhook`) and applies nothing itself: the batch runner's poll does.
"""

from batchyard.webhooks._notify import EVENT_TYPE, finished_event, send
from batchyard.webhooks._receiver import BATCH_EVENTS, receiver_app
from batchyard.webhooks._serve import serve, webhook_secret
from batchyard.webhooks._sign import sign, signed_headers

__all__ = [
    "BATCH_EVENTS",
    "EVENT_TYPE",
    "finished_event",
    "receiver_app",
    "send",
    "serve",
    "sign",
    "signed_headers",
    "webhook_secret",
]
