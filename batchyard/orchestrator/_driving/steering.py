"""Changing course mid-run: re-deciding open work, escalating, and the budget guard.

Owns one round of re-routing: feed the router the run's open work, live shards, current
limits and breaker states; cancel the shards it says to cancel (their finished lines are
kept); move re-routed requests in the store; record every change with its reason. Also the
dispatch guard that stops real-time spending before the budget would be exceeded. No SQL,
no printing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from batchyard.catalog import ModelInfo, lookup
from batchyard.errors import IllegalTransition, InputError
from batchyard.models import BatchStatus, RequestStatus, Route, RunState
from batchyard.orchestrator import _routing as routing
from batchyard.orchestrator._routing.provider_clock import ClockMap
from batchyard.orchestrator.batch.remote import owner_is_dead
from batchyard.orchestrator.batch.runner import BatchRunner, CancelReport
from batchyard.router import (
    ModelCapacity,
    RunPolicy,
    Turnaround,
    budget_stop_reason,
    format_usd,
    redecide,
)
from batchyard.store import Store
from batchyard.store.rows import RunRow

__all__ = [
    "budget_guard",
    "budget_warning",
    "cancel_realtime",
    "check_recorded",
    "finish_if_done",
    "reroute",
    "recover_claims",
    "recover_dead_claims",
    "route_unbatchable",
    "stall_reason",
    "watch_cancels",
]

_MOVABLE = (RequestStatus.ROUTED, RequestStatus.RETRYABLE)
_TERMINAL = (
    RequestStatus.SUCCEEDED,
    RequestStatus.FAILED,
    RequestStatus.INVALID,
    RequestStatus.CANCELLED,
)
_REALTIME = (Route.STANDARD, Route.FLEX, Route.FAST)
_EVENTS_PER_ROUND = 50  # per-request change events kept per round (the rest are counted)


async def reroute(
    store: Store,
    batch: BatchRunner,
    run: RunRow,
    policy: RunPolicy,
    capacities: Callable[[list[str]], Mapping[str, ModelCapacity]],
    now: float,
    progress: Callable[[str, dict[str, Any]], None],
    prior: Turnaround | None = None,
    cancel_prior: Turnaround | None = None,
    clock: ClockMap | None = None,
    *,
    points: dict[str, float] | None = None,
) -> float | None:
    """Re-decide the open work of `run`; returns the next escalation or release point still
    ahead (when the driver must look again, whatever the poll schedule says). `points`, if
    given, receives each model's escalation point, past ones included.

    Requests in flight are not moved, but they are work real time still has to finish, so
    they count when the router works out how long real time needs. Lines of a shard the
    provider has finished but not yet applied are answered: they are not open work.
    """
    rows = list(store.iter_requests(run.id, statuses=routing.OPEN_STATUSES))
    movable = [r for r in rows if r.status is not RequestStatus.IN_FLIGHT]
    if not movable:
        return None
    names = sorted({r.model for r in rows})
    shards = routing.shard_states(store, run.id, rows, clock)
    live = frozenset(int(s.shard_id) for s in shards)
    open_work = [
        routing.feature(r, live)
        for r in movable
        if r.status is not RequestStatus.SUBMITTED or r.shard in live
    ]
    batches = store.list_batches()
    escalated = frozenset(
        b.model
        for b in batches
        if b.run_id == run.id and b.provider_times.get("cancelling_at") is not None
    )
    red = redecide(
        open_work,
        replace(policy, escalated=escalated),
        capacities(names),
        now,
        routing.turnarounds(batches, names, prior, clock),
        shards=shards,
        current_routes=routing.current_routes(movable),
        in_flight=[routing.feature(r) for r in rows if r.status is RequestStatus.IN_FLIGHT],
        cancel=routing.cancel_latency(batches, cancel_prior, clock),
    )
    for change in red.changes:
        if change.action == "cancel_shard":
            store.add_event(run.id, "route.escalate", change.reason, shard=int(change.subject))
        elif change.action == "release_shard" and change.to_route is not None:
            released = store.release_shard(
                run.id, int(change.subject), change.to_route, change.reason
            )
            if released:
                progress("route", {"run_id": run.id, "released": released})
    if red.cancel_shards:
        report = await batch.cancel_shards(
            run.id, [int(s) for s in red.cancel_shards], "escalation point reached"
        )
        watch_cancels(batch, report, now)
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
        # Another driver may have sent or sharded some of them since they were read.
        store.set_routes(run.id, [*moves, *unrouted], unless_taken=True)
        for cid, to, why in moves[:_EVENTS_PER_ROUND]:
            store.add_event(run.id, "route.change", f"{cid} -> {to}: {why}", custom_id=cid)
        if len(moves) > _EVENTS_PER_ROUND:
            extra = len(moves) - _EVENTS_PER_ROUND
            store.add_event(run.id, "route.change", f"... and {extra} more request(s) re-routed")
        progress("route", {"run_id": run.id, "moved": len(moves)})
    if points is not None:
        points.update(
            (m.model, m.escalation_at) for m in red.decision.models if m.escalation_at is not None
        )
    ahead = (
        t for m in red.decision.models for t in (m.escalation_at, m.release_at) if t is not None
    )
    return min((t for t in ahead if t > now), default=None)


def watch_cancels(batch: BatchRunner, report: CancelReport, now: float) -> None:
    """Poll shards just asked to cancel at the short `cancelling` interval, and shards that
    finished first at once: their lines are wanted elsewhere, so waiting out an
    in-progress poll interval would eat the margin kept before the deadline."""
    for shard in report.cancelling:
        batch.schedule.polled(shard, BatchStatus.CANCELLING, now)
    for shard in report.finished:
        batch.schedule.forget(shard)


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
        info = lookup(models, row.model)
        to = Route.FLEX if info is not None and info.flex else Route.STANDARD
        moves.append((cid, to, "larger than any batch shard may be: sent in real time"))
    if moves:
        store.set_routes(run_id, moves, unless_taken=True)
        store.add_event(run_id, "route.unbatchable", f"{len(moves)} request(s) too large for batch")


def budget_guard(store: Store, run: RunRow) -> str | None:
    """Why real-time dispatch must stop now for the budget, or None to carry on."""
    if run.budget is None:
        return None
    pending = sum(
        r.est_cost_flex if r.route is Route.FLEX and r.est_cost_flex else r.est_cost_standard
        for r in store.iter_requests(run.id, statuses=_MOVABLE, routes=_REALTIME)
    )
    reserved = sum(
        r.est_cost_batch or r.est_cost_standard
        for r in store.iter_requests(run.id, statuses=(RequestStatus.SUBMITTED,))
    )
    return budget_stop_reason(run.budget, run.actual_cost + reserved, pending)


def budget_warning(store: Store, run: RunRow, share: float) -> str | None:
    """The warning to record once the run has spent `share` of its budget (re-sends after
    failed checks included, as they are in the run's actual cost), or None."""
    if run.budget is None or run.budget <= 0 or run.actual_cost < share * run.budget:
        return None
    return (
        f"{format_usd(run.actual_cost)} spent of the budget {format_usd(run.budget)} "
        f"({run.actual_cost / run.budget:.0%}; warning at {share:.0%})"
    )


def set_state(store: Store, run_id: str, state: RunState) -> bool:
    """Move the run to `state`; False if another process moved it first (a race, not a bug:
    `watch` and `poll --wait` may drive one run side by side)."""
    try:
        store.set_run_state(run_id, state)
    except IllegalTransition:
        return False
    return True


def finish_if_done(store: Store, run_id: str) -> None:
    """Close the run once every request is finished and no batch has work left."""
    store.settle_twins(run_id)  # twins of lines that ended outside a result (cancels)
    counts = store.count_requests(run_id)
    if any(n for (_, status), n in counts.items() if status not in _TERMINAL):
        return
    if store.list_active_batches(run_id):
        return
    state = store.get_run(run_id).state
    if state in (RunState.RUNNING, RunState.PENDING):
        if set_state(store, run_id, RunState.COMPLETED):
            store.add_event(run_id, "run.completed", "Every request is finished.")
    elif state is RunState.CANCELLING:
        set_state(store, run_id, RunState.CANCELLED)


def check_recorded(store: Store, run: RunRow) -> RunRow:
    """A run still `pending` was interrupted while `submit` recorded it (nothing was sent
    yet): carry on if every request and route made it, else close it and say so."""
    if run.state is not RunState.PENDING:
        return run
    expected = int(run.options.get("requests", run.request_count))
    counts = store.count_requests(run.id)
    unrouted = sum(n for (route, _), n in counts.items() if route is None)
    if run.request_count == expected and unrouted == 0:
        set_state(store, run.id, RunState.RUNNING)
        return store.get_run(run.id)
    set_state(store, run.id, RunState.CANCELLED)
    message = (
        f"Run {run.id} was interrupted while it was being recorded "
        f"({run.request_count} of {expected} requests); nothing was sent. "
        f"Submit {run.source_path} again."
    )
    store.add_event(run.id, "run.incomplete", message)
    raise InputError(message)


def cancel_realtime(store: Store, run_id: str) -> int:
    """Cancel the run's real-time (and unrouted) requests not yet sent; in-flight calls
    finish and are recorded (they may already have reached the API)."""
    ids = [
        r.custom_id
        for r in store.iter_requests(run_id, statuses=(RequestStatus.PENDING, *_MOVABLE))
        if r.route is None or r.route in _REALTIME
    ]
    if not ids:
        return 0
    return store.transition_requests(
        run_id,
        ids,
        RequestStatus.CANCELLED,
        error_code="run_cancelled",
        error_message="The run was cancelled before this request was sent.",
    )


def stall_reason(store: Store, run_id: str, blocked: str | None) -> str | None:
    """Why the run cannot progress in this process, or None.

    `blocked` says why real-time dispatch stopped (quota, budget). The run is stalled when
    that is so and nothing else can move: no batch has work left, no call is in flight and
    every open request waits for real time.
    """
    if blocked is None or store.list_active_batches(run_id):
        return None
    waiting = 0
    for (route, status), n in store.count_requests(run_id).items():
        if status in _TERMINAL or not n:
            continue
        if status is RequestStatus.IN_FLIGHT or route not in _REALTIME:
            return None
        waiting += n
    if not waiting:
        return None
    return (
        f"{waiting} request(s) wait for real time, which has stopped ({blocked.rstrip('.')}). "
        f"Run `batchyard resume {run_id}` once that is fixed."
    )


def recover_dead_claims(store: Store, run_id: str) -> int:
    """Every round: take back the in-flight claims of processes on this host that are gone
    (a `watch` killed with -9), so the drivers still running send those lines again instead
    of waiting out the stale-claim time. A live process's claims are never touched."""
    dead = [owner for owner in store.in_flight_owners(run_id) if owner_is_dead(owner)]
    return sum(store.recover_in_flight(run_id, owner=owner) for owner in dead)


def recover_claims(store: Store, run_id: str, me: str, stale_seconds: float) -> int:
    """On resume, take back the in-flight claims of processes that are gone: ours, those of
    a dead process on this host, and any older than a live call could be. A `watch` still
    running elsewhere keeps its claims, so its answers are not thrown away and re-bought."""
    recovered = 0
    for owner in store.in_flight_owners(run_id):
        if owner == me or owner_is_dead(owner):
            recovered += store.recover_in_flight(run_id, owner=owner)
    return recovered + store.recover_in_flight(run_id, older_than=stale_seconds)
