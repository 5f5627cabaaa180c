"""Rate-limit admission: how many requests and tokens one (model, tier) may send, and when.

Owns `RateLimitAdmission` (an RPM and a TPM budget plus a concurrency cap), the table of them
per (model, tier) (`RateLimitTable`), and `parse_duration` for the Go-style durations in
`x-ratelimit-reset-*` headers (`1s`, `6m0s`, `114ms`, `23m16.298s`). It must not call the
API, touch the store or read the real clock: time comes from the injected `Clock`/`Sleep`.

How a request is charged: the way OpenAI counts it, prompt tokens plus the requested
maximum output, and one request. After the response, `settle` replaces the estimate with the
provider's own prompt count, so estimate errors do not accumulate.

How the budgets are corrected: every response's `x-ratelimit-{limit,remaining,reset}-*`
headers go to `observe`. The provider's view of the bucket is authoritative when it is
fuller than ours (another process or tool shares the key), so our level is raised to it;
a header never lowers our level, because a response describes the bucket as it was when
that request arrived, before calls we made since. A 429 calls `penalize`, which pauses the
whole model (every waiting request, not just the one that failed) for the provider's
retry-after, or until the headers say the bucket has refilled enough.

A request larger than a whole minute's budget can never fit a plain "wait for room": it
waits until the bucket is completely empty (the full minute available), then takes it all,
leaving a debt that drains like any other charge, so later requests wait their turn.

Why not aiolimiter: its `AsyncLimiter` reads the event loop's clock and schedules wake-ups
with `loop.call_at`, so it cannot run on an injected clock (tests, and a simulator clock
running 10x faster) and it has no public way to set its level from headers or pause it.
`LeakyBucket` is the same leaky-bucket algorithm (level drains at max_rate / time_period;
an acquisition fits when level + amount <= max_rate), written on the injected clock.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass

from batchyard.models import Tier
from batchyard.orchestrator._timing import Clock, Sleep

__all__ = ["RateLimitTable", "LeakyBucket", "RateLimitAdmission", "RateView", "parse_duration"]

_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|h|m|s)")
_EPSILON = 1e-6
_UNIT = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str | None) -> float | None:
    """Seconds in a Go duration (`6m0s`, `114ms`, `23m16.298s`), a bare number of seconds,
    or None when the value is missing or unreadable."""
    if text is None:
        return None
    value = text.strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    pos, total = 0, 0.0
    for match in _DURATION.finditer(value):
        if match.start() != pos:
            return None
        total += float(match.group(1)) * _UNIT[match.group(2)]
        pos = match.end()
    return total if pos == len(value) and pos > 0 else None


class LeakyBucket:
    """A leaky bucket on an injected clock: `level` is what was spent and has not drained
    yet (0: the whole capacity is free); it drains at `capacity / period` per second.

    Hand-written rather than aiolimiter's `AsyncLimiter` (the same algorithm) because that
    one reads the event loop's clock and cannot run on an injected one (tests, the
    simulator's fast clock), and has no way to be corrected from rate-limit headers
    (`raise_to`, `resize`) or to take a request back (`give_back`). The simulator's
    `TokenBucket` counts the other way round (its level is what is left) on purpose: it
    imports nothing from batchyard, so the two cannot share a mistake.
    """

    def __init__(self, capacity: float, period: float, now: float) -> None:
        if capacity <= 0 or period <= 0:
            raise ValueError("A rate limit needs a positive capacity and period.")
        self.capacity = float(capacity)
        self.period = float(period)
        self.level = 0.0
        self._last = now

    @property
    def rate(self) -> float:
        return self.capacity / self.period

    def drain(self, now: float) -> None:
        elapsed = max(0.0, now - self._last)
        self.level = max(0.0, self.level - elapsed * self.rate)
        self._last = max(self._last, now)

    def wait_for(self, amount: float, now: float) -> float:
        """Seconds until `amount` fits (an oversized amount fits an empty bucket)."""
        self.drain(now)
        room_needed = min(amount, self.capacity)
        excess = self.level + room_needed - self.capacity
        return max(0.0, excess / self.rate)

    def take(self, amount: float, now: float) -> None:
        self.drain(now)
        self.level += amount

    def give_back(self, amount: float, now: float) -> None:
        self.drain(now)
        self.level = max(0.0, self.level - amount)

    def raise_to(self, level: float, now: float) -> None:
        self.drain(now)
        self.level = max(self.level, level)

    def resize(self, capacity: float) -> None:
        if capacity > 0:
            self.capacity = float(capacity)


@dataclass(frozen=True, slots=True)
class RateView:
    """What the provider's headers said, for reports."""

    limit_requests: int | None
    limit_tokens: int | None
    remaining_requests: int | None
    remaining_tokens: int | None
    reset_requests: float | None
    reset_tokens: float | None

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> RateView:
        def number(name: str) -> int | None:
            raw = headers.get(name)
            try:
                value = int(float(raw)) if raw is not None else None
            except ValueError:
                return None
            return value if value is not None and value >= 0 else None

        return cls(
            number("x-ratelimit-limit-requests"),
            number("x-ratelimit-limit-tokens"),
            number("x-ratelimit-remaining-requests"),
            number("x-ratelimit-remaining-tokens"),
            parse_duration(headers.get("x-ratelimit-reset-requests")),
            parse_duration(headers.get("x-ratelimit-reset-tokens")),
        )


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
        self._slots = asyncio.Semaphore(concurrency)
        self.concurrency = concurrency

    async def acquire(self, tokens: int) -> None:
        """Wait (FIFO) until one request of `tokens` fits both budgets, then charge it."""
        async with self._lock:
            while True:
                now = self._clock()
                wait = max(
                    self.paused_until - now,
                    self.requests.wait_for(1, now),
                    self.tokens.wait_for(tokens, now),
                )
                if wait <= _EPSILON:  # float residue must not spin the loop
                    break
                await self._sleep(wait)
            now = self._clock()
            self.requests.take(1, now)
            self.tokens.take(tokens, now)

    @asynccontextmanager
    async def slot(self, tokens: int) -> AsyncIterator[None]:
        """A concurrency slot plus the budget for one request of `tokens`."""
        async with self._slots:
            await self.acquire(tokens)
            yield

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

    def observe(self, headers: Mapping[str, str]) -> None:
        """Correct the budgets from a response's `x-ratelimit-*` headers (missing: no-op)."""
        view = RateView.from_headers(headers)
        self.last_view = view
        now = self._clock()
        for bucket, limit, remaining, reset in (
            (self.requests, view.limit_requests, view.remaining_requests, view.reset_requests),
            (self.tokens, view.limit_tokens, view.remaining_tokens, view.reset_tokens),
        ):
            if limit:
                bucket.resize(limit * self._headroom)
            if remaining is not None and limit:
                used = limit - remaining
                bucket.raise_to(used - (limit - bucket.capacity), now)
            elif reset is not None:
                bucket.raise_to(reset * self.duration_scale * bucket.rate, now)

    def penalize(self, retry_after: float | None, headers: Mapping[str, str] | None = None) -> None:
        """A 429: pause the whole model for `retry_after` (else one request interval) and
        correct the budgets from the 429's headers. Without rate headers to correct from, both
        budgets are assumed nearly spent (the provider just said so)."""
        now = self._clock()
        self.penalties += 1
        view = RateView.from_headers(headers or {})
        if view.remaining_requests is not None or view.remaining_tokens is not None:
            self.observe(headers or {})
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
