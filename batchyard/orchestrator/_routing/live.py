"""What is live right now, for the router: each model's limits and the shards in flight.

Owns `capacities` (one `ModelCapacity` per model from the table and the executors' live
view), `live_capacities` (the same with what the store and the real-time runner know),
the tokens enqueued in live batches, the live shards of a run (`shard_states`, with their
open work and the provider's progress on our clock) and the open request statuses. Reads
the store and the runner; decides nothing itself.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from batchyard.catalog import ModelInfo, as_catalog
from batchyard.models import BatchStatus, RequestStatus, Route
from batchyard.orchestrator._routing.features import feature
from batchyard.orchestrator._routing.provider_clock import IDENTITY, ClockMap
from batchyard.router import NO_WORK, ModelCapacity, ShardState, Work
from batchyard.store import Store
from batchyard.store.rows import BatchRow, RequestRow

if TYPE_CHECKING:  # the runner imports the client, which imports the reports, which import this
    from batchyard.orchestrator.realtime.runner import RealtimeRunner

__all__ = [
    "OPEN_STATUSES",
    "capacities",
    "current_routes",
    "in_flight_tokens",
    "live_capacities",
    "live_shard_ids",
    "shard_states",
]

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


def in_flight_tokens(store: Store, run_id: str | None = None) -> dict[str, int]:
    """Estimated input tokens enqueued in live batches, per model (all runs by default)."""
    totals: dict[str, int] = defaultdict(int)
    for b in store.list_batches(run_id):
        if b.status in _LIVE_BATCH:
            totals[b.model] += b.planned_tokens
    return dict(totals)


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


def current_routes(rows: Iterable[RequestRow]) -> dict[str, Route]:
    return {r.custom_id: r.route for r in rows if r.route is not None}
