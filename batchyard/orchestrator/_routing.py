"""Feeding the pure router from what the store and the executors know.

Owns the translation from store rows, the model table and live executor state into the
router's inputs (`RequestFeatures`, `ModelCapacity`, `Turnaround`, `ShardState`), and the
per-model output estimate for requests that give no maximum. It decides nothing itself.
"""

from __future__ import annotations

import math
import sys
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from batchyard.catalog import ModelInfo, as_catalog
from batchyard.config import Settings
from batchyard.models import BatchStatus, Endpoint, RequestStatus, Route, RouteOverride
from batchyard.orchestrator._provider_clock import IDENTITY, ClockMap
from batchyard.orchestrator.batch.submit import shard_tokens
from batchyard.router import (
    NO_WORK,
    ModelCapacity,
    PathCosts,
    RequestFeatures,
    RunPolicy,
    ShardState,
    Turnaround,
    Work,
    parse_deadline,
)
from batchyard.store import Store
from batchyard.store.rows import BatchRow, NewRequest, OutputEvidence, RequestRow, RunRow

if TYPE_CHECKING:  # the runner imports the client, which imports the reports, which import this
    from batchyard.orchestrator.realtime.runner import RealtimeRunner

__all__ = [
    "DEFAULT_OUTPUT_TOKENS",
    "worst_output",
    "OPEN_STATUSES",
    "cancel_latency",
    "capacities",
    "expected_output",
    "features",
    "asks_fast",
    "from_new",
    "in_flight_tokens",
    "live_capacities",
    "current_routes",
    "priors",
    "run_policy",
    "shard_states",
    "turnarounds",
    "user_policy",
]

# Used when a request sets no maximum output and nothing has been learned yet.
DEFAULT_OUTPUT_TOKENS = 256
OPEN_STATUSES = (
    RequestStatus.PENDING,
    RequestStatus.ROUTED,
    RequestStatus.SUBMITTED,
    RequestStatus.IN_FLIGHT,
    RequestStatus.RETRYABLE,
)
_LIVE_BATCH = frozenset(
    {
        BatchStatus.UPLOADING,
        BatchStatus.UPLOADED,
        BatchStatus.CREATING,
        BatchStatus.VALIDATING,
        BatchStatus.IN_PROGRESS,
        BatchStatus.FINALIZING,
        BatchStatus.CANCELLING,
    }
)
_DONE_BATCH = frozenset({BatchStatus.COMPLETED, BatchStatus.APPLIED})
# The priors count as this many observed batches (or cancels): the first few of this
# store's own move the estimate most of the way.
_PRIOR_WEIGHT = 2.0


def priors(settings: Settings) -> tuple[Turnaround, Turnaround]:
    """The configured batch turnaround and cancel latency, before this store's own."""
    turnaround = Turnaround.from_median_p95(
        settings.batch_turnaround_median_seconds,
        settings.batch_turnaround_p95_seconds,
        weight=_PRIOR_WEIGHT,
    )
    cancel = Turnaround.from_median_p95(
        settings.cancel_latency_median_seconds,
        settings.cancel_latency_p95_seconds,
        max_s=3600.0,
        weight=_PRIOR_WEIGHT,
    )
    return turnaround, cancel


def user_policy(
    settings: Settings,
    now: float,
    *,
    deadline: str | float | None,
    budget: float | None,
    route: RouteOverride | str,
    strict: bool,
) -> RunPolicy:
    """The policy a user asks for at submit (a deadline string is relative to `now`)."""
    when = deadline if deadline is not None else settings.deadline
    at = when if isinstance(when, float | int) or when is None else parse_deadline(when, now)
    return RunPolicy(
        deadline=float(at) if at is not None else None,
        budget_usd=budget,
        route=RouteOverride(route),
        strict=strict,
        small_run_requests=settings.small_run_requests,
        small_run_usd=settings.small_run_usd,
        **_safety(settings),
    )


def _safety(settings: Settings) -> dict[str, Any]:
    """The deadline's safety settings, as `RunPolicy` fields."""
    return {
        "margin_s": settings.margin_seconds,
        "realtime_spread": settings.realtime_spread,
        "cancel_quantile": settings.cancel_quantile,
        "batch_setup_s": settings.batch_setup_seconds,
        # a cancelling shard is polled every 2 x poll_min; then its output is applied
        "cancel_notice_s": 2 * settings.poll_min_seconds + 5.0,
    }


