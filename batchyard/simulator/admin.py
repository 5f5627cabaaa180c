"""The `/_sim/` admin surface: stats, the billing ledger, the clock and runtime faults.

Owns the routes outside the OpenAI API that tests and operators use to look inside the
simulator and steer it. No auth (it listens on loopback). It reads state and changes only
the clock, the fault, limit and bad-answer settings, one batch's timing, the webhook
endpoints (and sends due deliveries) and (on reset) the counters and ledger.

    GET  /_sim/stats            counters: requests by endpoint and status, 429s, faults, batches
    GET  /_sim/ledger           billed entries, totals per path, every billed custom_id's count
    GET  /_sim/clock            {"now": unix seconds, "time_scale", "advanced"}
    POST /_sim/clock/advance    {"seconds": N} jumps simulated time forward
    GET  /_sim/faults           the current FaultSettings
    POST /_sim/faults           patch FaultSettings, e.g. {"error_5xx_rate": 0.5}
    GET  /_sim/answers          the bad-answer rates (AnswerSettings)
    POST /_sim/answers          patch them, e.g. {"refusal_rate": 0.1}
    GET  /_sim/limits           LimitSettings and what the other client on the key used
    POST /_sim/limits           patch LimitSettings, e.g. {"other_client_share": 0.3}
    GET  /_sim/batches/{id}     a batch with its turnaround, cancel time and line schedule
    POST /_sim/batches/{id}     {"turnaround_seconds"|"cancelling_seconds"|"realtime_speed"}
    GET  /_sim/webhooks         webhook endpoints (secrets hidden) and every delivery so far
    POST /_sim/webhooks         {"url", "secret"?, "events"?} adds an endpoint (secret shown once)
    DELETE /_sim/webhooks/{id}  removes one
    POST /_sim/webhooks/deliver moves batches on and attempts the deliveries due now
    POST /_sim/reset            clear ledger, stats and rate-limit buckets (files, batches stay)
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter, defaultdict
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from batchyard.simulator import batch_schedule, webhooks
from batchyard.simulator.batch_engine import advance_all
from batchyard.simulator.batches import batch_json
from batchyard.simulator.config import WebhookEndpointSettings
from batchyard.simulator.errors import ApiError
from batchyard.simulator.ratelimit import limiter
from batchyard.simulator.state import SimState

__all__ = ["ledger_summary", "routes", "stats_summary"]


def _state(request: Request) -> SimState:
    state: SimState = request.app.state.sim
    return state


async def _json(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        data = json.loads(raw or b"{}")
    except ValueError:
        raise ApiError(400, "The /_sim request body must be a JSON object.") from None
    if not isinstance(data, dict):
        raise ApiError(400, "The /_sim request body must be a JSON object.")
    return data


def _advance_batches(state: SimState) -> None:
    """Let batches catch up with the clock before reporting on them."""
    advance_all(state)


def stats_summary(state: SimState) -> dict[str, Any]:
    """Counters grouped for reading; `counters` keeps every raw key."""
    _advance_batches(state)
    requests: dict[str, dict[str, int]] = defaultdict(dict)
    rate_limited: dict[str, int] = {}
    injected: dict[str, int] = {}
    bad_answers: dict[str, int] = {}
    for key, count in sorted(state.stats.items()):
        kind, _, rest = key.partition("|")
        if kind == "request":
            endpoint, _, status = rest.rpartition("|")
            requests[endpoint][status] = count
        elif kind == "rate_limited":
            rate_limited[rest] = count
        elif kind == "fault":
            injected[rest] = count
        elif kind == "answers":
            bad_answers[rest] = count
    batches = Counter(str(getattr(rec, "status", "unknown")) for rec in state.batches.values())
    billed = Counter(entry.path for entry in state.ledger)
    return {
        "requests": dict(requests),
        "rate_limited": rate_limited,
        "faults_injected": injected,
        "bad_answers": bad_answers,
        "flex_unavailable": state.stats.get("flex_unavailable", 0),
        "billed": dict(billed),
        "batches": dict(batches),
        "files": len(state.files),
        "counters": dict(sorted(state.stats.items())),
    }


def ledger_summary(state: SimState) -> dict[str, Any]:
    """Every billed entry, totals per path and how often each custom_id was billed."""
    _advance_batches(state)
    totals: dict[str, dict[str, float]] = {}
    for entry in state.ledger:
        total = totals.setdefault(
            entry.path, {"requests": 0, "input_tokens": 0, "output_tokens": 0, "cost": 0.0}
        )
        total["requests"] += 1
        total["input_tokens"] += entry.input_tokens
        total["output_tokens"] += entry.output_tokens
        total["cost"] += entry.cost
    ids = Counter(entry.custom_id for entry in state.ledger if entry.custom_id is not None)
    return {
        "entries": [dataclasses.asdict(entry) for entry in state.ledger],
        "totals": totals,
        "total_cost": sum(entry.cost for entry in state.ledger),
        "billed_custom_ids": dict(ids),
        "duplicates": sorted(cid for cid, n in ids.items() if n > 1),
    }


def _clock(state: SimState) -> dict[str, float]:
    clock = state.clock
    return {"now": clock.now(), "time_scale": clock.time_scale, "advanced": clock.advanced}


async def get_stats(request: Request) -> Response:
    return JSONResponse(stats_summary(_state(request)))


async def get_ledger(request: Request) -> Response:
    return JSONResponse(ledger_summary(_state(request)))


async def get_clock(request: Request) -> Response:
    return JSONResponse(_clock(_state(request)))


async def advance_clock(request: Request) -> Response:
    state = _state(request)
    seconds = (await _json(request)).get("seconds")
    if not isinstance(seconds, int | float) or isinstance(seconds, bool) or seconds < 0:
        raise ApiError(400, 'Send {"seconds": N} with N >= 0.', param="seconds")
    state.clock.advance(float(seconds))
    _advance_batches(state)
    return JSONResponse(_clock(state))


async def get_faults(request: Request) -> Response:
    return JSONResponse(_state(request).faults.model_dump())


_M = TypeVar("_M", bound=BaseModel)


def _validated(model: type[_M], data: dict[str, Any], what: str) -> _M:
    """`data` as a `model`; a bad key or value is a 400 naming it."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        param = ".".join(str(p) for p in first["loc"])
        message = f"Invalid {what} setting '{param}': {first['msg']}."
        raise ApiError(400, message, param=param) from None


