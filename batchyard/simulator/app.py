"""The simulator's ASGI app: routes, bearer auth and error handling.

Owns wiring only; each endpoint lives in its own module (realtime, files, batches, admin).
`create_app()` returns a Starlette app that can run under uvicorn on a loopback port or be
handed to the openai SDK in-process through `httpx2.ASGITransport`.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from batchyard.simulator import admin, batches, files, realtime
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
        middleware=[Middleware(BearerAuth)],
        exception_handlers={ApiError: handle_api_error, 404: _not_found},
    )
    app.state.sim = sim
    return app


def sim_state(request: Request) -> SimState:
    """The SimState behind the app that serves `request`."""
    state: SimState = request.app.state.sim
    return state
