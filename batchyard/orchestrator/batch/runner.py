"""The batch path: `BatchRunner`, one run's OpenAI Batch API lifecycle, recorded in the store.

Owns the public face of the batch path; the work lives beside it:
`submit.py` (re-queue, plan, admit), `upload.py` (upload, create), `apply.py` (files and failures
to results), `reconcile.py` (crash repair, cancel), `remote.py` (every SDK call, via
the one retry layer), `lines.py` (line meanings), `schedule.py` (poll backoff).
It must not route requests (the router does) nor decide a run's final state (the glue in
`_orchestrator.py` does); it never writes SQL.

    runner = BatchRunner(store, client, models, settings, clock=..., sleep=..., owner=...,
                         workdir=Path(...), on_progress=callback,
                         policy=RetryPolicy(...), limits=ShardLimits(...), hook=None)
    (`limits`: caps tighter than the API's per shard; `hook`: a crash-test seam, see
    `batch_remote.CrashHook`; the workdir holds shard files until uploaded and downloaded
    files while applied.)
    await runner.submit(run_id)       -> SubmitReport   routed batch work goes out in shards
    await runner.poll(run_id)         -> PollReport     due shards retrieved, finished ones applied
    runner.next_poll_in(run_id)       -> seconds until a shard is due again
    await runner.cancel(run_id)       -> CancelReport   run -> cancelling, batches cancelled
    await runner.cancel_shards(run_id, shard_ids, reason)   escalation: lines come back retryable
    await runner.reconcile(run_id)    -> ReconcileReport  after a crash, before submit/poll
    await runner.repair(run_id)       -> ReconcileReport | None  reconcile, when a shard needs it
    await runner.run(run_id)          -> PollReport     submit + poll until no batch work is left

Lifecycle per shard (intent committed before each remote call):
planned -> uploading -> [files.create] -> uploaded -> creating -> [batches.create with
metadata {batchyard_run, batchyard_shard}] -> validating -> in_progress -> finalizing ->
completed|failed|expired|cancelled -> [files downloaded and applied] -> applied.
`finalizing` is not done; done means provider-terminal and files applied.

Retries of failed lines: 5xx, 408/429, `request_timeout` and lines that never ran
(`batch_expired`, `batch_cancelled`, a failed batch's other lines, `token_limit_exceeded`)
become retryable and `submit` puts them in a later shard, up to `settings.max_attempts`
batch attempts (lines that never ran may use twice that, so an always-expiring batch still
stops). Non-retryable lines (other 4xx) are failed with the provider's error verbatim.
Finished lines of expired or cancelled batches are kept (they are billed); only the rest
go again. Usage and cost come from each output line's `usage`, at batch prices.

Poll backoff is kept in memory (`PollSchedule`); after a restart every shard is due at once.
Events: every transition is an event in the store (the store writes status changes; this
path adds `batch.*` events) and `on_progress(kind, data)` is called for each.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import openai

from batchyard.config import ModelInfo, Settings
from batchyard.models import BatchStatus, RequestStatus, Route
from batchyard.orchestrator._calls.failures import classify
from batchyard.orchestrator._calls.retry import RetryPolicy
from batchyard.orchestrator._calls.timing import Clock, Sleep, real_clock, real_sleep
from batchyard.orchestrator._routing.provider_clock import ProviderClock
from batchyard.orchestrator.batch.apply import ApplyOutcome, apply_shard
from batchyard.orchestrator.batch.reconcile import (
    LIVE,
    CancelReport,
    ReconcileReport,
    cancel_run,
    cancel_shards,
    needs_reconcile,
    reconcile,
)
from batchyard.orchestrator.batch.remote import (
    BatchContext,
    CrashHook,
    OnProgress,
    failure_text,
    new_owner,
)
from batchyard.orchestrator.batch.schedule import PollSchedule
from batchyard.orchestrator.batch.submit import SubmitReport, submit_round
from batchyard.shards import ShardLimits
from batchyard.store import Store
from batchyard.store.transitions import PROVIDER_TERMINAL

__all__ = [
    "ApplyOutcome",
    "BatchRunner",
    "CancelReport",
    "PollReport",
    "OnProgress",
    "ReconcileReport",
    "SubmitReport",
    "new_owner",
]


@dataclass
class PollReport:
    """What one `poll` round saw and did."""

    polled: int = 0  # retrieve calls made
    statuses: dict[int, BatchStatus] = field(default_factory=dict)  # shard -> latest status
    applied: list[ApplyOutcome] = field(default_factory=list)
    active: int = 0  # shards still live remotely after this round
    errors: list[str] = field(default_factory=list)


class BatchRunner:
    """Runs the batch path of runs in one store. Safe to use from one event loop."""

    def __init__(
        self,
        store: Store,
        client: openai.AsyncOpenAI,
        models: Mapping[str, ModelInfo],
        settings: Settings,
        *,
        clock: Clock = real_clock,
        sleep: Sleep = real_sleep,
        owner: str | None = None,
        workdir: Path,
        on_progress: OnProgress | None = None,
        policy: RetryPolicy | None = None,
        hook: CrashHook | None = None,
        limits: ShardLimits | None = None,
        provider_clock: ProviderClock | None = None,
    ) -> None:
        self.ctx = BatchContext(
            store=store,
            client=client,
            models=models,
            settings=settings,
            clock=clock,
            sleep=sleep,
            owner=owner or new_owner(),
            workdir=workdir,
            policy=policy or RetryPolicy(),
            on_progress=on_progress,
            hook=hook,
            limits=limits,
            provider_clock=provider_clock,
        )
        self.schedule = PollSchedule(
            settings.poll_min_seconds, settings.poll_max_seconds, record=store.record_poll
        )

    @property
    def store(self) -> Store:
        return self.ctx.store

    async def submit(self, run_id: str, *, requeue: bool = True) -> SubmitReport:
        """Send the run's routed batch work (and re-queued retryables) out in shards."""
        return await submit_round(self.ctx, run_id, requeue=requeue)

    async def poll(self, run_id: str) -> PollReport:
        """Retrieve every live shard that is due; apply the provider-terminal ones."""
        ctx, store = self.ctx, self.ctx.store
        report = PollReport()
        now = ctx.clock()
        marked = store.poll_marks(run_id)  # a webhook said so: poll whatever the backoff says
        for b in store.list_active_batches(run_id):
            status = b.status
            due = self.schedule.due(b.id, now) or b.id in marked
            if b.id in marked:
                store.clear_poll_mark(b.id)
            if b.provider_batch_id and status in LIVE and due:
                try:
                    batch = await ctx.retrieve(b.provider_batch_id)
                except openai.APIError as exc:
                    failure = classify(exc)
                    self.schedule.failed(b.id, now, failure.retry_after)
                    text = f"Polling shard {b.id} failed: {failure_text(exc)}"
                    report.errors.append(text)
                    ctx.event(run_id, "batch.poll_failed", text, shard=b.id)
                    continue
                report.polled += 1
                row = store.update_batch_from_provider(b.id, batch.model_dump(mode="json"))
                status = row.status
                self.schedule.polled(b.id, status, now)
                ctx.event(
                    run_id,
                    "batch.polled",
                    f"Shard {b.id} {status}: {row.counts_completed or 0} done, "
                    f"{row.counts_failed or 0} failed of {row.counts_total or b.request_count}",
                    {
                        "status": status.value,
                        "completed": row.counts_completed,
                        "failed": row.counts_failed,
                        "total": row.counts_total,
                    },
                    shard=b.id,
                    store=False,  # the store already recorded the status and counts
                )
            report.statuses[b.id] = status
            if status in PROVIDER_TERMINAL:
                outcome = await apply_shard(ctx, b.id)
                if outcome is not None:
                    self.schedule.forget(b.id)
                    report.applied.append(outcome)
                    report.statuses[b.id] = BatchStatus.APPLIED
            elif status in LIVE:
                report.active += 1
        return report

    def next_poll_in(self, run_id: str) -> float:
        """Seconds until the next live shard of the run is due (poll_min when unknown)."""
        live = [b.id for b in self.store.list_active_batches(run_id) if b.status in LIVE]
        if not live:
            return self.ctx.settings.poll_min_seconds
        if self.store.poll_marks(run_id) & set(live):
            return 0.0
        now = self.ctx.clock()
        return max(0.0, self.schedule.earliest(live, now) - now)

    async def cancel(self, run_id: str) -> CancelReport:
        """Cancel the run's batch work; finished lines are kept when the shards are applied."""
        return await cancel_run(self.ctx, run_id)

    async def cancel_shards(self, run_id: str, shard_ids: list[int], reason: str) -> CancelReport:
        """Cancel shards for escalation; their unfinished lines come back retryable."""
        return await cancel_shards(self.ctx, run_id, shard_ids, reason)

    async def reconcile(self, run_id: str) -> ReconcileReport:
        """Repair half-done shards after a crash (see `reconcile.py`)."""
        return await reconcile(self.ctx, run_id)

    async def repair(self, run_id: str) -> ReconcileReport | None:
        """`reconcile` when a shard needs it (a process on this host died holding it, or an
        intent was left unresolved); None when nothing does. Cheap enough for every round."""
        if not needs_reconcile(self.ctx, run_id):
            return None
        return await reconcile(self.ctx, run_id)

    def pending(self, run_id: str) -> int:
        """Requests on the batch route that are not finished (any status but terminal)."""
        open_ = (RequestStatus.ROUTED, RequestStatus.SUBMITTED, RequestStatus.RETRYABLE)
        return sum(
            1 for _ in self.store.iter_requests(run_id, statuses=open_, routes=[Route.BATCH])
        )

    async def run(self, run_id: str, *, max_rounds: int = 10_000) -> PollReport:
        """Submit and poll (sleeping between rounds) until no batch work can progress.

        Stops when no shard is active and a submit round sent nothing: every batch request
        is then finished, or waiting on something only the caller can change (re-routing).
        """
        total = PollReport()
        for _ in range(max_rounds):
            sent = await self.submit(run_id)
            report = await self.poll(run_id)
            total.polled += report.polled
            total.applied.extend(report.applied)
            total.statuses.update(report.statuses)
            total.errors.extend(report.errors)
            live = [b for b in self.store.list_active_batches(run_id) if b.status in LIVE]
            if not live and not sent.shards and not report.applied:
                total.active = 0
                return total
            if report.applied:
                continue  # re-queued lines can go out at once
            await self.ctx.sleep(self.next_poll_in(run_id))
        total.active = len(self.store.list_active_batches(run_id))
        return total