def run_policy(run: RunRow, settings: Settings) -> RunPolicy:
    """The recorded run's policy, for re-deciding its open work mid-run.

    Whether the run is small was decided once, at submit, on the whole run: the handful of
    requests left over late in a big run (lines to retry, say) must not count as a small
    run and jump to real time, nor may a small run's leftovers start waiting for a batch.
    """
    small = run.options.get("small_run")
    if small is None:  # recorded before this was kept
        small = run.request_count <= settings.small_run_requests
    safety = _safety(settings)
    for key in safety:
        if key in run.options:
            safety[key] = float(run.options[key])
    return RunPolicy(
        deadline=run.deadline_at,
        budget_usd=run.budget,
        route=run.route_override,
        strict=False,
        small_run_requests=sys.maxsize if small else -1,
        small_run_usd=math.inf if small else -1.0,
        **safety,
    )


def expected_output(
    endpoint: str, max_output: int | None, evidence: OutputEvidence | None = None
) -> int:
    """The expected output tokens: the billed mean for the model and endpoint, capped by
    the request's own maximum; before there is evidence, that maximum; else 256."""
    if endpoint.endswith(("/embeddings", "/moderations")):
        return 0
    if evidence is not None:
        mean = round(evidence.mean)
        return mean if max_output is None else min(mean, max_output)
    return max_output if max_output is not None else DEFAULT_OUTPUT_TOKENS


def worst_output(
    endpoint: str, max_output: int | None, evidence: OutputEvidence | None = None
) -> int:
    """The worst-case output tokens the plan and budget count on: the billed p95 for the
    model and endpoint, capped by the request's maximum; before there is evidence, that
    maximum. With neither, the expected figure (256): set a maximum to bound it."""
    if endpoint.endswith(("/embeddings", "/moderations")):
        return 0
    if evidence is not None:
        return evidence.high if max_output is None else min(evidence.high, max_output)
    return max_output if max_output is not None else DEFAULT_OUTPUT_TOKENS


def asks_fast(body: Mapping[str, object] | None) -> bool:
    """The body asks for fast mode ("priority" is its former name, still accepted)."""
    return body is not None and body.get("service_tier") in ("fast", "priority")


def _path_costs(
    standard: float, flex: float | None, batch: float | None, fast: float | None
) -> PathCosts:
    """Per-path costs as stored; a model without a batch price is priced as standard."""
    return PathCosts(
        standard=standard, batch=batch if batch is not None else standard, flex=flex, fast=fast
    )


def _feature(
    custom_id: str,
    endpoint: str,
    model: str,
    tokens: tuple[int, int],
    costs: tuple[float, float | None, float | None],
    priority: int,
    shard: str | None = None,
    *,
    fast: bool = False,
    cost_fast: float | None = None,
    max_output: int | None = None,
) -> RequestFeatures:
    return RequestFeatures(
        custom_id=custom_id,
        endpoint=Endpoint(endpoint),
        model=model,
        input_tokens=tokens[0],
        output_tokens=tokens[1],
        cost=_path_costs(*costs, cost_fast),
        priority=priority,
        max_output_tokens=max_output,
        shard=shard,
        fast=fast,
    )


def feature(r: RequestRow, live_shards: frozenset[int] = frozenset()) -> RequestFeatures:
    """Router features of one stored request (`shard` set when it is in a live shard)."""
    return _feature(
        r.custom_id,
        r.endpoint,
        r.model,
        (r.est_input_tokens, r.est_output_tokens),
        (r.est_cost_standard, r.est_cost_flex, r.est_cost_batch),
        r.priority,
        str(r.shard) if r.shard is not None and r.shard in live_shards else None,
        # a line routed fast was pinned there (its body, or --route fast): it stays
        fast=r.route is Route.FAST or asks_fast(r.body),
        # TPM is charged at the cap; rows recorded before caps were kept had it as output
        max_output=r.max_output_tokens,
    )


