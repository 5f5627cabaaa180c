"""The simulator's ASGI app: routes, bearer auth and error handling.

Owns wiring only (plus two thin ASGI middlewares: bearer auth and the `date` header); each
endpoint lives in its own module (realtime, files, batches, admin). `create_app()` returns a
Starlette app that can run under uvicorn on a loopback port or be handed to the openai SDK
in-process through `httpx2.ASGITransport`. Served, its lifespan runs the webhook pump;
in-process there is no lifespan, so tests deliver with `POST /_sim/webhooks/deliver`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from email.utils import formatdate

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from batchyard.simulator import admin, batches, files, realtime, webhooks
from batchyard.simulator.batch_engine import advance_all
from batchyard.simulator.config import SimConfig
from batchyard.simulator.errors import ApiError, error_body, handle_api_error
from batchyard.simulator.state import SimState

__all__ = ["create_app"]


class BearerAuth:
    """401 with OpenAI's error body unless `Authorization: Bearer <non-empty>` is sent."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/v1/"):
            headers = dict(scope["headers"])
            auth = headers.get(b"authorization", b"").decode("latin-1")
            scheme, _, token = auth.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                message = (
                    "You didn't provide an API key. You need to provide your API key in an "
                    "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
                )
                response = JSONResponse(error_body(message, "invalid_request_error"), 401)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class SimulatedDate:
    """Adds an HTTP `date` header read from the simulated clock to every response.

    A real server stamps each response with its own clock; clients (batchyard maps the
    provider's clock onto its own) read it. uvicorn's own `date` header is real time, so
    the server runs with `date_header=False` and this one is the only `date` sent.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._second = -1
        self._value = b""

    def _date(self, state: SimState) -> bytes:
        second = int(state.now())
        if second != self._second:  # formatdate costs more than the rest of this
            self._second, self._value = second, formatdate(second, usegmt=True).encode()
        return self._value

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state: SimState = scope["app"].state.sim

        async def send_with_date(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k != b"date"]
                headers.append((b"date", self._date(state)))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_date)


_log = logging.getLogger(__name__)


async def _pump(state: SimState) -> None:
    """While served: let batches move on and send due webhook deliveries, every
    `webhooks.pump_seconds` real seconds (only while some endpoint is configured)."""
    while True:
        await asyncio.sleep(state.config.webhooks.pump_seconds)
        registry = webhooks.hooks(state)
        if not registry.endpoints and not registry.deliveries:
            continue
        try:
            advance_all(state)
            await webhooks.deliver_due(state)
        except Exception:  # the pump outlives any one bad round
            _log.exception("webhook delivery round failed")


@contextlib.asynccontextmanager
async def _lifespan(app: Starlette) -> AsyncIterator[None]:
    task = asyncio.create_task(_pump(app.state.sim))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _not_found(request: Request, exc: Exception) -> Response:
    message = f"Invalid URL ({request.method} {request.url.path})"
    return JSONResponse(error_body(message, "invalid_request_error"), status_code=404)


def create_app(config: SimConfig | None = None, state: SimState | None = None) -> Starlette:
    """A fresh simulator. Pass `state` to share one state between apps (rare)."""
    sim = state or SimState.from_config(config or SimConfig())
    routes = [
        Route("/v1/models", realtime.list_models, methods=["GET"]),
        Route("/v1/models/{model_id:path}", realtime.get_model, methods=["GET"]),
        Route("/v1/chat/completions", realtime.chat_completions, methods=["POST"]),
        Route("/v1/responses", realtime.responses, methods=["POST"]),
        Route("/v1/embeddings", realtime.embeddings, methods=["POST"]),
        Route("/v1/files", files.create_file, methods=["POST"]),
        Route("/v1/files", files.list_files, methods=["GET"]),
        Route("/v1/files/{file_id}", files.retrieve_file, methods=["GET"]),
        Route("/v1/files/{file_id}", files.delete_file, methods=["DELETE"]),
        Route("/v1/files/{file_id}/content", files.file_content, methods=["GET"]),
        Route("/v1/batches", batches.create_batch, methods=["POST"]),
        Route("/v1/batches", batches.list_batches, methods=["GET"]),
        Route("/v1/batches/{batch_id}", batches.retrieve_batch, methods=["GET"]),
        Route("/v1/batches/{batch_id}/cancel", batches.cancel_batch, methods=["POST"]),
        *admin.routes(),
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(SimulatedDate), Middleware(BearerAuth)],
        exception_handlers={ApiError: handle_api_error, 404: _not_found},
        lifespan=_lifespan,
    )
    app.state.sim = sim
    return app


def sim_state(request: Request) -> SimState:
    """The SimState behind the app that serves `request`."""
    state: SimState = request.app.state.sim
    return state
