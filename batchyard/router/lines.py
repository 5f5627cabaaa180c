"""A decision's lines: each request given its route, with exact sums per route.

Owns `assigned` (a held list of requests, every assignment kept) and `streamed` (lines that
stream past from a `LineSource`: the same sums per route, the late lines counted, the first
`KEEP_LATE` named, and no assignment kept; the decision replays them when asked). Both run
`assign.Assigner` over the lines after the rules have decided on sums (`policy.route_work`).
Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Protocol

from batchyard.models import Route
from batchyard.router.assign import Assigner, Start
from batchyard.router.decision import Assignment, Decision
from batchyard.router.features import ModelCapacity, RequestFeatures
from batchyard.router.work import NO_WORK, Tally, Work, WorkSum

__all__ = [
    "KEEP_LATE",
    "MAX_CODES",
    "LineSource",
    "Memo",
    "Routes",
    "assigned",
    "route_lines",
    "starts",
    "streamed",
]

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


@dataclass
class Routes:
    """What lines streaming past an `Assigner` leave behind (never one record per line):
    per model the sums of each route and of the deferred lines, how many lines cannot make
    the deadline and the first `KEEP_LATE` of them by name (in line order), and the
    distinct assignments a memo's codes index. `merge` adds the routes of later lines
    (a part of a file assigned on its own, from where the earlier parts ended)."""

    routed: dict[str, dict[Route, WorkSum]]
    deferred: dict[str, WorkSum]
    late: list[tuple[str, str]] = field(default_factory=list)  # (model, custom_id)
    counts: dict[str, int] = field(default_factory=dict)
    table: dict[tuple[Route, str, bool], int] = field(default_factory=dict)
    memo_full: bool = False  # more distinct assignments than a memo names

    @classmethod
    def empty(cls, decision: Decision) -> Routes:
        models = [m.model for m in decision.models]
        return cls(
            routed={m: {} for m in models},
            deferred={m: WorkSum() for m in models},
            counts=dict.fromkeys(models, 0),
        )

    def merge(self, later: Routes) -> None:
        for model, per in later.routed.items():
            mine = self.routed.setdefault(model, {})
            for route, work in per.items():
                mine.setdefault(route, WorkSum()).merge(work)
        for model, work in later.deferred.items():
            self.deferred.setdefault(model, WorkSum()).merge(work)
        for model, count in later.counts.items():
            self.counts[model] = self.counts.get(model, 0) + count
        self.late.extend(later.late[: max(0, KEEP_LATE - len(self.late))])

    def decided(self, decision: Decision) -> Decision:
        """`decision` with these sums and late lines (its replay is the caller's)."""
        named: dict[str, list[str]] = {m.model: [] for m in decision.models}
        for model, custom_id in self.late:
            named[model].append(custom_id)
        models = tuple(
            replace(
                m,
                cannot_meet=tuple(named[m.model]),
                late=self.counts.get(m.model, 0),
                routed={route: acc.work() for route, acc in self.routed[m.model].items()},
                deferred=self.deferred[m.model].work(),
            )
            for m in decision.models
        )
        return Decision(now=decision.now, models=models, reason=decision.reason)


def starts(tallies: Iterable[Tally]) -> list[Start]:
    """For the parts of a file tallied apart, in order: where each part's lines begin in
    each model's priority classes (the sums of the parts before it), for `route_lines`."""
    found: list[Start] = []
    total: dict[str, dict[int, tuple[int, int, int]]] = {}
    for tally in tallies:
        found.append({model: dict(classes) for model, classes in total.items()})
        for model, classes in tally.class_counts().items():
            mine = total.setdefault(model, {})
            for priority, (count, rate, tokens) in classes.items():
                c, r, t = mine.get(priority, (0, 0, 0))
                mine[priority] = (c + count, r + rate, t + tokens)
    return found


def route_lines(
    decision: Decision,
    lines: Iterable[RequestFeatures],
    capacities: Mapping[str, ModelCapacity],
    memo: Memo | None = None,
    start: Start | None = None,
) -> Routes:
    """Assign `lines` as they stream past, keeping their `Routes` (and each assignment's
    code in `memo`, while it can name them all). `start`: where the lines before them left
    each model's classes (see `Assigner`)."""
    caps = _capacities(decision, capacities)
    assigner = Assigner(decision, caps, keep_late=0, start=start)
    routes = Routes.empty(decision)
    routed, deferred, late, counts, table = (
        routes.routed, routes.deferred, routes.late, routes.counts, routes.table
    )  # fmt: skip
    for r in lines:
        before = assigner.late_count
        a = assigner.assign(r)
        if memo is not None:
            key = (a.route, a.reason, a.deferred)
            code = table.get(key)
            if code is None and len(table) < MAX_CODES:
                code = table[key] = len(table)
            if code is None:
                memo = None  # too many to name: assign again when replayed
                routes.memo_full = True
            else:
                memo.add(code)
        if assigner.late_count > before:
            counts[r.model] += 1
            if len(late) < KEEP_LATE:
                late.append((r.model, r.custom_id))
        if r.shard is not None:
            continue
        per = routed[r.model]
        acc = per.get(a.route)
        if acc is None:
            acc = per[a.route] = WorkSum()
        acc.add(r)
        if a.deferred:
            deferred[r.model].add(r)
    return routes


def _capacities(
    decision: Decision, capacities: Mapping[str, ModelCapacity]
) -> dict[str, ModelCapacity]:
    return {
        m.model: capacities.get(m.model) or ModelCapacity(model=m.model) for m in decision.models
    }


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
    kept = memo[0]() if memo is not None else None
    routes = route_lines(decision, lines(), capacities, kept)
    done = routes.decided(decision)
    caps = _capacities(decision, capacities)

    def replay() -> Iterator[Assignment]:
        if kept is not None and memo is not None and not routes.memo_full:
            distinct = list(routes.table)
            pairs = zip(memo[1](), kept.codes(), strict=True)
            return (Assignment(cid, *distinct[code]) for cid, code in pairs)
        again = Assigner(done, caps, keep_late=0)
        return (again.assign(r) for r in lines())

    return replace(done, replay=replay)
