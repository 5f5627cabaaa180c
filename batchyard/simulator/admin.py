"""The `/_sim/` admin surface: stats, the billing ledger, the clock and runtime faults.

Owns the routes outside the OpenAI API that tests and operators use to look inside the
simulator and steer it. No auth (it listens on loopback). It reads state and changes only
the clock, the fault settings and (on reset) the counters and ledger.

    GET  /_sim/stats            counters: requests by endpoint and status, 429s, faults, batches
    GET  /_sim/ledger           billed entries, totals per path, every billed custom_id's count
    GET  /_sim/clock            {"now": unix seconds, "time_scale", "advanced"}
    POST /_sim/clock/advance    {"seconds": N} jumps simulated time forward
    GET  /_sim/faults           the current FaultSettings
    POST /_sim/faults           patch FaultSettings, e.g. {"error_5xx_rate": 0.5}
    POST /_sim/reset            clear ledger, stats and rate-limit buckets (files, batches stay)
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter, defaultdict
from typing import Any

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from batchyard.simulator.batch_engine import advance_all
from batchyard.simulator.config import FaultSettings
from batchyard.simulator.errors import ApiError
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
    for key, count in sorted(state.stats.items()):
        kind, _, rest = key.partition("|")
        if kind == "request":
            endpoint, _, status = rest.rpartition("|")
            requests[endpoint][status] = count
        elif kind == "rate_limited":
            rate_limited[rest] = count
        elif kind == "fault":
            injected[rest] = count
    batches = Counter(str(getattr(rec, "status", "unknown")) for rec in state.batches.values())
    billed = Counter(entry.path for entry in state.ledger)
    return {
        "requests": dict(requests),
        "rate_limited": rate_limited,
        "faults_injected": injected,
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


async def patch_faults(request: Request) -> Response:
    state = _state(request)
    patch = await _json(request)
    try:
        state.faults = FaultSettings.model_validate({**state.faults.model_dump(), **patch})
    except ValidationError as exc:
        first = exc.errors()[0]
        param = ".".join(str(p) for p in first["loc"])
        message = f"Invalid fault setting '{param}': {first['msg']}."
        raise ApiError(400, message, param=param) from None
    return JSONResponse(state.faults.model_dump())


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
        Route("/_sim/reset", reset, methods=["POST"]),
    ]
