"""What this store's batches teach about the provider: turnaround and cancel latency.

Owns `turnarounds` (per model: the configured prior updated with finished, expired and
cancelled batches) and `cancel_latency` (how long cancelling took), learned on the
provider's clock and returned on ours. Reads batch rows only; decides nothing itself.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from batchyard.models import BatchStatus
from batchyard.orchestrator._routing.provider_clock import ClockMap
from batchyard.router import Turnaround
from batchyard.store.rows import BatchRow

__all__ = ["cancel_latency", "turnarounds"]

_DONE_BATCH = frozenset({BatchStatus.COMPLETED, BatchStatus.APPLIED})


def turnarounds(
    batches: Iterable[BatchRow],
    models: Iterable[str] = (),
    prior: Turnaround | None = None,
    clock: ClockMap | None = None,
) -> dict[str, Turnaround]:
    """The configured prior for each of `models`, updated with the store's batches.

    Learned on the provider's clock (the prior too: it describes the provider); with
    `clock`, returned on ours (a simulator on a fast clock finishes its hours in seconds).

    A batch's turnaround is its time in progress (`in_progress_at` to `finalizing_at`, or
    creation to completion where those are missing). A batch that expired counts as taking
    the whole window: the slow outcome the escalation point must allow for. A batch we
    cancelled before it finished teaches too: from the share it had finished, its pace (its
    time in progress over that share); with nothing finished, only that it takes longer
    than it ran (a censored observation).
    """
    base = prior or Turnaround.prior()
    observed: dict[str, list[float]] = defaultdict(list)
    longer: dict[str, list[float]] = defaultdict(list)
    for b in batches:
        times = b.provider_times
        start = times.get("in_progress_at") or times.get("created_at")
        if start is None:
            start = clock.to_provider(b.created_at) if clock is not None else b.created_at
        if b.status in _DONE_BATCH and "completed_at" in times:
            done = times.get("finalizing_at") or times["completed_at"]
            if done >= start:
                observed[b.model].append(done - start)
        elif "expired_at" in times:
            observed[b.model].append(base.max_s)
        elif "cancelling_at" in times and "finalizing_at" not in times:
            ran = times["cancelling_at"] - start
            total, done_ = b.counts_total or b.request_count, b.counts_completed or 0
            if ran <= 0:
                continue
            if done_ > 0 and total > 0 and "in_progress_at" in times:
                observed[b.model].append(ran * total / done_)
            else:
                longer[b.model].append(ran)
    out = {model: base for model in models}
    for model in set(observed) | set(longer):
        out[model] = base.updated_with(observed.get(model, ()), longer.get(model, ()))
    if clock is not None:
        out = {model: clock.turnaround(t) for model, t in out.items()}
    return out


def cancel_latency(
    batches: Iterable[BatchRow], prior: Turnaround | None = None, clock: ClockMap | None = None
) -> Turnaround:
    """The configured cancel-latency prior, updated with how long the store's cancelled
    batches stayed `cancelling` (all models: cancelling is the provider's own work); kept
    on the provider's clock, returned on ours with `clock`."""
    base = prior or Turnaround.cancel_prior()
    seen = [
        b.provider_times["cancelled_at"] - b.provider_times["cancelling_at"]
        for b in batches
        if "cancelling_at" in b.provider_times and "cancelled_at" in b.provider_times
    ]
    learned = base.updated_with(s for s in seen if s >= 0)
    return clock.turnaround(learned) if clock is not None else learned