def _patched(current: _M, patch: dict[str, Any], what: str) -> _M:
    """`current` with `patch` applied and validated; a bad key or value is a 400."""
    return _validated(type(current), {**current.model_dump(), **patch}, what)


async def patch_faults(request: Request) -> Response:
    state = _state(request)
    state.faults = _patched(state.faults, await _json(request), "fault")
    return JSONResponse(state.faults.model_dump())


async def get_answers(request: Request) -> Response:
    return JSONResponse(_state(request).answers.model_dump())


async def patch_answers(request: Request) -> Response:
    state = _state(request)
    state.answers = _patched(state.answers, await _json(request), "answer")
    return JSONResponse(state.answers.model_dump())


def _limits(state: SimState) -> dict[str, Any]:
    return {**state.limits.model_dump(), "other_client_used": limiter(state).other_client_use()}


async def get_limits(request: Request) -> Response:
    return JSONResponse(_limits(_state(request)))


async def patch_limits(request: Request) -> Response:
    state = _state(request)
    state.limits = _patched(state.limits, await _json(request), "limit")
    return JSONResponse(_limits(state))


def _batch_view(state: SimState, batch_id: str) -> dict[str, Any]:
    rec = state.batches.get(batch_id)
    if rec is None:
        raise ApiError(404, f"No batch found with id '{batch_id}'.")
    cancelling = rec.cancelling_for if rec.times.get("cancelling_at") is not None else None
    return {
        "batch": batch_json(rec),
        "turnaround_seconds": rec.turnaround if rec.times.get("in_progress_at") else None,
        "cancelling_seconds": cancelling,
        "overrides": rec.overrides,
        "schedule": batch_schedule.finish_times(rec),
    }


