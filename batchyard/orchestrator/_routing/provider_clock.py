"""The provider's clock mapped onto ours: an offset and a rate, fitted from its responses.

Owns `ClockMap` (provider unix seconds -> our clock's, and provider durations -> ours),
`fit` (a robust fit over (provider time, our time at receipt) pairs) and `ProviderClock`
(collects such pairs from the responses the batch path reads, keeps the recent ones per
base URL in the store, and fits them). Every time batchyard shows or plans with (a batch's
`created_at`, its expected finish, an escalation point, a cancel's latency) is on our clock;
what the provider reports is on its own, which may be off by an offset and, for a simulator
on a fast clock (`batchyard sim serve --time-scale 600`), run faster. Learned turnaround and
cancel latency stay on the provider's clock (they describe the provider) and are converted
with the same map when used. The fit and the map are pure; only `ProviderClock` touches the
store, and it makes no API calls itself.

Sources: the HTTP `Date` header of each batch-path response (whole seconds: taken as the
middle of its second), else the `created_at` of a batch just created. The fit:
- rate (provider seconds per second of ours): the median slope over pairs of observations
  far enough apart on both clocks (`MIN_PROVIDER_SPAN_S`, `MIN_LOCAL_SPAN_S`) to outweigh
  the header's whole seconds and the network's jitter (Theil-Sen: two reads of the clock
  a moment apart already give it, a few more outvote a stale one); a rate within
  `RATE_SNAP` of 1 is 1 (a real provider's clock runs at ours; short spans are noisy);
  without such a pair, 1;
- offset: the median, over the observations, of our time minus the provider's (converted
  at that rate), anchored at the newest; an offset under `OFFSET_SNAP_S` at rate 1 is 0
  (below what whole-second headers can tell).
Only the newest `KEEP` observations count, so a provider whose clock changed (a simulator
restarted) is followed within a few polls.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING

from batchyard.router import Turnaround

if TYPE_CHECKING:
    from batchyard.orchestrator._calls.timing import Clock
    from batchyard.store import Store

__all__ = [
    "DEFAULT_BASE_URL",
    "IDENTITY",
    "KEEP",
    "ClockMap",
    "ProviderClock",
    "fit",
    "provider_key",
]

DEFAULT_BASE_URL = "https://api.openai.com/v1"
KEEP = 48  # newest observations a fit uses (and the store keeps) per base URL
MIN_PROVIDER_SPAN_S = 30.0  # a slope needs this much provider time between its two points
MIN_LOCAL_SPAN_S = 0.2  # ... and this much of ours (network jitter)
RATE_SNAP = 0.05  # a rate within 5% of 1 is 1
OFFSET_SNAP_S = 2.0  # an offset under 2 s at rate 1 is 0


@dataclass(frozen=True)
class ClockMap:
    """`ours = local_ref + (provider - provider_ref) / rate`.

    `rate` is provider seconds per second of our clock (600 for a simulator on a 600x
    clock read by a batchyard on real time); `observations` how many pairs it rests on.
    """

    rate: float = 1.0
    provider_ref: float = 0.0
    local_ref: float = 0.0
    observations: int = 0

    @property
    def offset(self) -> float:
        """Our time minus the provider's at the reference point."""
        return self.local_ref - self.provider_ref

    def to_local(self, provider_at: float) -> float:
        """A provider timestamp on our clock."""
        return self.local_ref + (provider_at - self.provider_ref) / self.rate

    def to_provider(self, local_at: float) -> float:
        """One of our timestamps on the provider's clock."""
        return self.provider_ref + (local_at - self.local_ref) * self.rate

    def duration(self, provider_seconds: float) -> float:
        """A span of provider time in our seconds."""
        return provider_seconds / self.rate

    def turnaround(self, t: Turnaround) -> Turnaround:
        """A duration distribution learned on the provider's clock, on ours."""
        return t if self.rate == 1.0 else t.scaled(1.0 / self.rate)


IDENTITY = ClockMap()


def _rate(points: Sequence[tuple[float, float]]) -> float:
    slopes = [
        (p2 - p1) / (l2 - l1)
        for i, (p1, l1) in enumerate(points)
        for p2, l2 in points[i + 1 :]
        if abs(p2 - p1) >= MIN_PROVIDER_SPAN_S and abs(l2 - l1) >= MIN_LOCAL_SPAN_S
    ]
    slopes = [s for s in slopes if s > 0]
    if not slopes:
        return 1.0
    rate = statistics.median(slopes)
    return 1.0 if abs(rate - 1.0) <= RATE_SNAP else rate


def fit(observations: Sequence[tuple[float, float]]) -> ClockMap:
    """The map from (provider time, our time at receipt) pairs, oldest first; the newest
    `KEEP` count. No pairs: the identity."""
    points = [(p, t) for p, t in observations[-KEEP:] if math.isfinite(p) and math.isfinite(t)]
    if not points:
        return IDENTITY
    rate = _rate(points)
    p_ref = points[-1][0]
    local_ref = statistics.median(t - (p - p_ref) / rate for p, t in points)
    if rate == 1.0 and abs(local_ref - p_ref) < OFFSET_SNAP_S:
        local_ref = p_ref
    return ClockMap(rate=rate, provider_ref=p_ref, local_ref=local_ref, observations=len(points))


def provider_key(base_url: str | None) -> str:
    """The key observations are kept under: the base URL without a trailing slash."""
    return (base_url or DEFAULT_BASE_URL).rstrip("/")


def date_header(value: str | None) -> float | None:
    """An HTTP `Date` header as unix seconds, the middle of its whole second."""
    if not value:
        return None
    try:
        return parsedate_to_datetime(value).timestamp() + 0.5
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


class ProviderClock:
    """Observations of one provider's clock and the map fitted from them.

    `observe` is cheap (memory only); `flush` writes what was observed since the last flush
    to the store, which keeps the newest `KEEP` per base URL, so `status` in another
    process maps the same way. `map()` refits only when something new was observed.
    """

    def __init__(self, store: Store | None, base_url: str | None, clock: Clock) -> None:
        self.store = store
        self.key = provider_key(base_url)
        self.clock = clock
        self._points: list[tuple[float, float]] | None = None
        self._pending: list[tuple[float, float]] = []
        self._map: ClockMap | None = None

    def _loaded(self) -> list[tuple[float, float]]:
        if self._points is None:
            self._points = (
                self.store.clock_observations(self.key, KEEP) if self.store is not None else []
            )
        return self._points

    def observe(self, provider_at: float | None, local_at: float | None = None) -> None:
        """One provider timestamp read at `local_at` (default: now on our clock)."""
        if provider_at is None or not math.isfinite(provider_at):
            return
        point = (provider_at, self.clock() if local_at is None else local_at)
        points = self._loaded()
        points.append(point)
        del points[:-KEEP]
        self._pending.append(point)
        self._map = None

    def observe_headers(self, headers: object, fallback: float | None = None) -> None:
        """The `Date` header of a response (httpx headers), else `fallback` (a provider
        timestamp of 'now' in its body, e.g. a new batch's `created_at`, whole seconds)."""
        get = getattr(headers, "get", None)
        stamp = date_header(get("date")) if callable(get) else None
        if stamp is None and fallback is not None:
            stamp = fallback + 0.5
        self.observe(stamp)

    def flush(self) -> None:
        """Keep what was observed since the last flush in the store."""
        if self._pending and self.store is not None:
            pending, self._pending = self._pending, []
            self.store.add_clock_observations(self.key, pending, keep=KEEP)

    def map(self) -> ClockMap:
        if self._map is None:
            self._map = fit(self._loaded())
        return self._map
