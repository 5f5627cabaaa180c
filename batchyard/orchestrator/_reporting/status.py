"""Reading the store into a run's `RunStatus`: counts, batches, cost, deadline verdict.

Owns `status` (the full report of one run at `now`), `refresh` (the cheap update the live
view makes every second), and the figures they share: the cost reserved by unfinished
work, the seconds real time needs for it, and the fallback totals. Reads only; changes
nothing in the store and makes no API calls.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from batchyard.catalog import ModelInfo, as_catalog
from batchyard.models import BatchStatus, RequestStatus, Route, RunState
from batchyard.orchestrator._reporting.reports import (
    _TERMINAL_STATUSES,
    BatchInfo,
    RouteStatus,
    RunStatus,
)
from batchyard.orchestrator._routing import capacities, turnarounds
from batchyard.orchestrator._routing.provider_clock import IDENTITY, ClockMap
from batchyard.router import Turnaround, Work, realtime_seconds
from batchyard.store import RunTotals, Store
from batchyard.store.rows import BatchRow, RunRow

__all__ = ["fallback_totals", "realtime_needed", "refresh", "reserved_cost", "status"]

_ERROR_KINDS = (
    "error",
    "failed",
    "quota",
    "breaker",
    "refused",
    "expired",
    "limit",
    "budget",
    "stall",
)
_REASON_PREFIX = "route."
_PRIOR = Turnaround.prior()  # a model's turnaround before any of its batches finished
_OPEN = (
    RequestStatus.PENDING,
    RequestStatus.ROUTED,
    RequestStatus.SUBMITTED,
    RequestStatus.IN_FLIGHT,
    RequestStatus.RETRYABLE,
)
_FINISHED_BATCH = (
    BatchStatus.COMPLETED,
    BatchStatus.FAILED,
    BatchStatus.EXPIRED,
    BatchStatus.CANCELLED,
    BatchStatus.APPLIED,
)


_BATCH_ROUTED = RouteStatus(Route.BATCH, RequestStatus.ROUTED)


def _counts(store: Store, run_id: str) -> dict[RouteStatus, int]:
    return {
        RouteStatus(route, state): n
        for (route, state), n in sorted(
            store.count_requests(run_id).items(), key=lambda kv: (str(kv[0][0]), kv[0][1].value)
        )
    }


def _batch_infos(
    store: Store,
    rows: list[BatchRow],
    expected: Callable[[BatchRow], float | None],
    clock: ClockMap,
) -> list[BatchInfo]:
    """Each shard as `status` shows it. While a batch runs, its counts are the provider's;
    once applied they are the store's: a line cancelled at an escalation point and answered
    in real time is re-routed here (and succeeded once, on its new path), not failed."""
    outcomes = store.shard_outcomes([b.id for b in rows if b.status is BatchStatus.APPLIED])
    return [_batch_info(b, expected(b), clock, outcomes.get(b.id)) for b in rows]


def _batch_info(
    b: BatchRow,
    expected_finish: float | None,
    clock: ClockMap,
    outcome: dict[str, int] | None = None,
) -> BatchInfo:
    created = b.provider_times.get("created_at")
    completed, failed = b.counts_completed or 0, b.counts_failed or 0
    cancelled = rerouted = 0
    if outcome is not None:
        completed, failed = outcome.get("succeeded", 0), outcome.get("failed", 0)
        cancelled, rerouted = outcome.get("cancelled", 0), outcome.get("re-routed", 0)
    return BatchInfo(
        shard=b.id,
        provider_batch_id=b.provider_batch_id,
        model=b.model,
        status=b.status.value,
        total=b.counts_total or b.request_count,  # 0 while validating
        completed=completed,
        failed=failed,
        created_at=clock.to_local(created) if created is not None else b.created_at,
        expected_finish=expected_finish,
        cancelled=cancelled,
        rerouted=rerouted,
    )


def refresh(store: Store, last: RunStatus, clock: ClockMap = IDENTITY) -> RunStatus:
    """`last` with the counts, batches, cost and state as the store has them now: three
    cheap queries (no events, no turnaround history), for a view redrawn every second.
    Expected finishes, the deadline verdict and the reasons stay those of `last`; `clock`
    maps the provider's times onto ours."""
    run = store.get_run(last.run_id)
    expected = {b.shard: b.expected_finish for b in last.batches}
    batches = _batch_infos(
        store,
        store.list_batches(run.id),
        lambda b: expected.get(b.id) if b.status not in _FINISHED_BATCH else None,
        clock,
    )
    done = run.state in (RunState.COMPLETED, RunState.CANCELLED)
    return replace(
        last,
        state=run.state.value,
        counts=_counts(store, run.id),
        batches=batches,
        actual_cost=run.actual_cost,
        done=done,
        stalled=None if done else last.stalled,
    )


