"""How the real-time runner handles one claimed request, from admission to its result.

Owns `RequestHandler`, the half of `RealtimeRunner` that works on one `Job` (a claim plus
its tier, body and token charge): admission, the call, retries through `retry.py`, the
breaker, flex waits and fallback, and the outcome (succeeded, failed, deferred, released,
re-routed) buffered for a group commit to the store. `realtime.py` holds the dispatch loop
and the public API; see its docstring for the behaviour. No SQL, no printing.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Mapping
from enum import StrEnum

import openai

from batchyard import tokens
from batchyard.catalog import Catalog
from batchyard.config import Settings
from batchyard.errors import DispatchStopped
from batchyard.models import RequestStatus, Route, Tier
from batchyard.orchestrator.admission import AdmissionTable, ModelAdmission
from batchyard.orchestrator.answer_checks import Judges
from batchyard.orchestrator.breaker import CircuitBreaker
from batchyard.orchestrator.realtime_call import Answer, prepared_body, send, usage_of
from batchyard.orchestrator.realtime_types import (
    FlexFallback,
    OnProgress,
    Progress,
    RealtimeOptions,
    RealtimeReport,
    StopReason,
)
from batchyard.orchestrator.retry import (
    STOP_KINDS,
    Failure,
    FailureKind,
    RetryPolicy,
    backoff,
    classify,
    retrying,
    stop_error,
)
from batchyard.orchestrator.timing import Clock, Sleep
from batchyard.store import Claim, Result, Store

__all__ = ["Job", "Phase", "RequestHandler", "SetAside"]

_FAULTS = (FailureKind.SERVER, FailureKind.CONNECTION, FailureKind.TIMEOUT)
_TIERS = {Route.FLEX: Tier.FLEX, Route.FAST: Tier.FAST}


def _bucket(tier: Tier) -> str:
    """The rate-limit pool a tier draws on: fast shares the standard tier's (OpenAI)."""
    return Tier.DEFAULT.value if tier is Tier.FAST else tier.value


class Phase(StrEnum):
    WAITING = "waiting"  # not calling right now: admission, backoff (safe to release)
    CALLING = "calling"  # a call is on the wire


class SetAside(Exception):
    """The request leaves this claim without a result: deferred, released or re-routed."""


class Job:
    __slots__ = (
        "body",
        "calls",
        "charge",
        "claim",
        "flex_tries",
        "flex_waited",
        "output_cap",
        "phase",
        "prompt",
        "settled",
        "tier",
    )

    def __init__(self, claim: Claim) -> None:
        self.claim = claim
        self.tier = _TIERS.get(claim.route, Tier.DEFAULT)
        self.body = prepared_body(claim.body, self.tier)
        count = tokens.count_request(claim.endpoint, claim.body)
        self.prompt = count.prompt
        self.output_cap = count.output or 0
        self.charge = self.prompt + self.output_cap
        self.calls = 0
        self.flex_tries = 0
        self.flex_waited = 0.0
        self.phase = Phase.WAITING
        self.settled = False


