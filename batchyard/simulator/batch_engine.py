"""The batch engine: moves batches through their lifecycle on the simulated clock.

Owns every status transition after create (validating → failed | in_progress →
finalizing → completed, expiry, cancelling → cancelled), running input lines through
`execute()`, writing output and error files, the `usage` aggregate, billing each
succeeded line exactly once, and queueing the webhook event of each batch that ends.
Transitions are evaluated lazily: `advance_all()` replays every transition due by now in
time order, so the enqueued-token limit sees other batches as they were at that moment.
It must not handle HTTP or validate create requests.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from batchyard.simulator import webhooks
from batchyard.simulator.batch_schedule import draw_cancelling, draw_turnaround
from batchyard.simulator.batch_validate import batch_error, validate_input
from batchyard.simulator.execute import execute, price
from batchyard.simulator.files import BATCH_FILE_TTL, store_file
from batchyard.simulator.names import resolve
from batchyard.simulator.state import LedgerEntry, SimState

if TYPE_CHECKING:
    from batchyard.simulator.batches import BatchRecord

__all__ = ["ACTIVE", "TERMINAL", "LineResult", "advance_all", "cancel", "done_count"]

TERMINAL = ("completed", "failed", "expired", "cancelled")
ACTIVE = ("in_progress", "finalizing", "cancelling")  # admitted batches holding enqueued tokens
_SERVER_ERROR = {
    "error": {
        "message": "The server had an error while processing your request. Sorry about that!",
        "type": "server_error",
        "param": None,
        "code": None,
    }
}
_NON_HTTP = {
    "request_timeout": "The underlying call to the model timed out.",
    "batch_expired": "This request could not be executed before the completion window expired.",
    "batch_cancelled": "The batch was cancelled before this request executed.",
}


@dataclass(frozen=True)
class LineResult:
    """One executed input line, as it will appear in the output or error file."""

    custom_id: str
    line: dict[str, Any]  # the output/error file line object
    succeeded: bool
    model: str
    request_id: str | None
    input_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    cached_tokens: int = 0


def _next_event(state: SimState, rec: BatchRecord) -> float | None:
    settings = state.config.batch
    if rec.status == "validating":
        return min(rec.created + settings.validation_seconds, rec.expires)
    if rec.status == "in_progress":
        return min(rec.times["in_progress_at"] + rec.turnaround, rec.expires)
    if rec.status == "finalizing":
        return rec.times["finalizing_at"] + settings.finalizing_seconds
    if rec.status == "cancelling":
        return rec.times["cancelling_at"] + rec.cancelling_for
    return None


def advance_all(state: SimState) -> None:
    """Apply every transition due by the simulated now, earliest first; run due lines."""
    now = state.now()
    while True:
        due: tuple[float, BatchRecord] | None = None
        for rec in state.batches.values():
            at = _next_event(state, rec)
            if at is not None and at <= now and (due is None or at < due[0]):
                due = (at, rec)
        if due is None:
            break
        _fire(state, due[1], due[0])
    for rec in state.batches.values():
        if rec.status == "in_progress":
            _run_lines(state, rec, done_count(rec, now))


def done_count(rec: BatchRecord, at: float) -> int:
    """Lines finished by `at`: they complete evenly over the batch's turnaround."""
    total = len(rec.lines)
    start = rec.times.get("in_progress_at")
    if start is None or at < start:
        return 0
    if rec.turnaround <= 0:
        return total
    return min(total, math.floor(total * (at - start) / rec.turnaround + 1e-9))


def cancel(state: SimState, rec: BatchRecord) -> None:
    """Start cancelling a validating or in_progress batch (call advance_all first)."""
    now = state.now()
    if rec.status == "in_progress":
        _run_lines(state, rec, done_count(rec, now))
    rec.cancel_done = len(rec.results)
    rec.cancelling_for = draw_cancelling(state, rec)
    _enter(state, rec, "cancelling", now)


