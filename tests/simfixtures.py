"""Shared helpers for tests that drive the simulator with the real openai SDK.

In-process (fast, no socket):

    client, state = sim_client(SimConfig(rate_limits=False))
    await client.chat.completions.create(...)
    admin = admin_client(state)          # httpx2 client on the same app, for /_sim/

On a real loopback port (uvicorn in a thread):

    with running_server(config) as (base_url, state):
        client = openai.OpenAI(api_key="sk-test", base_url=base_url, max_retries=0)
"""

from __future__ import annotations

from typing import Any

import httpx2
import openai

from batchyard.simulator import SimConfig, SimState, create_app
from batchyard.simulator.config import load_config
from batchyard.simulator.server import RunningServer, running_server

__all__ = [
    "RunningServer",
    "admin_client",
    "billed_ids",
    "chat_body",
    "error_message",
    "quiet_config",
    "running_server",
    "sim_client",
]

API_KEY = "sk-test-simulator"


def quiet_config(**overrides: Any) -> SimConfig:
    """The default config with `overrides` applied (nested tables as dicts)."""
    return load_config(None, **overrides)


def sim_client(
    config: SimConfig | None = None, **client_options: Any
) -> tuple[openai.AsyncOpenAI, SimState]:
    """An AsyncOpenAI client wired in-process to a fresh simulator, and its state.

    `max_retries` defaults to 0 so a test sees every error the simulator sends.
    """
    app = create_app(config)
    state: SimState = app.state.sim
    transport = httpx2.ASGITransport(app=app)
    client_options.setdefault("max_retries", 0)
    client = openai.AsyncOpenAI(
        api_key=client_options.pop("api_key", API_KEY),
        base_url="http://sim.test/v1",
        http_client=httpx2.AsyncClient(transport=transport),
        **client_options,
    )
    state.extra["test_app"] = app
    return client, state


def admin_client(state: SimState) -> httpx2.AsyncClient:
    """A plain httpx2 client on the same in-process app as `sim_client`, for /_sim/."""
    return httpx2.AsyncClient(
        transport=httpx2.ASGITransport(app=state.extra["test_app"]), base_url="http://sim.test"
    )


def chat_body(text: str = "Say hello.", model: str = "gpt-4o-mini", **extra: Any) -> dict[str, Any]:
    """A minimal chat-completions body."""
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


def error_message(error: openai.APIError) -> str:
    """The `message` of an API error's JSON body (the SDK types the body as `object`)."""
    body = error.body
    assert isinstance(body, dict), body
    message = body["message"]
    assert isinstance(message, str), message
    return message


def billed_ids(state: SimState) -> list[str]:
    """The custom_id of every billed request, in billing order; each entry must carry one
    (batchyard sends X-Client-Request-Id on every real-time call)."""
    ids = [e.custom_id for e in state.ledger]
    assert None not in ids, ids
    return [cid for cid in ids if cid is not None]
