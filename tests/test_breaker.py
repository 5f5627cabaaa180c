"""The circuit breaker opens after repeated failures, probes half-open, and closes."""

from __future__ import annotations

from batchyard.orchestrator._calls.timing import ManualClock
from batchyard.orchestrator.realtime.breaker import BreakerState, CircuitBreaker


def state_of(breaker: CircuitBreaker) -> BreakerState:
    """The breaker's state, read through a call: the state changes under method calls and the
    clock, so a type checker must not carry one assertion's narrowing to the next."""
    return breaker.state


def test_opens_after_consecutive_failures_only() -> None:
    clock = ManualClock()
    breaker = CircuitBreaker(clock, failure_threshold=3, reset_timeout=10)
    breaker.record_failure()
    breaker.record_failure()
    breaker.record_success()  # a success in between resets the count
    breaker.record_failure()
    breaker.record_failure()
    assert state_of(breaker) is BreakerState.CLOSED
    breaker.record_failure()
    assert state_of(breaker) is BreakerState.OPEN
    assert not breaker.allow()
    assert breaker.retry_at() == clock.now() + 10


def test_half_open_lets_one_probe_and_closes_on_success() -> None:
    clock = ManualClock()
    changes: list[tuple[BreakerState, BreakerState]] = []
    breaker = CircuitBreaker(
        clock, failure_threshold=1, reset_timeout=10, on_change=lambda a, b: changes.append((a, b))
    )
    breaker.record_failure()
    clock.advance(9.9)
    assert not breaker.allow()
    clock.advance(0.2)
    assert state_of(breaker) is BreakerState.HALF_OPEN
    assert breaker.allow()
    assert not breaker.allow()  # only one probe at a time
    breaker.record_success()
    assert state_of(breaker) is BreakerState.CLOSED
    assert breaker.allow()
    assert changes == [
        (BreakerState.CLOSED, BreakerState.OPEN),
        (BreakerState.OPEN, BreakerState.HALF_OPEN),
        (BreakerState.HALF_OPEN, BreakerState.CLOSED),
    ]


def test_failed_probe_reopens_for_longer() -> None:
    clock = ManualClock()
    breaker = CircuitBreaker(clock, failure_threshold=1, reset_timeout=10, max_reset_timeout=15)
    breaker.record_failure()
    clock.advance(10)
    assert breaker.allow()
    breaker.record_failure()
    assert state_of(breaker) is BreakerState.OPEN
    clock.advance(10)
    assert state_of(breaker) is BreakerState.OPEN  # doubled, capped at 15
    clock.advance(5)
    assert state_of(breaker) is BreakerState.HALF_OPEN
    assert breaker.allow()
    breaker.release_probe()  # no verdict (e.g. rate limited): another probe may go
    assert breaker.allow()
