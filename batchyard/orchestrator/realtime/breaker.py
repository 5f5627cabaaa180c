"""A circuit breaker per model: stop calling a model that keeps failing, then probe it.

Owns `CircuitBreaker` and its `BreakerState`. After `failure_threshold` consecutive
failures (server errors, timeouts, dropped connections: the caller decides what counts;
rate limits and bad requests should not) the breaker opens: `allow()` says no for
`reset_timeout` seconds. Then it goes half-open and lets `probes` calls through; one
success closes it, one failure opens it again for twice as long (capped). The state is
public so the router can move waiting work to batch while a model is open. It must not
call the API, the store or the real clock.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum

from batchyard.orchestrator._calls.timing import Clock

__all__ = ["BreakerState", "CircuitBreaker"]


class BreakerState(StrEnum):
    CLOSED = "closed"  # calls flow
    OPEN = "open"  # calls refused until the timeout passes
    HALF_OPEN = "half_open"  # a few probe calls decide


class CircuitBreaker:
    def __init__(
        self,
        clock: Clock,
        *,
        failure_threshold: int = 5,
        reset_timeout: float = 30.0,
        max_reset_timeout: float = 600.0,
        probes: int = 1,
        on_change: Callable[[BreakerState, BreakerState], None] | None = None,
    ) -> None:
        if failure_threshold < 1 or probes < 1:
            raise ValueError("failure_threshold and probes must be at least 1.")
        self._clock = clock
        self.failure_threshold = failure_threshold
        self.base_timeout = reset_timeout
        self.max_timeout = max_reset_timeout
        self.probes = probes
        self.on_change = on_change
        self._state = BreakerState.CLOSED
        self.failures = 0  # consecutive failures while closed
        self.opened_at: float | None = None
        self.timeout = reset_timeout
        self._probing = 0
        self.opened_count = 0

    @property
    def state(self) -> BreakerState:
        """The current state; an open breaker whose timeout has passed reads half-open."""
        if (
            self._state is BreakerState.OPEN
            and self.opened_at is not None
            and self._clock() >= self.opened_at + self.timeout
        ):
            self._move(BreakerState.HALF_OPEN)
            self._probing = 0
        return self._state

    def retry_at(self) -> float | None:
        """When an open breaker will let a probe through (None unless open)."""
        if self.state is BreakerState.OPEN and self.opened_at is not None:
            return self.opened_at + self.timeout
        return None

    def allow(self) -> bool:
        """May a call start now? In half-open, each True is one probe; report its outcome."""
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.HALF_OPEN and self._probing < self.probes:
            self._probing += 1
            return True
        return False

    def record_success(self) -> None:
        if self._state is not BreakerState.CLOSED:
            self.timeout = self.base_timeout
            self._move(BreakerState.CLOSED)
        self.failures = 0
        self._probing = 0

    def record_failure(self) -> None:
        state = self.state
        if state is BreakerState.HALF_OPEN:
            self.timeout = min(self.timeout * 2, self.max_timeout)
            self._open()
            return
        if state is BreakerState.OPEN:
            return  # calls that started before it opened: already counted
        self.failures += 1
        if self.failures >= self.failure_threshold:
            self._open()

    def release_probe(self) -> None:
        """A probe that ended without a verdict (e.g. rate limited): let another one try."""
        if self._state is BreakerState.HALF_OPEN and self._probing > 0:
            self._probing -= 1

    def _open(self) -> None:
        self.opened_at = self._clock()
        self.failures = 0
        self._probing = 0
        self.opened_count += 1
        self._move(BreakerState.OPEN)

    def _move(self, new: BreakerState) -> None:
        old, self._state = self._state, new
        if old is not new and self.on_change is not None:
            self.on_change(old, new)
