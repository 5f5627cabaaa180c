"""The simulator's Batches API: create, retrieve, list and cancel.

Owns `BatchRecord` (one batch as the simulator remembers it), the Batch JSON (built from
`openai.types.Batch`), the checks the API makes synchronously at create (endpoint,
completion_window, metadata, output_expires_after), the batch-creation rate limit and the
"create succeeded but the
response was lost" fault (the batch is stored, then faults.DroppedResponse cuts the
connection). Every read first calls `advance_all()` so batches move on the simulated
clock; the lifecycle itself lives in batch_engine, input checks in batch_validate.
"""

from __future__ import annotations

import json
import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from openai.types import Batch
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from batchyard.simulator import batch_engine
from batchyard.simulator.batch_engine import TERMINAL, LineResult, advance_all
from batchyard.simulator.batch_validate import json_type
from batchyard.simulator.errors import ApiError
from batchyard.simulator.faults import DroppedResponse
from batchyard.simulator.files import (
    check_expiry_seconds,
    invalid_value,
    missing,
    page,
    query_int,
    sim_state,
)
from batchyard.simulator.ratelimit import go_duration
from batchyard.simulator.state import SimState

__all__ = [
    "BATCH_ENDPOINTS",
    "BatchRecord",
    "advance_all",
    "batch_json",
    "cancel_batch",
    "create_batch",
    "list_batches",
    "retrieve_batch",
]

# The SPEC's CreateBatchRequest enum; the simulator executes only the first three.
BATCH_ENDPOINTS = (
    "/v1/chat/completions",
    "/v1/responses",
    "/v1/embeddings",
    "/v1/completions",
    "/v1/moderations",
    "/v1/images/generations",
    "/v1/images/edits",
    "/v1/videos",
)
# The supported-values list OpenAI's own 400 names (observed verbatim, reference §2.1).
_ENDPOINTS_MESSAGE = (
    "Supported values are: '/v1/chat/completions', '/v1/completions', '/v1/embeddings', "
    "and '/v1/responses'."
)
METADATA_MAX_PAIRS, METADATA_MAX_KEY, METADATA_MAX_VALUE = 16, 64, 512
_STAMPS = (
    "in_progress_at",
    "finalizing_at",
    "completed_at",
    "failed_at",
    "expired_at",
    "cancelling_at",
    "cancelled_at",
)
_BAD_JSON = (
    "We could not parse the JSON body of your request. (HINT: This likely means you aren't "
    "using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was "
    "sent was not valid JSON. If you have trouble figuring out how to fix this, please "
    "contact us through our help center at help.openai.com.)"
)


@dataclass
class BatchRecord:
    """One batch. Times are simulated unix seconds (floats); the JSON shows them as ints."""

    id: str
    endpoint: str
    input_file_id: str
    completion_window: str
    metadata: dict[str, str] | None
    created: float
    expires: float
    output_expires_after: int | None = None
    status: str = "validating"
    times: dict[str, float] = field(default_factory=dict)  # "in_progress_at" -> when
    model: str | None = None
    errors: list[dict[str, Any]] | None = None
    lines: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    prompts: list[int] = field(default_factory=list)
    enqueued_tokens: int = 0
    turnaround: float = 0.0
    order: list[int] = field(default_factory=list)  # completion order of line indexes
    results: list[LineResult] = field(default_factory=list)  # in completion order
    cancel_done: int = 0
    cancelling_for: float = 0.0  # simulated seconds from cancelling to cancelled
    overrides: dict[str, Any] = field(default_factory=dict)  # set by POST /_sim/batches/{id}
    output_file_id: str | None = None
    error_file_id: str | None = None
    final_counts: tuple[int, int, int] | None = None  # total, completed, failed
    usage: dict[str, Any] | None = None

    def request_counts(self) -> dict[str, int]:
        if self.final_counts is not None:
            total, completed, failed = self.final_counts
        else:
            total = len(self.lines)
            completed = sum(1 for r in self.results if r.succeeded)
            failed = len(self.results) - completed
        return {"total": total, "completed": completed, "failed": failed}


