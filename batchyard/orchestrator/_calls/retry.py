"""The one retry layer: when a failed provider call is tried again, or not at all.

Owns `backoff` (tenacity's `wait_exponential_jitter`), `Retries` (the one answer to "when
is this tried again?" for a failed send: retry after a wait, defer to the store, or give
up) and `retrying` / `call_with_retry`, tenacity wrappers with an injected sleep, used by
the real-time path, the batch path, `verify` and the key check. What failed, and whether
it is retryable at all, is `_failures.py`'s `classify`. The SDK's own retries are off
(`max_retries=0` in `_client.py`).

A rate limit never ends a request: it says "not now", so the request waits (the
provider's retry-after, else exponential backoff with jitter) and goes again. Faults (5xx,
timeouts, dropped connections, 408, 409) are retried within a budget of
`RetryPolicy.max_attempts` sends. A `retry-after` longer than `RetryPolicy.max_retry_after`
is not slept through here: the error is re-raised so the caller can schedule the request
for later (`Failure.retry_after` tells when).

The failure vocabulary the real-time path imports from here (`Failure`, `FailureKind`,
`STOP_KINDS`, `classify`, `stop_error`) is re-exported from `_failures.py`.

It must not touch the store or the admission limits; callers do that in `on_retry`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeVar

import openai
import tenacity

from batchyard.orchestrator._calls.failures import (
    RATE_KINDS,
    STOP_KINDS,
    Failure,
    FailureKind,
    classify,
    quota_error,
    stop_error,
)
from batchyard.orchestrator._calls.timing import Sleep, real_sleep

__all__ = [
    "STOP_KINDS",
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
    "retrying",
    "stop_error",
]

T = TypeVar("T")


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
