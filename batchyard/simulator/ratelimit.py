"""Per-model RPM/TPM token buckets, the `x-ratelimit-*` headers and OpenAI's 429 bodies.

Owns admission of real-time requests: each model entry has a request bucket and a token
bucket that hold at most their per-minute limit and refill continuously at limit/60 per
simulated second (the SimClock's time, so advancing the clock refills them). An admitted
request is charged 1 request and `prompt + requested max output` tokens. A request turned
away with a 429 still uses one request of the RPM bucket (`limits.charge_rejected_requests`,
OpenAI: "unsuccessful requests contribute to your per-minute limit"), and its tokens only
with `limits.charge_rejected_tokens`; its retry-after is computed after that charge, so a
client that waits exactly as told is admitted.

`limits.other_client_share` stands for a second client on the same key: it uses that share
of each bucket's limit continuously, so only the rest refills for the simulator's callers
and the headers show what is really left. It does no HTTP itself and never bills.

Durations in headers and messages are real seconds (simulated seconds / time_scale), so a
client that sleeps for them is right whatever the clock's scale.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from batchyard.simulator.config import ModelSpec
from batchyard.simulator.errors import ApiError
from batchyard.simulator.state import SimState

__all__ = ["RATE_LIMIT_HEADERS", "TokenBucket", "RateLimiter", "go_duration", "limiter"]

RATE_LIMIT_HEADERS = (
    "x-ratelimit-limit-requests",
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-requests",
    "x-ratelimit-reset-tokens",
    "retry-after",
    "retry-after-ms",
)
_MORE = "Visit https://platform.openai.com/account/rate-limits to learn more."


def go_duration(seconds: float) -> str:
    """Format like Go's time.Duration at millisecond precision: `114ms`, `1s`, `6m0s`."""
    ms = math.ceil(seconds * 1000 - 1e-6)
    if ms <= 0:
        return "0s"
    if ms < 1000:
        return f"{ms}ms"
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs = str(rest // 1000) if rest % 1000 == 0 else f"{rest / 1000:.3f}".rstrip("0")
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


@dataclass
class TokenBucket:
    """A token bucket: `level` is what is left to spend (at capacity: all of it); it refills
    at capacity/60 per simulated second. (The orchestrator's `LeakyBucket` counts the other
    way round, what was spent; the simulator keeps its own so the two cannot share a bug.)

    The capacity is `limit`, less the `share` another client on the key uses all the time
    (its use is counted in `other`).
    """

    limit: int
    level: float
    updated: float
    share: float = 0.0
    other: float = 0.0  # what the other client used so far

    @property
    def capacity(self) -> float:
        return self.limit * (1.0 - self.share)

    def refill(self, now: float) -> None:
        if now > self.updated:
            elapsed = now - self.updated
            self.level = min(self.capacity, self.level + elapsed * self.capacity / 60)
            self.other += elapsed * self.limit * self.share / 60
        self.updated = max(now, self.updated)

    def reshare(self, share: float, now: float) -> None:
        """Change the other client's share from now on."""
        if share != self.share:
            self.refill(now)
            self.share = share
            self.level = min(self.level, self.capacity)

    def need(self, amount: float) -> float:
        """What must be in the bucket to admit `amount`: a request larger than the other
        client leaves room for goes through once the bucket is full (the simulator's choice)."""
        return min(amount, self.capacity)

    def wait_for(self, amount: float) -> float:
        """Simulated seconds until `amount` fits (0 if it fits now)."""
        rate = self.capacity / 60
        return max(0.0, (self.need(amount) - self.level) / rate) if rate > 0 else math.inf

    def until_full(self) -> float:
        return self.wait_for(self.capacity)

    def take(self, amount: float) -> None:
        self.level = max(0.0, self.level - amount)


class RateLimiter:
    """The buckets of one simulator, keyed by model entry."""

    def __init__(self, state: SimState) -> None:
        self.state = state
        self.buckets: dict[str, tuple[TokenBucket, TokenBucket]] = {}

    def _share(self, model: str) -> float:
        limits = self.state.limits
        if limits.other_client_models and model not in limits.other_client_models:
            return 0.0
        return limits.other_client_share

    def _pair(self, model: str, spec: ModelSpec, now: float) -> tuple[TokenBucket, TokenBucket]:
        pair = self.buckets.get(model)
        share = self._share(model)
        if pair is None or pair[0].limit != spec.rpm or pair[1].limit != spec.tpm:
            full = 1.0 - share
            pair = (
                TokenBucket(spec.rpm, spec.rpm * full, now, share),
                TokenBucket(spec.tpm, spec.tpm * full, now, share),
            )
            self.buckets[model] = pair
        elif pair[0].share != share:
            pair[0].reshare(share, now)
            pair[1].reshare(share, now)
        return pair

    def _real(self, simulated: float) -> float:
        """Simulated seconds as real seconds; a frozen clock (scale 0) reports them as is."""
        scale = self.state.clock.time_scale
        return simulated / scale if scale > 0 else simulated

    def headers(self, model: str, spec: ModelSpec) -> dict[str, str]:
        """The six `x-ratelimit-*` headers as they stand now."""
        requests, tokens = self._pair(model, spec, self.state.now())
        return {
            "x-ratelimit-limit-requests": str(requests.limit),
            "x-ratelimit-limit-tokens": str(tokens.limit),
            "x-ratelimit-remaining-requests": str(max(0, math.floor(requests.level))),
            "x-ratelimit-remaining-tokens": str(max(0, math.floor(tokens.level))),
            "x-ratelimit-reset-requests": go_duration(self._real(requests.until_full())),
            "x-ratelimit-reset-tokens": go_duration(self._real(tokens.until_full())),
        }

    def admit(self, model: str, spec: ModelSpec, charge: int) -> dict[str, str]:
        """Charge one request of `charge` tokens, or raise the 429 OpenAI would send.

        `model` is the table entry (snapshots and ft: names share it). Returns the
        rate-limit headers after the charge; the ApiError carries them too.
        """
        now = self.state.now()
        requests, tokens = self._pair(model, spec, now)
        requests.refill(now)
        tokens.refill(now)
        if self.state.config.rate_limits:
            self._check(model, requests, tokens, charge)
        requests.take(1)
        tokens.take(charge)
        return self.headers(model, spec)

    def _refuse(
        self, requests: TokenBucket, tokens: TokenBucket, charge: int, too_large: bool
    ) -> None:
        """Charge a refused request as OpenAI counts it (see the module docstring)."""
        limits = self.state.limits
        if limits.charge_rejected_requests:
            requests.take(1)
        if limits.charge_rejected_tokens and not too_large:
            tokens.take(charge)

    def _check(self, model: str, requests: TokenBucket, tokens: TokenBucket, charge: int) -> None:
        org = self.state.config.organization
        if charge > tokens.limit:
            self._refuse(requests, tokens, charge, too_large=True)
            raise ApiError(
                429,
                f"Request too large for {model} in organization {org} on tokens per min (TPM): "
                f"Limit {tokens.limit}, Requested {charge}. The input or output tokens must be "
                f"reduced in order to run successfully. {_MORE}",
                type="tokens",
                code="rate_limit_exceeded",
                headers=self.headers_for(model),
            )
        for bucket, amount, kind, label in (
            (requests, 1, "requests", "requests per min (RPM)"),
            (tokens, charge, "tokens", "tokens per min (TPM)"),
        ):
            if bucket.wait_for(amount) <= 0:
                continue
            self._refuse(requests, tokens, charge, too_large=False)
            wait = self._real(bucket.wait_for(amount))
            used = bucket.limit - math.floor(bucket.level)
            self.state.stats[f"rate_limited|{kind}"] += 1
            raise ApiError(
                429,
                f"Rate limit reached for {model} in organization {org} on {label}: "
                f"Limit {bucket.limit}, Used {used}, Requested {amount}. "
                f"Please try again in {go_duration(wait)}. {_MORE}",
                type=kind,
                code="rate_limit_exceeded",
                headers={
                    **self.headers_for(model),
                    "retry-after-ms": str(math.ceil(wait * 1000)),
                    "retry-after": str(max(1, math.ceil(wait))),
                },
            )

    def headers_for(self, model: str) -> dict[str, str]:
        """Headers of a table entry's buckets (`model` is the entry, not a snapshot name)."""
        return self.headers(model, self.state.config.models[model])

    def other_client_use(self) -> dict[str, dict[str, float]]:
        """What the other client on the key used so far, per model entry."""
        now = self.state.now()
        used: dict[str, dict[str, float]] = {}
        for model, (requests, tokens) in self.buckets.items():
            requests.refill(now)
            tokens.refill(now)
            if requests.other or tokens.other:
                used[model] = {"requests": requests.other, "tokens": tokens.other}
        return used


def limiter(state: SimState) -> RateLimiter:
    """The RateLimiter of `state`, created on first use."""
    found = state.extra.get("ratelimiter")
    if not isinstance(found, RateLimiter):
        found = RateLimiter(state)
        state.extra["ratelimiter"] = found
    return found
