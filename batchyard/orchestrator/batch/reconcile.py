"""After a crash: match half-done shards with what exists remotely, and cancel runs.

Owns `reconcile` and `cancel_run` / `cancel_shards`.

`reconcile(run)`, run on resume before anything is submitted:
- claims held by a process that is gone (same host, dead pid) or whose lease expired are
  released;
- an upload intent without a remote id (`uploading`): the files list is searched for the
  shard's unique filename and size; found, it is recorded (extra copies deleted), else the
  intent is abandoned (shard back to `planned`, uploaded again by the next submit);
- a create intent without a provider id (`creating`): `batches.list` is paged for the
  shard's metadata tag; found, it is recorded, else the shard goes back to `uploaded` and
  the next submit creates it: a shard is never created twice;
- remote input files of this run that no shard uses (duplicate uploads, shards cancelled
  before create) are deleted: an uploaded file is never orphaned.

`cancel_run(run)`: the run goes to `cancelling` (if pending or running); requests not yet
in a provider batch are cancelled (planned/uploaded shards are dropped, their remote files
deleted); live provider batches are asked to cancel. Their finished lines are kept when
the shards are polled and applied; the lines that never ran become cancelled then.
It must not plan or apply shards.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import openai

from batchyard.models import BatchStatus, RequestStatus, Route, RunState
from batchyard.orchestrator.batch.remote import (
    BatchContext,
    failure_text,
    owner_is_dead,
    shard_filename,
)
from batchyard.orchestrator.batch.upload import recover_create, recover_upload
from batchyard.store import BatchRow

__all__ = [
    "CancelReport",
    "ReconcileReport",
    "cancel_run",
    "cancel_shards",
    "needs_reconcile",
    "reconcile",
]

B = BatchStatus
LIVE = (B.VALIDATING, B.IN_PROGRESS, B.FINALIZING, B.CANCELLING)


@dataclass
class ReconcileReport:
    released_claims: int = 0
    uploads_found: int = 0  # upload intents whose file did reach the API
    uploads_redo: int = 0  # upload intents that never reached it (uploaded again later)
    batches_found: int = 0  # create intents whose batch did get created
    creates_redo: int = 0  # create intents that never reached it (created later)
    files_deleted: int = 0  # orphaned remote input files removed
    busy: list[int] = field(default_factory=list)  # shards another live process holds

    def __str__(self) -> str:
        """A sentence for the run's events (never the dataclass repr)."""
        parts = [
            f"{n} {what}"
            for n, what in (
                (self.released_claims, "claim(s) of stopped processes released"),
                (self.uploads_found, "interrupted upload(s) found at the API"),
                (self.uploads_redo, "upload(s) to do again"),
                (self.batches_found, "interrupted batch create(s) found at the API"),
                (self.creates_redo, "batch create(s) to do again"),
                (self.files_deleted, "orphaned input file(s) deleted"),
            )
            if n
        ]
        if self.busy:
            parts.append(f"shard(s) {', '.join(map(str, self.busy))} held by a live process")
        return ("batches: " + ", ".join(parts) + ".") if parts else "batches: nothing to reconcile."


@dataclass
class CancelReport:
    cancelling: list[int] = field(default_factory=list)  # provider batches asked to cancel
    finished: list[int] = field(default_factory=list)  # already finished remotely (409)
    dropped: list[int] = field(default_factory=list)  # shards that never reached the API
    requests_cancelled: int = 0
    errors: list[str] = field(default_factory=list)


def _release_dead(ctx: BatchContext, run_id: str, report: ReconcileReport) -> None:
    now = ctx.store.now()
    for b in ctx.store.list_batches(run_id):
        owner = b.claim_owner
        if (
            owner
            and owner != ctx.owner
            and (owner_is_dead(owner) or (b.claim_expires_at or 0) < now)
        ):
            ctx.store.release_batch_claim(b.id, owner)
            report.released_claims += 1


def needs_reconcile(ctx: BatchContext, run_id: str) -> bool:
    """A driver's every round asks this: a shard claimed by a process on this host that is
    gone (killed mid-upload), or an upload or create intent nobody holds, is repaired now
    rather than on the next `resume`; otherwise the run would wait for it forever."""
    for b in ctx.store.list_active_batches(run_id):
        owner = b.claim_owner
        if owner and owner != ctx.owner and owner_is_dead(owner):
            return True
        if owner is None and b.status in (B.UPLOADING, B.CREATING):
            return True
    return False


async def reconcile(ctx: BatchContext, run_id: str) -> ReconcileReport:
    store = ctx.store
    report = ReconcileReport()
    _release_dead(ctx, run_id, report)
    for f in store.pending_uploads(run_id):
        if f.shard is None:
            continue
        if not store.claim_batch_for_submit(f.shard, ctx.owner):
            report.busy.append(f.shard)
            continue
        try:
            if await recover_upload(ctx, run_id, f.id):
                report.uploads_found += 1
            else:
                report.uploads_redo += 1
        finally:
            store.release_batch_claim(f.shard, ctx.owner)
    for b in store.list_batches(run_id, statuses=[B.CREATING]):
        if b.provider_batch_id:
            continue
        if not store.claim_batch_for_submit(b.id, ctx.owner):
            report.busy.append(b.id)
            continue
        try:
            if await recover_create(ctx, run_id, b.id):
                report.batches_found += 1
            else:
                report.creates_redo += 1
        finally:
            store.release_batch_claim(b.id, ctx.owner)
    report.files_deleted += await _delete_orphans(ctx, run_id)
    _clean_workdir(ctx, run_id)
    ctx.event(
        run_id,
        "batch.reconciled",
        f"Reconciled: {report.uploads_found} upload(s) and {report.batches_found} batch(es) "
        f"found remotely, {report.uploads_redo + report.creates_redo} step(s) to redo, "
        f"{report.files_deleted} orphaned file(s) deleted",
        {k: v for k, v in vars(report).items() if isinstance(v, int)},
    )
    return report


