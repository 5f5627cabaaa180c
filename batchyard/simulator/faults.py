"""Injected faults for real-time calls: 5xx errors, slow answers and dropped connections.

Owns rolling the dice against `state.faults` (changeable at runtime through /_sim/faults)
and the responses that stand for each fault. It never bills and applies no rate limits.

A dropped connection is a response that sends its status line and headers, then raises
`ConnectionDropped`: uvicorn closes the socket mid-response (the client sees the peer
disconnect), and httpx2's ASGITransport re-raises it into the client; the openai SDK turns
both into `APIConnectionError`.
"""

from __future__ import annotations

from typing import Literal

import httpx2
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from batchyard.simulator.errors import ApiError
from batchyard.simulator.state import SimState

__all__ = ["ConnectionDropped", "DroppedResponse", "Fault", "roll", "server_error"]

Fault = Literal["drop", "error", "slow"]

_SERVER_ERRORS = {
    500: "The server had an error while processing your request. Sorry about that!",
    502: "Bad gateway.",
    503: "The engine is currently overloaded, please try again later.",
}


class ConnectionDropped(httpx2.RemoteProtocolError):
    """Raised inside the app to cut the connection without a complete response.

    It subclasses httpx2's "peer closed the connection" error because in-process the
    ASGITransport passes app exceptions straight to the client, and that is what a real
    transport raises when a server drops a connection mid-response.
    """


class DroppedResponse(Response):
    """Starts a 200 response promising a body, then drops the connection."""

    def __init__(self) -> None:
        super().__init__(status_code=200, media_type="application/json")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"512")],
            }
        )
        raise ConnectionDropped(
            "peer closed connection without sending complete message body "
            "(simulated by faults.drop_rate)"
        )


def roll(state: SimState) -> Fault | None:
    """At most one fault for this request, drawn from the seeded rng."""
    faults = state.faults
    choices: tuple[tuple[Fault, float], ...] = (
        ("drop", faults.drop_rate),
        ("error", faults.error_5xx_rate),
        ("slow", faults.slow_rate),
    )
    for kind, rate in choices:
        if rate > 0 and state.rng.random() < rate:
            state.stats[f"fault|{kind}"] += 1
            return kind
    return None


def server_error(state: SimState, headers: dict[str, str]) -> ApiError:
    """A 500, 502 or 503 with OpenAI's `server_error` body."""
    status = state.rng.choice(sorted(_SERVER_ERRORS))
    return ApiError(status, _SERVER_ERRORS[status], type="server_error", headers=headers)
