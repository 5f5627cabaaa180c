"""Real-time endpoints: models, chat completions, responses and embeddings.

Owns the request path of one synchronous call: parse, quota mode, model check, rate-limit
admission, injected faults, flex availability, execution, latency, billing and the
OpenAI response headers. The answer itself comes from `execute`; limits from `ratelimit`;
faults from `faults`. It does not touch files or batches.

Billing: a 200 is billed on the ledger (path "standard", or "flex" for flex calls) with
the custom_id taken from an `X-Client-Request-Id` or `X-Batchyard-Custom-Id` header.
Errors, injected faults, slow answers and flex "resource unavailable" 429s are not billed.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from batchyard.simulator import faults, tokens
from batchyard.simulator.errors import ApiError
from batchyard.simulator.execute import execute, price, resolve_tier, validate_model
from batchyard.simulator.names import listed_names, model_object, resolve
from batchyard.simulator.ratelimit import RATE_LIMIT_HEADERS, limiter
from batchyard.simulator.state import LedgerEntry, SimState

__all__ = [
    "CUSTOM_ID_HEADERS",
    "chat_completions",
    "embeddings",
    "get_model",
    "list_models",
    "responses",
]

CUSTOM_ID_HEADERS = ("x-batchyard-custom-id", "x-client-request-id")  # first wins
_CUSTOM_ID_KEYS = tuple(name.encode() for name in CUSTOM_ID_HEADERS)
_BAD_JSON = (
    "We could not parse the JSON body of your request. (HINT: This likely means you aren't "
    "using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was "
    "sent was not valid JSON. If you have trouble figuring out how to fix this, please "
    "contact us through our help center at help.openai.com.)"
)
_QUOTA = (
    "You exceeded your current quota, please check your plan and billing details. For more "
    "information on this error, read the docs: "
    "https://platform.openai.com/docs/guides/error-codes/api-errors."
)


def _state(request: Request) -> SimState:
    state: SimState = request.app.state.sim
    return state


async def list_models(request: Request) -> Response:
    state = _state(request)
    data = []
    for name in listed_names(state):
        resolved = resolve(state, name)
        if resolved is not None:
            data.append(model_object(resolved))
    return JSONResponse({"object": "list", "data": data})


async def get_model(request: Request) -> Response:
    name = request.path_params["model_id"]
    resolved = resolve(_state(request), name)
    if resolved is None:
        raise ApiError(
            404, f"The model '{name}' does not exist", param="model", code="model_not_found"
        )
    return JSONResponse(model_object(resolved))


async def chat_completions(request: Request) -> Response:
    return await _serve(request, "/v1/chat/completions")


async def responses(request: Request) -> Response:
    return await _serve(request, "/v1/responses")


async def embeddings(request: Request) -> Response:
    return await _serve(request, "/v1/embeddings")


def _reply(
    state: SimState,
    endpoint: str,
    status: int,
    body: Any,
    headers: dict[str, str],
    started: float,
) -> Response:
    state.stats[f"request|{endpoint}|{status}"] += 1
    mode = state.faults.rate_limit_headers
    if mode == "none" or (mode == "not_on_429" and status == 429):
        for name in RATE_LIMIT_HEADERS:
            headers.pop(name, None)
    headers["openai-processing-ms"] = str(max(1, round((time.perf_counter() - started) * 1000)))
    return JSONResponse(body, status_code=status, headers=headers)


def _custom_id(request: Request) -> str | None:
    # Straight from the raw ASGI headers: building Starlette's Headers costs more.
    found: dict[bytes, bytes] = {}
    for key, value in request.scope["headers"]:
        if key in _CUSTOM_ID_KEYS and value:
            found[key] = value
    for key in _CUSTOM_ID_KEYS:
        if key in found:
            return found[key].decode("latin-1")
    return None


async def _serve(request: Request, endpoint: str) -> Response:
    started = time.perf_counter()
    state = _state(request)
    request_id = "req_" + secrets.token_hex(16)
    headers = {
        "x-request-id": request_id,
        "openai-version": "2020-10-01",
        "openai-organization": state.config.organization,
    }
    try:
        body = await _json_body(request)
        if state.faults.quota_exhausted:
            raise ApiError(429, _QUOTA, type="insufficient_quota", code="insufficient_quota")
        resolved = validate_model(state, endpoint, body)
        spec = resolved.spec
        model: str = body["model"]
        headers["openai-model"] = model
        prompt = tokens.prompt_tokens(tokens.encoding(spec.encoding), endpoint, body)
        charge = tokens.rate_limit_charge(prompt, body)
        try:
            headers.update(limiter(state).admit(resolved.base, spec, charge))
        except ApiError as exc:
            headers.update(exc.headers)
            raise
        fault = faults.roll(state)
        if fault == "drop":
            state.stats[f"request|{endpoint}|dropped"] += 1
            return faults.DroppedResponse()
        if fault == "error":
            raise faults.server_error(state, headers)
        if fault == "slow":
            await asyncio.sleep(state.faults.slow_seconds)
        if resolve_tier(spec, model, body) == "flex" and _flex_unavailable(state):
            state.stats["flex_unavailable"] += 1
            raise ApiError(
                429,
                f"Resource Unavailable: flex processing capacity for {model} is temporarily "
                "exhausted. Retry later, or send service_tier 'auto' for standard processing.",
                type="resource_unavailable",
                code="resource_unavailable",
            )
    except ApiError as exc:
        headers.update(exc.headers)
        return _reply(state, endpoint, exc.status, exc.body, headers, started)
    outcome = execute(state, endpoint, body, prompt=prompt)
    await _latency(state, outcome.output_tokens)
    if outcome.status_code == 200 and fault is None:
        path = outcome.billing_path
        state.bill(
            LedgerEntry(
                path=path,
                model=model,
                endpoint=endpoint,
                request_id=request_id,
                custom_id=_custom_id(request),
                batch_id=None,
                input_tokens=outcome.input_tokens,
                output_tokens=outcome.output_tokens,
                cost=price(
                    state,
                    model,
                    outcome.input_tokens,
                    outcome.output_tokens,
                    path,
                    cached=outcome.cached_tokens,
                    written=outcome.cache_write_tokens,
                ),
                at=state.now(),
            )
        )
    return _reply(state, endpoint, outcome.status_code, outcome.body, headers, started)


async def _json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = json.loads(raw)
    except ValueError:
        raise ApiError(400, _BAD_JSON) from None
    if not isinstance(body, dict):
        raise ApiError(400, _BAD_JSON)
    return body


def _flex_unavailable(state: SimState) -> bool:
    rate = state.faults.flex_unavailable_rate
    return rate > 0 and state.rng.random() < rate


async def _latency(state: SimState, output_tokens: int) -> None:
    latency = state.config.latency
    ms = latency.fixed_ms + latency.per_output_token_ms * output_tokens
    if latency.jitter_ms > 0:
        ms += state.rng.uniform(0, latency.jitter_ms)
    if ms > 0:
        await asyncio.sleep(ms / 1000)
