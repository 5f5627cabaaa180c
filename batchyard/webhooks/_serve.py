"""Serving the receiver: `batchyard webhooks serve`.

Owns opening the job database and the secret from the settings, and running uvicorn
until Ctrl-C. The receiver itself is `_receiver.receiver_app`.
"""

from __future__ import annotations

import uvicorn

from batchyard.config import Settings
from batchyard.errors import ConfigError
from batchyard.store import Store
from batchyard.webhooks._receiver import receiver_app

__all__ = ["serve", "webhook_secret"]


def webhook_secret(settings: Settings) -> str:
    if settings.webhook_secret is None:
        raise ConfigError(
            "Set OPENAI_WEBHOOK_SECRET to the signing secret (whsec_...) that OpenAI showed "
            "when the webhook endpoint was created; deliveries are verified with it."
        )
    return settings.webhook_secret.get_secret_value()


def serve(settings: Settings, host: str, port: int, path: str = "/") -> None:
    """Receive webhooks on http://HOST:PORT/PATH until stopped."""
    secret = webhook_secret(settings)
    with Store.open(settings.db_path()) as store:
        app = receiver_app(store, secret, path=path)
        uvicorn.run(app, host=host, port=port, log_level="warning", lifespan="off")
