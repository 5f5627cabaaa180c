"""When to poll each batch shard next: fast while validating, slower while in progress.

Owns `PollSchedule`, an in-memory backoff per shard. Each decision it makes (when, and why
in words) is written through `record` (the runner passes `Store.record_poll`), so "when is
this line tried again?" has an answer for a line in a live batch: one write per shard and
poll. The schedule is never read back: after a restart every active shard is simply due at
once, which costs one `retrieve` per shard and loses nothing. No clock reads (times are
passed in) and no I/O of its own.

Intervals (seconds, `low` = settings.poll_min_seconds, `high` = settings.poll_max_seconds):
- validating: `low` (validation usually takes seconds to a minute; failures show up here);
- in_progress: starts at 2·`low` and grows by half per poll up to `high`;
- finalizing: min(`high`, max(`low`, 15)) — "finalizing" is not done, but it is short;
- cancelling: 2·`low`;
- an error on the poll itself (after the retry layer gave up, e.g. a long 429): the
  provider's retry-after if given, else the shard's interval doubled, within `high`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from batchyard.models import BatchStatus

__all__ = ["PollSchedule", "RecordPoll"]

RecordPoll = Callable[[int, float | None, str | None], None]
"""(shard, when it is polled next, why); (shard, None, None): due at the next round."""


@dataclass
class PollSchedule:
    low: float = 5.0
    high: float = 300.0
    _next: dict[int, float] = field(default_factory=dict)
    _interval: dict[int, float] = field(default_factory=dict)
    record: RecordPoll | None = None

    def due(self, shard: int, now: float) -> bool:
        """True when the shard should be polled now (unknown shards are always due)."""
        return self._next.get(shard, float("-inf")) <= now

    def next_at(self, shard: int) -> float | None:
        return self._next.get(shard)

    def polled(self, shard: int, status: BatchStatus, now: float) -> float:
        """Record a poll that saw `status`; returns when to poll next."""
        previous = self._interval.get(shard)
        if status == BatchStatus.VALIDATING:
            interval = self.low
        elif status == BatchStatus.IN_PROGRESS:
            start = min(self.high, 2 * self.low)
            interval = start if previous is None else min(self.high, max(start, previous * 1.5))
        elif status == BatchStatus.FINALIZING:
            interval = min(self.high, max(self.low, 15.0))
        elif status == BatchStatus.CANCELLING:
            interval = min(self.high, 2 * self.low)
        else:
            self.forget(shard)
            return now
        return self._decide(shard, now, interval, f"{status}: polled again in {interval:g} s")

    def failed(self, shard: int, now: float, retry_after: float | None = None) -> float:
        """Record a poll that raised; returns when to try again."""
        if retry_after is not None and retry_after > 0:
            interval = min(self.high, retry_after)
            why = f"the poll failed: tried again in {interval:g} s (the provider's retry-after)"
        else:
            interval = min(self.high, 2 * self._interval.get(shard, self.low))
            why = f"the poll failed: tried again in {interval:g} s"
        return self._decide(shard, now, interval, why)

    def forget(self, shard: int) -> None:
        """Drop the shard's backoff: it is due at the next round."""
        self._next.pop(shard, None)
        self._interval.pop(shard, None)
        if self.record is not None:
            self.record(shard, None, None)

    def _decide(self, shard: int, now: float, interval: float, why: str) -> float:
        self._interval[shard] = interval
        self._next[shard] = now + interval
        if self.record is not None:
            self.record(shard, self._next[shard], why)
        return self._next[shard]

    def earliest(self, shards: list[int], now: float) -> float:
        """The earliest time any of `shards` is due (now if one is due or unknown)."""
        times = [self._next.get(s, now) for s in shards]
        return max(now, min(times)) if times else now
