"""What becomes of one claimed real-time request, and the group commit that records it.

Owns `Outcomes` (on one `RealtimeContext`): a request succeeded (its checks judged, its
cost counted), failed, deferred (`not_before` and the reason), released, moved to the run's
fallback model, or sent at standard tier or handed to batch when flex is unavailable;
`SetAside` is the return value of a request that left its claim without a result. Results
are buffered and written together (`flusher`, `flush`). `request.py`'s `RequestHandler`
decides which outcome applies. No SQL, no printing.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from batchyard.models import RequestStatus, Route, Tier
from batchyard.orchestrator._calls.retry import STOP_KINDS, Failure, Verdict
from batchyard.orchestrator._routing.fallback import fall_back_refused, is_refused
from batchyard.orchestrator.realtime.call import Answer, prepared_body, usage_of
from batchyard.orchestrator.realtime.context import RealtimeContext
from batchyard.orchestrator.realtime.job import Job, bucket
from batchyard.orchestrator.realtime.types import FlexFallback
from batchyard.store import Result

__all__ = ["Outcomes", "SetAside"]


@dataclass(frozen=True, slots=True)
class SetAside:
    """The request left this claim without a result: deferred, released or re-routed."""

    how: str  # "deferred", "released" or "rerouted"


class Outcomes:
    """The outcomes of one real-time request, on one explicit `RealtimeContext`."""

    def __init__(self, ctx: RealtimeContext) -> None:
        self.ctx = ctx

    def succeed(self, job: Job, answer: Answer) -> None:
        claim = job.claim
        usage = usage_of(claim.endpoint, answer.body, job.tier)
        self.ctx.admission[claim.model, bucket(job.tier)].settle(
            job.charge, usage.input_tokens + job.output_cap
        )
        info = self.ctx.models.find(claim.model)
        cost = info.cost(usage.tier, usage.billed) if info else 0.0
        report = self.ctx.run.report
        report.input_tokens += usage.input_tokens
        report.output_tokens += usage.output_tokens
        report.cost += cost
        result = self.ctx.judges.for_run(self.ctx.run.run_id).judge(
            Result(
                claim.custom_id,
                RequestStatus.SUCCEEDED,
                status_code=answer.status_code,
                response_body=answer.body,
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
                cost=cost,
                request_id=answer.headers.get("x-request-id"),
            ),
            claim.endpoint,
            claim.body,
            claim.model,
        )
        self._commit(job, result)
        if result.status is RequestStatus.SUCCEEDED:
            report.succeeded += 1
            self.ctx.emit("succeeded", f"{claim.custom_id} succeeded", claim.custom_id, claim.model)
        else:
            report.requeued += 1
            message = f"{claim.custom_id}: {result.error_code}: {result.error_message}"
            self.ctx.emit("check_failed", message, claim.custom_id, claim.model)

    def fell_back(self, job: Job, failure: Failure) -> bool:
        """A refused model: the line moves to the run's fallback model (the next claim
        sends it), or fails naming both errors if it was on its fallback already. False:
        no fallback applies; the failure is handled as any other."""
        if not is_refused(failure.status_code, failure.code, failure.message):
            return False
        ctx, cid = self.ctx, job.claim.custom_id
        self.flush()  # its failed sends first, while it is still this claim's
        row = ctx.store.get_request(ctx.run.run_id, cid)
        run = ctx.store.get_run(ctx.run.run_id)
        found = fall_back_refused(
            ctx.store, ctx.models, run, [(row, failure.message)], owner=ctx.owner
        )
        if cid in found.failed:
            self.finish_failed(job, failure, failure.code or "model_not_found", found.failed[cid])
        elif cid in found.moved:
            job.settled = True
            ctx.emit(
                "fallback", f"{cid}: {row.model} refused; sent to its fallback", cid, row.model
            )
        return cid in found.failed or cid in found.moved

    def after_retries(self, job: Job, failure: Failure) -> None:
        if failure.kind in STOP_KINDS:
            self._release_now(job)
            return
        decision = job.retries.last if job.retries is not None else None
        if decision is not None and decision.verdict is Verdict.DEFER:
            self.defer(
                job,
                self.ctx.clock() + decision.wait,
                failure.code or str(failure.kind),
                failure.message,
                decision.reason,
                str(failure.kind),
                failure.status_code,
            )
            return
        message = failure.message
        if failure.retryable:
            message = f"{message} (gave up after {job.claim.attempt - 1 + job.calls} attempts)"
        self.finish_failed(job, failure, failure.code or str(failure.kind), message)

    def finish_failed(self, job: Job, failure: Failure | None, code: str, message: str) -> None:
        self.ctx.run.report.failed += 1
        body = {"error": failure.body} if failure and failure.body else None
        self._commit(
            job,
            Result(
                job.claim.custom_id,
                RequestStatus.FAILED,
                status_code=failure.status_code if failure else None,
                response_body=body,
                error_code=code,
                error_message=message,
                request_id=failure.request_id if failure else None,
                error_kind=str(failure.kind) if failure and failure.retryable else None,
            ),
        )
        self.ctx.emit("failed", message, job.claim.custom_id, job.claim.model)

    def defer(
        self,
        job: Job,
        not_before: float,
        code: str,
        message: str,
        reason: str,
        kind: str | None = None,
        status_code: int | None = None,
    ) -> SetAside:
        self.ctx.run.report.deferred += 1
        self._commit(
            job,
            Result(
                job.claim.custom_id,
                RequestStatus.RETRYABLE,
                status_code=status_code,
                error_code=code,
                error_message=message,
                not_before=not_before,
                wait_reason=reason,
                error_kind=kind,
            ),
        )
        self.ctx.emit("deferred", message, job.claim.custom_id, job.claim.model)
        return SetAside("deferred")

    def release(self, job: Job) -> SetAside:
        self._release_now(job)
        return SetAside("released")

    def _release_now(self, job: Job) -> None:
        self.flush()  # its failed sends first: the release closes the send after them
        self.ctx.run.report.released += self.ctx.store.release_realtime(
            self.ctx.run.run_id, self.ctx.owner, [job.claim.custom_id]
        )
        job.settled = True

    def flex_fall_back(self, job: Job, why: str) -> SetAside | None:
        """None: send it again at the standard tier; else it was handed to batch."""
        claim = job.claim
        if self.ctx.run.fallback is FlexFallback.STANDARD:
            job.tier = Tier.DEFAULT
            job.body = prepared_body(claim.body, Tier.DEFAULT)
            self.ctx.run.report.to_standard += 1
            self.ctx.emit(
                "fallback",
                f"{claim.custom_id}: {why}; sending at standard tier",
                claim.custom_id,
                claim.model,
            )
            return None
        reason = f"{why}; handed to the Batch API (flex fallback policy: batch)"
        self.flush()
        self.ctx.store.release_realtime(self.ctx.run.run_id, self.ctx.owner, [claim.custom_id])
        self.ctx.store.set_routes(self.ctx.run.run_id, [(claim.custom_id, Route.BATCH, reason)])
        job.settled = True
        self.ctx.run.report.to_batch += 1
        self.ctx.emit("fallback", f"{claim.custom_id}: {reason}", claim.custom_id, claim.model)
        return SetAside("rerouted")

    # ---- durability --------------------------------------------------------------------
    def _commit(self, job: Job, result: Result) -> None:
        self.ctx.run.buffer.append(result)
        job.settled = True
        self.ctx.run.flush_wanted.set()

    async def flusher(self) -> None:
        """Group commit: write whatever results arrived since the last write, at once."""
        while True:
            await self.ctx.run.flush_wanted.wait()
            self.ctx.run.flush_wanted.clear()
            await asyncio.sleep(0)  # let results completing in this tick join the group
            self.flush()

    def flush(self) -> None:
        run = self.ctx.run
        if not run.buffer and not run.sends:
            return
        results, run.buffer = run.buffer, []
        sends, run.sends = run.sends, []
        self.ctx.store.finish_realtime(run.run_id, self.ctx.owner, results, sends)