def _clean_workdir(ctx: BatchContext, run_id: str) -> None:
    """Remove local shard files of shards past uploading (a crash left them behind)."""
    for b in ctx.store.list_batches(run_id):
        if b.status not in (B.PLANNED, B.UPLOADING):
            (ctx.workdir / shard_filename(run_id, b.id)).unlink(missing_ok=True)


async def _delete_orphans(ctx: BatchContext, run_id: str) -> int:
    """Delete this run's remote input files that no live shard will use."""
    store = ctx.store
    used: set[str] = set()
    unused_rows: dict[str, int] = {}
    shards = {b.id: b for b in store.list_batches(run_id)}
    for f in store.list_files(run_id):
        if f.remote_id is None or f.shard is None or f.deleted_at is not None:
            continue
        b = shards.get(f.shard)
        if b is not None and b.status == B.CANCELLED and not b.provider_batch_id:
            unused_rows[f.remote_id] = f.id
        else:
            used.add(f.remote_id)
    prefix = f"batchyard-{run_id}-s"
    deleted = 0
    remote = await ctx.find_files_prefix(prefix)
    for obj in remote:
        if obj.id in used:
            continue
        await ctx.delete_file(obj.id)
        if obj.id in unused_rows:
            store.mark_file_deleted(unused_rows[obj.id])
        deleted += 1
    return deleted


async def cancel_run(ctx: BatchContext, run_id: str) -> CancelReport:
    store = ctx.store
    report = CancelReport()
    run = store.get_run(run_id)
    if run.state in (RunState.PENDING, RunState.RUNNING):
        store.set_run_state(run_id, RunState.CANCELLING)
    await reconcile(ctx, run_id)  # no intent may be left half-done before deciding
    for b in store.list_batches(run_id, statuses=[B.PLANNED, B.UPLOADED]):
        store.set_batch_status(b.id, B.CANCELLED)
        report.dropped.append(b.id)
        if b.input_file_id and b.input_file_row is not None:
            await ctx.delete_file(b.input_file_id)
            store.mark_file_deleted(b.input_file_row)
    waiting = [
        r.custom_id
        for r in store.iter_requests(
            run_id, statuses=[RequestStatus.ROUTED, RequestStatus.RETRYABLE], routes=[Route.BATCH]
        )
        if r.shard is None or r.shard in report.dropped or _applied(ctx, r.shard)
    ]
    if waiting:
        report.requests_cancelled += store.transition_requests(
            run_id,
            waiting,
            RequestStatus.CANCELLED,
            error_code="run_cancelled",
            error_message="The run was cancelled before this request was sent.",
        )
    live = [b for b in store.list_batches(run_id, statuses=list(LIVE)) if b.provider_batch_id]
    await _cancel_remote(ctx, run_id, live, report)
    ctx.event(
        run_id,
        "batch.cancel",
        f"Cancelling: {len(report.cancelling)} batch(es) asked to cancel, "
        f"{len(report.dropped)} unsent shard(s) dropped, {report.requests_cancelled} "
        "request(s) cancelled; finished lines are kept",
        {"cancelling": report.cancelling, "dropped": report.dropped},
    )
    return report


def _applied(ctx: BatchContext, shard: int) -> bool:
    return ctx.store.get_batch(shard).status == B.APPLIED


async def _cancel_remote(
    ctx: BatchContext, run_id: str, shards: list[BatchRow], report: CancelReport
) -> None:
    for b in shards:
        if b.provider_batch_id is None:
            continue
        try:
            batch = await ctx.cancel_batch(b.provider_batch_id)
        except openai.APIError as exc:
            report.errors.append(f"Shard {b.id}: cancel failed: {failure_text(exc)}")
            continue
        if batch is None:
            report.finished.append(b.id)  # it finished first; the next poll applies it
            continue
        ctx.store.update_batch_from_provider(b.id, batch.model_dump(mode="json"))
        report.cancelling.append(b.id)


async def cancel_shards(
    ctx: BatchContext, run_id: str, shard_ids: list[int], reason: str
) -> CancelReport:
    """Cancel these shards so their unfinished lines can go elsewhere (escalation).

    Their requests are not re-queued to batch by `submit`: after the shards are applied,
    the lines that never ran are retryable (`batch_cancelled`) for the caller to re-route.
    Shards that never reached the API are dropped at once (requests stay routed).
    """
    store = ctx.store
    report = CancelReport()
    live = []
    for shard in shard_ids:
        b = store.get_batch(shard)
        ctx.event(run_id, "batch.escalated", f"Shard {shard} cancelled: {reason}", shard=shard)
        if b.status in (B.PLANNED, B.UPLOADED):
            store.set_batch_status(shard, B.CANCELLED)
            report.dropped.append(shard)
        elif b.provider_batch_id and b.status in LIVE:
            live.append(b)
    await _cancel_remote(ctx, run_id, live, report)
    await _delete_orphans(ctx, run_id)
    return report