def _enter(state: SimState, rec: BatchRecord, status: str, at: float) -> None:
    rec.status = status
    rec.times[f"{status}_at"] = at
    state.stats[f"batches_{status}"] += 1
    if status in TERMINAL:
        webhooks.enqueue(state, f"batch.{status}", rec.id, at)


def _fire(state: SimState, rec: BatchRecord, at: float) -> None:
    if rec.status == "validating":
        if at >= rec.expires:
            _materialise(state, rec, at, 0, "batch_expired")
            _enter(state, rec, "expired", at)
        else:
            _validate(state, rec, at)
    elif rec.status == "in_progress":
        if rec.times["in_progress_at"] + rec.turnaround <= rec.expires:
            _run_lines(state, rec, len(rec.lines))
            _enter(state, rec, "finalizing", at)
        else:
            _materialise(state, rec, at, done_count(rec, at), "batch_expired")
            _enter(state, rec, "expired", at)
    elif rec.status == "finalizing":
        _materialise(state, rec, at, len(rec.lines), None)
        _enter(state, rec, "completed", at)
    elif rec.status == "cancelling":
        _materialise(state, rec, at, rec.cancel_done, "batch_cancelled")
        _enter(state, rec, "cancelled", at)


def _validate(state: SimState, rec: BatchRecord, at: float) -> None:
    parsed = validate_input(
        state, rec.endpoint, rec.input_file_id, state.files.get(rec.input_file_id)
    )
    if parsed.errors or parsed.model is None:
        rec.errors = parsed.errors
        _enter(state, rec, "failed", at)
        return
    rec.model = parsed.model
    rec.lines, rec.prompts = parsed.lines, parsed.prompts
    tokens = sum(parsed.prompts)
    resolved = resolve(state, parsed.model)
    assert resolved is not None  # validate_input accepted the model
    # Snapshots and ft: names share their entry's pool (the simulator's choice).
    held = sum(
        other.enqueued_tokens
        for other in state.batches.values()
        if other is not rec and other.status in ACTIVE and _pool(state, other) == resolved.base
    )
    if held + tokens > resolved.spec.enqueued_token_limit:
        spec = resolved.spec
        message = (
            f"Enqueued token limit reached for {parsed.model} in organization "
            f"{state.config.organization}. Limit: {spec.enqueued_token_limit:,} enqueued "
            "tokens. Please try again once some in_progress batches have been completed."
        )
        rec.errors = [batch_error("token_limit_exceeded", message)]
        rec.lines, rec.prompts = [], []
        _enter(state, rec, "failed", at)
        return
    rec.enqueued_tokens = tokens
    rec.turnaround = draw_turnaround(state, rec)
    rec.order = list(range(len(rec.lines)))
    state.rng.shuffle(rec.order)
    _enter(state, rec, "in_progress", at)


def _pool(state: SimState, rec: BatchRecord) -> str | None:
    """The table entry whose enqueued-token pool a batch draws on."""
    resolved = resolve(state, rec.model) if rec.model else None
    return resolved.base if resolved else None


def _run_lines(state: SimState, rec: BatchRecord, upto: int) -> None:
    """Execute lines in completion order until `upto` have finished (each exactly once)."""
    while len(rec.results) < upto:
        rec.results.append(_execute_line(state, rec, rec.order[len(rec.results)]))


