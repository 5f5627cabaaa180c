"""The organisation's enqueued-token queue, shared by every run: refresh, urgency, holders.

Owns what a driver does before it decides a model's queue has no room, and who comes first:

- `refresh_model`: the state of every live batch of the model in the store (any run) is
  retrieved again when nobody has looked for `poll_min_seconds`. State only: another run's
  shards are downloaded and applied by that run's drivers. A batch that finished while its
  run was left alone so stops holding the room in the store's books.
- `ahead`: room goes to runs by urgency, the earliest escalation point first, then the
  earliest submitted. A more urgent run that waits for room keeps it from later runs only
  while a live process drives it (a `drivers` row seen lately whose process is not known to
  be gone): a run nobody drives never holds the others back.
- `holders_text`: the runs that hold the room (or come first) and the commands that free it,
  for the `batch.waiting` reason that `status` and the live view show.

It must not plan, submit or apply shards (`submit.py` and `apply.py` do).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import openai

from batchyard.errors import BatchyardError
from batchyard.models import BatchStatus
from batchyard.orchestrator.batch.remote import BatchContext, owner_is_dead
from batchyard.store import Store

__all__ = ["Waiter", "ahead", "driven", "holders_text", "refresh_model", "urgency"]

B = BatchStatus
_LIVE = (B.VALIDATING, B.IN_PROGRESS, B.FINALIZING, B.CANCELLING)


@dataclass(frozen=True)
class Waiter:
    """Another run with a claim on a model's queue: tokens it holds or waits to send."""

    run_id: str
    tokens: int


async def refresh_model(ctx: BatchContext, model: str) -> int:
    """Retrieve every live batch of `model` in the store (all runs) whose state nobody has
    refreshed for `poll_min_seconds`; returns how many changed state. Failures are skipped:
    the next round tries again, and the run's own drivers poll it anyway."""
    store = ctx.store
    fresh = store.now() - ctx.settings.poll_min_seconds
    changed = 0
    for b in store.list_active_batches():
        if b.model != model or b.status not in _LIVE or not b.provider_batch_id:
            continue
        if b.updated_at > fresh:
            continue
        try:
            batch = await ctx.retrieve(b.provider_batch_id)
            row = store.update_batch_from_provider(b.id, batch.model_dump(mode="json"))
        except (openai.APIError, BatchyardError):
            continue
        changed += row.status != b.status
    return changed


def urgency(store: Store, run_id: str) -> tuple[float, float]:
    """(earliest escalation point of the run's plan, or infinity; submission time)."""
    run = store.get_run(run_id)
    points: list[float] = []
    for e in store.list_events(run_id, kinds=["route.plan"]):
        at = e.data.get("escalation_at") or {}
        points = [float(v) for v in at.values() if isinstance(v, int | float)]
    return (min(points, default=math.inf), run.created_at)


def driven(store: Store, run_id: str, since: float) -> bool:
    """Some process still drives `run_id`: seen at or after `since`, not known to be gone."""
    return any(not owner_is_dead(o) for o in store.drivers(run_id, since=since))


def ahead(ctx: BatchContext, run_id: str, model: str) -> list[Waiter]:
    """The runs before `run_id` in the queue of `model`: more urgent, waiting for room,
    and driven (a run left alone is passed over until someone drives it again)."""
    store = ctx.store
    demand = {r: n for r, n in store.queue_demand(model).items() if r != run_id}
    if not demand:
        return []
    mine = urgency(store, run_id)
    since = store.now() - (2 * ctx.settings.poll_max_seconds + 60.0)
    return [
        Waiter(other, tokens)
        for other, tokens in sorted(demand.items(), key=lambda kv: urgency(store, kv[0]))
        if urgency(store, other) < mine and driven(store, other, since)
    ]


def holders_text(store: Store, run_id: str, model: str, first: list[Waiter]) -> str:
    """Who keeps this run waiting for `model`'s queue, and how each is freed; "" if only
    the run's own batches do."""
    held = [
        Waiter(r, n) for r, n in sorted(store.queue_holders(model).items()) if r != run_id and n
    ]
    parts = [f"run {w.run_id} holds {w.tokens:,} ({_commands(w.run_id)})" for w in held] + [
        f"run {w.run_id} comes first (more urgent; {_commands(w.run_id)})" for w in first
    ]
    return "; ".join(parts)


def _commands(run_id: str) -> str:
    return f"`batchyard watch {run_id}` or `batchyard cancel {run_id}`"
