"""The real-time path: send a run's standard and flex requests at the provider's limit.

Owns `RealtimeRunner`. It claims work from the store in chunks (claims are atomic across
processes, and each claim commits the intent, an attempt row, before any call), sends each
request once admission allows (`admission.py`: RPM/TPM per (model, tier), corrected from
the response headers, paused by 429s), retries through `retry.py`'s tenacity layer,
keeps a circuit breaker per model (`runner.breakers[model].state`) and records each result
right after its response. It must not route (the router decides what goes here), write SQL
or print.

Lead-facing API:

    runner = RealtimeRunner(store, client, models, settings, clock=..., sleep=...,
                            owner="host:pid:uuid", on_progress=callback, options=...)
    report = await runner.run(run_id, routes=(Route.STANDARD, Route.FLEX), stop=event,
                              flex_fallback="standard" | "batch")
    runner.recover(run_id)   # on `resume`: requests in flight at a crash -> retryable

Outcomes. A 2xx is SUCCEEDED with the response body, usage and its cost at the tier that
served it. 400/401/403/404/422 are FAILED at once with the provider's message verbatim.
Connection errors, timeouts, 408, 409, 429 and 5xx are retried (jittered backoff, or the
provider's retry-after); when a request's attempts (`settings.max_attempts`, counted across
resumes) run out it is FAILED with the last message. A retry-after beyond the policy's cap,
or an open breaker, leaves the request RETRYABLE with `not_before`, and the run waits for
it (or for the router to move it to batch). `insufficient_quota` stops dispatch: calls
on the wire get the grace, every unsent request stays routed, and `run` raises
`QuotaExhausted` (message to act on; `runner.quota_exhausted` stays True, so later `run`s
on this runner raise at once without calling; a new process starts afresh).

Flex. A flex call that gets the unbilled 429 "resource unavailable" backs off; after
`flex_max_wait` seconds it falls back as `flex_fallback` says (standard: the same call at
the standard tier; batch: the request is re-routed to the Batch API in the store with a
reason) and the model's other flex requests fall back at once for `flex_cooldown` seconds.

Durability. Results are written in small groups right after their responses (one
transaction per group, so the store keeps up with the API). A request whose result was
recorded is never sent again. After a crash, requests still in flight (claimed, maybe sent,
result not yet recorded) are retried on resume: at most those can be billed twice.
On `stop` (Ctrl-C): no new calls; requests waiting for admission are released unsent;
calls already made get `grace_seconds` to finish; any still running then are recorded as
retryable (they may have reached the API).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Mapping, Sequence
from enum import StrEnum

import openai

from batchyard import tokens
from batchyard.config import ModelInfo, Settings
from batchyard.errors import QuotaExhausted
from batchyard.models import RequestStatus, Route, Tier
from batchyard.orchestrator.admission import AdmissionTable, ModelAdmission
from batchyard.orchestrator.breaker import BreakerState, CircuitBreaker
from batchyard.orchestrator.client import flex_options
from batchyard.orchestrator.realtime_call import (
    Answer,
    prepared_body,
    send,
    usage_of,
)
from batchyard.orchestrator.realtime_types import (
    FlexFallback,
    OnProgress,
    Progress,
    RealtimeOptions,
    RealtimeReport,
    StopReason,
)
from batchyard.orchestrator.retry import (
    QUOTA_MESSAGE,
    Failure,
    FailureKind,
    RetryPolicy,
    backoff,
    classify,
    quota_error,
    retrying,
)
from batchyard.orchestrator.timing import Clock, Sleep, real_clock, real_sleep
from batchyard.store import Claim, Result, Store

__all__ = ["FlexFallback", "RealtimeReport", "RealtimeRunner", "StopReason"]

_FAULTS = (FailureKind.SERVER, FailureKind.CONNECTION, FailureKind.TIMEOUT)


class _Phase(StrEnum):
    WAITING = "waiting"  # not calling right now: admission, backoff (safe to release)
    CALLING = "calling"  # a call is on the wire


class _SetAside(Exception):
    """The request leaves this claim without a result: deferred, released or re-routed."""


class _Job:
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
        self.tier = Tier.FLEX if claim.route is Route.FLEX else Tier.DEFAULT
        self.body = prepared_body(claim.body, self.tier)
        count = tokens.count_request(claim.endpoint, claim.body)
        self.prompt = count.prompt
        self.output_cap = count.output or 0
        self.charge = self.prompt + self.output_cap
        self.calls = 0
        self.flex_tries = 0
        self.flex_waited = 0.0
        self.phase = _Phase.WAITING
        self.settled = False


class RealtimeRunner:
    def __init__(
        self,
        store: Store,
        client: openai.AsyncOpenAI,
        models: Mapping[str, ModelInfo],
        settings: Settings,
        *,
        clock: Clock = real_clock,
        sleep: Sleep = real_sleep,
        owner: str,
        on_progress: OnProgress | None = None,
        options: RealtimeOptions | None = None,
    ) -> None:
        self.store = store
        self.client = client
        self.flex_client = flex_options(client, settings)
        self.models = dict(models)
        self.settings = settings
        self.clock = clock
        self.sleep = sleep
        self.owner = owner
        self.on_progress = on_progress
        self.options = options or RealtimeOptions()
        self.policy = self.options.policy or RetryPolicy(max_attempts=settings.max_attempts)
        self.admission = AdmissionTable(
            {name: (info.rpm, info.tpm) for name, info in self.models.items()},
            clock,
            sleep,
            concurrency=settings.concurrency,
            headroom=self.options.headroom,
            duration_scale=self.options.provider_time_scale,
        )
        self.breakers: dict[str, CircuitBreaker] = {}
        for name in self.models:
            self.breaker(name)
        self._flex_down_until: dict[str, float] = {}
        self._buffer: list[Result] = []
        self._flush_wanted = asyncio.Event()
        self._halt = asyncio.Event()
        self.quota_exhausted = False
        self._quota_message = ""
        self._fallback = FlexFallback.STANDARD
        self._report = RealtimeReport(run_id="")
        self._run_id = ""
        self._in_flight = 0

    # ---- public ------------------------------------------------------------------------
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

    def breaker_states(self) -> dict[str, BreakerState]:
        return {model: b.state for model, b in self.breakers.items()}

    def open_breakers(self) -> list[str]:
        """Models whose breaker is not closed: the router should send their work to batch."""
        return sorted(m for m, b in self.breakers.items() if b.state is not BreakerState.CLOSED)

    def flex_unavailable(self) -> list[str]:
        """Models whose flex tier is being fallen back from right now."""
        now = self.clock()
        return sorted(m for m, until in self._flex_down_until.items() if until > now)

    def rate_views(self) -> dict[str, tuple[int, int]]:
        """(rpm, tpm) per model as the standard tier's headers last reported them."""
        out: dict[str, tuple[int, int]] = {}
        for (model, tier), admission in self.admission.items():
            view = admission.last_view
            if tier != Tier.DEFAULT.value or view is None:
                continue
            info = self.models.get(model)
            rpm = view.limit_requests or (info.rpm if info else 0)
            tpm = view.limit_tokens or (info.tpm if info else 0)
            out[model] = (rpm, tpm)
        return out

    def recover(self, run_id: str, *, older_than: float | None = None) -> int:
        """Requests left in flight by a crashed process go back to retryable (see module doc)."""
        return self.store.recover_in_flight(run_id, older_than=older_than)

    async def run(
        self,
        run_id: str,
        *,
        routes: Sequence[Route] = (Route.STANDARD, Route.FLEX),
        stop: asyncio.Event | None = None,
        flex_fallback: FlexFallback | str = FlexFallback.STANDARD,
    ) -> RealtimeReport:
        """Send every claimable request of `run_id` on `routes` until none is left, `stop`
        is set or the quota runs out. Safe to run in several processes at once."""
        self._run_id = run_id
        self._fallback = FlexFallback(flex_fallback)
        self._report = report = RealtimeReport(run_id=run_id)
        self._halt = asyncio.Event()
        if self.quota_exhausted:
            raise QuotaExhausted(self._quota_message or QUOTA_MESSAGE)
        stop = stop or asyncio.Event()
        stale = self.options.recover_older_than
        if stale is None:
            stale = self.settings.flex_timeout + self.options.grace_seconds + 60.0
        report.recovered = self.store.recover_in_flight(run_id, older_than=stale)
        max_claimed = self.options.max_claimed or self.settings.concurrency * 4
        refill_at = max(1, max_claimed // 4)
        jobs: dict[asyncio.Task[None], _Job] = {}
        flusher = asyncio.create_task(self._flusher())
        stop_wait: asyncio.Task[None] = asyncio.create_task(_wait(stop))
        halt_wait: asyncio.Task[None] = asyncio.create_task(_wait(self._halt))
        bug: BaseException | None = None
        try:
            while not (stop.is_set() or self._halt.is_set()):
                room = max_claimed - len(jobs)
                if room >= refill_at or not jobs:
                    claims = self.store.claim_realtime(
                        run_id,
                        owner=self.owner,
                        limit=min(room, self.options.claim_chunk),
                        routes=routes,
                    )
                    for claim in claims:
                        job = _Job(claim)
                        jobs[asyncio.create_task(self._process(job))] = job
                    if claims and len(jobs) < max_claimed:
                        continue
                if not jobs:
                    if not self._open_work(run_id, routes):
                        break
                    idle = asyncio.create_task(self._idle())
                    await asyncio.wait({idle, stop_wait, halt_wait}, return_when="FIRST_COMPLETED")
                    idle.cancel()
                    continue
                done, _ = await asyncio.wait(
                    {*jobs, stop_wait, halt_wait}, return_when="FIRST_COMPLETED"
                )
                for task in done:
                    job_done = jobs.pop(task, None)
                    if job_done is not None and not task.cancelled() and task.exception():
                        bug = bug or task.exception()
                        self._halt.set()
            if stop.is_set() and report.stopped is StopReason.DONE:
                report.stopped = StopReason.STOPPED
                report.message = "Stopped: unsent requests were left for `batchyard resume`."
                self._emit("stopped", report.message, None, None)
            await self._shutdown(jobs)
        finally:
            for task in (stop_wait, halt_wait):
                task.cancel()
            flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flusher
            self._flush()
        report.breakers = self.breaker_states()
        if bug is not None:
            raise bug
        if report.stopped is StopReason.QUOTA:
            raise QuotaExhausted(report.message)
        return report

    # ---- dispatch ------------------------------------------------------------------------
    def _open_work(self, run_id: str, routes: Sequence[Route]) -> bool:
        """Are there requests on our routes that are waiting (e.g. a retry not yet due)?"""
        wanted = {Route(r) for r in routes}
        open_states = (RequestStatus.ROUTED, RequestStatus.RETRYABLE)
        return any(
            n and route in wanted and status in open_states
            for (route, status), n in self.store.count_requests(run_id).items()
        )

    async def _idle(self) -> None:
        self._flush()
        await self.sleep(self.options.idle_poll)

    async def _shutdown(self, jobs: dict[asyncio.Task[None], _Job]) -> None:
        """Release what waits; give calls on the wire a grace; abandon the rest."""
        waiting = [t for t, j in jobs.items() if j.phase is _Phase.WAITING]
        for task in waiting:
            task.cancel()
        await asyncio.gather(*waiting, return_exceptions=True)
        calling = [t for t in jobs if t not in waiting and not t.done()]
        if calling:
            timer: asyncio.Task[None] = asyncio.create_task(
                _sleep(self.sleep, self.options.grace_seconds)
            )
            pending = set(calling)
            while pending and not timer.done():
                _, pending = await asyncio.wait({*pending, timer}, return_when="FIRST_COMPLETED")
                pending.discard(timer)
            timer.cancel()
            for task in pending:
                task.cancel()
            await asyncio.gather(*calling, return_exceptions=True)
        self._flush()
        unsent = [j.claim.custom_id for t, j in jobs.items() if not j.settled and t in waiting]
        if unsent:
            self._report.released += self.store.release_realtime(self._run_id, self.owner, unsent)
        cut = [j for t, j in jobs.items() if not j.settled and t not in waiting]
        if cut:
            self._report.abandoned += self.store.recover_in_flight(self._run_id, owner=self.owner)

    # ---- one request ---------------------------------------------------------------------
    async def _process(self, job: _Job) -> None:
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
            except _SetAside:
                return
            except openai.APIError as exc:
                self._after_retries(job, classify(exc))
                return
            self._succeed(job, answer)
        finally:
            self._in_flight -= 1

    async def _with_retries(self, job: _Job) -> Answer:
        left = max(1, self.policy.max_attempts - (job.claim.attempt - 1))

        def on_retry(failure: Failure, number: int, delay: float) -> None:
            self._report.retries += 1
            self._emit(
                "retry",
                f"{failure.kind}: {failure.message} (retry in {delay:.2f}s)",
                job.claim.custom_id,
                job.claim.model,
            )

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

    async def _attempt(self, job: _Job) -> Answer:
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
            admission = self.admission[model, job.tier.value]
            job.phase = _Phase.WAITING
            try:
                async with admission.slot(job.charge):
                    if self._halt.is_set():  # quota ran out while we waited our turn
                        self._release(job)
                    job.phase = _Phase.CALLING
                    job.calls += 1
                    client = self.flex_client if job.tier is Tier.FLEX else self.client
                    answer = await send(client, job.claim.endpoint, job.body, job.claim.custom_id)
            except openai.APIError as exc:
                job.phase = _Phase.WAITING
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
            job.phase = _Phase.WAITING
            admission.observe(answer.headers)
            breaker.record_success()
            return answer

    def _note_failure(
        self,
        job: _Job,
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
        if failure.kind is FailureKind.QUOTA and not self._halt.is_set():
            error = quota_error(failure)
            self.quota_exhausted = True
            self._quota_message = str(error)
            self._report.stopped = StopReason.QUOTA
            self._report.message = str(error)
            self._emit("quota", str(error), job.claim.custom_id, job.claim.model)
            self._halt.set()

    # ---- outcomes ------------------------------------------------------------------------
    def _succeed(self, job: _Job, answer: Answer) -> None:
        claim = job.claim
        usage = usage_of(claim.endpoint, answer.body, job.tier)
        self.admission[claim.model, job.tier.value].settle(
            job.charge, usage.input_tokens + job.output_cap
        )
        info = self.models.get(claim.model)
        path = "flex" if usage.tier is Tier.FLEX else "standard"
        cost = info.cost(path, usage.input_tokens, usage.output_tokens) if info else 0.0
        report = self._report
        report.succeeded += 1
        report.input_tokens += usage.input_tokens
        report.output_tokens += usage.output_tokens
        report.cost += cost
        self._commit(
            job,
            Result(
                claim.custom_id,
                RequestStatus.SUCCEEDED,
                status_code=answer.status_code,
                response_body=answer.body,
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
                cost=cost,
            ),
        )
        self._emit("succeeded", f"{claim.custom_id} succeeded", claim.custom_id, claim.model)

    def _after_retries(self, job: _Job, failure: Failure) -> None:
        if failure.kind is FailureKind.QUOTA:
            self._release_now(job)
            return
        if failure.retryable and failure.retry_after is not None:
            wait = failure.retry_after * self.options.provider_time_scale
            if failure.retry_after > self.policy.max_retry_after:
                with contextlib.suppress(_SetAside):
                    self._defer(
                        job, self.clock() + wait, failure.code or str(failure.kind), failure.message
                    )
                return
        message = failure.message
        if failure.retryable:
            message = f"{message} (gave up after {job.claim.attempt - 1 + job.calls} attempts)"
        self._finish_failed(job, failure, failure.code or str(failure.kind), message)

    def _finish_failed(self, job: _Job, failure: Failure | None, code: str, message: str) -> None:
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

    def _defer(self, job: _Job, not_before: float, code: str, message: str) -> None:
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
        raise _SetAside

    def _release(self, job: _Job) -> None:
        self._release_now(job)
        raise _SetAside

    def _release_now(self, job: _Job) -> None:
        self._report.released += self.store.release_realtime(
            self._run_id, self.owner, [job.claim.custom_id]
        )
        job.settled = True

    def _flex_fall_back(self, job: _Job, why: str) -> None:
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
        raise _SetAside

    # ---- durability --------------------------------------------------------------------
    def _commit(self, job: _Job, result: Result) -> None:
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


async def _wait(event: asyncio.Event) -> None:
    await event.wait()


async def _sleep(sleep: Sleep, seconds: float) -> None:
    await sleep(seconds)