def status(
    store: Store,
    run: RunRow,
    now: float,
    stalled: str | None = None,
    prior: Turnaround | None = None,
    models: Mapping[str, ModelInfo] | None = None,
    clock: ClockMap = IDENTITY,
) -> RunStatus:
    """The run as the user sees it. With `models` (the price and limit table), the deadline
    verdict asks whether real time from now could still finish the open work. Every time
    is on our clock: `clock` maps the provider's (its timestamps and the turnaround learned
    on it) onto ours."""
    counts = _counts(store, run.id)
    prior = prior or _PRIOR
    history = turnarounds(store.list_batches(), prior=prior)
    finishes: dict[int, float | None] = {}
    rows = store.list_batches(run.id)
    for b in rows:
        created = b.provider_times.get("created_at")
        created = clock.to_provider(b.created_at) if created is None else created
        finish = b.provider_times.get("completed_at")
        if finish is None and b.status not in _FINISHED_BATCH:
            median = history.get(b.model, prior).quantile(0.5)
            finish = created + median if math.isfinite(median) else None
        finishes[b.id] = None if finish is None else clock.to_local(finish)
    batches = _batch_infos(store, rows, lambda b: finishes[b.id], clock)
    events = store.list_events(run.id)
    last_errors: dict[str, str] = {}
    reasons: list[str] = []
    escalation: dict[str, float] = {}
    planned_finish: Any = None
    queue_waiting: str | None = None
    send_stall: str | None = None
    for e in events:
        if e.kind == "batch.waiting":
            queue_waiting = e.message
        elif e.kind == "batch.planned":
            queue_waiting = None  # room was found since
        if e.kind in ("realtime.stall", "realtime.flowing"):
            send_stall = e.message if e.kind == "realtime.stall" else None
        if any(word in e.kind for word in _ERROR_KINDS):
            last_errors[e.kind] = e.message
        if e.kind.startswith(_REASON_PREFIX):
            reasons.append(e.message)
        if e.kind == "route.plan":
            escalation = {
                k: v for k, v in (e.data.get("escalation_at") or {}).items() if v is not None
            }
            planned_finish = e.data.get("expected_finish")
    open_ = sum(n for key, n in counts.items() if key.status not in _TERMINAL_STATUSES)
    live = [
        b.expected_finish for b in batches if b.status not in {s.value for s in _FINISHED_BATCH}
    ]
    expected = max([f for f in live if f is not None], default=None)
    open_realtime = any(
        n and key.route in (Route.STANDARD, Route.FLEX) and key.status not in _TERMINAL_STATUSES
        for key, n in counts.items()
    )
    if open_realtime:
        # Real-time work: the plan's expected finish while it is still ahead, else now.
        ahead = planned_finish if isinstance(planned_finish, float | int) else now
        expected = max(expected or now, float(ahead), now)
    elif expected is None and open_:
        expected = now
    done = run.state in (RunState.COMPLETED, RunState.CANCELLED)
    deadline_ok = None
    totals = store.totals(run.id)  # one pass over the run's rows for every sum below
    needed = None if done or models is None else realtime_needed(totals, run, models)
    if run.deadline_at is not None:
        if done:
            deadline_ok = run.finished_at is None or run.finished_at <= run.deadline_at
        elif needed is not None:
            # The plan moves late batch work to real time before the deadline: the run is
            # at risk only when real time from now could not finish what is open.
            deadline_ok = now + needed <= run.deadline_at
        else:
            deadline_ok = expected is None or expected <= run.deadline_at
    paid_twice, paid_twice_cost = store.paid_twice(run.id)
    worst = run.options.get("estimate_worst")
    summary = totals.summary()
    return RunStatus(
        run_id=run.id,
        state=run.state.value,
        source_path=run.source_path,
        created_at=run.created_at,
        deadline_at=run.deadline_at,
        budget=run.budget,
        route_override=run.route_override.value,
        requests=run.request_count,
        counts=counts,
        batches=batches,
        estimated_cost=run.estimated_cost,
        actual_cost=run.actual_cost,
        expected_finish=run.finished_at if done else expected,
        deadline_ok=deadline_ok,
        escalation_at=escalation,
        last_errors=last_errors,
        reasons=reasons[-10:],
        done=done,
        stalled=None if done else stalled,
        estimated_worst=float(worst) if isinstance(worst, int | float) else None,
        paid_twice=paid_twice,
        paid_twice_cost=paid_twice_cost,
        realtime_needed_s=needed,
        reused=sum(x.reused for x in summary),
        reuse_saving=round(sum(x.saved for x in summary), 6),
        requeues=sum(x.requeues for x in summary),
        requeue_cost=round(sum(x.requeue_cost for x in summary), 6),
        budget_spent=run.actual_cost,
        budget_reserved=reserved_cost(totals),
        budget_warning=next(
            (e.message for e in reversed(events) if e.kind == "budget.warning"), None
        ),
        fallbacks=fallback_totals(store, [run.id]),
        retried=store.retried_sends(run.id),
        send_stall=None if done else send_stall,
        waiting=[] if done else store.waiting_reasons(run.id),
        queue_wait=queue_waiting if not done and counts.get(_BATCH_ROUTED) else None,
    )


