"""When batch work must move to real time: the escalation point, its cancel allowance, and
the release point of a shard whose cancel is still running.

Owns `escalation_point` (the last safe moment to cancel a model's batches and finish their
work in real time), `cancel_allowance` (how much cancel latency that moment allows for, by
expected cost) and `release_point` (when a still-cancelling shard's lines go to real time
anyway). Pure: no I/O, no clock; `now` comes in as an argument.
"""

from __future__ import annotations

from collections.abc import Sequence

from batchyard.models import Route
from batchyard.router.features import ModelCapacity
from batchyard.router.pace import Safety, latest_start
from batchyard.router.work import ModelWork, ShardState, Work

__all__ = ["cancel_allowance", "escalation_point", "release_point"]


def escalation_point(
    deadline: float | None,
    work: ModelWork,
    shards: Sequence[ShardState],
    capacity: ModelCapacity,
    route: Route,
    safety: Safety,
    now: float | None = None,
) -> float | None:
    """The last safe moment to cancel the model's batches and finish their work in real time.

    Real time's latest start for every line not known finished (by the provider's own
    count), less an allowance for the cancel (`cancel_allowance`). As a batch makes
    progress, the point moves later. None without a deadline.
    """
    if deadline is None:
        return None
    base = work.fixed + work.total
    unanswered = sum((s.remaining for s in shards), base)
    allowance = cancel_allowance(shards, unanswered, route, safety, now, capacity)
    return latest_start(deadline, unanswered, capacity, route, safety) - allowance


_ALLOWANCE_QUANTILES = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)


def cancel_allowance(
    shards: Sequence[ShardState],
    unanswered: Work,
    route: Route,
    safety: Safety,
    now: float | None,
    capacity: ModelCapacity | None = None,
) -> float:
    """How much cancel latency the escalation point allows for: the allowance `a` with the
    lowest expected cost, from the cancel's mean up to its `cancel_quantile`.

    Which lines a batch finished is known only once its cancel is done. A cancel slower
    than `a` releases the shards' lines to real time; of those real time sends before the
    cancel is done (at its rate limits, over the cancel's mean latency: at most all of
    them), the share the provider counted finished (`D` of them) is paid twice: expected
    cost P(cancel > a) x that many lines x the real-time price (lines still unsent when
    the cancel is done take the batch's answer).
    A larger `a` cancels earlier, so the batch finishes fewer lines at its own price:
    a x the batch's completion rate x (real-time - batch price). While nothing is counted
    finished, nothing could be paid twice and the mean is allowed for. Every allowance
    includes the poll that sees the cancel done (`Safety.notice_s`).
    """
    floor = safety.cancel_mean_s
    done = sum(max(s.completed, 0) for s in shards)
    if done <= 0 or unanswered.count <= 0:
        return floor
    rate = 0.0  # lines per second the batches finish
    for s in shards:
        began = s.started_at if s.started_at is not None else s.submitted_at
        if now is not None and s.completed > 0 and now > began:
            rate += s.completed / (now - began)
    per_rt = unanswered.cost.on(route) / unanswered.count
    per_batch = unanswered.cost.batch / unanswered.count
    cancel, notice = safety.cancel, safety.notice_s
    lines = sum(max(s.work.count, 0) for s in shards)
    twice = float(done)
    if capacity is not None and lines > 0:
        rpm, tpm, _ = capacity.limits(route)
        per_line = unanswered.rate_tokens / unanswered.count
        per_s = min(rpm, tpm / per_line if per_line > 0 else rpm) / 60.0
        sent = min(float(lines), per_s * cancel.mean_s)
        twice = sent * min(done / lines, 1.0)

    def expected(a: float) -> float:
        slow = 1.0 - cancel.cdf(max(a - notice, 0.0))
        return slow * twice * per_rt + a * rate * max(per_rt - per_batch, 0.0)

    candidates = [floor]
    for q in _ALLOWANCE_QUANTILES:
        if q > safety.quantile:
            break
        candidates.append(max(floor, min(cancel.quantile(q), cancel.max_s) + notice))
    return min(candidates, key=expected)


def release_point(
    deadline: float,
    work: ModelWork,
    shards: Sequence[ShardState],
    shard: ShardState,
    capacity: ModelCapacity,
    route: Route,
    safety: Safety,
) -> float:
    """When the lines of `shard`, still cancelling, go to real time anyway.

    Real time then sends lines whose fate the batch has not told yet, and those the batch
    did finish are paid twice: that is the price of the deadline. If the cancel was asked
    before real time's latest start for every line not known finished, the lines go then
    (all of them fit); otherwise at the latest start for the lines the provider counts as
    unfinished.
    """
    base = work.fixed + work.total
    every = latest_start(deadline, sum((s.work for s in shards), base), capacity, route, safety)
    unanswered = sum((s.remaining for s in shards), base)
    if shard.cancelling_at is not None and shard.cancelling_at <= every:
        return every
    return latest_start(deadline, unanswered, capacity, route, safety)
