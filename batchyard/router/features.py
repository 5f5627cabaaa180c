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
    "ModelCapacity",
    "PathCosts",
    "RequestFeatures",
    "RunPolicy",
]

DEFAULT_MARGIN_S = 600.0


@dataclass(frozen=True, slots=True)
class PathCosts:
    """What one request costs, in USD, on each path; `flex`/`fast` are None where the model
    has no such tier."""

    standard: float
    batch: float
    flex: float | None = None
    fast: float | None = None

    def __post_init__(self) -> None:
        costs = [self.standard, self.batch, *(c for c in (self.flex, self.fast) if c is not None)]
        if any(c < 0 for c in costs):
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


@dataclass(frozen=True, slots=True)
class RequestFeatures:
    """One request as the router sees it.

    `output_tokens` is the expected output (the request's max, or a per-model estimate);
    `max_output_tokens` is what OpenAI counts against TPM, defaulting to `output_tokens`.
    Higher `priority` goes first when real time cannot do everything. `fast`: the body asks
    for fast mode (`service_tier` "fast" or "priority"): sent that way, never batched.
    """

    custom_id: str
    endpoint: Endpoint
    model: str
    input_tokens: int
    output_tokens: int
    cost: PathCosts
    priority: int = 0
    max_output_tokens: int | None = None
    fast: bool = False

    @property
    def rate_limit_tokens(self) -> int:
        """Tokens charged against TPM: input plus the maximum output (OpenAI's accounting)."""
        out = self.output_tokens if self.max_output_tokens is None else self.max_output_tokens
        return self.input_tokens + max(out, 0)

    @property
    def saving_per_token(self) -> float:
        """USD saved per rate-limit token by the cheapest deferred path instead of standard."""
        cheapest = min(self.cost.batch, self.cost.flex if self.cost.flex is not None else 1e18)
        return (self.cost.standard - cheapest) / max(self.rate_limit_tokens, 1)


@dataclass(frozen=True)
class RunPolicy:
    """What the user asked of the run.

    `deadline` is unix seconds (None: no deadline); `margin_s` is kept free before it.
    A run with at most `small_run_requests` requests, or whose all-standard cost is at most
    `small_run_usd`, is too small for batching to matter and goes to real time.
    `min_batch_chance`: below this probability of a batch returning before the escalation
    point, real time starts at once (batching would only delay the same spend).
    `breaker_margin_s`: how much earlier the escalation point moves while a model's
    real-time circuit breaker is open.
    """

    deadline: float | None = None
    budget_usd: float | None = None
    route: RouteOverride = RouteOverride.AUTO
    margin_s: float = DEFAULT_MARGIN_S
    strict: bool = False
    small_run_requests: int = 20
    small_run_usd: float = 0.05
    min_batch_chance: float = 0.05
    breaker_margin_s: float = 300.0

    def __post_init__(self) -> None:
        if self.budget_usd is not None and self.budget_usd < 0:
            raise ConfigError(f"--budget must be zero or more, got {self.budget_usd}.")
        if self.margin_s < 0:
            raise ConfigError(f"The safety margin must be zero or more, got {self.margin_s}s.")
        if not 0.0 <= self.min_batch_chance <= 1.0:
            raise ConfigError(f"min_batch_chance must be within 0..1, got {self.min_batch_chance}.")


@dataclass(frozen=True)
class ModelCapacity:
    """Capacity for one model as the executor currently sees it.

    `rpm`/`tpm` are the standard-tier limits; `flex_rpm`/`flex_tpm` default to them.
    `enqueued_token_limit` is the Batch API's per-model enqueued-token limit (None: no
    limit known) and `enqueued_tokens_in_flight` what unfinished batches already hold.
    `breaker_open`, `quota_exhausted` and `flex_unavailable` report real time failing.
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
        )

    @property
    def enqueued_headroom(self) -> int | None:
        """Tokens the batch queue can still take (None: unlimited)."""
        if self.enqueued_token_limit is None:
            return None
        return max(self.enqueued_token_limit - self.enqueued_tokens_in_flight, 0)
