"""The router's inputs: what one request costs, what the run asks for, what capacity is left.

Owns frozen records only. Nothing here reads a clock, a file or the network; the caller
computes costs from its price table and limits from what the executor currently sees.
"""

from __future__ import annotations

from dataclasses import dataclass

from batchyard.errors import ConfigError
from batchyard.models import Endpoint, Route, RouteOverride

__all__ = [
    "DEFAULT_MARGIN_S",
    "ZERO_COST",
    "ModelCapacity",
    "PathCosts",
    "RequestFeatures",
    "RunPolicy",
]

DEFAULT_MARGIN_S = 60.0


@dataclass(frozen=True, slots=True)
class PathCosts:
    """What one request costs, in USD, on each path; `flex`/`fast` are None where the model
    has no such tier."""

    standard: float
    batch: float
    flex: float | None = None
    fast: float | None = None

    def __post_init__(self) -> None:
        # one comparison each, no list: a PathCosts is made for every line of a file
        flex, fast = self.flex, self.fast
        if (
            self.standard < 0
            or self.batch < 0
            or (flex is not None and flex < 0)
            or (fast is not None and fast < 0)
        ):
            raise ConfigError(f"Costs must not be negative, got {self}; check the price table.")

    def on(self, route: Route) -> float:
        """The cost on `route`; flex or fast without its own price is priced as standard."""
        if route is Route.BATCH:
            return self.batch
        if route is Route.FLEX and self.flex is not None:
            return self.flex
        if route is Route.FAST and self.fast is not None:
            return self.fast
        return self.standard

    def __add__(self, other: PathCosts) -> PathCosts:
        """Costs of two pieces of work together; flex (fast) only where both have a price."""
        flex = None if self.flex is None or other.flex is None else self.flex + other.flex
        fast = None if self.fast is None or other.fast is None else self.fast + other.fast
        return PathCosts(self.standard + other.standard, self.batch + other.batch, flex, fast)


ZERO_COST = PathCosts(0.0, 0.0, 0.0, 0.0)


@dataclass(frozen=True, slots=True)
class RequestFeatures:
    """One request as the router sees it.

    `output_tokens` is the expected output (the store's evidence for the model, capped by
    the request's own limit) and `cost` its price on each path; `output_worst`/`cost_worst`
    are the worst case (the request's cap, or a high quantile of the evidence), defaulting
    to the expected figures. `max_output_tokens` is what OpenAI counts against TPM,
    defaulting to the worst-case output. Higher `priority` goes first when real time cannot
    do everything. `shard` names the live batch shard the request is already in, if any.
    `fast`: the body asks for fast mode (`service_tier` "fast" or "priority"): sent that
    way, never batched.
    """

    custom_id: str
    endpoint: Endpoint
    model: str
    input_tokens: int
    output_tokens: int
    cost: PathCosts
    priority: int = 0
    max_output_tokens: int | None = None
    output_worst: int | None = None
    cost_worst: PathCosts | None = None
    shard: str | None = None
    fast: bool = False

    @property
    def rate_limit_tokens(self) -> int:
        """Tokens charged against TPM: input plus the maximum output (OpenAI's accounting)."""
        out = self.max_output_tokens
        if out is None:
            out = self.output_tokens if self.output_worst is None else self.output_worst
        return self.input_tokens + max(out, 0)


