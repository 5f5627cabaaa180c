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
from typing import Protocol

from batchyard.models import Route
from batchyard.router.assign import Assigner
from batchyard.router.decision import Assignment, Decision
from batchyard.router.features import ModelCapacity, RequestFeatures
from batchyard.router.work import NO_WORK, Work, WorkSum

__all__ = ["KEEP_LATE", "MAX_CODES", "LineSource", "Memo", "assigned", "streamed"]

KEEP_LATE = 10_000  # late lines named by a decision made on streamed lines (all are counted)
# Gives the lines of a run again, in input order, each time it is called.
LineSource = Callable[[], Iterable[RequestFeatures]]
MAX_CODES = 1 << 16  # distinct assignments a memo can name (a run has a few per model)


class Memo(Protocol):
    """Where `streamed` keeps each line's assignment as a small code (an index into the
    distinct assignments it saw), so that the decision replays them without assigning
    every line again. The caller's storage (a file, say): the router does no I/O."""

    def add(self, code: int) -> None: ...

    def codes(self) -> Iterable[int]: ...


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
    decision: Decision,
    lines: LineSource,
    capacities: Mapping[str, ModelCapacity],
    memo: tuple[Callable[[], Memo], Callable[[], Iterable[str]]] | None = None,
) -> Decision:
    """`assigned` for lines that stream past: the same sums per route, the late lines
    counted (the first `KEEP_LATE` named), and no assignment kept: the decision replays
    them from `lines` when asked. With `memo` (a new memo, and the lines' custom_ids in
    the same order), each assignment is kept as a code and replayed from it instead
    (unless the lines name more than `MAX_CODES` distinct assignments)."""
    caps = {
        m.model: capacities.get(m.model) or ModelCapacity(model=m.model) for m in decision.models
    }
    assigner = Assigner(decision, caps, keep_late=0)
    routed: dict[str, dict[Route, WorkSum]] = {m.model: {} for m in decision.models}
    deferred = {m.model: WorkSum() for m in decision.models}
    late: dict[str, list[str]] = {m.model: [] for m in decision.models}
    counts = dict.fromkeys(routed, 0)
    named = 0
    kept = memo[0]() if memo is not None else None
    table: dict[tuple[Route, str, bool], int] = {}
    for r in lines():
        before = assigner.late_count
        a = assigner.assign(r)
        if kept is not None:
            key = (a.route, a.reason, a.deferred)
            code = table.get(key)
            if code is None and len(table) < MAX_CODES:
                code = table[key] = len(table)
            if code is None:
                kept = None  # too many to name: assign again when replayed
            else:
                kept.add(code)
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
        if kept is not None and memo is not None:
            distinct = list(table)
            pairs = zip(memo[1](), kept.codes(), strict=True)
            return (Assignment(cid, *distinct[code]) for cid, code in pairs)
        again = Assigner(done, caps, keep_late=0)
        return (again.assign(r) for r in lines())

    return replace(done, replay=replay)
