"""Applying a finished provider batch: its output and error files, or its failure.

Owns `apply_shard`: under the store's apply lease (so two processes never apply one shard),
stream the output and error files to the workdir, map each line by `custom_id` (order is
not guaranteed) to a `Result` (`lines.result_from_line`), apply them in chunks with
the shard given (a late file cannot overwrite a newer attempt), then `mark_applied`, which
turns requests that got no line into retryable (`batch_incomplete`). Re-applying after a
crash mid-way is safe: the store counts already-applied results as duplicates.

A `failed` batch has no files: its `errors.data` line errors are attached to the requests
at those 1-based lines of the shard file (FAILED, the provider's message verbatim); the
other requests, which never ran, become retryable (`batch_not_run`). `token_limit_exceeded`
re-queues the whole shard (`token_limit_exceeded`, not counted as an attempt) and records
the learned queue limit. A missing input file re-queues; any other batch-level failure fails
the shard's requests with the provider's message and is surfaced as a `batch.failed` event.
A `completed` batch with no output file is a batch whose lines all failed, not a success.

When the run is being cancelled, requests left retryable by the shard become cancelled.
The remote input file is deleted once the shard is applied (never left behind). It must not
submit or poll.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

from batchyard.errors import NotFound
from batchyard.models import BatchStatus, RequestStatus, Route, RunState
from batchyard.orchestrator._answers.checks import Judge
from batchyard.orchestrator._routing.fallback import batch_refusals, fall_back_refused
from batchyard.orchestrator.batch.lines import line_errors, result_from_line
from batchyard.orchestrator.batch.remote import BatchContext
from batchyard.orchestrator.batch.submit import LIMIT_EVENT, queue_limit
from batchyard.shards import learn_limit
from batchyard.store import ApplyReport, BatchRow, FileKind, Result, Store, chunked

__all__ = ["ApplyOutcome", "apply_shard"]

B = BatchStatus


@dataclass(frozen=True)
class ApplyOutcome:
    shard: int
    status: BatchStatus  # the provider-terminal status that was applied
    report: ApplyReport
    leftover: int  # requests without any line, now retryable
    bad_lines: int  # lines that could not be read


async def _apply_file(
    ctx: BatchContext, b: BatchRow, file_id: str, kind: FileKind, bad: list[str]
) -> ApplyReport:
    store = ctx.store
    ctx.workdir.mkdir(parents=True, exist_ok=True)
    dest = ctx.workdir / f"batchyard-{b.run_id}-s{b.id}-{kind}.jsonl"
    size, sha = await ctx.download(file_id, dest)
    store.record_downloaded_file(
        b.run_id, b.id, kind, remote_id=file_id, local_path=str(dest), bytes=size, sha256=sha
    )
    model = ctx.models.get(b.model)

    def results() -> Iterator[Result]:
        with dest.open("rb") as fh:
            for number, raw in enumerate(fh, 1):
                if not raw.strip():
                    continue
                try:
                    yield result_from_line(json.loads(raw), shard=b.id, model=model)
                except ValueError as exc:
                    bad.append(f"{kind} file {file_id} line {number}: {exc}")

    report = ApplyReport()
    judge = ctx.judge_for(b.run_id)
    for chunk in chunked(results(), ctx.apply_chunk):
        chunk, refused = batch_refusals(store, b.run_id, b.id, chunk)
        report += store.apply_results(b.run_id, _judged(store, judge, b, chunk))
        if refused:  # lines refused for their model mid-batch go to their fallback
            fall_back_refused(store, ctx.models, store.get_run(b.run_id), refused, batch=True)
        ctx.step("applying", b.id)
    dest.unlink(missing_ok=True)
    return report


def _judged(store: Store, judge: Judge, b: BatchRow, chunk: list[Result]) -> list[Result]:
    """The chunk with every succeeded answer checked against its request."""
    if not judge.checks:
        return chunk
    ids = [r.custom_id for r in chunk if r.status is RequestStatus.SUCCEEDED]
    try:
        bodies = store.get_bodies(b.run_id, ids)
    except NotFound:  # a line naming no request of the run: the store counts it unknown
        bodies = {}
    return [
        judge.judge(r, b.endpoint, bodies[r.custom_id], b.model) if r.custom_id in bodies else r
        for r in chunk
    ]


def _failed_results(ctx: BatchContext, b: BatchRow) -> list[Result]:
    """Outcomes for the requests of a batch that failed before running any line."""
    by_line, general = line_errors(b.errors)
    members = list(ctx.store.iter_requests(b.run_id, shard=b.id))  # file order = line order
    where = f"batch {b.provider_batch_id} (shard {b.id})"

    def result(cid: str, status: RequestStatus, code: str | None, message: str) -> Result:
        return Result(
            cid, status, error_code=code, error_message=message, shard=b.id, route=Route.BATCH
        )

    if by_line:
        out = []
        for number, req in enumerate(members, 1):
            errs = by_line.get(number)
            if errs:
                message = " ".join(str(e.get("message") or e.get("code")) for e in errs)
                out.append(
                    result(
                        req.custom_id,
                        RequestStatus.FAILED,
                        str(errs[0].get("code") or "invalid_request"),
                        message,
                    )
                )
            else:
                out.append(
                    result(
                        req.custom_id,
                        RequestStatus.RETRYABLE,
                        "batch_not_run",
                        f"Not run: {where} failed validation on other lines; "
                        "it will be re-submitted.",
                    )
                )
        ctx.event(
            b.run_id,
            "batch.failed",
            f"Shard {b.id} failed validation: {len(by_line)} invalid line(s); "
            "their requests failed with the provider's message, the rest are re-queued",
            {"lines": sorted(by_line)[:20]},
            shard=b.id,
        )
        return out
    codes = {str(e.get("code")) for e in general}
    message = "; ".join(str(e.get("message")) for e in general) or "no reason given"
    if "token_limit_exceeded" in codes:
        current = queue_limit(ctx, b.run_id, b.model) or 0
        tokens = b.planned_tokens
        limit = learn_limit(current or tokens, tokens, message)
        ctx.event(
            b.run_id,
            LIMIT_EVENT,
            f"{b.model}'s batch queue is full ({message}); shard {b.id} is re-queued and "
            f"shards are now planned within {limit:,} enqueued tokens",
            {"model": b.model, "limit": limit},
            shard=b.id,
        )
        return [
            result(r.custom_id, RequestStatus.RETRYABLE, "token_limit_exceeded", message)
            for r in members
        ]
    missing_file = any(e.get("param") == "file_id" for e in general)
    status = RequestStatus.RETRYABLE if missing_file or not general else RequestStatus.FAILED
    text = f"The provider failed {where}: {message}"
    ctx.event(b.run_id, "batch.failed", text, {"errors": general[:5]}, shard=b.id)
    code = "batch_not_run" if status == RequestStatus.RETRYABLE else "batch_failed"
    return [result(r.custom_id, status, code, text) for r in members]


async def apply_shard(ctx: BatchContext, shard: int) -> ApplyOutcome | None:
    """Download and apply one provider-terminal shard; None if not ours to apply now."""
    store = ctx.store
    if not store.claim_batch_for_apply(shard, ctx.owner):
        return None
    b = store.get_batch(shard)
    report = ApplyReport()
    bad: list[str] = []
    try:
        if b.status == B.FAILED and not (b.output_file_id or b.error_file_id):
            failed, refused = batch_refusals(store, b.run_id, b.id, _failed_results(ctx, b))
            report += store.apply_results(b.run_id, failed)
            if refused:  # lines whose model the Batch API refused go to their fallback
                run = store.get_run(b.run_id)
                fall_back_refused(store, ctx.models, run, refused, batch=True)
            ctx.step("applying", shard)
        for file_id, kind in (
            (b.output_file_id, FileKind.OUTPUT),
            (b.error_file_id, FileKind.ERROR),
        ):
            if file_id:
                report += await _apply_file(ctx, b, file_id, kind, bad)
    except BaseException:
        # Keep the lease only while it is useful: a crash leaves it to expire; an error in
        # this process gives it back so the next poll retries at once.
        store.release_batch_claim(shard, ctx.owner)
        raise
    if bad:
        ctx.event(
            b.run_id,
            "batch.bad_lines",
            f"{len(bad)} unreadable line(s) in shard {shard}",
            {"first": bad[:5]},
            shard=shard,
        )
    leftover = store.mark_applied(shard, ctx.owner, leftover=RequestStatus.RETRYABLE)
    if b.status == B.COMPLETED and not b.output_file_id:
        ctx.event(
            b.run_id,
            "batch.all_failed",
            f"Batch {b.provider_batch_id} (shard {shard}) completed with no output file: "
            "every line failed",
            shard=shard,
        )
    if store.get_run(b.run_id).state in (RunState.CANCELLING, RunState.CANCELLED):
        _cancel_leftovers(ctx, b)
    if b.input_file_id and b.input_file_row is not None and await ctx.delete_file(b.input_file_id):
        store.mark_file_deleted(b.input_file_row)
    ctx.event(
        b.run_id,
        "batch.done",
        f"Shard {shard} ({b.status}): {report.applied} result(s) applied, "
        f"{leftover} without a line",
        {"applied": report.applied, "leftover": leftover, "cost": report.cost},
        shard=shard,
        store=False,
    )
    return ApplyOutcome(shard, b.status, report, leftover, len(bad))


def _cancel_leftovers(ctx: BatchContext, b: BatchRow) -> None:
    ids = [
        r.custom_id
        for r in ctx.store.iter_requests(b.run_id, shard=b.id, statuses=[RequestStatus.RETRYABLE])
    ]
    if ids:
        ctx.store.transition_requests(
            b.run_id,
            ids,
            RequestStatus.CANCELLED,
            error_code="run_cancelled",
            error_message="The run was cancelled before this request finished.",
        )