def batch_json(rec: BatchRecord) -> dict[str, Any]:
    """The Batch object. Unset fields are omitted: the spec types them non-nullable."""
    fields: dict[str, Any] = {
        "id": rec.id,
        "object": "batch",
        "endpoint": rec.endpoint,
        "model": rec.model,
        "errors": {"object": "list", "data": rec.errors} if rec.errors else None,
        "input_file_id": rec.input_file_id,
        "completion_window": rec.completion_window,
        "status": rec.status,
        "output_file_id": rec.output_file_id,
        "error_file_id": rec.error_file_id,
        "created_at": int(rec.created),
        "expires_at": int(rec.expires),
        "request_counts": rec.request_counts(),
        "usage": rec.usage,
        "metadata": rec.metadata,
    }
    for stamp in _STAMPS:
        at = rec.times.get(stamp)
        fields[stamp] = None if at is None else int(at)
    dumped = Batch(**fields).model_dump(mode="json")
    return {key: value for key, value in dumped.items() if value is not None}


def _get(state: SimState, batch_id: str) -> BatchRecord:
    rec = state.batches.get(batch_id)
    if rec is None:
        raise ApiError(404, f"No batch found with id '{batch_id}'.")
    return rec


def _check_metadata(metadata: object) -> dict[str, str] | None:
    if metadata is None:
        return None
    if not isinstance(metadata, dict):
        message = (
            f"Invalid type for 'metadata': expected an object, but got "
            f"{json_type(metadata)} instead."
        )
        raise ApiError(400, message, param="metadata", code="invalid_type")
    if len(metadata) > METADATA_MAX_PAIRS:
        message = (
            f"Invalid 'metadata': too many properties. Expected an object with at most "
            f"{METADATA_MAX_PAIRS} properties, but got an object with {len(metadata)} "
            "properties instead."
        )
        raise ApiError(400, message, param="metadata", code="object_above_max_properties")
    for key, value in metadata.items():
        if len(key) > METADATA_MAX_KEY:
            message = (
                f"Invalid 'metadata': key too long. Expected a key with maximum length "
                f"{METADATA_MAX_KEY}, but got a key with length {len(key)} instead."
            )
            raise ApiError(400, message, param="metadata", code="string_above_max_length")
        param = f"metadata.{key}"
        if not isinstance(value, str):
            message = (
                f"Invalid type for '{param}': expected a string, but got "
                f"{json_type(value)} instead."
            )
            raise ApiError(400, message, param=param, code="invalid_type")
        if len(value) > METADATA_MAX_VALUE:
            message = (
                f"Invalid '{param}': string too long. Expected a string with maximum length "
                f"{METADATA_MAX_VALUE}, but got a string with length {len(value)} instead."
            )
            raise ApiError(400, message, param=param, code="string_above_max_length")
    return dict(metadata)


def _check_output_expiry(raw: object) -> int | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        message = (
            "Invalid type for 'output_expires_after': expected an object, but got "
            f"{json_type(raw)} instead."
        )
        raise ApiError(400, message, param="output_expires_after", code="invalid_type")
    if raw.get("anchor") != "created_at":
        raise invalid_value("output_expires_after.anchor", raw.get("anchor"), ["created_at"])
    if raw.get("seconds") is None:
        raise missing("output_expires_after.seconds")
    return check_expiry_seconds("output_expires_after.seconds", raw["seconds"])