class RequestHandler:
    """Per-request behaviour of `RealtimeRunner`; the runner sets every attribute."""

    store: Store
    client: openai.AsyncOpenAI
    flex_client: openai.AsyncOpenAI
    models: Catalog
    judges: Judges
    settings: Settings
    clock: Clock
    sleep: Sleep
    owner: str
    on_progress: OnProgress | None
    options: RealtimeOptions
    policy: RetryPolicy
    admission: AdmissionTable
    breakers: dict[str, CircuitBreaker]
    quota_exhausted: bool  # dispatch stopped: quota used up, or the key or URL refused
    _stop_error: DispatchStopped | None
    _flex_down_until: dict[str, float]
    _buffer: list[Result]
    _flush_wanted: asyncio.Event
    _halt: asyncio.Event
    _fallback: FlexFallback
    _report: RealtimeReport
    _run_id: str
    _in_flight: int

    def breaker(self, model: str) -> CircuitBreaker:
        found = self.breakers.get(model)
        if found is None:
            found = CircuitBreaker(
                self.clock,
                failure_threshold=self.options.breaker_threshold,
                reset_timeout=self.options.breaker_timeout,
                on_change=lambda old, new: self._emit(
                    "breaker", f"{model}: circuit {old} -> {new}", None, model
                ),
            )
            self.breakers[model] = found
        return found

    # ---- one request ---------------------------------------------------------------------
    async def _process(self, job: Job) -> None:
        self._in_flight += 1
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
                answer = await self._with_retries(job)
            except SetAside:
                return
            except openai.APIError as exc:
                self._after_retries(job, classify(exc))
                return
            self._succeed(job, answer)
        finally:
            self._in_flight -= 1

    async def _with_retries(self, job: Job) -> Answer:
        left = max(1, self.policy.max_attempts - (job.claim.attempt - 1))

        def on_retry(failure: Failure, number: int, delay: float) -> None:
            # The claim's attempt row records the final outcome; each failed call within
            # it is recorded here, in the run's history.
            self._report.retries += 1
            message = f"{failure.kind}: {failure.message} (retry in {delay:.2f}s)"
            self.store.add_event(
                self._run_id,
                "realtime.retry",
                message,
                {
                    "call": number,
                    "kind": str(failure.kind),
                    "status_code": failure.status_code,
                    "error_code": failure.code,
                    "delay": delay,
                    "tier": job.tier.value,
                },
                custom_id=job.claim.custom_id,
            )
            self._emit("retry", message, job.claim.custom_id, job.claim.model)

        async for attempt in retrying(
            self.policy,
            sleep=self.sleep,
            on_retry=on_retry,
            delay=self._retry_delay,
            max_attempts=left,
        ):
            with attempt:
                return await self._attempt(job)
        raise AssertionError("unreachable")  # pragma: no cover

    def _retry_delay(self, failure: Failure, number: int) -> float:
        if failure.kind is FailureKind.RATE_LIMIT:
            return 0.0  # the model's admission is paused already; queue behind it
        if failure.retry_after is not None:
            return failure.retry_after * self.options.provider_time_scale
        return backoff(number, self.policy)

    async def _attempt(self, job: Job) -> Answer:
        """One call (plus waiting out flex unavailability); SDK errors propagate."""
        model = job.claim.model
        while True:
            if self._halt.is_set():
                self._release(job)
            if job.tier is Tier.FLEX and self._flex_down_until.get(model, 0.0) > self.clock():
                self._flex_fall_back(job, "flex unavailable for this model recently")
            breaker = self.breaker(model)
            if not breaker.allow():
                self._defer(
                    job,
                    breaker.retry_at() or self.clock() + breaker.timeout,
                    "circuit_open",
                    f"{model} keeps failing; the circuit is open.",
                )
            admission = self.admission[model, _bucket(job.tier)]
            job.phase = Phase.WAITING
            try:
                async with admission.slot(job.charge):
                    if self._halt.is_set():  # quota ran out while we waited our turn
                        self._release(job)
                    job.phase = Phase.CALLING
                    job.calls += 1
                    client = self.flex_client if job.tier is Tier.FLEX else self.client
                    answer = await send(client, job.claim.endpoint, job.body, job.claim.custom_id)
            except openai.APIError as exc:
                job.phase = Phase.WAITING
                failure = classify(exc)
                self._note_failure(job, admission, breaker, failure, exc)
                if failure.kind is not FailureKind.FLEX_UNAVAILABLE:
                    raise
                delay = self._retry_delay(failure, job.flex_tries + 1)
                if job.flex_waited + delay > self.options.flex_max_wait:
                    self._flex_down_until[model] = self.clock() + self.options.flex_cooldown
                    self._flex_fall_back(job, f"flex unavailable for {job.flex_waited:.0f}s")
                    continue
                job.flex_waited += delay
                job.flex_tries += 1
                await self.sleep(delay)
                continue
            job.phase = Phase.WAITING
            admission.observe(answer.headers)
            breaker.record_success()
            return answer

    def _note_failure(
        self,
        job: Job,
        admission: ModelAdmission,
        breaker: CircuitBreaker,
        failure: Failure,
        exc: openai.APIError,
    ) -> None:
        headers: Mapping[str, str] = (
            exc.response.headers if isinstance(exc, openai.APIStatusError) else {}
        )
        if failure.kind in _FAULTS:
            breaker.record_failure()
        else:
            breaker.release_probe()
        if failure.kind is FailureKind.RATE_LIMIT:
            self._report.rate_limited += 1
            admission.penalize(failure.retry_after, headers)
            self._emit("rate_limited", failure.message, job.claim.custom_id, job.claim.model)
        elif headers:
            admission.observe(headers)
        if failure.kind in STOP_KINDS and not self._halt.is_set():
            error = stop_error(failure)
            self.quota_exhausted = True
            self._stop_error = error
            self._report.stopped = StopReason.QUOTA
            self._report.message = str(error)
            self._emit("quota", str(error), job.claim.custom_id, job.claim.model)
            self._halt.set()

    # ---- outcomes ------------------------------------------------------------------------
    def _succeed(self, job: Job, answer: Answer) -> None:
        claim = job.claim
        usage = usage_of(claim.endpoint, answer.body, job.tier)
        self.admission[claim.model, _bucket(job.tier)].settle(
            job.charge, usage.input_tokens + job.output_cap
        )
        info = self.models.find(claim.model)
        cost = info.cost(usage.tier, usage.billed) if info else 0.0
        report = self._report
        report.input_tokens += usage.input_tokens
        report.output_tokens += usage.output_tokens
        report.cost += cost
        result = self.judges.for_run(self._run_id).judge(
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
            self._emit("succeeded", f"{claim.custom_id} succeeded", claim.custom_id, claim.model)
        else:
            report.requeued += 1
            message = f"{claim.custom_id}: {result.error_code}: {result.error_message}"
            self._emit("check_failed", message, claim.custom_id, claim.model)

    def _after_retries(self, job: Job, failure: Failure) -> None:
        if failure.kind in STOP_KINDS:
            self._release_now(job)
            return
        if failure.retryable and failure.retry_after is not None:
            wait = failure.retry_after * self.options.provider_time_scale
            if failure.retry_after > self.policy.max_retry_after:
                with contextlib.suppress(SetAside):
                    self._defer(
                        job, self.clock() + wait, failure.code or str(failure.kind), failure.message
                    )
                return
        message = failure.message
        if failure.retryable:
            message = f"{message} (gave up after {job.claim.attempt - 1 + job.calls} attempts)"
        self._finish_failed(job, failure, failure.code or str(failure.kind), message)

    def _finish_failed(self, job: Job, failure: Failure | None, code: str, message: str) -> None:
        self._report.failed += 1
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
            ),
        )
        self._emit("failed", message, job.claim.custom_id, job.claim.model)

    def _defer(self, job: Job, not_before: float, code: str, message: str) -> None:
        self._report.deferred += 1
        self._commit(
            job,
            Result(
                job.claim.custom_id,
                RequestStatus.RETRYABLE,
                error_code=code,
                error_message=message,
                not_before=not_before,
            ),
        )
        self._emit("deferred", message, job.claim.custom_id, job.claim.model)
        raise SetAside

    def _release(self, job: Job) -> None:
        self._release_now(job)
        raise SetAside

    def _release_now(self, job: Job) -> None:
        self._report.released += self.store.release_realtime(
            self._run_id, self.owner, [job.claim.custom_id]
        )
        job.settled = True

    def _flex_fall_back(self, job: Job, why: str) -> None:
        claim = job.claim
        if self._fallback is FlexFallback.STANDARD:
            job.tier = Tier.DEFAULT
            job.body = prepared_body(claim.body, Tier.DEFAULT)
            self._report.to_standard += 1
            self._emit(
                "fallback",
                f"{claim.custom_id}: {why}; sending at standard tier",
                claim.custom_id,
                claim.model,
            )
            return
        reason = f"{why}; handed to the Batch API (flex fallback policy: batch)"
        self.store.release_realtime(self._run_id, self.owner, [claim.custom_id])
        self.store.set_routes(self._run_id, [(claim.custom_id, Route.BATCH, reason)])
        job.settled = True
        self._report.to_batch += 1
        self._emit("fallback", f"{claim.custom_id}: {reason}", claim.custom_id, claim.model)
        raise SetAside

    # ---- durability --------------------------------------------------------------------
    def _commit(self, job: Job, result: Result) -> None:
        self._buffer.append(result)
        job.settled = True
        self._flush_wanted.set()

    async def _flusher(self) -> None:
        """Group commit: write whatever results arrived since the last write, at once."""
        while True:
            await self._flush_wanted.wait()
            self._flush_wanted.clear()
            await asyncio.sleep(0)  # let results completing in this tick join the group
            self._flush()

    def _flush(self) -> None:
        if not self._buffer:
            return
        results, self._buffer = self._buffer, []
        self.store.finish_realtime(self._run_id, self.owner, results)

    def _emit(self, kind: str, message: str, custom_id: str | None, model: str | None) -> None:
        if self.on_progress is None:
            return
        r = self._report
        event = Progress(
            kind, message, custom_id, model, r.succeeded, r.failed, self._in_flight, r.cost
        )
        self.on_progress("realtime", {"run_id": self._run_id, **dataclasses.asdict(event)})
