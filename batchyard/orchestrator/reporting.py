"""What a run looks like from outside: status, costs, and the merged results file.

Owns reading the store into `RunStatus`, `CostReport` and the `fetch` output (one line per
input line, in input order, in the OpenAI batch output shape plus a `batchyard` object).
Reads only; changes nothing in the store and makes no API calls.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from batchyard.catalog import ModelInfo, as_catalog
from batchyard.models import BatchStatus, RequestStatus, Route, RunState
from batchyard.orchestrator.reports import (
    BatchInfo,
    CostReport,
    CostRow,
    FetchReport,
    RunStatus,
)
from batchyard.orchestrator.routing import capacities, turnarounds
from batchyard.router import Turnaround, Work, realtime_seconds
from batchyard.store import Store
from batchyard.store.rows import RequestRow, RunRow

__all__ = ["costs", "fetch", "output_line", "status"]

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
_ENDED = ("/succeeded", "/failed", "/invalid", "/cancelled")
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


def status(
    store: Store,
    run: RunRow,
    now: float,
    stalled: str | None = None,
    prior: Turnaround | None = None,
    models: Mapping[str, ModelInfo] | None = None,
) -> RunStatus:
    """The run as the user sees it. With `models` (the price and limit table), the deadline
    verdict asks whether real time from now could still finish the open work."""
    counts = {
        f"{route.value if route else '-'}/{state.value}": n
        for (route, state), n in sorted(
            store.count_requests(run.id).items(), key=lambda kv: (str(kv[0][0]), kv[0][1].value)
        )
    }
    prior = prior or _PRIOR
    history = turnarounds(store.list_batches(), prior=prior)
    batches = []
    for b in store.list_batches(run.id):
        created = b.provider_times.get("created_at") or b.created_at
        finish = b.provider_times.get("completed_at")
        if finish is None and b.status not in _FINISHED_BATCH:
            median = history.get(b.model, prior).quantile(0.5)
            finish = created + median if math.isfinite(median) else None
        batches.append(
            BatchInfo(
                shard=b.id,
                provider_batch_id=b.provider_batch_id,
                model=b.model,
                status=b.status.value,
                total=b.counts_total or b.request_count,  # 0 while validating
                completed=b.counts_completed or 0,
                failed=b.counts_failed or 0,
                created_at=created,
                expected_finish=finish,
            )
        )
    events = store.list_events(run.id)
    last_errors: dict[str, str] = {}
    reasons: list[str] = []
    escalation: dict[str, float] = {}
    planned_finish: Any = None
    for e in events:
        if any(word in e.kind for word in _ERROR_KINDS):
            last_errors[e.kind] = e.message
        if e.kind.startswith(_REASON_PREFIX):
            reasons.append(e.message)
        if e.kind == "route.plan":
            escalation = {
                k: v for k, v in (e.data.get("escalation_at") or {}).items() if v is not None
            }
            planned_finish = e.data.get("expected_finish")
    open_ = sum(n for key, n in counts.items() if not key.endswith(_ENDED))
    live = [
        b.expected_finish for b in batches if b.status not in {s.value for s in _FINISHED_BATCH}
    ]
    expected = max([f for f in live if f is not None], default=None)
    open_realtime = any(
        n and key.startswith(("standard/", "flex/")) and not key.endswith(_ENDED)
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
    needed = None if done or models is None else realtime_needed(store, run, models)
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
    summary = store.summary(run.id)
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
        budget_reserved=reserved_cost(store, run.id),
        budget_warning=next(
            (e.message for e in reversed(events) if e.kind == "budget.warning"), None
        ),
    )


def reserved_cost(store: Store, run_id: str) -> float:
    """What the run's unfinished work is expected to cost on the routes it has now."""
    return round(
        sum(
            r.est_cost_batch or r.est_cost_standard
            if r.route is Route.BATCH
            else (r.est_cost_flex or r.est_cost_standard)
            if r.route is Route.FLEX
            else r.est_cost_standard
            for r in store.iter_requests(run_id, statuses=_OPEN)
        ),
        6,
    )


def realtime_needed(store: Store, run: RunRow, models: Mapping[str, ModelInfo]) -> float:
    """Seconds real time needs from now to finish the run's open work at the table's
    limits, models side by side (each has its own limits), with the run's spread."""
    load = store.open_load(run.id)
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


