"""A decision's lines: each request given its route, with exact sums per route.

Owns `assigned` (a held list of requests, every assignment kept) and `streamed` (lines that
stream past from a `LineSource`: the same sums per route, the late lines counted, the first
`KEEP_LATE` named, and no assignment kept; the decision replays them when asked). Both run
`assign.Assigner` over the lines after the rules have decided on sums (`policy.route_work`).
Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import replace

from batchyard.models import Route
from batchyard.router.assign import Assigner
from batchyard.router.decision import Assignment, Decision
from batchyard.router.features import ModelCapacity, RequestFeatures
from batchyard.router.work import NO_WORK, Work, WorkSum

__all__ = ["KEEP_LATE", "LineSource", "assigned", "streamed"]

KEEP_LATE = 10_000  # late lines named by a decision made on streamed lines (all are counted)
# Gives the lines of a run again, in input order, each time it is called.
LineSource = Callable[[], Iterable[RequestFeatures]]


def assigned(
    decision: Decision,
    requests: Iterable[RequestFeatures],
    capacities: Mapping[str, ModelCapacity],
) -> Decision:
    """The decision with every request assigned, and exact sums per route."""
    caps = {
        m.model: capacities.get(m.model) or ModelCapacity(model=m.model) for m in decision.models
    }
    assigner = Assigner(decision, caps, keep_late=10**9)
    lines: dict[str, list[Assignment]] = {m.model: [] for m in decision.models}
    routed: dict[str, dict[Route, Work]] = {m.model: {} for m in decision.models}
    deferred: dict[str, Work] = {m.model: NO_WORK for m in decision.models}
    late: dict[str, list[str]] = {m.model: [] for m in decision.models}
    for r in requests:
        before = assigner.late_count
        a = assigner.assign(r)
        lines[r.model].append(a)
        if assigner.late_count > before:
            late[r.model].append(r.custom_id)
        if r.shard is not None:
            continue
        per = routed[r.model]
        per[a.route] = per.get(a.route, NO_WORK) + Work.of(r)
        if a.deferred:
            deferred[r.model] = deferred[r.model] + Work.of(r)
    models = tuple(
        replace(
            m,
            assignments=tuple(lines[m.model]),
            cannot_meet=tuple(late[m.model]),
            late=len(late[m.model]),
            routed=routed[m.model],
            deferred=deferred[m.model],
        )
        for m in decision.models
    )
    return Decision(now=decision.now, models=models, reason=decision.reason)


def streamed(
    decision: Decision, lines: LineSource, capacities: Mapping[str, ModelCapacity]
) -> Decision:
    """`assigned` for lines that stream past: the same sums per route, the late lines
    counted (the first `KEEP_LATE` named), and no assignment kept: the decision replays
    them from `lines` when asked."""
    caps = {
        m.model: capacities.get(m.model) or ModelCapacity(model=m.model) for m in decision.models
    }
    assigner = Assigner(decision, caps, keep_late=0)
    routed: dict[str, dict[Route, WorkSum]] = {m.model: {} for m in decision.models}
    deferred = {m.model: WorkSum() for m in decision.models}
    late: dict[str, list[str]] = {m.model: [] for m in decision.models}
    counts = dict.fromkeys(routed, 0)
    named = 0
    for r in lines():
        before = assigner.late_count
        a = assigner.assign(r)
        if assigner.late_count > before:
            counts[r.model] += 1
            if named < KEEP_LATE:
                late[r.model].append(r.custom_id)
                named += 1
        if r.shard is not None:
            continue
        per = routed[r.model]
        acc = per.get(a.route)
        if acc is None:
            acc = per[a.route] = WorkSum()
        acc.add(r)
        if a.deferred:
            deferred[r.model].add(r)
    models = tuple(
        replace(
            m,
            cannot_meet=tuple(late[m.model]),
            late=counts[m.model],
            routed={route: acc.work() for route, acc in routed[m.model].items()},
            deferred=deferred[m.model].work(),
        )
        for m in decision.models
    )
    done = Decision(now=decision.now, models=models, reason=decision.reason)

    def replay() -> Iterator[Assignment]:
        again = Assigner(done, caps, keep_late=0)
        return (again.assign(r) for r in lines())

    return replace(done, replay=replay)
