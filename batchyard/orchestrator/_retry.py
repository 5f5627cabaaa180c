"""The one retry layer: which provider errors are worth another attempt, and when.

Owns `classify` (an SDK exception to a `Failure`, read from `status_code`, `code`, `type`
and the response headers, never from `str(exc)`), `retry_after` (the `retry-after-ms` /
`retry-after` headers), `backoff` (tenacity's `wait_exponential_jitter`), `Retries` (the
one answer to "when is this tried again?" for a failed send: retry after a wait, defer to
the store, or give up) and `retrying` / `call_with_retry`, tenacity wrappers with an
injected sleep, used by the real-time path, the batch path, `verify` and the key check.
The SDK's own retries are off (`max_retries=0` in `_client.py`).

Retried: connection errors, timeouts, 408, 409, 429 `rate_limit_exceeded` (and flex's 429
"resource unavailable"), 5xx. A rate limit never ends a request: it says "not now", so the
request waits (the provider's retry-after, else exponential backoff with jitter) and goes
again. Faults (5xx, timeouts, dropped connections, 408, 409) are retried within a budget
of `RetryPolicy.max_attempts` sends. Never retried: other 4xx (400, 401, 403, 404, 422) and
`insufficient_quota`, which becomes `batchyard.errors.QuotaExhausted`. A `retry-after`
longer than `RetryPolicy.max_retry_after` is not slept through here: the error is re-raised
so the caller can schedule the request for later (`Failure.retry_after` tells when).

It must not touch the store or the admission limits; callers do that in `on_retry`.
"""

from __future__ import annotations

import email.utils
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
    "FAULT_KINDS",
    "QUOTA_MESSAGE",
    "RATE_KINDS",
    "Decision",
    "Failure",
    "FailureKind",
    "Retries",
    "RetryPolicy",
    "Verdict",
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


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard to try. Delays are in the injected clock's seconds.

    Rate limits (429 `rate_limit_exceeded`, flex's "resource unavailable") never use up a
    request: it waits and goes again. Faults (5xx, timeouts, dropped connections, 408,
    409) do: after `max_attempts` sends that met one, the request fails.
    """

    max_attempts: int = 8  # sends that met a fault, first one included
    base_delay: float = 1.0  # first wait without a retry-after
    max_delay: float = 60.0  # cap of the exponential waits
    jitter: float = 0.5  # each wait gets up to this fraction of base_delay added at random
    max_retry_after: float = 120.0  # honour retry-after up to this in place; beyond, defer
    # A one-off call (`call_with_retry`: verify, the key check, Batch-API calls) gives up on
    # rate limits after waiting this long in all; the real-time path never does.
    rate_limit_budget: float = 900.0

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


_WAIT_OWNER = tenacity.Retrying()  # a wait strategy reads only the state's attempt number


def backoff(attempt: int, policy: RetryPolicy) -> float:
    """The wait before retry number `attempt` (1 = first retry) when the provider gave no
    retry-after: tenacity's `wait_exponential_jitter` (base_delay doubling up to max_delay,
    plus up to `jitter` x base_delay at random), so every wait is longer than the one
    before it and clients that failed together do not come back together."""
    wait = tenacity.wait_exponential_jitter(
        multiplier=policy.base_delay, max=policy.max_delay, jitter=policy.jitter * policy.base_delay
    )
    state = tenacity.RetryCallState(_WAIT_OWNER, None, (), {})
    state.attempt_number = max(1, attempt)
    return float(wait(state))


def delay_for(failure: Failure, attempt: int, policy: RetryPolicy) -> float:
    """The provider's retry-after when it gave one, else `backoff`."""
    if failure.retry_after is not None:
        return failure.retry_after
    return backoff(attempt, policy)


class Verdict(StrEnum):
    RETRY = "retry"  # wait `Decision.wait`, then send again
    DEFER = "defer"  # too long to wait holding the request: back to the queue until then
    GIVE_UP = "give_up"  # an error no wait can fix, or the fault budget is spent


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: Verdict
    wait: float  # clock seconds until the next send (RETRY, DEFER)
    reason: str  # why, in words (stored as the request's `not_before_reason`)


