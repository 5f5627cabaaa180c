"""What a decision is likely to cost and when it is likely to finish.

Owns the cost model: per (model, route) rows with best, expected and worst cost, the
probability of needing escalation and the expected finish; and the run-time budget guard.
The turnaround distribution only weighs the outcomes; it never changes a route.

- Real-time rows (standard, flex) cost their price in every case. A flex row's worst case
  is priced at flex: if flex becomes unavailable its work moves to batch at the same price,
  and the run-time guard (`budget_stop_reason`) stops dispatch before any later escalation
  could exceed the budget.
- A batch row with an escalation point costs the batch price if the batch returns before
  that point, else the escalation route's price (finished lines of a cancelled batch are
  kept, so the true cost lies between). Deferred lines (waiting for queue headroom) are
  assumed to be submitted one median turnaround from now.
- A batch row without an escalation point always costs the batch price.

Pure: no I/O, no clock.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from batchyard.models import Route
from batchyard.router.decision import Assignment, Decision, ModelDecision
from batchyard.router.features import ModelCapacity, RequestFeatures
from batchyard.router.parse import format_usd
from batchyard.router.rules import realtime_seconds
from batchyard.router.turnaround import Turnaround

__all__ = ["Estimate", "PlanRow", "budget_stop_reason", "estimate", "estimate_model"]

_GRID = 400
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


def _expected_finish(
    turnaround: Turnaround, submit: float, escalation_at: float | None, realtime_s: float
) -> float:
    """E[finish] of a batch submitted at `submit`, escalated at `escalation_at` if unfinished."""
    total = 0.0
    for i in range(_GRID):
        t = turnaround.quantile((i + 0.5) / _GRID)
        if escalation_at is not None and submit + t > escalation_at:
            total += max(escalation_at, submit) + realtime_s
        else:
            total += submit + min(t, turnaround.max_s)
    return total / _GRID


def _batch_row(
    md: ModelDecision,
    lines: Sequence[tuple[Assignment, RequestFeatures]],
    turnaround: Turnaround,
    now: float,
) -> PlanRow:
    esc = md.escalation_at
    best = expected = worst = 0.0
    p_max = 0.0
    finish = now
    groups = (
        (now, [r for a, r in lines if not a.deferred]),
        (now + turnaround.median_s, [r for a, r in lines if a.deferred]),
    )
    for submit, reqs in groups:
        if not reqs:
            continue
        batch = sum(r.cost.batch for r in reqs)
        fallback = sum(max(r.cost.on(md.escalation_route), r.cost.batch) for r in reqs)
        p = 0.0 if esc is None else 1.0 - turnaround.cdf(esc - submit)
        best += batch
        worst += batch if esc is None else fallback
        expected += batch if esc is None else (1.0 - p) * batch + p * fallback
        p_max = max(p_max, p)
        finish = max(finish, _expected_finish(turnaround, submit, esc, md.realtime_s))
    reqs_all = [r for _, r in lines]
    return PlanRow(
        model=md.model,
        route=Route.BATCH,
        requests=len(reqs_all),
        input_tokens=sum(r.input_tokens for r in reqs_all),
        output_tokens=sum(r.output_tokens for r in reqs_all),
        cost=best,
        best=best,
        expected=expected,
        worst=worst,
        p_escalation=p_max,
        escalation_at=esc,
        expected_finish=finish,
        all_standard=sum(r.cost.standard for r in reqs_all),
        deferred=sum(a.deferred for a, _ in lines),
    )


def _realtime_row(
    md: ModelDecision,
    route: Route,
    reqs: Sequence[RequestFeatures],
    capacity: ModelCapacity,
    now: float,
) -> PlanRow:
    cost = sum(r.cost.on(route) for r in reqs)
    return PlanRow(
        model=md.model,
        route=route,
        requests=len(reqs),
        input_tokens=sum(r.input_tokens for r in reqs),
        output_tokens=sum(r.output_tokens for r in reqs),
        cost=cost,
        best=cost,
        expected=cost,
        worst=cost,
        p_escalation=0.0,
        escalation_at=None,
        expected_finish=now + realtime_seconds(reqs, capacity, route),
        all_standard=sum(r.cost.standard for r in reqs),
    )


def estimate_model(
    md: ModelDecision,
    by_id: Mapping[str, RequestFeatures],
    capacity: ModelCapacity,
    turnaround: Turnaround,
    now: float,
) -> list[PlanRow]:
    """The rows for one model's decision, batch first."""
    rows: list[PlanRow] = []
    for route in _ROUTE_ORDER:
        lines = [(a, by_id[a.custom_id]) for a in md.assignments if a.route is route]
        if not lines:
            continue
        if route is Route.BATCH:
            rows.append(_batch_row(md, lines, turnaround, now))
        else:
            rows.append(_realtime_row(md, route, [r for _, r in lines], capacity, now))
    return rows


def estimate(
    decision: Decision,
    requests: Sequence[RequestFeatures],
    capacities: Mapping[str, ModelCapacity],
    turnarounds: Mapping[str, Turnaround],
) -> Estimate:
    """Best, expected and worst cost, escalation probability and finish of a decision."""
    by_id = {r.custom_id: r for r in requests}
    rows: list[PlanRow] = []
    for md in decision.models:
        capacity = capacities.get(md.model) or ModelCapacity(model=md.model)
        turnaround = turnarounds.get(md.model) or Turnaround.prior()
        rows.extend(estimate_model(md, by_id, capacity, turnaround, decision.now))
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