def features(
    rows: Iterable[RequestRow], live_shards: frozenset[int] = frozenset()
) -> list[RequestFeatures]:
    """Router features of stored requests."""
    return [feature(r, live_shards) for r in rows]


def from_new(n: NewRequest, worst: NewRequest | None = None) -> RequestFeatures:
    """Router features of a request about to be stored; `worst` is the same request costed
    at its worst-case output (default: the expected one)."""
    f = _feature(
        n.custom_id,
        n.endpoint,
        n.model,
        (n.input_tokens, n.output_tokens),
        (n.cost_standard, n.cost_flex, n.cost_batch),
        n.priority,
        fast=asks_fast(n.body),
        cost_fast=n.cost_fast,
        max_output=n.max_output_tokens,
    )
    if worst is None or worst.output_tokens == n.output_tokens:
        return f
    cost = _path_costs(worst.cost_standard, worst.cost_flex, worst.cost_batch, worst.cost_fast)
    return replace(f, output_worst=worst.output_tokens, cost_worst=cost)


def capacities(
    models: Mapping[str, ModelInfo],
    names: Iterable[str],
    *,
    in_flight_tokens: Mapping[str, int] | None = None,
    breaker_open: Iterable[str] = (),
    quota_exhausted: bool = False,
    key_refused: bool = False,
    flex_unavailable: Iterable[str] = (),
    learned_limits: Mapping[str, int] | None = None,
    rate_views: Mapping[str, tuple[int, int]] | None = None,
) -> dict[str, ModelCapacity]:
    """One `ModelCapacity` per model name, from the table and the executors' live view.

    `rate_views` maps a model to (rpm, tpm) as the executor currently sees them (corrected
    from response headers); the table's figures otherwise.
    """
    in_flight = in_flight_tokens or {}
    learned = learned_limits or {}
    views = rate_views or {}
    opened, unavailable = set(breaker_open), set(flex_unavailable)
    out: dict[str, ModelCapacity] = {}
    catalog = as_catalog(models)
    for name in names:
        info = catalog.require(name)
        rpm, tpm = views.get(name, (info.rpm, info.tpm))
        out[name] = ModelCapacity(
            model=name,
            rpm=rpm,
            tpm=tpm,
            flex_allowed=info.flex,
            fast_allowed=info.fast,
            enqueued_token_limit=learned.get(name, info.enqueued_token_limit),
            enqueued_tokens_in_flight=in_flight.get(name, 0),
            breaker_open=name in opened,
            quota_exhausted=quota_exhausted,
            key_refused=key_refused,
            flex_unavailable=name in unavailable,
        )
    return out


def live_capacities(
    models: Mapping[str, ModelInfo],
    names: Iterable[str],
    store: Store | None,
    rt: RealtimeRunner | None,
) -> dict[str, ModelCapacity]:
    """`capacities` with what the store and the real-time runner know right now."""
    return capacities(
        models,
        names,
        in_flight_tokens=in_flight_tokens(store) if store is not None else None,
        breaker_open=rt.open_breakers() if rt else (),
        quota_exhausted=bool(rt and rt.quota_exhausted),
        key_refused=bool(rt and rt.key_refused),
        flex_unavailable=rt.flex_unavailable() if rt else (),
        rate_views=rt.rate_views() if rt else None,
    )


