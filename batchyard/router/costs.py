"""What a decision is likely to cost and when it is likely to finish.

Owns the cost model: per (model, route) rows with best, expected and worst cost, the
probability of needing escalation and the expected finish; the expected cost of trying
batch (`try_batch_cost`, which the deadline rule weighs against real time now); and the
run-time budget guard. The turnaround distribution only weighs the outcomes; it never
changes a route.

- Real-time rows (standard, flex) cost their price in every case (expected at the
  expected output, worst at the worst-case output).
- A batch row with an escalation point is simulated over the turnaround distribution as
  the policy plays it: the batch's lines finish evenly over its turnaround; the model
  escalates when the last safe moment arrives for the lines still unfinished (which moves
  later as the batch progresses, see `escalation.escalation_point`); lines finished by then are
  kept at the batch price, the rest cost the escalation route's price. Best: every batch
  returns in time. Worst: none of it does (everything at the escalation route's price at
  the worst-case output). Lines paid twice on a cancel slower than planned are the price
  of the deadline: `try_batch_cost` counts their expectation, the rows do not.
- Deferred lines (waiting for queue headroom) are assumed to start one median turnaround
  later. A batch row without an escalation point always costs the batch price.

Pure: no I/O, no clock.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from batchyard.models import Route
from batchyard.router.decision import Decision, ModelDecision
from batchyard.router.pace import Safety, latest_start, realtime_seconds
from batchyard.router.parse import format_usd
from batchyard.router.turnaround import Turnaround
from batchyard.router.work import NO_WORK, Work

if TYPE_CHECKING:
    from batchyard.router.rules import ModelContext

__all__ = ["Estimate", "PlanRow", "budget_stop_reason", "estimate", "try_batch_cost"]

_GRID = 200
_ROUTE_ORDER = (Route.BATCH, Route.FLEX, Route.STANDARD, Route.FAST)


@dataclass(frozen=True)
class PlanRow:
    """One (model, route) line of a plan. Costs in USD, times in unix seconds."""

    model: str
    route: Route
    requests: int
    input_tokens: int
    output_tokens: int
    cost: float  # at this route's price
    best: float
    expected: float
    worst: float
    p_escalation: float
    escalation_at: float | None
    expected_finish: float
    all_standard: float
    deferred: int = 0
    output_worst: int = 0

    @property
    def saving(self) -> float:
        """Expected saving of this row against sending it at standard price."""
        return self.all_standard - self.expected


@dataclass(frozen=True)
class Estimate:
    """Totals over a decision."""

    rows: tuple[PlanRow, ...]
    best: float
    expected: float
    worst: float
    all_standard: float
    p_escalation: float
    expected_finish: float | None

    @property
    def saving(self) -> float:
        """Expected saving against sending everything standard."""
        return self.all_standard - self.expected


@dataclass(frozen=True)
class _Outcome:
    kept: float  # share of the batch lines answered in batch
    escalated: bool
    finish: float


class _Play:
    """The policy played out for one batch of `lines` started at `start`, given its
    turnaround: when it escalates, what it keeps, when it finishes."""

    def __init__(
        self, ctx: ModelContext, lines: Work, others: Work, start: float, escalation_at: float
    ) -> None:
        self.ctx, self.lines, self.others, self.start = ctx, lines, others, start
        deadline = ctx.policy.deadline
        assert deadline is not None
        self.deadline = deadline
        self.safety: Safety = ctx.safety
        self.route = ctx.escalation_route
        # The bound that counts every line as unfinished is fixed; the counted one moves.
        self.first = max(ctx.now, escalation_at)

    def _gap(self, t: float, turnaround: float) -> float:
        """>= 0 once `t` is past the counted escalation point for what is unfinished at t."""
        left = self.lines.share(1.0 - self._progress(t, turnaround))
        point = latest_start(
            self.deadline, self.others + left, self.ctx.capacity, self.route, self.safety
        )
        return t - (point - self.safety.cancel_high_s)

    def _progress(self, t: float, turnaround: float) -> float:
        if turnaround <= 0:
            return 1.0
        return min(max((t - self.start) / turnaround, 0.0), 1.0)

    def outcome(self, turnaround: float) -> _Outcome:
        done_at = self.start + turnaround
        t = self._escalates_at(turnaround, done_at)
        if t is None:
            return _Outcome(1.0, False, done_at)
        kept = self._progress(t, turnaround)
        rest = self.others + self.lines.share(1.0 - kept)
        needs = realtime_seconds(rest, self.ctx.capacity, self.route)
        return _Outcome(kept, True, t + self.safety.cancel_mean_s + needs)

    def _escalates_at(self, turnaround: float, done_at: float) -> float | None:
        lo = self.first
        if lo >= done_at:
            return None
        if self._gap(lo, turnaround) >= 0:
            return lo
        # The gap rises with slope 1 before the batch starts and is convex while it runs:
        # past a negative start, it crosses zero at most once on each piece.
        for a, b in ((lo, min(self.start, done_at)), (max(lo, self.start), done_at)):
            if b <= a or self._gap(b - 1e-6, turnaround) < 0:
                continue
            for _ in range(40):
                mid = (a + b) / 2
                if self._gap(mid, turnaround) >= 0:
                    b = mid
                else:
                    a = mid
            return b
        return None


def _turnarounds(turnaround: Turnaround) -> list[float]:
    """Quantiles of the turnaround, past the window too (a batch that runs longer than its
    window expires with the lines it finished, at the same pace)."""
    from statistics import NormalDist

    z = NormalDist()
    return [
        math.exp(turnaround.mu + turnaround.sigma * z.inv_cdf((i + 0.5) / _GRID))
        for i in range(_GRID)
    ]


def _batch_row(ctx: ModelContext, md: ModelDecision, work: Work, deferred: Work) -> PlanRow:
    esc = md.escalation_at
    turnaround = ctx.turnaround
    setup = ctx.policy.batch_setup_s
    fallback = ctx.escalation_route
    others = ctx.work.in_flight + sum(
        (w for route, w in md.routed.items() if route is not Route.BATCH), NO_WORK
    )
    others = sum((s.remaining for s in ctx.shards), others)
    groups = ((ctx.now + setup, work), (ctx.now + setup + turnaround.median_s, deferred))
    best = expected = worst = 0.0
    p_max = 0.0
    finish = ctx.now
    samples = _turnarounds(turnaround)
    for start, lines in groups:
        if not lines:
            continue
        batch, at_fallback = lines.cost.batch, max(lines.cost.on(fallback), lines.cost.batch)
        best += batch
        if esc is None:
            expected += batch
            worst += lines.worst.batch
            finish = max(finish, start + turnaround.median_s)
            continue
        worst += max(lines.worst.on(fallback), lines.worst.batch)
        play = _Play(ctx, lines, others, start, esc)
        outcomes = [play.outcome(t) for t in samples]
        kept = sum(o.kept for o in outcomes) / len(outcomes)
        expected += kept * batch + (1.0 - kept) * at_fallback
        p_max = max(p_max, sum(o.escalated for o in outcomes) / len(outcomes))
        finish = max(finish, sum(o.finish for o in outcomes) / len(outcomes))
    total = work + deferred
    return PlanRow(
        model=md.model,
        route=Route.BATCH,
        requests=total.count,
        input_tokens=total.input_tokens,
        output_tokens=total.output_tokens,
        cost=best,
        best=best,
        expected=expected,
        worst=worst,
        p_escalation=p_max,
        escalation_at=esc,
        expected_finish=finish,
        all_standard=total.cost.standard,
        deferred=deferred.count,
        output_worst=total.output_worst,
    )


def _realtime_row(ctx: ModelContext, md: ModelDecision, route: Route, work: Work) -> PlanRow:
    cost = work.cost.on(route)
    return PlanRow(
        model=md.model,
        route=route,
        requests=work.count,
        input_tokens=work.input_tokens,
        output_tokens=work.output_tokens,
        cost=cost,
        best=cost,
        expected=cost,
        worst=work.worst.on(route),
        p_escalation=0.0,
        escalation_at=None,
        expected_finish=ctx.now + realtime_seconds(ctx.work.in_flight + work, ctx.capacity, route),
        all_standard=work.cost.standard,
        output_worst=work.output_worst,
    )


def _subtract(a: Work, b: Work) -> Work:
    """`a` without `b` (b is a part of a), for the undeferred part of a batch row."""
    if not b:
        return a
    share = 1.0 - b.count / a.count if a.count else 0.0
    return a.share(share)


def estimate_model(ctx: ModelContext, md: ModelDecision) -> list[PlanRow]:
    """The rows for one model's decision, batch first."""
    rows: list[PlanRow] = []
    for route in _ROUTE_ORDER:
        work = md.routed.get(route)
        if not work:
            continue
        if route is Route.BATCH:
            rows.append(_batch_row(ctx, md, _subtract(work, md.deferred), md.deferred))
        else:
            rows.append(_realtime_row(ctx, md, route, work))
    return rows