def _execute_line(state: SimState, rec: BatchRecord, index: int) -> LineResult:
    custom_id, body = rec.lines[index]
    model = rec.model or ""
    line_id = state.new_id("batch_req_", 32)
    request_id = state.new_id("req_", 32)
    faults = state.faults
    draw = state.rng.random()
    if draw < faults.batch_line_error_rate:
        response = {"status_code": 500, "request_id": request_id, "body": _SERVER_ERROR}
        line = {"id": line_id, "custom_id": custom_id, "response": response, "error": None}
        return LineResult(custom_id, line, False, model, request_id)
    if draw < faults.batch_line_error_rate + faults.batch_line_timeout_rate:
        return LineResult(
            custom_id, _non_http(line_id, custom_id, "request_timeout"), False, model, None
        )
    outcome = execute(state, rec.endpoint, body, batch=True, prompt=rec.prompts[index])
    response = {"status_code": outcome.status_code, "request_id": request_id, "body": outcome.body}
    line = {"id": line_id, "custom_id": custom_id, "response": response, "error": None}
    if outcome.status_code != 200:
        return LineResult(custom_id, line, False, model, request_id)
    reasoning, cached = _details(outcome.body)
    return LineResult(
        custom_id,
        line,
        True,
        outcome.model or model,
        request_id,
        outcome.input_tokens,
        outcome.output_tokens,
        reasoning,
        cached,
    )


def _details(body: dict[str, Any]) -> tuple[int, int]:
    """(reasoning_tokens, cached_tokens) from a chat or responses `usage`."""
    usage = body.get("usage") or {}
    out = usage.get("completion_tokens_details") or usage.get("output_tokens_details") or {}
    inp = usage.get("prompt_tokens_details") or usage.get("input_tokens_details") or {}
    return int(out.get("reasoning_tokens") or 0), int(inp.get("cached_tokens") or 0)


def _non_http(line_id: str, custom_id: str, code: str) -> dict[str, Any]:
    error = {"code": code, "message": _NON_HTTP[code]}
    return {"id": line_id, "custom_id": custom_id, "response": None, "error": error}


def _jsonl(lines: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines).encode()


def _materialise(
    state: SimState, rec: BatchRecord, at: float, upto: int, leftover: str | None
) -> None:
    """Write the output/error files, the usage aggregate and the bill, once per batch.

    Lines appear in completion order (a seeded shuffle of the input), and the lines that
    never ran follow in the error file with the `leftover` code.
    """
    _run_lines(state, rec, upto)
    done = rec.results[:upto]
    succeeded = [r for r in done if r.succeeded]
    errors = [r.line for r in done if not r.succeeded]
    if leftover is not None:
        for index in rec.order[upto:]:
            custom_id = rec.lines[index][0]
            errors.append(_non_http(state.new_id("batch_req_", 32), custom_id, leftover))
    created = int(at)
    expires_at = created + (rec.output_expires_after or BATCH_FILE_TTL)
    if succeeded:
        data = _jsonl([r.line for r in succeeded])
        name = f"{rec.id}_output.jsonl"
        rec.output_file_id = store_file(state, name, "batch_output", data, expires_at, created).id
    if errors:
        name = f"{rec.id}_error.jsonl"
        rec.error_file_id = store_file(
            state, name, "batch_output", _jsonl(errors), expires_at, created
        ).id
    rec.final_counts = (len(rec.lines), len(succeeded), len(errors))
    if rec.lines:
        rec.usage = {
            "input_tokens": sum(r.input_tokens for r in succeeded),
            "input_tokens_details": {"cached_tokens": sum(r.cached_tokens for r in succeeded)},
            "output_tokens": sum(r.output_tokens for r in succeeded),
            "output_tokens_details": {
                "reasoning_tokens": sum(r.reasoning_tokens for r in succeeded)
            },
            "total_tokens": sum(r.input_tokens + r.output_tokens for r in succeeded),
        }
    for result in succeeded:
        state.bill(
            LedgerEntry(
                path="batch",
                model=result.model,
                endpoint=rec.endpoint,
                request_id=result.request_id or "",
                custom_id=result.custom_id,
                batch_id=rec.id,
                input_tokens=result.input_tokens,
                output_tokens=result.output_tokens,
                cost=price(
                    state,
                    result.model,
                    result.input_tokens,
                    result.output_tokens,
                    "batch",
                    cached=result.cached_tokens,
                ),
                at=at,
            )
        )