def turnarounds(
    batches: Iterable[BatchRow],
    models: Iterable[str] = (),
    prior: Turnaround | None = None,
    clock: ClockMap | None = None,
) -> dict[str, Turnaround]:
    """The configured prior for each of `models`, updated with the store's batches.

    Learned on the provider's clock (the prior too: it describes the provider); with
    `clock`, returned on ours (a simulator on a fast clock finishes its hours in seconds).

    A batch's turnaround is its time in progress (`in_progress_at` to `finalizing_at`, or
    creation to completion where those are missing). A batch that expired counts as taking
    the whole window: the slow outcome the escalation point must allow for. A batch we
    cancelled before it finished teaches too: from the share it had finished, its pace (its
    time in progress over that share); with nothing finished, only that it takes longer
    than it ran (a censored observation).
    """
    base = prior or Turnaround.prior()
    observed: dict[str, list[float]] = defaultdict(list)
    longer: dict[str, list[float]] = defaultdict(list)
    for b in batches:
        times = b.provider_times
        start = times.get("in_progress_at") or times.get("created_at")
        if start is None:
            start = clock.to_provider(b.created_at) if clock is not None else b.created_at
        if b.status in _DONE_BATCH and "completed_at" in times:
            done = times.get("finalizing_at") or times["completed_at"]
            if done >= start:
                observed[b.model].append(done - start)
        elif "expired_at" in times:
            observed[b.model].append(base.max_s)
        elif "cancelling_at" in times and "finalizing_at" not in times:
            ran = times["cancelling_at"] - start
            total, done_ = b.counts_total or b.request_count, b.counts_completed or 0
            if ran <= 0:
                continue
            if done_ > 0 and total > 0 and "in_progress_at" in times:
                observed[b.model].append(ran * total / done_)
            else:
                longer[b.model].append(ran)
    out = {model: base for model in models}
    for model in set(observed) | set(longer):
        out[model] = base.updated_with(observed.get(model, ()), longer.get(model, ()))
    if clock is not None:
        out = {model: clock.turnaround(t) for model, t in out.items()}
    return out


def cancel_latency(
    batches: Iterable[BatchRow], prior: Turnaround | None = None, clock: ClockMap | None = None
) -> Turnaround:
    """The configured cancel-latency prior, updated with how long the store's cancelled
    batches stayed `cancelling` (all models: cancelling is the provider's own work); kept
    on the provider's clock, returned on ours with `clock`."""
    base = prior or Turnaround.cancel_prior()
    seen = [
        b.provider_times["cancelled_at"] - b.provider_times["cancelling_at"]
        for b in batches
        if "cancelling_at" in b.provider_times and "cancelled_at" in b.provider_times
    ]
    learned = base.updated_with(s for s in seen if s >= 0)
    return clock.turnaround(learned) if clock is not None else learned


def live_shard_ids(store: Store, run_id: str) -> frozenset[int]:
    return frozenset(b.id for b in store.list_batches(run_id) if b.status in _LIVE_BATCH)


def shard_states(
    store: Store,
    run_id: str,
    open_rows: Iterable[RequestRow] | None = None,
    clock: ClockMap | None = None,
) -> list[ShardState]:
    """Live shards of a run: the sum of their open lines and the provider's progress, its
    times on our clock (`clock` maps the provider's).

    `open_rows`: the run's open requests (`OPEN_STATUSES`), when the caller has read them
    already; else they are read per shard.
    """
    live = {b.id: b for b in store.list_batches(run_id) if b.status in _LIVE_BATCH}
    if not live:
        return []
    work: dict[int, Work] = defaultdict(lambda: NO_WORK)
    rows = (
        open_rows
        if open_rows is not None
        else (
            r
            for shard in live
            for r in store.iter_requests(run_id, shard=shard, statuses=OPEN_STATUSES)
        )
    )
    for r in rows:
        if r.shard in live:
            work[r.shard] = work[r.shard] + Work.of(feature(r))
    ours = clock or IDENTITY

    def local(b: BatchRow, name: str) -> float | None:
        at = b.provider_times.get(name)
        return None if at is None else ours.to_local(at)

    return [
        ShardState(
            shard_id=str(b.id),
            model=b.model,
            work=work[b.id],
            submitted_at=local(b, "created_at") or b.created_at,
            completed=b.counts_completed or 0,
            started_at=local(b, "in_progress_at"),
            cancelling_at=local(b, "cancelling_at")
            or (b.updated_at if b.status is BatchStatus.CANCELLING else None),
        )
        for b in live.values()
    ]


def in_flight_tokens(store: Store, run_id: str | None = None) -> dict[str, int]:
    """Estimated input tokens enqueued in live batches, per model (all runs by default)."""
    totals: dict[str, int] = defaultdict(int)
    for b in store.list_batches(run_id):
        if b.status in _LIVE_BATCH:
            totals[b.model] += shard_tokens(b)
    return dict(totals)


def current_routes(rows: Iterable[RequestRow]) -> dict[str, Route]:
    return {r.custom_id: r.route for r in rows if r.route is not None}
