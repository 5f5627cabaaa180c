"""A leaky bucket on an injected clock: what the rate limits are paced with.

Owns `LeakyBucket`, which real-time admission uses for each model's RPM and TPM budgets
and the batch path for its Batch-API calls per minute. It must not read the real
clock or sleep: the caller passes `now`.

Why not aiolimiter: its `AsyncLimiter` reads the event loop's clock and schedules wake-ups
with `loop.call_at`, so it cannot run on an injected clock (tests, and a simulator clock
running 10x faster) and it has no public way to set its level from headers or pause it.
`LeakyBucket` is the same leaky-bucket algorithm (level drains at max_rate / time_period;
an acquisition fits when level + amount <= max_rate), written on the injected clock.
"""

from __future__ import annotations

__all__ = ["LeakyBucket"]


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
        # What other clients of the key use per second, learnt from the headers: our level
        # drains only at what is left of the rate.
        self.foreign = 0.0
        self.corrected = 0.0  # every change of level that was not a charge, summed

    @property
    def rate(self) -> float:
        return self.capacity / self.period

    @property
    def ours(self) -> float:
        """The rate left for us: the limit's, less what other clients use (5% at least)."""
        return max(self.rate * 0.05, self.rate - self.foreign)

    def drain(self, now: float) -> None:
        elapsed = max(0.0, now - self._last)
        self.level = max(0.0, self.level - elapsed * self.ours)
        self._last = max(self._last, now)

    def wait_for(self, amount: float, now: float) -> float:
        """Seconds until `amount` fits (an oversized amount fits an empty bucket)."""
        self.drain(now)
        # Beside other clients, keep a little of the bucket free: their use comes in between
        # our headers, and a 429 wastes the key's limit (rejected requests count too).
        room = self.capacity * (0.98 if self.foreign > 0 else 1.0)
        excess = self.level + min(amount, room) - room
        return max(0.0, excess / self.ours)

    def correct(self, delta: float, now: float) -> None:
        """Move the level by `delta` (not a charge: a correction the headers asked for)."""
        self.drain(now)
        before = self.level
        self.level = max(0.0, self.level + delta)
        self.corrected += self.level - before

    def learn(
        self,
        target: float,
        sent: tuple[float, float],
        now: float,
        tau: float,
        empty: bool,
        near: bool,
    ) -> None:
        """The provider says the level was `target` right after a request we charged when
        our level was `sent[0]` (and `sent[1]` the corrections so far). The difference,
        less corrections made since, is other clients' use (or our own error): correct the
        level by it, and learn from it how fast others use the key (`tau`: how slowly)."""
        level_then, corrected_then = sent
        error = target - (level_then + self.corrected - corrected_then)
        if empty and error < 0:
            return  # "0 left" hides how far over it was: never a reason to speed up
        self.correct(error, now)
        if not near:
            return  # far from the limit, latency and rounding say more than other clients
        step = max(-0.05 * self.capacity, min(0.05 * self.capacity, error)) / tau
        self.foreign = max(0.0, min(0.95 * self.rate, self.foreign + step))

    def take(self, amount: float, now: float) -> None:
        self.drain(now)
        self.level += amount

    def give_back(self, amount: float, now: float) -> None:
        self.correct(-amount, now)

    def raise_to(self, level: float, now: float) -> None:
        self.drain(now)
        if level > self.level:
            self.correct(level - self.level, now)

    def resize(self, capacity: float) -> None:
        if capacity > 0:
            self.capacity = float(capacity)