def costs(store: Store, models: Mapping[str, ModelInfo], run_id: str | None = None) -> CostReport:
    """Estimated versus actual per (model, route), and the saving against all-standard."""
    runs = [store.get_run(run_id)] if run_id else store.list_runs()
    catalog = as_catalog(models)
    merged: dict[tuple[str, str], list[float]] = {}
    extra = [0.0] * 5  # reused, saved, requeues, requeue cost, invalid
    for run in runs:
        for s in store.summary(run.id):
            for i, value in enumerate((s.reused, s.saved, s.requeues, s.requeue_cost, s.invalid)):
                extra[i] += value
            key = (s.model, s.route.value if s.route else "-")
            info = catalog.find(s.model)
            standard = (
                info.estimate(Route.STANDARD, s.input_tokens, s.output_tokens) if info else 0.0
            )
            row = merged.setdefault(key, [0.0] * 7)
            for i, value in enumerate(
                (
                    s.requests,
                    s.succeeded,
                    s.input_tokens,
                    s.output_tokens,
                    s.estimated_cost,
                    s.actual_cost,
                    standard,
                )
            ):
                row[i] += value
    rows = [
        CostRow(
            model=model,
            route=route,
            requests=int(v[0]),
            succeeded=int(v[1]),
            input_tokens=int(v[2]),
            output_tokens=int(v[3]),
            estimated=round(v[4], 6),
            actual=round(v[5], 6),
            all_standard=round(v[6], 6),
        )
        for (model, route), v in sorted(merged.items())
    ]
    reasons = []
    if run_id:
        reasons = [e.message for e in store.list_events(run_id) if e.kind.startswith("route.")][
            -10:
        ]
    actual = sum(r.actual for r in rows)
    standard = sum(r.all_standard for r in rows)
    twice = [store.paid_twice(run.id) for run in runs]
    worsts = [run.options.get("estimate_worst") for run in runs]
    worst = (
        round(sum(float(w) for w in worsts if isinstance(w, int | float)), 6)
        if all(isinstance(w, int | float) for w in worsts)
        else None
    )
    return CostReport(
        run_id=run_id,
        rows=rows,
        # The plan's expected figure, as `status` shows it (the rows split the same lines
        # by the route they took, each at that route's estimated price).
        estimated=round(sum(run.estimated_cost for run in runs), 6),
        estimated_worst=worst,
        paid_twice=sum(n for n, _ in twice),
        paid_twice_cost=round(sum(c for _, c in twice), 6),
        actual=round(actual, 6),
        all_standard=round(standard, 6),
        saving=round(standard - actual, 6),
        reasons=reasons,
        reused=int(extra[0]),
        reuse_saving=round(extra[1], 6),
        requeues=int(extra[2]),
        requeue_cost=round(extra[3], 6),
        invalid=int(extra[4]),
    )


def output_line(run_id: str, r: RequestRow, batch_ids: Mapping[int, str | None]) -> dict[str, Any]:
    """One request in the OpenAI batch output shape, plus batchyard's own facts."""
    response: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    if r.status_code is not None and r.response_body is not None:
        response = {
            "status_code": r.status_code,
            "request_id": r.request_id,
            "body": r.response_body,
        }
    elif r.status is RequestStatus.SUCCEEDED:
        response = {"status_code": 200, "request_id": r.request_id, "body": r.response_body}
    if r.status is RequestStatus.INVALID:
        # The last answer is kept in `response`; `error` says which check it failed.
        error = {
            "code": "invalid",
            "message": f"{r.error_message or 'The answer failed a check.'} "
            f"({r.error_code or 'check'}; {r.requeues} re-send(s))",
            "check": (r.error_code or "").removeprefix("check:") or None,
        }
    elif r.status is not RequestStatus.SUCCEEDED and response is None:
        if r.status in (RequestStatus.FAILED, RequestStatus.CANCELLED):
            code = r.error_code or r.status.value
            message = r.error_message or f"The request was {r.status.value}."
        else:
            code = "not_finished"
            message = f"The request is still {r.status.value}; fetch again when the run is done."
        error = {"code": code, "message": message}
    return {
        "id": f"batchyard_{run_id}_{r.line}",
        "custom_id": r.custom_id,
        "response": response,
        "error": error,
        "batchyard": {
            "line": r.line,
            "status": r.status.value,
            "route": r.route.value if r.route else None,
            "batch_id": batch_ids.get(r.shard) if r.shard is not None else None,
            "attempts": r.attempts,
            "cost": r.cost,
            "input_tokens": r.input_tokens,
            "output_tokens": r.output_tokens,
            "requeues": r.requeues,
            "requeue_cost": r.requeue_cost,
            # Where a reused answer came from: {"run", "custom_id", "at"}; None if bought here.
            "reused_from": r.reused_from,
        },
    }


def fetch(store: Store, run_id: str, output: Path, errors: Path | None = None) -> FetchReport:
    """Write every input line's outcome to `output` in input order; failures also to `errors`."""
    store.get_run(run_id)
    batch_ids = {b.id: b.provider_batch_id for b in store.list_batches(run_id)}
    succeeded = failed = unfinished = lines = invalid = 0
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(output.name + ".partial")
    err_tmp = errors.with_name(errors.name + ".partial") if errors else None
    with tmp.open("w", encoding="utf-8") as out, ExitStack() as stack:
        err = stack.enter_context(err_tmp.open("w", encoding="utf-8")) if err_tmp else None
        for r in store.iter_requests(run_id, with_response=True):
            line = json.dumps(output_line(run_id, r, batch_ids), separators=(",", ":"))
            out.write(line + "\n")
            lines += 1
            if r.status is RequestStatus.SUCCEEDED:
                succeeded += 1
                continue
            if r.status in (RequestStatus.FAILED, RequestStatus.CANCELLED, RequestStatus.INVALID):
                failed += 1
                invalid += r.status is RequestStatus.INVALID
            else:
                unfinished += 1
            if err is not None:
                err.write(line + "\n")
    tmp.replace(output)
    if errors and err_tmp:
        err_tmp.replace(errors)
    return FetchReport(run_id, output, errors, lines, succeeded, failed, unfinished, invalid)
