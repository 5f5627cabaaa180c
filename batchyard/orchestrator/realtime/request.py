"""How the real-time runner handles one claimed request, from admission to its result.

Owns `RequestHandler`, which works on one `Job` (`job.py`: a claim plus its tier, body and
token charge) with what a `RealtimeContext` gives it: admission, the call, retries through
`_retry.py` (each failed send goes to `sends.py`'s `SendLog`: when it goes again, its
attempt row, stalls), the breaker and flex waits. What becomes of the request (succeeded,
failed, or `SetAside`: deferred, released, re-routed) is `outcomes.py`'s `Outcomes`, which
buffers it for a group commit to the store.
`runner.py` holds the dispatch loop and the public API; see its docstring for the
behaviour. No SQL, no printing.
"""

from __future__ import annotations

from collections.abc import Mapping

import openai

from batchyard.models import Tier
from batchyard.orchestrator._calls.retry import (
    STOP_KINDS,
    Failure,
    FailureKind,
    classify,
    retrying,
    stop_error,
)
from batchyard.orchestrator.realtime.admission import RateLimitAdmission, Sent
from batchyard.orchestrator.realtime.breaker import CircuitBreaker
from batchyard.orchestrator.realtime.call import Answer, send
from batchyard.orchestrator.realtime.context import RealtimeContext
from batchyard.orchestrator.realtime.headers import RateView
from batchyard.orchestrator.realtime.job import Job, Phase, bucket
from batchyard.orchestrator.realtime.outcomes import Outcomes, SetAside
from batchyard.orchestrator.realtime.sends import SendLog
from batchyard.orchestrator.realtime.types import StopReason

__all__ = ["Job", "Phase", "RequestHandler"]

_FAULTS = (FailureKind.SERVER, FailureKind.CONNECTION, FailureKind.TIMEOUT)


class RequestHandler:
    """Per-request behaviour of the real-time path, on one explicit `RealtimeContext`."""

    def __init__(self, ctx: RealtimeContext) -> None:
        self.ctx = ctx
        self.sends = SendLog(ctx)
        self.outcomes = Outcomes(ctx)

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
                self.outcomes.finish_failed(
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
                if not self.outcomes.fell_back(job, failure):
                    self.outcomes.after_retries(job, failure)
                return
            if isinstance(outcome, Answer):
                self.outcomes.succeed(job, outcome)
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
                return self.outcomes.release(job)
            if (
                job.tier is Tier.FLEX
                and self.ctx.flex_down_until.get(model, 0.0) > self.ctx.clock()
            ):
                aside = self.outcomes.flex_fall_back(
                    job, "flex unavailable for this model recently"
                )
                if aside is not None:
                    return aside
            breaker = self.ctx.breaker(model)
            if not breaker.allow():
                return self.outcomes.defer(
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
                        return self.outcomes.release(job)
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
                    aside = self.outcomes.flex_fall_back(
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
