"""Rate-limit admission: how many requests and tokens one (model, tier) may send, and when.

Owns `RateLimitAdmission` (an RPM and a TPM budget, each a `LeakyBucket` (`_bucket.py`),
plus a concurrency cap) and the table of them per (model, tier) (`RateLimitTable`); what the
headers say is read by `headers.py`. It must not call the API, touch the store or read the
real clock: time comes from the injected `Clock`/`Sleep`.

How a request is charged: the way OpenAI counts it, prompt tokens plus the requested
maximum output, and one request. After the response, `settle` replaces the estimate with the
provider's own prompt count, so estimate errors do not accumulate.

How the budgets are corrected: every response's `x-ratelimit-{limit,remaining,reset}-*`
headers go to `observe`, with what our budgets were right after that request was charged
(`Sent`). The remaining counts describe the bucket as it was when that request arrived, so
they are compared with our level at that moment (plus the corrections made since): the
difference is what other clients of the key (another process or tool, the organisation's
other users) used meanwhile. The level follows it, up or down, and the rate other clients
use is learnt from it, so our level drains only at what is left for us: batchyard paces on
what the headers say is left, not only on the limit. Headers without a `Sent` (or only a
reset) can only raise the level. A 429 calls `penalize`, which pauses the
whole model (every waiting request, not just the one that failed) for the provider's
retry-after, or until the headers say the bucket has refilled enough.

A request larger than a whole minute's budget can never fit a plain "wait for room": it
waits until the bucket is completely empty (the full minute available), then takes it all,
leaving a debt that drains like any other charge, so later requests wait their turn.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass

from batchyard.models import Tier
from batchyard.orchestrator._calls.bucket import LeakyBucket
from batchyard.orchestrator._calls.timing import Clock, Sleep
from batchyard.orchestrator.realtime.headers import RateView

__all__ = ["RateLimitAdmission", "RateLimitTable", "Sent"]

_EPSILON = 1e-6


@dataclass(frozen=True, slots=True)
class Sent:
    """Each budget's (level, corrections so far) right after a request was charged."""

    requests: tuple[float, float]
    tokens: tuple[float, float]


