"""The one retry layer: which provider errors are worth another attempt, and when.

Owns `classify` (an SDK exception to a `Failure`, read from `status_code`, `code`, `type`
and the response headers, never from `str(exc)`), `retry_after` (the `retry-after-ms` /
`retry-after` headers), jittered exponential `backoff`, and `retrying` / `call_with_retry`,
tenacity wrappers with an injected sleep, used by both the real-time and the batch path.
The SDK's own retries are off (`max_retries=0` in `_client.py`).

Retried: connection errors, timeouts, 408, 409, 429 `rate_limit_exceeded` (and flex's 429
"resource unavailable"), 5xx. Never retried: other 4xx (400, 401, 403, 404, 422) and
`insufficient_quota`, which becomes `batchyard.errors.QuotaExhausted`. A `retry-after`
longer than `RetryPolicy.max_retry_after` is not slept through here: the error is re-raised
so the caller can schedule the request for later (`Failure.retry_after` tells when).

It must not touch the store or the admission limits; callers do that in `on_retry`.
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeVar

import openai
import tenacity

from batchyard.errors import DispatchStopped, QuotaExhausted
from batchyard.orchestrator._timing import Sleep, real_sleep

__all__ = [
    "QUOTA_MESSAGE",
    "Failure",
    "FailureKind",
    "RetryPolicy",
    "backoff",
    "call_with_retry",
    "classify",
    "delay_for",
    "STOP_KINDS",
    "quota_error",
    "stop_error",
    "retry_after",
    "retrying",
]

T = TypeVar("T")

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

    @property
    def retryable(self) -> bool:
        return self.kind in _RETRYABLE


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard to try. Delays are in the injected clock's seconds."""

    max_attempts: int = 5  # calls in total, first one included
    base_delay: float = 0.5  # first backoff
    max_delay: float = 30.0  # backoff cap
    jitter: float = 0.25  # each backoff is reduced by up to this fraction
    max_retry_after: float = 120.0  # honour retry-after up to this; beyond, give up here

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1.")


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
    return Failure(kind, status, code, text, wait, body)


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


def backoff(attempt: int, policy: RetryPolicy, rng: random.Random | None = None) -> float:
    """Jittered exponential delay before retry number `attempt` (1 = first retry)."""
    raw: float = min(policy.base_delay * 2.0 ** max(0, attempt - 1), policy.max_delay)
    draw: float = (rng or random).random()
    return raw * (1.0 - policy.jitter * draw)


def delay_for(failure: Failure, attempt: int, policy: RetryPolicy) -> float:
    """The provider's retry-after when it gave one, else `backoff`."""
    if failure.retry_after is not None:
        return failure.retry_after
    return backoff(attempt, policy)


def _should_retry(policy: RetryPolicy) -> Callable[[BaseException], bool]:
    def predicate(exc: BaseException) -> bool:
        failure = classify(exc)
        if not failure.retryable:
            return False
        return failure.retry_after is None or failure.retry_after <= policy.max_retry_after

    return predicate


OnRetry = Callable[[Failure, int, float], Awaitable[None] | None]
"""Called before each backoff with (failure, attempt number that failed, delay)."""


Delay = Callable[[Failure, int], float]
"""Seconds to wait after `Failure` on attempt number n (default: `delay_for`)."""


def retrying(
    policy: RetryPolicy,
    *,
    sleep: Sleep = real_sleep,
    on_retry: OnRetry | None = None,
    delay: Delay | None = None,
    max_attempts: int | None = None,
) -> tenacity.AsyncRetrying:
    """A tenacity controller for `async for attempt in retrying(...): with attempt: ...`.

    `delay` replaces the wait rule, `max_attempts` the policy's bound (e.g. what is left of
    a request's attempts). Re-raises the last exception when attempts run out or the
    error is not retryable.
    """

    def wait(state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if exc is None:
            return 0.0
        failure = classify(exc)
        seconds: float
        if delay is not None:
            seconds = delay(failure, state.attempt_number)
        else:
            seconds = delay_for(failure, state.attempt_number, policy)
        return seconds

    async def before_sleep(state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        if on_retry is None or exc is None:
            return
        delay = state.upcoming_sleep
        result = on_retry(classify(exc), state.attempt_number, delay)
        if result is not None:
            await result

    return tenacity.AsyncRetrying(
        sleep=sleep,
        stop=tenacity.stop_after_attempt(max_attempts or policy.max_attempts),
        wait=wait,
        retry=tenacity.retry_if_exception(_should_retry(policy)),
        before_sleep=before_sleep,
        reraise=True,
    )


async def call_with_retry(
    fn: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    sleep: Sleep = real_sleep,
    on_retry: OnRetry | None = None,
) -> T:
    """Await `fn()` until it succeeds, retrying what `classify` calls retryable.

    Raises `QuotaExhausted` on insufficient_quota, otherwise re-raises the SDK's last
    exception (pass it to `classify` for the status, code and message).
    """
    try:
        async for attempt in retrying(policy, sleep=sleep, on_retry=on_retry):
            with attempt:
                return await fn()
    except openai.APIStatusError as exc:
        failure = classify(exc)
        if failure.kind is FailureKind.QUOTA:
            raise quota_error(failure) from exc
        raise
    raise AssertionError("unreachable: tenacity either returns or raises")  # pragma: no cover
