"""Batch output and error lines: what each one means for its request.

Owns the pure mapping from the Batch API's output/error JSONL lines to batchyard's records
(shard input lines are written with `batchyard.shards.shard_line`): `result_from_line` (one
output- or error-file line to a store `Result`), `usage_tokens` (the three usage shapes),
`line_errors` (a failed batch's `errors.data` by 1-based line) and `error_text`. No I/O, no
SDK, no store calls.

How a line is classified (reference §4; the two error shapes both count):
- `response.status_code` 2xx: SUCCEEDED, usage priced at batch rates.
- `response.status_code` 408, 409, 429 or 5xx (with `error: null`): RETRYABLE.
- any other `response.status_code` ≥ 400: FAILED, terminal, with the provider's
  `response.body.error.message` and `code` kept verbatim.
- `response: null` with `error.code` in `RETRYABLE_LINE_CODES` (`request_timeout`,
  `batch_expired`, `batch_cancelled`, generic server errors): RETRYABLE; any other code:
  FAILED with the message verbatim.
`NOT_EXECUTED_CODES` (`batch_expired`, `batch_cancelled`) mark lines the provider never ran
(nothing billed); the runner does not count them against `max_attempts`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from batchyard.catalog import ModelInfo, usage_from_body
from batchyard.models import RequestStatus, Route
from batchyard.store.rows import Result

__all__ = [
    "NOT_EXECUTED_CODES",
    "NOT_RUN_CODES",
    "RETRYABLE_LINE_CODES",
    "RETRYABLE_STATUS",
    "error_text",
    "line_errors",
    "result_from_line",
    "usage_tokens",
]

JSONDict = dict[str, Any]

NOT_EXECUTED_CODES = frozenset({"batch_expired", "batch_cancelled"})
RETRYABLE_LINE_CODES = NOT_EXECUTED_CODES | {
    "request_timeout",
    "server_error",
    "internal_error",
    "rate_limit_exceeded",
}
# Every code batchyard gives a request whose batch never ran it (not counted as an attempt).
NOT_RUN_CODES = NOT_EXECUTED_CODES | {"batch_not_run", "batch_incomplete", "token_limit_exceeded"}
RETRYABLE_STATUS = frozenset({408, 409, 429})


def usage_tokens(body: Mapping[str, Any] | None) -> tuple[int, int]:
    """(input, output) tokens from a response body's `usage`, whatever the endpoint.

    Chat and completions use `prompt_tokens`/`completion_tokens`, responses use
    `input_tokens`/`output_tokens`, embeddings only `prompt_tokens`.
    """
    usage = (body or {}).get("usage") or {}
    if not isinstance(usage, Mapping):
        return 0, 0
    given_in = usage.get("input_tokens", usage.get("prompt_tokens", 0))
    given_out = usage.get("output_tokens", usage.get("completion_tokens", 0))
    return _int(given_in), _int(given_out)


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def error_text(body: Mapping[str, Any] | None, status_code: int) -> tuple[str | None, str]:
    """(code, message) from an HTTP-shaped error body, verbatim where the provider gave them."""
    error = (body or {}).get("error")
    if isinstance(error, Mapping):
        code = error.get("code") or error.get("type")
        message = error.get("message")
        if isinstance(message, str) and message:
            return (str(code) if code else None), message
        return (str(code) if code else None), f"HTTP {status_code} with no error message."
    return None, f"HTTP {status_code} with no error body."


def result_from_line(line: Mapping[str, Any], *, shard: int, model: ModelInfo | None) -> Result:
    """The `Result` for one output- or error-file line (raises ValueError if unusable)."""
    custom_id = line.get("custom_id")
    if not isinstance(custom_id, str):
        raise ValueError("the line has no string custom_id")
    response = line.get("response")
    error = line.get("error")
    if isinstance(response, Mapping):
        request_id = response.get("request_id")
        request_id = request_id if isinstance(request_id, str) else None
        status_code = _int(response.get("status_code"))
        body = response.get("body")
        body = dict(body) if isinstance(body, Mapping) else None
        if 200 <= status_code < 300:
            tokens_in, tokens_out = usage_tokens(body)
            usage = usage_from_body("", body)  # the usage's own keys tell its shape
            cost = model.cost(Route.BATCH, usage) if model else 0.0
            return Result(
                custom_id=custom_id,
                status=RequestStatus.SUCCEEDED,
                status_code=status_code,
                response_body=body,
                input_tokens=tokens_in,
                output_tokens=tokens_out,
                cost=cost,
                shard=shard,
                route=Route.BATCH,
                request_id=request_id,
            )
        code, message = error_text(body, status_code)
        retryable = status_code >= 500 or status_code in RETRYABLE_STATUS or status_code == 0
        return Result(
            custom_id=custom_id,
            status=RequestStatus.RETRYABLE if retryable else RequestStatus.FAILED,
            status_code=status_code or None,
            response_body=body,
            error_code=code,
            error_message=message,
            shard=shard,
            route=Route.BATCH,
            request_id=request_id,
        )
    if isinstance(error, Mapping):
        code = str(error.get("code") or "") or None
        message = str(error.get("message") or "") or f"The batch reported error {code}."
        retryable = code in RETRYABLE_LINE_CODES
        return Result(
            custom_id=custom_id,
            status=RequestStatus.RETRYABLE if retryable else RequestStatus.FAILED,
            error_code=code,
            error_message=message,
            shard=shard,
            route=Route.BATCH,
        )
    raise ValueError(f"the line for {custom_id!r} has neither a response nor an error")


def line_errors(
    errors: Mapping[str, Any] | None,
) -> tuple[dict[int, list[JSONDict]], list[JSONDict]]:
    """A failed batch's `errors.data`, split into {1-based line: [errors]} and file-level ones."""
    by_line: dict[int, list[JSONDict]] = {}
    general: list[JSONDict] = []
    data = (errors or {}).get("data") or []
    for item in data:
        if not isinstance(item, Mapping):
            continue
        entry = dict(item)
        line = entry.get("line")
        if isinstance(line, int) and not isinstance(line, bool) and line >= 1:
            by_line.setdefault(line, []).append(entry)
        else:
            general.append(entry)
    return by_line, general