class RateLimitAdmission:
    """RPM + TPM budgets and a concurrency cap for one (model, tier) of real-time calls.
    (Which batch shards the Batch API's queue takes is `shards.QueueAdmission`.)

    Use `async with admission.slot(tokens):` around one call; inside, call `observe` with
    the response headers, `settle` with the provider's token count, or `penalize` after a 429.
    """

    def __init__(
        self,
        rpm: int,
        tpm: int,
        clock: Clock,
        sleep: Sleep,
        *,
        concurrency: int = 64,
        period: float = 60.0,
        headroom: float = 1.0,
        duration_scale: float = 1.0,
    ) -> None:
        if not 0 < headroom <= 1:
            raise ValueError("headroom must be in (0, 1].")
        self._clock = clock
        self._sleep = sleep
        self._headroom = headroom
        # Clock seconds per second in provider durations (reset headers, retry-after): 1
        # against OpenAI; the simulator's time_scale when our clock runs scaled with it.
        self.duration_scale = duration_scale
        now = clock()
        self.requests = LeakyBucket(rpm * headroom, period, now)
        self.tokens = LeakyBucket(tpm * headroom, period, now)
        self.paused_until = 0.0
        self.penalties = 0
        self.last_view: RateView | None = None
        self._lock = asyncio.Lock()
        self._retry_lock = asyncio.Lock()
        self._retries_waiting = 0
        self._slots = asyncio.Semaphore(concurrency)
        self.concurrency = concurrency
        self.learn_seconds = 5.0 * period / 60.0  # how slowly others' rate is learnt

    async def acquire(self, tokens: int, *, retry: bool = False) -> Sent:
        """Wait (FIFO) until one request of `tokens` fits both budgets, then charge it;
        returns the budgets' state right after the charge (for `observe`). A `retry` (a
        request sent before, that waited out its backoff) goes ahead of first sends, so
        its wait is its backoff and not the queue's length."""
        if retry:
            self._retries_waiting += 1
            try:
                async with self._retry_lock:
                    return await self._admit(tokens, retry=True)
            finally:
                self._retries_waiting -= 1
        async with self._lock:
            return await self._admit(tokens, retry=False)

    async def _admit(self, tokens: int, *, retry: bool) -> Sent:
        while True:
            now = self._clock()
            wait = max(
                self.paused_until - now,
                self.requests.wait_for(1, now),
                self.tokens.wait_for(tokens, now),
            )
            if not retry and self._retries_waiting:
                wait = max(wait, 1.0 / self.requests.ours)  # let the retry go first
            if wait <= _EPSILON:  # float residue must not spin the loop
                break
            await self._sleep(wait)
        now = self._clock()
        self.requests.take(1, now)
        self.tokens.take(tokens, now)
        return Sent(
            (self.requests.level, self.requests.corrected),
            (self.tokens.level, self.tokens.corrected),
        )

    @asynccontextmanager
    async def slot(self, tokens: int, *, retry: bool = False) -> AsyncIterator[Sent]:
        """A concurrency slot plus the budget for one request of `tokens`. A retry does
        not queue for a slot behind first sends (it held one before its backoff)."""
        if retry:
            yield await self.acquire(tokens, retry=True)
            return
        async with self._slots:
            yield await self.acquire(tokens)

    def settle(self, charged: int, actual: int) -> None:
        """Replace a charge of `charged` tokens by what the provider counted (`actual`)."""
        now = self._clock()
        if actual > charged:
            self.tokens.take(actual - charged, now)
        elif actual < charged:
            self.tokens.give_back(charged - actual, now)

    def refund(self, tokens: int) -> None:
        """Give back a request that never reached the provider (dropped before sending)."""
        now = self._clock()
        self.requests.give_back(1, now)
        self.tokens.give_back(tokens, now)

    def observe(self, headers: Mapping[str, str], sent: Sent | None = None) -> None:
        """Correct the budgets from a response's `x-ratelimit-*` headers (missing: no-op).

        With `sent` (what `acquire` returned for this request) the remaining counts are
        compared with what we expected when it was charged: the difference is other
        clients' use of the key, so the level follows it both ways and the rate left for
        us is learnt from it. Without, a header only ever raises the level."""
        view = RateView.from_headers(headers)
        self.last_view = view
        now = self._clock()
        for bucket, limit, remaining, reset, then in (
            (
                self.requests,
                view.limit_requests,
                view.remaining_requests,
                view.reset_requests,
                sent.requests if sent else None,
            ),
            (
                self.tokens,
                view.limit_tokens,
                view.remaining_tokens,
                view.reset_tokens,
                sent.tokens if sent else None,
            ),
        ):
            if limit:
                bucket.resize(limit * self._headroom)
            if remaining is not None and limit:
                target = (limit - remaining) - (limit - bucket.capacity)
                if then is not None:
                    empty = remaining <= 0.01 * limit
                    near = remaining <= 0.5 * limit
                    bucket.learn(target, then, now, self.learn_seconds, empty, near)
                else:
                    bucket.raise_to(target, now)
            elif reset is not None:
                bucket.raise_to(reset * self.duration_scale * bucket.rate, now)

    def penalize(
        self,
        retry_after: float | None,
        headers: Mapping[str, str] | None = None,
        sent: Sent | None = None,
    ) -> None:
        """A 429: pause the whole model for `retry_after` (else one request interval) and
        correct the budgets from the 429's headers. Without rate headers to correct from, both
        budgets are assumed nearly spent (the provider just said so)."""
        now = self._clock()
        self.penalties += 1
        view = RateView.from_headers(headers or {})
        if view.remaining_requests is not None or view.remaining_tokens is not None:
            self.observe(headers or {}, sent)
        else:
            self.requests.raise_to(self.requests.capacity * 0.9, now)
            self.tokens.raise_to(self.tokens.capacity * 0.9, now)
        # Without retry-after, the corrected buckets already say how long to wait.
        if retry_after is not None:
            delay = retry_after * self.duration_scale
        else:
            delay = 1.0 / self.requests.rate
        self.paused_until = max(self.paused_until, now + delay)


class RateLimitTable:
    """One `RateLimitAdmission` per (model, tier), created on first use."""

    def __init__(
        self,
        limits: Mapping[str, tuple[int, int]],
        clock: Clock,
        sleep: Sleep,
        *,
        concurrency: int = 64,
        headroom: float = 1.0,
        period: float = 60.0,
        duration_scale: float = 1.0,
    ) -> None:
        self._duration_scale = duration_scale
        self._limits = limits  # may resolve names itself (a model catalog's view)
        self._clock = clock
        self._sleep = sleep
        self._concurrency = concurrency
        self._headroom = headroom
        self._period = period
        self._table: dict[tuple[str, Tier], RateLimitAdmission] = {}

    def __getitem__(self, key: tuple[str, Tier]) -> RateLimitAdmission:
        found = self._table.get(key)
        if found is None:
            rpm, tpm = self._limits.get(key[0], (500, 200_000))
            found = RateLimitAdmission(
                rpm,
                tpm,
                self._clock,
                self._sleep,
                concurrency=self._concurrency,
                period=self._period,
                headroom=self._headroom,
                duration_scale=self._duration_scale,
            )
            self._table[key] = found
        return found

    def items(self) -> list[tuple[tuple[str, Tier], RateLimitAdmission]]:
        return list(self._table.items())