class Retries:
    """The retry bookkeeping of one request (or one call): every "when is this tried
    again?" answer for a failed send comes from `decide`.

    Every wait is the provider's retry-after (scaled by `scale`, the clock seconds per
    provider second), else `backoff` on the number of failures so far, so each is longer
    than the one before. Rate limits never give up on the real-time path
    (`rate_limit_budget` bounds one-off calls, `defer_after` None); faults give up after
    `max_attempts` of them. A wait
    of `defer_after` or more (real time) is a DEFER: the request goes back to the store
    with `not_before`, where the router can still move it.
    """

    def __init__(
        self,
        policy: RetryPolicy,
        *,
        faults: int = 0,
        scale: float = 1.0,
        defer_after: float | None = None,
    ) -> None:
        self.policy = policy
        self.faults = faults  # sends that met a fault, earlier claims included
        self.limited = 0  # rate limits in a row
        self.waited = 0.0  # clock seconds waited for rate limits
        self.scale = scale
        self.defer_after = defer_after
        self.last: Decision | None = None

    def decide(self, failure: Failure) -> Decision:
        self.last = decision = self._decide(failure)
        return decision

    def _decide(self, failure: Failure) -> Decision:
        policy = self.policy
        kind = str(failure.kind)
        if not failure.retryable:
            return Decision(Verdict.GIVE_UP, 0.0, f"{kind}: not retryable")
        if failure.kind in RATE_KINDS:
            self.limited += 1
        else:
            self.faults += 1
        number = self.limited + self.faults  # failures so far: each wait longer than the last
        if failure.kind not in RATE_KINDS and self.faults >= policy.max_attempts:
            return Decision(Verdict.GIVE_UP, 0.0, f"{kind}: {self.faults} faults")
        if failure.retry_after is not None:
            wait = failure.retry_after * self.scale
            why = f"{kind}: the provider's retry-after ({failure.retry_after:g} s)"
            too_long = failure.retry_after > policy.max_retry_after
        else:
            wait = backoff(number, policy)
            why = f"{kind}: backoff after {number} in a row"
            too_long = self.defer_after is not None and wait >= self.defer_after
        if too_long:
            if self.defer_after is None:
                return Decision(Verdict.GIVE_UP, wait, f"{why}, longer than we hold a call")
            return Decision(Verdict.DEFER, wait, why)
        if failure.kind in RATE_KINDS:
            self.waited += wait
            if self.defer_after is None and self.waited > policy.rate_limit_budget:
                return Decision(Verdict.GIVE_UP, 0.0, f"{kind}: waited {self.waited:.0f} s")
        return Decision(Verdict.RETRY, wait, why)

    def succeeded(self) -> None:
        self.limited = 0


OnRetry = Callable[[Failure, int, float], Awaitable[None] | None]
"""Called before each wait with (failure, attempt number that failed, delay)."""


def retrying(
    retries: Retries,
    *,
    sleep: Sleep = real_sleep,
    on_retry: OnRetry | None = None,
    decided: bool = False,
) -> tenacity.AsyncRetrying:
    """A tenacity controller for `async for attempt in retrying(...): with attempt: ...`,
    deciding through `retries` (retry, or stop with the last exception re-raised; what a
    DEFER or GIVE_UP means is the caller's: read `retries.last`). `decided`: the attempt
    itself called `retries.decide` for its API error (to record it), so it is not asked
    twice; any other exception is a bug and is never retried."""

    def retry(exc: BaseException) -> bool:
        if decided:
            last = retries.last
            return (
                isinstance(exc, openai.APIError)
                and last is not None
                and (last.verdict is Verdict.RETRY)
            )
        return retries.decide(classify(exc)).verdict is Verdict.RETRY

    def wait(state: tenacity.RetryCallState) -> float:
        return retries.last.wait if retries.last is not None else 0.0

    async def before_sleep(state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        if on_retry is None or exc is None:
            return
        result = on_retry(classify(exc), state.attempt_number, state.upcoming_sleep)
        if result is not None:
            await result

    return tenacity.AsyncRetrying(
        sleep=sleep,
        stop=tenacity.stop_never,
        wait=wait,
        retry=tenacity.retry_if_exception(retry),
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
        async for attempt in retrying(Retries(policy), sleep=sleep, on_retry=on_retry):
            with attempt:
                return await fn()
    except openai.APIStatusError as exc:
        failure = classify(exc)
        if failure.kind is FailureKind.QUOTA:
            raise quota_error(failure) from exc
        raise
    raise AssertionError("unreachable: tenacity either returns or raises")  # pragma: no cover