@dataclass(frozen=True)
class RunPolicy:
    """What the user asked of the run, and how much safety the deadline keeps.

    `deadline` is unix seconds (None: no deadline). The safety kept before it is what the
    deadline needs, not one constant: `margin_s` (a small floor), plus `realtime_spread`
    (real time may run this share slower than its rate limits say), plus the cancel
    latency (a learned distribution the caller passes to the router: its mean where
    nothing of a batch is known finished, its `cancel_quantile` once the provider counts
    finished lines, which a slow cancel would make us pay twice; plus `cancel_notice_s`,
    the poll that sees the cancel done). `batch_setup_s`: how long a new shard needs before it can
    make progress (upload, create, validation); batch is tried whenever the escalation
    point is at least that far away.
    `escalation_step_s`: an escalation point closer than this counts as reached (as a batch
    progresses the point moves later by ever smaller steps; this ends the chase).
    A run with at most `small_run_requests` requests, or whose all-standard cost is at most
    `small_run_usd`, is too small for batching to matter and goes to real time.
    `breaker_margin_s`: how much earlier the escalation point moves while a model's
    real-time circuit breaker is open. `escalated`: models whose batches this run already
    cancelled at their escalation point; their open work stays in real time (a cancel that
    finished sooner than allowed for must not send it back to a batch as slow as the last).
    """

    deadline: float | None = None
    budget_usd: float | None = None
    route: RouteOverride = RouteOverride.AUTO
    margin_s: float = DEFAULT_MARGIN_S
    strict: bool = False
    small_run_requests: int = 20
    small_run_usd: float = 0.05
    breaker_margin_s: float = 300.0
    realtime_spread: float = 0.05
    cancel_quantile: float = 0.95
    cancel_notice_s: float = 15.0
    escalated: frozenset[str] = frozenset()
    batch_setup_s: float = 60.0
    escalation_step_s: float = 10.0

    def __post_init__(self) -> None:
        if self.budget_usd is not None and self.budget_usd < 0:
            raise ConfigError(f"--budget must be zero or more, got {self.budget_usd}.")
        if self.margin_s < 0:
            raise ConfigError(f"The safety margin must be zero or more, got {self.margin_s}s.")
        if self.realtime_spread < 0:
            raise ConfigError(f"realtime_spread must be zero or more, got {self.realtime_spread}.")
        if not 0.0 < self.cancel_quantile < 1.0:
            raise ConfigError(
                f"cancel_quantile must be strictly within 0..1, got {self.cancel_quantile}."
            )
        if self.batch_setup_s < 0:
            raise ConfigError(f"batch_setup_s must be zero or more, got {self.batch_setup_s}.")


@dataclass(frozen=True)
class ModelCapacity:
    """Capacity for one model as the executor currently sees it.

    `rpm`/`tpm` are the standard-tier limits; `flex_rpm`/`flex_tpm` default to them.
    `enqueued_token_limit` is the Batch API's per-model enqueued-token limit (None: no
    limit known) and `enqueued_tokens_in_flight` what unfinished batches already hold.
    `breaker_open`, `quota_exhausted` (insufficient_quota), `key_refused` (the API refused
    the key or base URL) and `flex_unavailable` report real time failing.
    """

    model: str
    rpm: float = 500.0
    tpm: float = 200_000.0
    flex_allowed: bool = False
    fast_allowed: bool = False
    flex_rpm: float | None = None
    flex_tpm: float | None = None
    standard_latency_s: float = 30.0
    flex_latency_s: float = 300.0
    enqueued_token_limit: int | None = None
    enqueued_tokens_in_flight: int = 0
    breaker_open: bool = False
    quota_exhausted: bool = False
    key_refused: bool = False
    flex_unavailable: bool = False

    def __post_init__(self) -> None:
        for name in ("rpm", "tpm"):
            if getattr(self, name) <= 0:
                raise ConfigError(
                    f"{self.model}: {name.upper()} must be positive, got {getattr(self, name)}; "
                    "check the rate-limit settings for this model."
                )

    def limits(self, route: Route) -> tuple[float, float, float]:
        """(RPM, TPM, latency in seconds) on a real-time route."""
        if route is Route.FLEX:
            rpm = self.flex_rpm if self.flex_rpm is not None else self.rpm
            tpm = self.flex_tpm if self.flex_tpm is not None else self.tpm
            return rpm, tpm, self.flex_latency_s
        return self.rpm, self.tpm, self.standard_latency_s

    @property
    def flex_usable(self) -> bool:
        """Flex is offered for this model and nothing currently stops it."""
        return (
            self.flex_allowed
            and not self.flex_unavailable
            and not self.breaker_open
            and not self.quota_exhausted
            and not self.key_refused
        )

    @property
    def enqueued_headroom(self) -> int | None:
        """Tokens the batch queue can still take (None: unlimited)."""
        if self.enqueued_token_limit is None:
            return None
        return max(self.enqueued_token_limit - self.enqueued_tokens_in_flight, 0)
