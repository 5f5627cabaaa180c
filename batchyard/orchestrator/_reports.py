"""What a run looks like from outside: the typed reports, and reading the store into them.

Owns the plain frozen records the orchestrator returns to the CLI and to Python callers
(`SubmitResult`, `RunStatus`, `CostReport`, `FetchReport`, `VerifyReport`, with `to_dict()`
for `--json`), and reading the store into `RunStatus`, `CostReport` and the `fetch` output
(one line per input line, in input order, in the OpenAI batch output shape plus a
`batchyard` object). Reads only; changes nothing in the store and makes no API calls.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from batchyard.catalog import ModelInfo, as_catalog
from batchyard.errors import NotFound
from batchyard.models import BatchStatus, RequestStatus, Route, RunState
from batchyard.orchestrator._routing import capacities, turnarounds
from batchyard.orchestrator._variants import Grouper, VariantCost, variant_costs
from batchyard.router import Plan, Turnaround, Work, realtime_seconds
from batchyard.store import Store
from batchyard.store.rows import BatchRow, RequestRow, RunRow

__all__ = [
    "BatchInfo",
    "CostReport",
    "CostRow",
    "FetchReport",
    "RunStatus",
    "SubmitResult",
    "VariantCost",
    "VerifyReport",
    "costs",
    "fetch",
    "output_line",
    "refresh",
    "status",
]


_REALTIME_ROUTES = ("standard", "flex", "fast")
_TERMINAL_STATUSES = ("succeeded", "failed", "invalid", "cancelled")


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


@dataclass(frozen=True)
class SubmitResult:
    run_id: str
    plan: Plan
    accepted: int  # requests recorded
    rejected: int  # invalid lines skipped (--skip-invalid)
    rejects_path: Path | None
    shards_submitted: int  # batches created at submit
    waiting_shards: int  # shards held back by the enqueued-token limit

    def to_dict(self) -> dict[str, Any]:
        data = {k: _jsonable(v) for k, v in asdict(self).items() if k != "plan"}
        data["plan"] = self.plan.to_dict(assignments=False)  # routes are in the store
        return data


@dataclass(frozen=True)
class BatchInfo:
    shard: int
    provider_batch_id: str | None
    model: str
    status: str
    total: int
    completed: int  # succeeded in this batch
    failed: int  # a final error in this batch
    created_at: float | None
    expected_finish: float | None  # from the turnaround model
    # Once applied (counted from the store, not the provider's request_counts): lines
    # cancelled by the user, and lines sent again elsewhere (counted where answered).
    cancelled: int = 0
    rerouted: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RunStatus:
    run_id: str
    state: str
    source_path: str
    created_at: float
    deadline_at: float | None
    budget: float | None
    route_override: str
    requests: int
    # "route/status" -> count, e.g. "batch/submitted": 1200; route "-" when not routed yet
    counts: dict[str, int]
    batches: list[BatchInfo]
    estimated_cost: float
    actual_cost: float
    expected_finish: float | None
    deadline_ok: bool | None  # None: no deadline
    escalation_at: dict[str, float]  # model -> when waiting batch work moves to real time
    last_errors: dict[str, str]  # error kind -> latest message
    reasons: list[str]  # latest routing reasons and changes of course, newest last
    done: bool  # every request terminal and every batch applied
    stalled: str | None = None  # why this process cannot move the run on (quota, budget)
    # The plan's estimate: `estimated_cost` is the expected figure, this the worst case.
    estimated_worst: float | None = None
    # Lines answered in batch after being sent again in real time: the deadline's price.
    paid_twice: int = 0
    paid_twice_cost: float = 0.0
    # Seconds real time needs from now for the open work (the deadline verdict's basis).
    realtime_needed_s: float | None = None
    reused: int = 0  # lines answered from earlier runs or an identical line (not sent)
    reuse_saving: float = 0.0  # what those answers cost when they were bought
    requeues: int = 0  # sends after an answer failed a check
    requeue_cost: float = 0.0  # what the answers that failed a check cost (in actual_cost)
    budget_spent: float = 0.0  # actual cost so far, re-sends included
    budget_reserved: float = 0.0  # expected cost of the work not finished yet
    budget_warning: str | None = None  # the latest budget warning, once the share is reached
    # Why batch work waits for the model's enqueued-token queue: who holds the room (other
    # runs, more urgent ones) and the commands that free it; None when nothing waits.
    queue_wait: str | None = None
    # Lines moved to a fallback model, per {from, to, reason, lines, succeeded, failed, cost}.
    fallbacks: list[dict[str, Any]] = field(default_factory=list)

    @property
    def fallback(self) -> int:
        """Lines moved to a fallback model (refused model, or breaker open too long)."""
        return sum(int(f["lines"]) for f in self.fallbacks)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["batches"] = [b.to_dict() for b in self.batches]
        return data

    @property
    def succeeded(self) -> int:
        return sum(n for key, n in self.counts.items() if key.endswith("/succeeded"))

    @property
    def failed(self) -> int:
        """Failed lines, invalid ones (an answer that failed its checks) included."""
        return sum(n for key, n in self.counts.items() if key.endswith(("/failed", "/invalid")))

    @property
    def invalid(self) -> int:
        return sum(n for key, n in self.counts.items() if key.endswith("/invalid"))

    @property
    def cancelled(self) -> int:
        return sum(n for key, n in self.counts.items() if key.endswith("/cancelled"))

    @property
    def realtime_open(self) -> int:
        """Requests routed to real time that are not finished yet."""
        return sum(
            n
            for key, n in self.counts.items()
            if key.partition("/")[0] in _REALTIME_ROUTES
            and key.partition("/")[2] not in _TERMINAL_STATUSES
        )

    @property
    def finished(self) -> int:
        terminal = ("/succeeded", "/failed", "/invalid", "/cancelled")
        return sum(n for key, n in self.counts.items() if key.endswith(terminal))


@dataclass(frozen=True)
class CostRow:
    model: str
    route: str
    requests: int
    succeeded: int
    input_tokens: int
    output_tokens: int
    estimated: float
    actual: float
    all_standard: float  # what the finished requests would have cost at standard prices

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class CostReport:
    run_id: str | None  # None: every run in the store
    rows: list[CostRow]
    estimated: float
    actual: float
    all_standard: float
    saving: float  # all_standard - actual, over finished requests
    reasons: list[str] = field(default_factory=list)
    # `estimated` is the plan's expected cost (the figure `status` shows); this its worst.
    estimated_worst: float | None = None
    paid_twice: int = 0  # lines billed twice to hold a deadline (their cost is in actual)
    paid_twice_cost: float = 0.0
    reused: int = 0  # lines answered from the store or an identical line, not bought
    reuse_saving: float = 0.0  # what those answers cost when bought: not paid again
    requeues: int = 0  # sends after an answer failed a check
    requeue_cost: float = 0.0  # answers that failed a check: paid, outside `actual`
    invalid: int = 0  # lines whose answer failed a check every time
    variants: list[VariantCost] = field(default_factory=list)  # one run's fan-out, if any
    # Lines answered by a fallback model (their cost is in the fallback model's rows).
    fallbacks: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["rows"] = [r.to_dict() for r in self.rows]
        data["variants"] = [v.to_dict() for v in self.variants]
        return data


@dataclass(frozen=True)
class FetchReport:
    run_id: str
    output: Path
    errors: Path | None
    lines: int  # one per input line (grouped: one per original request)
    succeeded: int
    failed: int  # a final error; invalid lines included, cancelled ones not
    unfinished: int
    invalid: int = 0  # answered, but failed a check every time (last answer kept)
    cancelled: int = 0  # cancelled by the user before an answer
    fallback: int = 0  # succeeded lines answered by a fallback model (`batchyard.fallback`)

    def to_dict(self) -> dict[str, Any]:
        return {k: _jsonable(v) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class VerifyReport:
    base_url: str
    ok: bool
    models: list[str]
    message: str
    key_hint: str  # e.g. "sk-...abcd" (never the key)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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


def _counts(store: Store, run_id: str) -> dict[str, int]:
    return {
        f"{route.value if route else '-'}/{state.value}": n
        for (route, state), n in sorted(
            store.count_requests(run_id).items(), key=lambda kv: (str(kv[0][0]), kv[0][1].value)
        )
    }


def _batch_infos(
    store: Store, rows: list[BatchRow], expected: Callable[[BatchRow], float | None]
) -> list[BatchInfo]:
    """Each shard as `status` shows it. While a batch runs, its counts are the provider's;
    once applied they are the store's: a line cancelled at an escalation point and answered
    in real time is re-routed here (and succeeded once, on its new path), not failed."""
    outcomes = store.shard_outcomes([b.id for b in rows if b.status is BatchStatus.APPLIED])
    return [_batch_info(b, expected(b), outcomes.get(b.id)) for b in rows]


def _batch_info(
    b: BatchRow, expected_finish: float | None, outcome: dict[str, int] | None = None
) -> BatchInfo:
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
        created_at=b.provider_times.get("created_at") or b.created_at,
        expected_finish=expected_finish,
        cancelled=cancelled,
        rerouted=rerouted,
    )


def refresh(store: Store, last: RunStatus) -> RunStatus:
    """`last` with the counts, batches, cost and state as the store has them now: three
    cheap queries (no events, no turnaround history), for a view redrawn every second.
    Expected finishes, the deadline verdict and the reasons stay those of `last`."""
    run = store.get_run(last.run_id)
    expected = {b.shard: b.expected_finish for b in last.batches}
    batches = _batch_infos(
        store,
        store.list_batches(run.id),
        lambda b: expected.get(b.id) if b.status not in _FINISHED_BATCH else None,
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
) -> RunStatus:
    """The run as the user sees it. With `models` (the price and limit table), the deadline
    verdict asks whether real time from now could still finish the open work."""
    counts = _counts(store, run.id)
    prior = prior or _PRIOR
    history = turnarounds(store.list_batches(), prior=prior)

    def finish_of(b: BatchRow) -> float | None:
        created = b.provider_times.get("created_at") or b.created_at
        finish = b.provider_times.get("completed_at")
        if finish is None and b.status not in _FINISHED_BATCH:
            median = history.get(b.model, prior).quantile(0.5)
            finish = created + median if math.isfinite(median) else None
        return finish

    batches = _batch_infos(store, store.list_batches(run.id), finish_of)
    events = store.list_events(run.id)
    last_errors: dict[str, str] = {}
    reasons: list[str] = []
    escalation: dict[str, float] = {}
    planned_finish: Any = None
    waiting: str | None = None
    for e in events:
        if e.kind == "batch.waiting":
            waiting = e.message
        elif e.kind == "batch.planned":
            waiting = None  # room was found since
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
        fallbacks=fallback_totals(store, [run.id]),
        queue_wait=waiting if not done and counts.get("batch/routed") else None,
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
        variants=variant_costs(store, run_id) if run_id else [],
        reused=int(extra[0]),
        reuse_saving=round(extra[1], 6),
        requeues=int(extra[2]),
        requeue_cost=round(extra[3], 6),
        invalid=int(extra[4]),
        fallbacks=fallback_totals(store, [run.id for run in runs]),
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
    elif r.status is RequestStatus.FAILED and r.fallback is not None:
        # Its fallback model was refused too: the message names both refusals.
        error = {"code": r.error_code or "failed", "message": r.error_message or ""}
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
            # The model the line was sent to last: its own, or its fallback model.
            "model": r.model,
            # {"from", "to", "reason", "error", "at"} when a fallback model answers it.
            "fallback": r.fallback,
        },
    }


def fetch(
    store: Store, run_id: str, output: Path, errors: Path | None = None, *, group: bool = False
) -> FetchReport:
    """Write every input line's outcome to `output` in input order; failures also to `errors`.

    With `group`, `output` has one line per original request of a fan-out run, its variants
    side by side (`variants.Grouper`); `errors` still has one line per failed variant."""
    if store.get_run(run_id).pruned_at is not None:
        raise NotFound(
            f"Run {run_id} was pruned: its requests and answers are no longer in {store.path}."
        )
    batch_ids = {b.id: b.provider_batch_id for b in store.list_batches(run_id)}
    succeeded = failed = unfinished = lines = invalid = fallback = cancelled = 0
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(output.name + ".partial")
    err_tmp = errors.with_name(errors.name + ".partial") if errors else None
    with tmp.open("w", encoding="utf-8") as out, ExitStack() as stack:
        err = stack.enter_context(err_tmp.open("w", encoding="utf-8")) if err_tmp else None
        grouper = Grouper() if group else None
        for r in store.iter_requests(run_id, with_response=True):
            record = output_line(run_id, r, batch_ids)
            line = json.dumps(record, separators=(",", ":"))
            if grouper is None:
                out.write(line + "\n")
                lines += 1
            else:
                for grouped in grouper.add(record):
                    out.write(json.dumps(grouped, separators=(",", ":")) + "\n")
                    lines += 1
            if r.status is RequestStatus.SUCCEEDED:
                succeeded += 1
                fallback += r.fallback is not None
                continue
            if r.status is RequestStatus.CANCELLED:
                cancelled += 1
            elif r.status in (RequestStatus.FAILED, RequestStatus.INVALID):
                failed += 1
                invalid += r.status is RequestStatus.INVALID
            else:
                unfinished += 1
            if err is not None:
                err.write(line + "\n")
        for grouped in grouper.flush() if grouper is not None else []:
            out.write(json.dumps(grouped, separators=(",", ":")) + "\n")
            lines += 1
    tmp.replace(output)
    if errors and err_tmp:
        err_tmp.replace(errors)
    return FetchReport(
        run_id,
        output,
        errors,
        lines,
        succeeded,
        failed,
        unfinished,
        invalid,
        cancelled=cancelled,
        fallback=fallback,
    )
