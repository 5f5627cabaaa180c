"""The plain records of the real-time path: its options, its report and its progress events.

Owns `RealtimeOptions` (every knob of `RealtimeRunner`, with defaults), `RealtimeReport`
(what one `run` did), `RealtimeEvent` (one event for the CLI's progress display), `StopReason`
and `FlexFallback`. Plain data: no I/O, no SDK, no store.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from batchyard.orchestrator._calls.retry import RetryPolicy
from batchyard.orchestrator._reporting.progress import OnProgress
from batchyard.orchestrator.realtime.breaker import BreakerState

__all__ = [
    "FlexFallback",
    "OnProgress",
    "RealtimeEvent",
    "RealtimeOptions",
    "RealtimeReport",
    "StopReason",
]


class FlexFallback(StrEnum):
    """Where a flex request goes when flex capacity stays unavailable too long."""

    STANDARD = "standard"  # same call, standard tier and price, right away
    BATCH = "batch"  # re-routed to the Batch API in the store, for the batch path


class StopReason(StrEnum):
    DONE = "done"  # nothing left to send on the real-time routes
    STOPPED = "stopped"  # the caller's stop event (Ctrl-C)
    QUOTA = "quota"  # insufficient_quota: dispatch stopped, the rest left routed


@dataclass(frozen=True, slots=True)
class RealtimeOptions:
    """Knobs of the real-time runner. Seconds are the injected clock's seconds."""

    policy: RetryPolicy | None = None  # None: RetryPolicy(max_attempts=settings.max_attempts)
    grace_seconds: float = 10.0  # after stop: how long in-flight calls may finish
    claim_chunk: int = 256  # requests claimed from the store at once
    max_claimed: int | None = None  # claimed at once in total (None: 4 x concurrency)
    headroom: float = 1.0  # fraction of the rate limits to use
    breaker_threshold: int = 5  # consecutive failures that open a model's breaker
    breaker_timeout: float = 30.0  # seconds open before a half-open probe
    flex_max_wait: float = 300.0  # seconds a flex request waits out "resource unavailable"
    flex_cooldown: float = 300.0  # after a fallback, the model's flex calls fall back at once
    idle_poll: float = 1.0  # when only not-yet-due retries remain: re-check this often
    recover_older_than: float | None = None  # on start; None: flex_timeout + grace
    provider_time_scale: float = 1.0  # our clock seconds per second in provider headers
    # A retry wait this long or longer (no retry-after, or one within max_retry_after)
    # sends the request back to the store until then, where the router can still move it.
    defer_after: float = 30.0
    stall_after: float = 60.0  # every send failing this long is reported as a stall


@dataclass(frozen=True, slots=True)
class RealtimeEvent:
    """One thing that happened on the real-time path, with running totals (for a progress
    bar); reported as `on_progress("realtime", fields)`.

    `kind`: succeeded, failed, retry, rate_limited, deferred, fallback, breaker, quota, stopped,
    stall, flowing.
    """

    kind: str
    message: str
    custom_id: str | None
    model: str | None
    succeeded: int
    failed: int
    in_flight: int
    cost: float


@dataclass(slots=True)
class RealtimeReport:
    """What one `RealtimeRunner.run` did."""

    run_id: str
    succeeded: int = 0
    failed: int = 0
    requeued: int = 0  # answers that failed a check: sent again, or the line ended invalid
    retries: int = 0  # sends repeated after a retryable failure (each one an attempt row)
    rate_limited: int = 0  # 429 rate_limit_exceeded answers seen
    stalls: int = 0  # times every send failed for `stall_after` seconds
    deferred: int = 0  # set aside for later (breaker open, long retry-after, attempts left)
    released: int = 0  # claims given back uncalled (stop, quota)
    abandoned: int = 0  # calls cut off by stop after the grace: retried on resume
    recovered: int = 0  # in flight at an earlier crash, set to be retried
    to_standard: int = 0  # flex requests sent at standard tier instead
    to_batch: int = 0  # flex requests handed to the batch path
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float = 0.0
    stopped: StopReason = StopReason.DONE
    message: str = ""
    breakers: dict[str, BreakerState] = field(default_factory=dict)
