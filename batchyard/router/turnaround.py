"""How long something at the provider takes, as a distribution: a batch's turnaround, a cancel.

Owns `Turnaround`: a log-normal in seconds, truncated at `max_s` (for a batch, the Batch
API's 24 h completion window: what has not finished by then expires). The configured prior
is updated from the store's history by treating the prior as a few pseudo-observations in
log space. An observation may be censored ("took longer than t": a batch cancelled at the
escalation point before it finished); it then counts as the expected log-duration beyond t
under the current estimate. The same class models cancel latency (how long a batch stays
`cancelling`). It decides only how likely each outcome is; it never picks a route.
No I/O, no clock.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from statistics import NormalDist

from batchyard.errors import ConfigError

__all__ = ["BATCH_WINDOW_S", "Turnaround"]

BATCH_WINDOW_S = 24 * 3600.0
_P95_Z = NormalDist().inv_cdf(0.95)
_MIN_SIGMA = 0.05


@dataclass(frozen=True)
class Turnaround:
    """Log-normal batch turnaround: `mu`, `sigma` of ln(seconds), cut at `max_s`.

    `weight` is how many observations the current estimate is worth when new ones arrive.
    """

    mu: float
    sigma: float
    max_s: float = BATCH_WINDOW_S
    weight: float = 5.0

    def __post_init__(self) -> None:
        if self.sigma <= 0 or self.max_s <= 0 or self.weight <= 0:
            raise ConfigError(f"Turnaround needs a positive sigma, window and weight, got {self}.")

    @classmethod
    def from_median_p95(
        cls, median_s: float, p95_s: float, max_s: float = BATCH_WINDOW_S, weight: float = 5.0
    ) -> Turnaround:
        """The distribution whose median and 95th percentile are the given seconds."""
        if not 0 < median_s < p95_s:
            raise ConfigError(
                f"Batch turnaround needs 0 < median < p95, got median {median_s}s, p95 {p95_s}s."
            )
        mu = math.log(median_s)
        return cls(mu=mu, sigma=(math.log(p95_s) - mu) / _P95_Z, max_s=max_s, weight=weight)

    @classmethod
    def prior(cls) -> Turnaround:
        """The configured default: median 1 h, 95% within 12 h, nothing past 24 h."""
        return cls.from_median_p95(3600.0, 12 * 3600.0)

    @classmethod
    def cancel_prior(cls) -> Turnaround:
        """The default cancel latency: median 1 min, 95% within 10 min (OpenAI documents that
        cancelling can take up to 10 minutes), nothing past 1 h."""
        return cls.from_median_p95(60.0, 600.0, max_s=3600.0)

    @property
    def mean_s(self) -> float:
        """The mean in seconds (of the untruncated log-normal, capped at `max_s`)."""
        return min(math.exp(self.mu + self.sigma**2 / 2), self.max_s)

    @property
    def median_s(self) -> float:
        return min(math.exp(self.mu), self.max_s)

    @property
    def expiry_probability(self) -> float:
        """Chance a batch is still unfinished when its 24 h window closes."""
        return 1.0 - self.cdf(self.max_s)

    def cdf(self, t: float) -> float:
        """Probability that a batch submitted at 0 has completed by `t` seconds."""
        if t <= 0:
            return 0.0
        z = (math.log(min(t, self.max_s)) - self.mu) / self.sigma
        return NormalDist().cdf(z)

    def quantile(self, p: float) -> float:
        """Seconds by which a fraction `p` of batches complete; `inf` past the window."""
        if not 0.0 < p < 1.0:
            raise ValueError(f"p must be strictly between 0 and 1, got {p}")
        t = math.exp(self.mu + self.sigma * NormalDist().inv_cdf(p))
        return t if t <= self.max_s else math.inf

    def scaled(self, factor: float) -> Turnaround:
        """The same distribution with every duration multiplied by `factor` (a clock that
        runs `1/factor` times as fast: the provider's turnaround on our clock)."""
        if factor <= 0:
            raise ValueError(f"factor must be positive, got {factor}")
        return Turnaround(
            mu=self.mu + math.log(factor),
            sigma=self.sigma,
            max_s=self.max_s * factor,
            weight=self.weight,
        )

    def updated_with(
        self, observed_seconds: Iterable[float], longer_than: Iterable[float] = ()
    ) -> Turnaround:
        """This estimate combined with observed durations, and with censored ones: each of
        `longer_than` is known only to have taken more than that many seconds."""
        logs = [math.log(min(max(s, 1.0), self.max_s)) for s in observed_seconds]
        logs += [self._beyond(t) for t in longer_than]
        if not logs:
            return self
        n = len(logs)
        total = self.weight + n
        mu = (self.weight * self.mu + sum(logs)) / total
        second = (self.weight * (self.sigma**2 + self.mu**2) + sum(x * x for x in logs)) / total
        sigma = math.sqrt(max(second - mu * mu, _MIN_SIGMA**2))
        return Turnaround(mu=mu, sigma=sigma, max_s=self.max_s, weight=total)

    def _beyond(self, seconds: float) -> float:
        """E[ln T | T > seconds] under this estimate (the mean of a truncated normal)."""
        lower = math.log(min(max(seconds, 1.0), self.max_s))
        alpha = (lower - self.mu) / self.sigma
        tail = 1.0 - NormalDist().cdf(alpha)
        if tail < 1e-12:
            return lower
        return min(self.mu + self.sigma * NormalDist().pdf(alpha) / tail, math.log(self.max_s))
