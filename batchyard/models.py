"""Plain value types shared by every layer: routes, statuses, money.

Owns enums and small frozen records only; no I/O, no SQL, no HTTP. The allowed
transitions between statuses live in the store, which is the only place that changes them.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "BatchStatus",
    "Endpoint",
    "RequestStatus",
    "Route",
    "RouteOverride",
    "RunState",
    "Tier",
]


class Endpoint(StrEnum):
    CHAT = "/v1/chat/completions"
    RESPONSES = "/v1/responses"
    EMBEDDINGS = "/v1/embeddings"
    COMPLETIONS = "/v1/completions"
    MODERATIONS = "/v1/moderations"


class Route(StrEnum):
    """Where one request is sent."""

    STANDARD = "standard"  # real time, default tier
    FLEX = "flex"  # real time, service_tier="flex"
    BATCH = "batch"  # OpenAI Batch API
    FAST = "fast"  # real time, service_tier="fast" (formerly "priority"); never batched


class RouteOverride(StrEnum):
    """The user's `--route` choice for a run."""

    AUTO = "auto"
    REALTIME = "realtime"
    FLEX = "flex"
    BATCH = "batch"
    FAST = "fast"


class Tier(StrEnum):
    """Real-time service tier, as sent in `service_tier`."""

    DEFAULT = "default"
    FLEX = "flex"
    FAST = "fast"  # OpenAI also accepts the former name "priority"

    @property
    def route(self) -> Route:
        """The route a request served at this tier was billed on."""
        return {Tier.DEFAULT: Route.STANDARD, Tier.FLEX: Route.FLEX, Tier.FAST: Route.FAST}[self]


class RunState(StrEnum):
    PENDING = "pending"  # recorded, nothing sent yet
    RUNNING = "running"  # work is in flight somewhere
    COMPLETED = "completed"  # every request terminal (succeeded, failed, invalid, cancelled)
    CANCELLING = "cancelling"
    CANCELLED = "cancelled"


class RequestStatus(StrEnum):
    PENDING = "pending"  # recorded, not yet routed
    ROUTED = "routed"  # route chosen, waiting for dispatch
    SUBMITTED = "submitted"  # inside a batch shard that was created remotely
    IN_FLIGHT = "in_flight"  # a real-time call was started (intent committed)
    RETRYABLE = "retryable"  # failed in a way worth another attempt
    SUCCEEDED = "succeeded"  # terminal
    FAILED = "failed"  # terminal
    CANCELLED = "cancelled"  # terminal
    INVALID = "invalid"  # terminal: answered, but the answer failed a check every time
    TWIN = "twin"  # identical to an earlier line of the run: takes that line's outcome


class BatchStatus(StrEnum):
    """Our view of one shard; provider statuses map onto these explicitly."""

    PLANNED = "planned"  # shard assembled locally, nothing remote yet
    UPLOADING = "uploading"  # intent: file upload about to happen
    UPLOADED = "uploaded"  # input file id known
    CREATING = "creating"  # intent: batch create about to happen
    VALIDATING = "validating"
    IN_PROGRESS = "in_progress"
    FINALIZING = "finalizing"
    COMPLETED = "completed"
    FAILED = "failed"
    EXPIRED = "expired"
    CANCELLING = "cancelling"
    CANCELLED = "cancelled"
    APPLIED = "applied"  # terminal remotely, and its files downloaded and applied
