"""Changing course mid-run: re-deciding open work, escalating, and the budget guard.

Owns one round of re-routing: feed the router the run's open work, live shards, current
limits and breaker states; cancel the shards it says to cancel (their finished lines are
kept); move re-routed requests in the store; record every change with its reason. Also the
dispatch guard that stops real-time spending before the budget would be exceeded. No SQL,
no printing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from batchyard.config import ModelInfo
from batchyard.models import RequestStatus, Route
from batchyard.orchestrator import routing
from batchyard.orchestrator.batches import BatchRunner
from batchyard.router import ModelCapacity, RunPolicy, budget_stop_reason, redecide
from batchyard.store import Store
from batchyard.store.rows import RunRow

__all__ = ["budget_guard", "reroute", "route_unbatchable"]

_MOVABLE = (RequestStatus.ROUTED, RequestStatus.RETRYABLE)
_EVENTS_PER_ROUND = 50  # per-request change events kept per round (the rest are counted)


async def reroute(
    store: Store,
    batch: BatchRunner,
    run: RunRow,
    policy: RunPolicy,
    capacities: Callable[[list[str]], Mapping[str, ModelCapacity]],
    now: float,
    progress: Callable[[str, dict[str, Any]], None],
) -> int:
    """Re-decide the open work of `run`; returns how many requests changed route."""
    rows = list(store.iter_requests(run.id, statuses=routing.OPEN_STATUSES))
    movable = [r for r in rows if r.status is not RequestStatus.IN_FLIGHT]
    if not movable:
        return 0
    red = redecide(
        routing.features(movable),
        policy,
        capacities(sorted({r.model for r in rows})),
        now,
        routing.turnarounds(store.list_batches()),
        shards=routing.shard_states(store, run.id),
        current_routes=routing.current_routes(movable),
    )
    for change in red.changes:
        if change.action == "cancel_shard":
            store.add_event(run.id, "route.escalate", change.reason, shard=int(change.subject))
    if red.cancel_shards:
        await batch.cancel_shards(
            run.id, [int(s) for s in red.cancel_shards], "escalation point reached"
        )
    status_of = {r.custom_id: r.status for r in movable}
    moves = [
        (c.subject, c.to_route, c.reason)
        for c in red.changes
        if c.action == "reroute" and c.to_route is not None and status_of.get(c.subject) in _MOVABLE
    ]
    unrouted = [
        (a.custom_id, a.route, a.reason)
        for a in red.decision.assignments
        if status_of.get(a.custom_id) is RequestStatus.PENDING
    ]
    if moves or unrouted:
        store.set_routes(run.id, [*moves, *unrouted])
        for cid, to, why in moves[:_EVENTS_PER_ROUND]:
            store.add_event(run.id, "route.change", f"{cid} -> {to}: {why}", custom_id=cid)
        if len(moves) > _EVENTS_PER_ROUND:
            extra = len(moves) - _EVENTS_PER_ROUND
            store.add_event(run.id, "route.change", f"... and {extra} more request(s) re-routed")
        progress("route", {"run_id": run.id, "moved": len(moves)})
    return len(moves)


def route_unbatchable(
    store: Store, run_id: str, ids: Sequence[str], models: Mapping[str, ModelInfo]
) -> None:
    """Requests that can never fit a batch shard go to real time (flex where offered)."""
    if not ids:
        return
    rows = {r.custom_id: r for r in store.iter_requests(run_id, statuses=_MOVABLE)}
    moves = []
    for cid in ids:
        row = rows.get(cid)
        if row is None:
            continue
        info = models.get(row.model)
        to = Route.FLEX if info is not None and info.flex else Route.STANDARD
        moves.append((cid, to, "larger than any batch shard may be: sent in real time"))
    if moves:
        store.set_routes(run_id, moves)
        store.add_event(run_id, "route.unbatchable", f"{len(moves)} request(s) too large for batch")


def budget_guard(store: Store, run: RunRow) -> str | None:
    """Why real-time dispatch must stop now for the budget, or None to carry on."""
    if run.budget is None:
        return None
    pending = sum(
        r.est_cost_flex if r.route is Route.FLEX and r.est_cost_flex else r.est_cost_standard
        for r in store.iter_requests(run.id, statuses=_MOVABLE, routes=(Route.STANDARD, Route.FLEX))
    )
    reserved = sum(
        r.est_cost_batch or r.est_cost_standard
        for r in store.iter_requests(run.id, statuses=(RequestStatus.SUBMITTED,))
    )
    return budget_stop_reason(run.budget, run.actual_cost + reserved, pending)