def _required_string(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if value is None:
        raise missing(name)
    if not isinstance(value, str):
        message = (
            f"Invalid type for '{name}': expected a string, but got {json_type(value)} instead."
        )
        raise ApiError(400, message, param=name, code="invalid_type")
    return value


async def create_batch(request: Request) -> Response:
    """POST /v1/batches: check what the API checks synchronously, answer `validating`."""
    state = sim_state(request)
    try:
        body = json.loads(await request.body())
    except ValueError:
        raise ApiError(400, _BAD_JSON) from None
    if not isinstance(body, dict):
        raise ApiError(400, _BAD_JSON)
    input_file_id = _required_string(body, "input_file_id")
    endpoint = _required_string(body, "endpoint")
    if endpoint not in BATCH_ENDPOINTS:
        message = f"Invalid value: '{endpoint}'. {_ENDPOINTS_MESSAGE}"
        raise ApiError(400, message, param="endpoint", code="invalid_value")
    window = _required_string(body, "completion_window")
    if window != "24h":
        raise invalid_value("completion_window", window, ["24h"])
    metadata = _check_metadata(body.get("metadata"))
    output_expiry = _check_output_expiry(body.get("output_expires_after"))
    advance_all(state)  # earlier batches' transitions happen before this one exists
    now = state.now()
    _admit_create(state, now)
    rec = BatchRecord(
        id=state.new_id("batch_", 32),
        endpoint=endpoint,
        input_file_id=input_file_id,
        completion_window=window,
        metadata=metadata,
        created=now,
        expires=int(now) + state.config.batch.completion_window_seconds,
        output_expires_after=output_expiry,
    )
    state.batches[rec.id] = rec
    state.stats["batches_created"] += 1
    state.stats["batches_validating"] += 1
    if state.faults.lost_create_rate and state.rng.random() < state.faults.lost_create_rate:
        state.stats["batches_create_responses_lost"] += 1
        return DroppedResponse()
    return JSONResponse(batch_json(rec))


def _admit_create(state: SimState, now: float) -> None:
    """At most `batch.max_creates_per_hour` batches in any hour of simulated time.

    OpenAI allows 2,000 batch creations an hour per organisation (batch guide); the 429's
    body is modelled on its RPM message (the real one is unconfirmed). Only created
    batches count.
    """
    limit = state.config.batch.max_creates_per_hour
    recent: deque[float] = state.extra.setdefault("batch_creates", deque())
    while recent and recent[0] <= now - 3600:
        recent.popleft()
    if len(recent) < limit:
        recent.append(now)
        return
    wait = recent[len(recent) - limit] + 3600 - now if limit > 0 else 3600.0
    scale = state.clock.time_scale
    real = wait / scale if scale > 0 else wait
    state.stats["batches_create_rate_limited"] += 1
    headers = {}
    if state.faults.rate_limit_headers == "all":
        headers = {
            "retry-after-ms": str(math.ceil(real * 1000)),
            "retry-after": str(max(1, math.ceil(real))),
        }
    raise ApiError(
        429,
        f"Rate limit reached for batch creation in organization {state.config.organization}: "
        f"Limit {limit} batches per hour, Used {len(recent)}, Requested 1. Please try again "
        f"in {go_duration(real)}. If you need to submit more requests, increase the number of "
        "requests per batch. Visit https://platform.openai.com/account/rate-limits to learn "
        "more.",
        type="requests",
        code="rate_limit_exceeded",
        headers=headers,
    )


async def retrieve_batch(request: Request) -> Response:
    """GET /v1/batches/{batch_id}."""
    state = sim_state(request)
    advance_all(state)
    return JSONResponse(batch_json(_get(state, request.path_params["batch_id"])))


async def list_batches(request: Request) -> Response:
    """GET /v1/batches?after=&limit= (newest first)."""
    state = sim_state(request)
    advance_all(state)
    limit = query_int(request, "limit", 20, 1, 100)
    newest_first = list(reversed(state.batches.values()))
    chosen, has_more = page(newest_first, lambda r: r.id, request.query_params.get("after"), limit)
    result: dict[str, Any] = {
        "object": "list",
        "data": [batch_json(rec) for rec in chosen],
        "has_more": has_more,
    }
    if chosen:
        result["first_id"], result["last_id"] = chosen[0].id, chosen[-1].id
    return JSONResponse(result)


async def cancel_batch(request: Request) -> Response:
    """POST /v1/batches/{batch_id}/cancel."""
    state = sim_state(request)
    advance_all(state)
    rec = _get(state, request.path_params["batch_id"])
    if rec.status in (*TERMINAL, "finalizing") and rec.status != "cancelled":
        raise ApiError(409, f"Cannot cancel a batch with status '{rec.status}'.")
    if rec.status in ("validating", "in_progress"):
        batch_engine.cancel(state, rec)
    return JSONResponse(batch_json(rec))
