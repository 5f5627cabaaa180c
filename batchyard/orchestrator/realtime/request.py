"""How the real-time runner handles one claimed request, from admission to its result.

Owns `RequestHandler`, which works on one `Job` (`job.py`: a claim plus its tier, body and
token charge) with what a `RealtimeContext` gives it: admission, the call, retries through
`_retry.py` (each failed send goes to `sends.py`'s `SendLog`: when it goes again, its
attempt row, stalls), the breaker, flex waits and fallback, and the outcome (succeeded, failed, or
`SetAside`: deferred, released, re-routed) buffered for a group commit to the store.
`runner.py` holds the dispatch loop and the public API; see its docstring for the
behaviour. No SQL, no printing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass

import openai

from batchyard.models import RequestStatus, Route, Tier
from batchyard.orchestrator._retry import (
    STOP_KINDS,
    Failure,
    FailureKind,
    Verdict,
    classify,
    retrying,
    stop_error,
)
from batchyard.orchestrator._routing.fallback import fall_back_refused, is_refused
from batchyard.orchestrator.realtime.admission import RateLimitAdmission, Sent
from batchyard.orchestrator.realtime.breaker import CircuitBreaker
from batchyard.orchestrator.realtime.call import Answer, prepared_body, send, usage_of
from batchyard.orchestrator.realtime.context import RealtimeContext
from batchyard.orchestrator.realtime.headers import RateView
from batchyard.orchestrator.realtime.job import Job, Phase, bucket
from batchyard.orchestrator.realtime.sends import SendLog
from batchyard.orchestrator.realtime.types import FlexFallback, StopReason
from batchyard.store import Result

__all__ = ["Job", "Phase", "RequestHandler", "SetAside"]

_FAULTS = (FailureKind.SERVER, FailureKind.CONNECTION, FailureKind.TIMEOUT)


@dataclass(frozen=True, slots=True)
class SetAside:
    """The request left this claim without a result: deferred, released or re-routed."""

    how: str  # "deferred", "released" or "rerouted"


class RequestHandler:
    """Per-request behaviour of the real-time path, on one explicit `RealtimeContext`."""

    def __init__(self, ctx: RealtimeContext) -> None:
        self.ctx = ctx
        self.sends = SendLog(ctx)

    # ---- one request ---------------------------------------------------------------------
    async def process(self, job: Job) -> None:
        """Take one claimed request to its outcome; the result joins the group commit."""
        self.ctx.run.in_flight += 1
        try:
            if job.claim.endpoint not in (
                "/v1/chat/completions",
                "/v1/responses",
                "/v1/embeddings",
            ):
                self._finish_failed(
                    job,
                    None,
                    "unsupported_endpoint",
                    (f"The real-time path cannot send {job.claim.endpoint}; route it to batch."),
                )
                return
            try:
                outcome = await self._with_retries(job)
            except openai.APIError as exc:
                failure = classify(exc)
                if not self._fell_back(job, failure):
                    self._after_retries(job, failure)
                return
            if isinstance(outcome, Answer):
                self._succeed(job, outcome)
        finally:
            self.ctx.run.in_flight -= 1

    async def _with_retries(self, job: Job) -> Answer | SetAside:
        retries = self.sends.retries(job)

        def on_retry(failure: Failure, number: int, delay: float) -> None:
            self.sends.retried(job, failure, number, delay)

        async for attempt in retrying(
            retries, sleep=self.ctx.sleep, on_retry=on_retry, decided=True
        ):
            with attempt:
                try:
                    return await self._attempt(job)
                except openai.APIError as exc:
                    self.sends.failed(job, classify(exc))
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def _attempt(self, job: Job) -> Answer | SetAside:
        """One call (plus waiting out flex unavailability), or the request set aside
        (released, deferred, handed to batch); SDK errors propagate."""
        ctx, model = self.ctx, job.claim.model
        while True:
            if ctx.run.halt.is_set():
                return self._release(job)
            if (
                job.tier is Tier.FLEX
                and self.ctx.flex_down_until.get(model, 0.0) > self.ctx.clock()
            ):
                aside = self._flex_fall_back(job, "flex unavailable for this model recently")
                if aside is not None:
                    return aside
            breaker = self.ctx.breaker(model)
            if not breaker.allow():
                return self._defer(
                    job,
                    breaker.retry_at() or self.ctx.clock() + breaker.timeout,
                    "circuit_open",
                    f"{model} keeps failing; the circuit is open.",
                    f"circuit_open: {model} failed {breaker.failure_threshold} times in a row",
                )
            admission = self.ctx.admission[model, bucket(job.tier)]
            job.phase = Phase.WAITING
            sent: Sent | None = None
            try:
                async with admission.slot(job.charge, retry=job.calls > 0) as sent:
                    if self.ctx.run.halt.is_set():  # quota ran out while we waited our turn
                        return self._release(job)
                    job.phase = Phase.CALLING
                    job.calls += 1
                    answer = await self._send(job)
            except openai.APIError as exc:
                job.phase = Phase.WAITING
                failure = classify(exc)
                self._note_failure(job, admission, breaker, failure, exc, sent)
                if failure.kind is not FailureKind.FLEX_UNAVAILABLE:
                    raise
                decision = self.sends.retries(job).decide(failure)
                delay = decision.wait
                self.sends.record(job, failure, decision)
                if job.flex_waited + delay > self.ctx.options.flex_max_wait:
                    self.ctx.flex_down_until[model] = (
                        self.ctx.clock() + self.ctx.options.flex_cooldown
                    )
                    aside = self._flex_fall_back(
                        job, f"flex unavailable for {job.flex_waited:.0f}s"
                    )
                    if aside is not None:
                        return aside
                    continue
                job.flex_waited += delay
                job.flex_tries += 1
                await self.ctx.sleep(delay)
                continue
            job.phase = Phase.WAITING
            admission.observe(answer.headers, sent)
            self._limits_seen(job, answer.headers)
            breaker.record_success()
            self.sends.answered()
            return answer

    async def _send(self, job: Job) -> Answer:
        """The call itself; its latency (on the injected clock) and, when it fails, the
        failure's kind go to the metrics."""
        ctx, claim = self.ctx, job.claim
        client = ctx.flex_client if job.tier is Tier.FLEX else ctx.client
        started = ctx.clock()
        try:
            answer = await send(client, claim.endpoint, job.body, claim.custom_id)
        except openai.APIError as exc:
            kind = classify(exc).kind.value
            ctx.metrics.observe_call(claim.model, claim.route.value, ctx.clock() - started, kind)
            raise
        ctx.metrics.observe_call(claim.model, claim.route.value, ctx.clock() - started, None)
        return answer

    def _limits_seen(self, job: Job, headers: Mapping[str, str]) -> None:
        view = RateView.from_headers(headers)
        self.ctx.metrics.observe_limits(
            job.claim.model, bucket(job.tier).value, view.remaining_requests, view.remaining_tokens
        )

    def _note_failure(
        self,
        job: Job,
        admission: RateLimitAdmission,
        breaker: CircuitBreaker,
        failure: Failure,
        exc: openai.APIError,
        sent: Sent | None,
    ) -> None:
        headers: Mapping[str, str] = (
            exc.response.headers if isinstance(exc, openai.APIStatusError) else {}
        )
        self._limits_seen(job, headers)
        if failure.kind in _FAULTS:
            breaker.record_failure()
        else:
            breaker.release_probe()
        if failure.retryable:
            self.sends.stalling(job, failure)
        if failure.kind is FailureKind.RATE_LIMIT:
            self.ctx.run.report.rate_limited += 1
            admission.penalize(failure.retry_after, headers, sent)
            self.ctx.emit("rate_limited", failure.message, job.claim.custom_id, job.claim.model)
        elif headers:
            admission.observe(headers, sent)
        if failure.kind in STOP_KINDS and not self.ctx.run.halt.is_set():
            error = stop_error(failure)
            self.ctx.stop_error = error
            self.ctx.run.report.stopped = StopReason.QUOTA
            self.ctx.run.report.message = str(error)
            self.ctx.emit("quota", str(error), job.claim.custom_id, job.claim.model)
            self.ctx.run.halt.set()

    # ---- outcomes ------------------------------------------------------------------------
    def _succeed(self, job: Job, answer: Answer) -> None:
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

    def _fell_back(self, job: Job, failure: Failure) -> bool:
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
            self._finish_failed(job, failure, failure.code or "model_not_found", found.failed[cid])
        elif cid in found.moved:
            job.settled = True
            ctx.emit(
                "fallback", f"{cid}: {row.model} refused; sent to its fallback", cid, row.model
            )
        return cid in found.failed or cid in found.moved

    def _after_retries(self, job: Job, failure: Failure) -> None:
        if failure.kind in STOP_KINDS:
            self._release_now(job)
            return
        decision = job.retries.last if job.retries is not None else None
        if decision is not None and decision.verdict is Verdict.DEFER:
            self._defer(
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
        self._finish_failed(job, failure, failure.code or str(failure.kind), message)

    def _finish_failed(self, job: Job, failure: Failure | None, code: str, message: str) -> None:
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

    def _defer(
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

    def _release(self, job: Job) -> SetAside:
        self._release_now(job)
        return SetAside("released")

    def _release_now(self, job: Job) -> None:
        self.flush()  # its failed sends first: the release closes the send after them
        self.ctx.run.report.released += self.ctx.store.release_realtime(
            self.ctx.run.run_id, self.ctx.owner, [job.claim.custom_id]
        )
        job.settled = True

    def _flex_fall_back(self, job: Job, why: str) -> SetAside | None:
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