async def get_batch(request: Request) -> Response:
    state = _state(request)
    _advance_batches(state)
    return JSONResponse(_batch_view(state, request.path_params["batch_id"]))


async def patch_batch(request: Request) -> Response:
    state = _state(request)
    _advance_batches(state)
    batch_id = request.path_params["batch_id"]
    _batch_view(state, batch_id)  # 404 first
    try:
        batch_schedule.override(state, state.batches[batch_id], await _json(request))
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None
    _advance_batches(state)
    return JSONResponse(_batch_view(state, batch_id))


def _webhooks(state: SimState) -> dict[str, Any]:
    registry = webhooks.hooks(state)
    return {
        "endpoints": [e.public() for e in registry.endpoints.values()],
        "deliveries": [d.public() for d in registry.deliveries],
    }


async def get_webhooks(request: Request) -> Response:
    state = _state(request)
    _advance_batches(state)
    return JSONResponse(_webhooks(state))


async def add_webhook(request: Request) -> Response:
    """Add an endpoint; without a `secret` one is made. The answer shows the secret once."""
    state = _state(request)
    data = await _json(request)
    data.setdefault("secret", webhooks.new_secret())
    settings = _validated(WebhookEndpointSettings, data, "webhook")
    endpoint = webhooks.hooks(state).add(settings)
    return JSONResponse({**endpoint.public(), "secret": endpoint.secret})


async def remove_webhook(request: Request) -> Response:
    registry = webhooks.hooks(_state(request))
    endpoint_id = request.path_params["endpoint_id"]
    if registry.endpoints.pop(endpoint_id, None) is None:
        raise ApiError(404, f"No webhook endpoint with id '{endpoint_id}'.")
    return JSONResponse({"id": endpoint_id, "deleted": True})


async def deliver_webhooks(request: Request) -> Response:
    """Move batches on, then attempt every delivery due now (what the served pump does)."""
    state = _state(request)
    _advance_batches(state)
    attempted = await webhooks.deliver_due(state)
    return JSONResponse({"attempted": [d.public() for d in attempted]})


async def reset(request: Request) -> Response:
    state = _state(request)
    state.ledger.clear()
    state.stats.clear()
    state.extra.pop("ratelimiter", None)
    return JSONResponse({"reset": True})


def routes() -> list[BaseRoute]:
    return [
        Route("/_sim/stats", get_stats, methods=["GET"]),
        Route("/_sim/ledger", get_ledger, methods=["GET"]),
        Route("/_sim/clock", get_clock, methods=["GET"]),
        Route("/_sim/clock/advance", advance_clock, methods=["POST"]),
        Route("/_sim/faults", get_faults, methods=["GET"]),
        Route("/_sim/faults", patch_faults, methods=["POST", "PATCH"]),
        Route("/_sim/answers", get_answers, methods=["GET"]),
        Route("/_sim/answers", patch_answers, methods=["POST", "PATCH"]),
        Route("/_sim/limits", get_limits, methods=["GET"]),
        Route("/_sim/limits", patch_limits, methods=["POST", "PATCH"]),
        Route("/_sim/batches/{batch_id}", get_batch, methods=["GET"]),
        Route("/_sim/batches/{batch_id}", patch_batch, methods=["POST", "PATCH"]),
        Route("/_sim/webhooks", get_webhooks, methods=["GET"]),
        Route("/_sim/webhooks", add_webhook, methods=["POST"]),
        Route("/_sim/webhooks/deliver", deliver_webhooks, methods=["POST"]),
        Route("/_sim/webhooks/{endpoint_id}", remove_webhook, methods=["DELETE"]),
        Route("/_sim/reset", reset, methods=["POST"]),
    ]
