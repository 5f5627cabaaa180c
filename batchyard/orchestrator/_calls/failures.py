"""What went wrong with one provider call, in the terms the orchestrator acts on.

Owns `classify` (an SDK exception to a `Failure`, read from `status_code`, `code`, `type`
and the response headers, never from `str(exc)`), `retry_after` (the `retry-after-ms` /
`retry-after` headers), the kinds of failure (`FailureKind`; `RATE_KINDS`, `FAULT_KINDS`,
`STOP_KINDS`) and the errors that stop dispatch (`stop_error`, `quota_error`).

Retryable: connection errors, timeouts, 408, 409, 429 `rate_limit_exceeded` (and flex's
429 "resource unavailable"), 5xx. Never retryable: other 4xx (400, 401, 403, 404, 422) and
`insufficient_quota`, which becomes `batchyard.errors.QuotaExhausted`. When and how often a
retryable failure is tried again is `_retry.py`'s.

It must not wait, retry, or touch the store.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

import openai

from batchyard.errors import DispatchStopped, QuotaExhausted

__all__ = [
    "FAULT_KINDS",
    "QUOTA_MESSAGE",
    "RATE_KINDS",
    "STOP_KINDS",
    "Failure",
    "FailureKind",
    "classify",
    "quota_error",
    "retry_after",
    "stop_error",
]

QUOTA_MESSAGE = (
    "The OpenAI account has no quota left (insufficient_quota): real-time dispatch stopped. "
    "Add credit or raise the project's budget at https://platform.openai.com/settings, "
    "then run `batchyard resume`."
)


class FailureKind(StrEnum):
    CONNECTION = "connection"  # dropped or refused connection
    TIMEOUT = "timeout"  # read/connect timeout, or HTTP 408
    CONFLICT = "conflict"  # 409
    RATE_LIMIT = "rate_limit"  # 429 rate_limit_exceeded: slow the whole model down
    FLEX_UNAVAILABLE = "flex_unavailable"  # 429 resource unavailable on flex (unbilled)
    SERVER = "server"  # 5xx
    QUOTA = "quota"  # 429 insufficient_quota: stop dispatch
    SETUP = "setup"  # 401, 403, or 404 "Invalid URL": the key or base URL is wrong
    CLIENT = "client"  # any other 4xx: the request itself is wrong
    OTHER = "other"  # not an API error at all: a bug, never retried


RATE_KINDS = frozenset({FailureKind.RATE_LIMIT, FailureKind.FLEX_UNAVAILABLE})
FAULT_KINDS = frozenset(
    {FailureKind.CONNECTION, FailureKind.TIMEOUT, FailureKind.CONFLICT, FailureKind.SERVER}
)

_RETRYABLE = frozenset(
    {
        FailureKind.CONNECTION,
        FailureKind.TIMEOUT,
        FailureKind.CONFLICT,
        FailureKind.RATE_LIMIT,
        FailureKind.FLEX_UNAVAILABLE,
        FailureKind.SERVER,
    }
)


@dataclass(frozen=True, slots=True)
class Failure:
    """What went wrong with one call, in the terms the orchestrator acts on."""

    kind: FailureKind
    status_code: int | None
    code: str | None
    message: str  # the provider's message verbatim when there is one
    retry_after: float | None = None  # seconds the provider asked us to wait
    body: dict[str, object] | None = None  # the provider's error object
    request_id: str | None = None  # the provider's x-request-id of the error answer

    @property
    def retryable(self) -> bool:
        return self.kind in _RETRYABLE


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    return value.strip() if isinstance(value, str) and value.strip() else None


def retry_after(headers: Mapping[str, str] | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from `retry-after-ms`, else `retry-after` (seconds or HTTP date)."""
    if not headers:
        return None
    millis = _header(headers, "retry-after-ms")
    if millis is not None:
        try:
            return max(0.0, float(millis) / 1000.0)
        except ValueError:
            pass
    value = _header(headers, "retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _error_body(exc: openai.APIStatusError) -> dict[str, object] | None:
    body = exc.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        return dict(inner) if isinstance(inner, dict) else None
    return None


def classify(exc: BaseException) -> Failure:
    """Map an exception from an SDK call onto a `Failure`."""
    if isinstance(exc, openai.APITimeoutError):
        return Failure(FailureKind.TIMEOUT, None, None, "The request timed out.")
    if isinstance(exc, openai.APIConnectionError):
        return Failure(FailureKind.CONNECTION, None, None, f"Connection error: {exc.message}")
    if not isinstance(exc, openai.APIStatusError):
        return Failure(FailureKind.OTHER, None, None, f"{type(exc).__name__}: {exc}")
    status = exc.status_code
    body = _error_body(exc)
    code = exc.code if isinstance(exc.code, str) else None
    kind_text = exc.type if isinstance(exc.type, str) else None
    message = body.get("message") if body else None
    text = message if isinstance(message, str) and message else exc.message
    wait = retry_after(exc.response.headers)
    if status == 429:
        if code == "insufficient_quota" or kind_text == "insufficient_quota":
            kind = FailureKind.QUOTA
        elif code == "rate_limit_exceeded" or kind_text in ("requests", "tokens"):
            kind = FailureKind.RATE_LIMIT
        else:
            # Flex's capacity shortage ("Resource Unavailable"); its body is not documented,
            # so any other 429 is treated as it: retryable, and not the account's limit.
            kind = FailureKind.FLEX_UNAVAILABLE
    elif status == 408:
        kind = FailureKind.TIMEOUT
    elif status == 409:
        kind = FailureKind.CONFLICT
    elif status >= 500:
        kind = FailureKind.SERVER
    elif status in (401, 403) or (status == 404 and text.startswith("Invalid URL")):
        kind = FailureKind.SETUP  # every call would fail alike: not the request's fault
    else:
        kind = FailureKind.CLIENT
    return Failure(kind, status, code, text, wait, body, exc.response.headers.get("x-request-id"))


STOP_KINDS = frozenset({FailureKind.QUOTA, FailureKind.SETUP})


def stop_error(failure: Failure) -> DispatchStopped:
    """The error that stops real-time dispatch for a QUOTA or SETUP failure."""
    if failure.kind is FailureKind.QUOTA:
        return quota_error(failure)
    return DispatchStopped(
        f"The API refused the call ({failure.status_code}: {failure.message}); check "
        "OPENAI_API_KEY and OPENAI_BASE_URL (it should end in /v1)."
    )


def quota_error(failure: Failure) -> QuotaExhausted:
    """The error that stops real-time dispatch, with the provider's words appended."""
    return QuotaExhausted(f"{QUOTA_MESSAGE} The API said: {failure.message}")