def fallback_totals(store: Store, run_ids: list[str]) -> list[dict[str, Any]]:
    """Lines moved to a fallback model, per (from, to, reason), over `run_ids`."""
    merged: dict[tuple[str, str, str], list[float]] = {}
    for run_id in run_ids:
        for t in store.fallback_summary(run_id):
            row = merged.setdefault((t.source, t.target, t.reason), [0, 0, 0, 0.0])
            for i, value in enumerate((t.lines, t.succeeded, t.failed, t.cost)):
                row[i] += value
    return [
        {
            "from": source,
            "to": target,
            "reason": reason,
            "lines": int(v[0]),
            "succeeded": int(v[1]),
            "failed": int(v[2]),
            "cost": round(v[3], 6),
        }
        for (source, target, reason), v in sorted(merged.items())
    ]


def reserved_cost(totals: RunTotals) -> float:
    """What the run's unfinished work is expected to cost on the routes it has now."""
    return round(totals.open_cost(_OPEN), 6)


def realtime_needed(totals: RunTotals, run: RunRow, models: Mapping[str, ModelInfo]) -> float:
    """Seconds real time needs from now to finish the run's open work at the table's
    limits, models side by side (each has its own limits), with the run's spread."""
    load = totals.open_load()
    known = [m for m in load if as_catalog(models).find(m) is not None]
    caps = capacities(models, known)
    spread = float(run.options.get("realtime_spread", 0.0) or 0.0)
    return max(
        (
            realtime_seconds(
                Work(count=load[m][0], rate_tokens=load[m][1]), caps[m], Route.STANDARD, spread
            )
            for m in known
        ),
        default=0.0,
    )
