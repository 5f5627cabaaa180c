"""How long real time needs for some work, and the deadline arithmetic built on it.

Owns `realtime_seconds` (work paced by RPM and by TPM as OpenAI counts it, input plus
maximum output, whichever binds, plus the route's latency), the safety the deadline
keeps (`Safety`: a floor, the spread of real-time throughput, the cancel latency) and the
three moments the policy is made of:

- `latest_start`: the last moment real time can start some work and still finish it
  before the deadline, with the floor and the spread kept free;
- the escalation point: the latest start for everything real time would have to do if the
  model's batches were cancelled now, minus the time the cancel itself takes (see
  `escalation.escalation_point`);
- the release point of a batch still `cancelling`: when its lines go to real time even
  though the batch may have finished some of them (`escalation.release_point`).

Pure: no I/O, no clock.
"""

from __future__ import annotations

from dataclasses import dataclass

from batchyard.models import Route
from batchyard.router.features import ModelCapacity, RunPolicy
from batchyard.router.turnaround import Turnaround
from batchyard.router.work import Work

__all__ = ["Safety", "finish_offset", "latest_start", "realtime_seconds"]


def finish_offset(count: int, rate_tokens: int, capacity: ModelCapacity, route: Route) -> float:
    """Seconds from now until the `count`-th request (with `rate_tokens` charged so far,
    its own included), sent in dispatch order, has its answer."""
    if count <= 0:
        return 0.0
    rpm, tpm, latency = capacity.limits(route)
    return max(count / rpm, rate_tokens / tpm) * 60.0 + latency


def realtime_seconds(
    work: Work, capacity: ModelCapacity, route: Route = Route.STANDARD, spread: float = 0.0
) -> float:
    """Seconds real time needs to finish all of `work` on `route` at the current limits;
    `spread` allows for real time running that share slower than its limits say."""
    if work.count <= 0:
        return 0.0
    rpm, tpm, latency = capacity.limits(route)
    return max(work.count / rpm, work.rate_tokens / tpm) * 60.0 * (1.0 + spread) + latency


@dataclass(frozen=True)
class Safety:
    """What the deadline keeps free, and the cancel latency it allows for.

    `floor_s` is kept free in every case; `spread` is the share by which real time may run
    slower than planned; `cancel` is the learned cancel latency. Where nothing of a batch is
    known finished, the escalation point allows for the cancel's mean (`cancel_mean_s`): a
    slower cancel then makes real time start on the batch's lines anyway (few of which can
    be finished, so few are paid twice). Where the batch's own progress is counted on, it
    allows for the cancel's `quantile` (`cancel_high_s`), so that this is rare.
    """

    floor_s: float
    spread: float
    cancel: Turnaround
    quantile: float = 0.95
    notice_s: float = 0.0  # after the provider finishes a cancel, until the driver sees it

    @classmethod
    def of(cls, policy: RunPolicy, cancel: Turnaround) -> Safety:
        return cls(
            policy.margin_s,
            policy.realtime_spread,
            cancel,
            policy.cancel_quantile,
            policy.cancel_notice_s,
        )

    @property
    def cancel_mean_s(self) -> float:
        """The cancel's mean latency, and the poll that sees it done."""
        return self.cancel.mean_s + self.notice_s

    @property
    def cancel_high_s(self) -> float:
        """The cancel's `quantile` latency (capped at its longest), and the poll."""
        high = self.cancel.quantile(self.quantile)
        return min(high, self.cancel.max_s) + self.notice_s


def latest_start(
    deadline: float, work: Work, capacity: ModelCapacity, route: Route, safety: Safety
) -> float:
    """The last moment real time can start `work` and still finish it before the deadline,
    keeping the floor free and allowing for the spread."""
    return deadline - safety.floor_s - realtime_seconds(work, capacity, route, safety.spread)