def estimate(decision: Decision, contexts: Mapping[str, ModelContext]) -> Estimate:
    """Best, expected and worst cost, escalation probability and finish of a decision."""
    rows: list[PlanRow] = []
    for md in decision.models:
        rows.extend(estimate_model(contexts[md.model], md))
    finishes = [r.expected_finish for r in rows]
    # P(any escalation): shards of different models come back independently.
    p_none = math.prod(1.0 - r.p_escalation for r in rows)
    return Estimate(
        rows=tuple(rows),
        best=sum(r.best for r in rows),
        expected=sum(r.expected for r in rows),
        worst=sum(r.worst for r in rows),
        all_standard=sum(r.all_standard for r in rows),
        p_escalation=1.0 - p_none,
        expected_finish=max(finishes) if finishes else None,
    )


def try_batch_cost(ctx: ModelContext) -> float:
    """The expected cost of sending the model's open work to batch until the escalation
    point, lines paid twice on a slow cancel included.

    A line is paid twice when the cancel has not finished by the release point and real
    time sends a line the batch had already finished. Expected: the chance the cancel runs
    past what the point allowed for, times the lines real time sends meanwhile (its rate
    over a mean cancel), times the share the batch had finished.
    """
    work = ctx.open
    if not work or ctx.escalation_at is None or ctx.policy.deadline is None:
        return work.cost.batch
    route = ctx.escalation_route
    others = sum((s.remaining for s in ctx.shards), ctx.work.in_flight + ctx.work.fast)
    play = _Play(ctx, work, others, ctx.now + ctx.policy.batch_setup_s, ctx.escalation_at)
    outcomes = [play.outcome(t) for t in _turnarounds(ctx.turnaround)]
    kept = sum(o.kept for o in outcomes) / len(outcomes)
    base = kept * work.cost.batch + (1.0 - kept) * max(work.cost.on(route), work.cost.batch)
    safety = ctx.safety
    p_slow = 1.0 - safety.cancel.cdf(safety.cancel_high_s)
    rpm, _, _ = ctx.capacity.limits(route)
    sent = min(1.0, rpm / 60.0 * safety.cancel_mean_s / max(work.count, 1))
    per_line = work.cost.on(route)
    return base + p_slow * sent * kept * per_line


def budget_stop_reason(
    budget_usd: float | None, committed_usd: float, next_usd: float
) -> str | None:
    """Why dispatching `next_usd` more must wait, or None if it fits the budget.

    `committed_usd` is what is spent plus what is reserved for work already dispatched
    (reserved at submit, reconciled with actual usage as results arrive).
    """
    if budget_usd is None or committed_usd + next_usd <= budget_usd + 1e-9:
        return None
    return (
        f"budget {format_usd(budget_usd)} reached: {format_usd(committed_usd)} spent or reserved, "
        f"next dispatch needs {format_usd(next_usd)}; raise --budget to continue"
    )
