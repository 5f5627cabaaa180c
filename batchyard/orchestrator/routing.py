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

from batchyard.catalog import ModelInfo, as_catalog
from batchyard.config import Settings
from batchyard.models import BatchStatus, Endpoint, RequestStatus, Route, RouteOverride
from batchyard.orchestrator.batch_submit import shard_tokens
from batchyard.orchestrator.realtime import RealtimeRunner
from batchyard.router import (
    ModelCapacity,
    PathCosts,
    RequestFeatures,
    RunPolicy,
    ShardState,
    Turnaround,
    parse_deadline,
)
from batchyard.store import Store
from batchyard.store.rows import BatchRow, NewRequest, RequestRow, RunRow

__all__ = [
    "DEFAULT_OUTPUT_TOKENS",
    "OPEN_STATUSES",
    "capacities",
    "expected_output",
    "features",
    "asks_fast",
    "from_new",
    "in_flight_tokens",
    "live_capacities",
    "current_routes",
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
    }
)
_DONE_BATCH = frozenset({BatchStatus.COMPLETED, BatchStatus.APPLIED})


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
        margin_s=settings.margin_seconds,
        strict=strict,
        small_run_requests=settings.small_run_requests,
        small_run_usd=settings.small_run_usd,
    )


def run_policy(run: RunRow, settings: Settings) -> RunPolicy:
    """The recorded run's policy, for re-deciding its open work mid-run.

    Whether the run is small was decided once, at submit, on the whole run: the handful of
    requests left over late in a big run (lines to retry, say) must not count as a small
    run and jump to real time, nor may a small run's leftovers start waiting for a batch.
    """
    small = run.options.get("small_run")
    if small is None:  # recorded before this was kept
        small = run.request_count <= settings.small_run_requests
    return RunPolicy(
        deadline=run.deadline_at,
        budget_usd=run.budget,
        route=run.route_override,
        margin_s=float(run.options.get("margin_s", settings.margin_seconds)),
        strict=False,
        small_run_requests=sys.maxsize if small else -1,
        small_run_usd=math.inf if small else -1.0,
    )


def expected_output(endpoint: str, max_output: int | None, learned: float | None = None) -> int:
    """The request's own maximum; else the model's mean over finished requests; else 256."""
    if endpoint.endswith(("/embeddings", "/moderations")):
        return 0
    if max_output is not None:
        return max_output
    return round(learned) if learned is not None else DEFAULT_OUTPUT_TOKENS


def asks_fast(body: Mapping[str, object] | None) -> bool:
    """The body asks for fast mode ("priority" is its former name, still accepted)."""
    return body is not None and body.get("service_tier") in ("fast", "priority")


def _feature(
    custom_id: str,
    endpoint: str,
    model: str,
    tokens: tuple[int, int],
    costs: tuple[float, float | None, float | None],
    priority: int,
    *,
    fast: bool = False,
    cost_fast: float | None = None,
) -> RequestFeatures:
    standard, flex, batch = costs
    return RequestFeatures(
        custom_id=custom_id,
        endpoint=Endpoint(endpoint),
        model=model,
        input_tokens=tokens[0],
        output_tokens=tokens[1],
        cost=PathCosts(
            standard=standard,
            batch=batch if batch is not None else standard,
            flex=flex,
            fast=cost_fast,
        ),
        priority=priority,
        fast=fast,
    )


def features(rows: Iterable[RequestRow]) -> list[RequestFeatures]:
    """Router features of stored requests."""
    return [
        _feature(
            r.custom_id,
            r.endpoint,
            r.model,
            (r.est_input_tokens, r.est_output_tokens),
            (r.est_cost_standard, r.est_cost_flex, r.est_cost_batch),
            r.priority,
            # a line routed fast was pinned there (its body, or --route fast): it stays
            fast=r.route is Route.FAST or asks_fast(r.body),
        )
        for r in rows
    ]


def from_new(n: NewRequest) -> RequestFeatures:
    """Router features of a request about to be stored."""
    return _feature(
        n.custom_id,
        n.endpoint,
        n.model,
        (n.input_tokens, n.output_tokens),
        (n.cost_standard, n.cost_flex, n.cost_batch),
        n.priority,
        fast=asks_fast(n.body),
        cost_fast=n.cost_fast,
    )


def capacities(
    models: Mapping[str, ModelInfo],
    names: Iterable[str],
    *,
    in_flight_tokens: Mapping[str, int] | None = None,
    breaker_open: Iterable[str] = (),
    quota_exhausted: bool = False,
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
        flex_unavailable=rt.flex_unavailable() if rt else (),
        rate_views=rt.rate_views() if rt else None,
    )


def turnarounds(
    batches: Iterable[BatchRow],
    models: Iterable[str] = (),
    prior: Turnaround | None = None,
) -> dict[str, Turnaround]:
    """The configured prior for each of `models`, updated with the store's finished batches.

    A batch that expired counts as taking the whole window: it is the slow outcome the
    escalation point must allow for, and leaving it out would make the estimate optimistic.
    Batches we cancelled ourselves tell nothing about when they would have finished.
    """
    base = prior or Turnaround.prior()
    observed: dict[str, list[float]] = defaultdict(list)
    for b in batches:
        if b.status not in _DONE_BATCH:
            continue
        created = b.provider_times.get("created_at") or b.created_at
        done = b.provider_times.get("completed_at") or b.provider_times.get("finalizing_at")
        if done is not None and done >= created:
            observed[b.model].append(done - created)
        elif "expired_at" in b.provider_times:
            observed[b.model].append(base.max_s)
    out = {model: base for model in models}
    out.update({model: base.updated_with(seconds) for model, seconds in observed.items()})
    return out


def shard_states(
    store: Store, run_id: str, open_rows: Iterable[RequestRow] | None = None
) -> list[ShardState]:
    """Live shards of a run with the lines each has already finished.

    `open_rows`: the run's open requests (`OPEN_STATUSES`), when the caller has read them
    already; each shard's open lines then come from them instead of a second read of the
    whole run, and only its succeeded lines are read per shard (usually none while live).
    """
    live = {b.id: b for b in store.list_batches(run_id) if b.status in _LIVE_BATCH}
    if not live:
        return []
    members: dict[int, list[str]] = defaultdict(list)
    done: dict[int, list[str]] = defaultdict(list)
    if open_rows is None:
        for shard in live:
            for r in store.iter_requests(run_id, shard=shard):
                (done if r.status is RequestStatus.SUCCEEDED else members)[shard].append(
                    r.custom_id
                )
    else:
        for r in open_rows:
            if r.shard in live:
                members[r.shard].append(r.custom_id)
        for shard in live:
            succeeded = (RequestStatus.SUCCEEDED,)
            done[shard] = [
                r.custom_id for r in store.iter_requests(run_id, statuses=succeeded, shard=shard)
            ]
    return [
        ShardState(
            shard_id=str(b.id),
            model=b.model,
            custom_ids=frozenset(members[b.id]) | frozenset(done[b.id]),
            submitted_at=b.provider_times.get("created_at") or b.created_at,
            completed_ids=frozenset(done[b.id]),
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
