"""Feeding the pure router from what the store and the executors know.

Owns the translation from store rows, the model table and live executor state into the
router's inputs (`RequestFeatures`, `ModelCapacity`, `Turnaround`, `ShardState`), and the
per-model output estimate for requests that give no maximum. It decides nothing itself.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping

from batchyard.config import ModelInfo
from batchyard.models import BatchStatus, Endpoint, RequestStatus, Route
from batchyard.orchestrator.batch_submit import shard_tokens
from batchyard.router import ModelCapacity, PathCosts, RequestFeatures, ShardState, Turnaround
from batchyard.store import Store
from batchyard.store.rows import BatchRow, NewRequest, RequestRow

__all__ = [
    "DEFAULT_OUTPUT_TOKENS",
    "OPEN_STATUSES",
    "capacities",
    "expected_output",
    "features",
    "from_new",
    "in_flight_tokens",
    "current_routes",
    "shard_states",
    "turnarounds",
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


def expected_output(endpoint: str, max_output: int | None) -> int:
    if endpoint.endswith(("/embeddings", "/moderations")):
        return 0
    return max_output if max_output is not None else DEFAULT_OUTPUT_TOKENS


def _feature(
    custom_id: str,
    endpoint: str,
    model: str,
    tokens: tuple[int, int],
    costs: tuple[float, float | None, float | None],
    priority: int,
) -> RequestFeatures:
    standard, flex, batch = costs
    return RequestFeatures(
        custom_id=custom_id,
        endpoint=Endpoint(endpoint),
        model=model,
        input_tokens=tokens[0],
        output_tokens=tokens[1],
        cost=PathCosts(
            standard=standard, batch=batch if batch is not None else standard, flex=flex
        ),
        priority=priority,
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
    for name in names:
        info = models[name]
        rpm, tpm = views.get(name, (info.rpm, info.tpm))
        out[name] = ModelCapacity(
            model=name,
            rpm=rpm,
            tpm=tpm,
            flex_allowed=info.flex,
            enqueued_token_limit=learned.get(name, info.enqueued_token_limit),
            enqueued_tokens_in_flight=in_flight.get(name, 0),
            breaker_open=name in opened,
            quota_exhausted=quota_exhausted,
            flex_unavailable=name in unavailable,
        )
    return out


def turnarounds(batches: Iterable[BatchRow]) -> dict[str, Turnaround]:
    """The configured prior per model, updated with the store's finished batches."""
    observed: dict[str, list[float]] = defaultdict(list)
    for b in batches:
        if b.status not in _DONE_BATCH:
            continue
        created = b.provider_times.get("created_at") or b.created_at
        done = b.provider_times.get("completed_at") or b.provider_times.get("finalizing_at")
        if done is not None and done >= created:
            observed[b.model].append(done - created)
    prior = Turnaround.prior()
    return {model: prior.updated_with(seconds) for model, seconds in observed.items()}


def shard_states(store: Store, run_id: str) -> list[ShardState]:
    """Live shards of a run with the lines each has already finished."""
    states = []
    for b in store.list_batches(run_id):
        if b.status not in _LIVE_BATCH:
            continue
        ids = []
        done = []
        for r in store.iter_requests(run_id, shard=b.id):
            ids.append(r.custom_id)
            if r.status is RequestStatus.SUCCEEDED:
                done.append(r.custom_id)
        submitted = b.provider_times.get("created_at") or b.created_at
        states.append(
            ShardState(
                shard_id=str(b.id),
                model=b.model,
                custom_ids=frozenset(ids),
                submitted_at=submitted,
                completed_ids=frozenset(done),
            )
        )
    return states


def in_flight_tokens(store: Store, run_id: str | None = None) -> dict[str, int]:
    """Estimated input tokens enqueued in live batches, per model (all runs by default)."""
    totals: dict[str, int] = defaultdict(int)
    for b in store.list_batches(run_id):
        if b.status in _LIVE_BATCH:
            totals[b.model] += shard_tokens(b)
    return dict(totals)


def current_routes(rows: Iterable[RequestRow]) -> dict[str, Route]:
    return {r.custom_id: r.route for r in rows if r.route is not None}
