"""The real-time path: send a run's standard and flex requests at the provider's limit.

Owns `RealtimeRunner`. It claims work from the store in chunks (claims are atomic across
processes, and each claim commits the intent, an attempt row, before any call), sends each
request once admission allows (`admission.py`: RPM/TPM per (model, tier), corrected from
the response headers, paused by 429s), retries through `_retry.py`'s tenacity layer,
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
Every send is an attempt row: a send that fails and goes again closes as `retry` with its
error kind, status and request id (written with the next group commit). When a request goes
again is decided in one place (`_retry.Retries`) and recorded as its `not_before` and
reason. A 429 never ends a request: it waits (the provider's retry-after, else exponential
backoff with jitter, and the model's admission pause) and goes again. Connection errors,
timeouts, 408, 409 and 5xx are retried the same way until `settings.max_attempts` of its
sends (counted across resumes) met one; then it is FAILED with the last message. A wait of
`defer_after` or more, a retry-after beyond the policy's cap, or an open breaker leaves the
request RETRYABLE with `not_before`, and the run waits for it (or for the router to move it
to batch). When every send has failed for `stall_after` seconds, a `realtime.stall` event
says so (status and the live view show it) until an answer ends it (`realtime.flowing`).

Quota. `insufficient_quota` stops dispatch: calls on the wire get the grace, every unsent
request stays routed, and `run` raises `QuotaExhausted` (message to act on).
`runner.quota_exhausted` (or `key_refused`, for a refused key or URL; either is
`dispatch_stopped`) then stays True, so later `run`s on this runner raise at once without
calling; a new process starts afresh.

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
from collections.abc import Mapping, Sequence

import openai

from batchyard.catalog import ModelInfo
from batchyard.config import Settings
from batchyard.errors import QuotaExhausted
from batchyard.metrics import Metrics
from batchyard.models import RequestStatus, Route, Tier
from batchyard.orchestrator._answers.checks import Judges
from batchyard.orchestrator._calls.timing import Clock, Sleep, real_clock, real_sleep
from batchyard.orchestrator.realtime.breaker import BreakerState, CircuitBreaker
from batchyard.orchestrator.realtime.context import RealtimeContext, RunDispatch
from batchyard.orchestrator.realtime.request import Job, Phase, RequestHandler
from batchyard.orchestrator.realtime.stall import StallWatch
from batchyard.orchestrator.realtime.types import (
    FlexFallback,
    OnProgress,
    RealtimeOptions,
    RealtimeReport,
    StopReason,
)
from batchyard.store import Store

__all__ = ["FlexFallback", "RealtimeReport", "RealtimeRunner", "StopReason"]


class RealtimeRunner:
    """The dispatch loop over a `RealtimeContext`; a `RequestHandler` does each request."""

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
        judges: Judges | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.ctx = RealtimeContext.build(
            store,
            client,
            models,
            settings,
            clock=clock,
            sleep=sleep,
            owner=owner,
            on_progress=on_progress,
            options=options,
            judges=judges,
            metrics=metrics,
        )
        self.handler = RequestHandler(self.ctx)

    @property
    def on_progress(self) -> OnProgress | None:
        return self.ctx.on_progress

    @on_progress.setter
    def on_progress(self, callback: OnProgress | None) -> None:
        self.ctx.on_progress = callback

    @property
    def breakers(self) -> dict[str, CircuitBreaker]:
        return self.ctx.breakers

    def breaker(self, model: str) -> CircuitBreaker:
        return self.ctx.breaker(model)

    @property
    def dispatch_stopped(self) -> bool:
        """Real-time dispatch stopped until the user fixes something: the quota is used up
        (`quota_exhausted`) or the key or base URL was refused (`key_refused`)."""
        return self.ctx.stop_error is not None

    @property
    def quota_exhausted(self) -> bool:
        """The account's quota is used up (insufficient_quota)."""
        return isinstance(self.ctx.stop_error, QuotaExhausted)

    @property
    def key_refused(self) -> bool:
        """The API refused the key or the base URL (401, 403, 404 on the URL)."""
        return self.dispatch_stopped and not self.quota_exhausted

    # ---- public ------------------------------------------------------------------------

    def breaker_states(self) -> dict[str, BreakerState]:
        return {model: b.state for model, b in self.breakers.items()}

    def open_breakers(self) -> list[str]:
        """Models whose breaker is not closed: the router should send their work to batch."""
        return sorted(m for m, b in self.breakers.items() if b.state is not BreakerState.CLOSED)

    def flex_unavailable(self) -> list[str]:
        """Models whose flex tier is being fallen back from right now."""
        now = self.ctx.clock()
        return sorted(m for m, until in self.ctx.flex_down_until.items() if until > now)

    def rate_views(self) -> dict[str, tuple[int, int]]:
        """(rpm, tpm) per model as the standard tier's headers last reported them."""
        out: dict[str, tuple[int, int]] = {}
        for (model, tier), admission in self.ctx.admission.items():
            view = admission.last_view
            if tier is not Tier.DEFAULT or view is None:
                continue
            info = self.ctx.models.get(model)
            rpm = view.limit_requests or (info.rpm if info else 0)
            tpm = view.limit_tokens or (info.tpm if info else 0)
            out[model] = (rpm, tpm)
        return out

    @property
    def stale_claim_seconds(self) -> float:
        """A claim older than this cannot belong to a live call (the longest timeout, flex,
        plus the stop grace and a minute): its process is gone."""
        options = self.ctx.options
        if options.recover_older_than is not None:
            return options.recover_older_than
        return self.ctx.settings.flex_timeout + options.grace_seconds + 60.0

    def recover(self, run_id: str, *, older_than: float | None = None) -> int:
        """Requests left in flight by a crashed process go back to retryable (see module doc)."""
        return self.ctx.store.recover_in_flight(run_id, older_than=older_than)

    async def run(
        self,
        run_id: str,
        *,
        routes: Sequence[Route] = (Route.STANDARD, Route.FLEX, Route.FAST),
        stop: asyncio.Event | None = None,
        flex_fallback: FlexFallback | str = FlexFallback.STANDARD,
    ) -> RealtimeReport:
        """Send every claimable request of `run_id` on `routes` until none is left, `stop`
        is set or the quota runs out. Safe to run in several processes at once."""
        ctx, handler = self.ctx, self.handler
        report = RealtimeReport(run_id=run_id)
        ctx.run = RunDispatch(run_id, FlexFallback(flex_fallback), report)
        ctx.run.stall = StallWatch(ctx.options.stall_after)
        halt = ctx.run.halt
        if ctx.stop_error is not None:
            raise ctx.stop_error
        stop = stop or asyncio.Event()
        report.recovered = ctx.store.recover_in_flight(run_id, older_than=self.stale_claim_seconds)
        max_claimed = ctx.options.max_claimed or ctx.settings.concurrency * 4
        refill_at = max(1, max_claimed // 4)
        jobs: dict[asyncio.Task[None], Job] = {}
        flusher = asyncio.create_task(handler.outcomes.flusher())
        stop_wait: asyncio.Task[None] = asyncio.create_task(_wait(stop))
        halt_wait: asyncio.Task[None] = asyncio.create_task(_wait(halt))
        bug: BaseException | None = None
        try:
            try:
                while not (stop.is_set() or halt.is_set()):
                    room = max_claimed - len(jobs)
                    if room >= refill_at or not jobs:
                        claims = ctx.store.claim_realtime(
                            run_id,
                            owner=ctx.owner,
                            limit=min(room, ctx.options.claim_chunk),
                            routes=routes,
                        )
                        for claim in claims:
                            job = Job(claim)
                            jobs[asyncio.create_task(handler.process(job))] = job
                        if claims and len(jobs) < max_claimed:
                            continue
                    if not jobs:
                        if not self._open_work(run_id, routes):
                            break
                        idle = asyncio.create_task(self._idle())
                        await asyncio.wait(
                            {idle, stop_wait, halt_wait}, return_when="FIRST_COMPLETED"
                        )
                        idle.cancel()
                        continue
                    done, _ = await asyncio.wait(
                        {*jobs, stop_wait, halt_wait}, return_when="FIRST_COMPLETED"
                    )
                    for task in done:
                        job_done = jobs.pop(task, None)
                        if job_done is not None and not task.cancelled() and task.exception():
                            bug = bug or task.exception()
                            halt.set()
            except asyncio.CancelledError:
                # Cancelled from outside (a hard Ctrl-C): no grace, but nothing is left
                # claimed: unsent requests are released, calls on the wire become retryable.
                await self._shutdown(jobs, grace=0.0)
                raise
            if stop.is_set() and report.stopped is StopReason.DONE:
                report.stopped = StopReason.STOPPED
                report.message = "Stopped: unsent requests were left for `batchyard resume`."
                ctx.emit("stopped", report.message, None, None)
            await self._shutdown(jobs)
        finally:
            for task in (stop_wait, halt_wait):
                task.cancel()
            flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flusher
            handler.outcomes.flush()
        report.breakers = self.breaker_states()
        if bug is not None:
            raise bug
        if report.stopped is StopReason.QUOTA:
            raise ctx.stop_error or QuotaExhausted(report.message)
        return report

    # ---- dispatch ------------------------------------------------------------------------
    def _open_work(self, run_id: str, routes: Sequence[Route]) -> bool:
        """Are there requests on our routes that are waiting (e.g. a retry not yet due)?"""
        wanted = {Route(r) for r in routes}
        open_states = (RequestStatus.ROUTED, RequestStatus.RETRYABLE)
        return any(
            n and route in wanted and status in open_states
            for (route, status), n in self.ctx.store.count_requests(run_id).items()
        )

    async def _idle(self) -> None:
        self.handler.outcomes.flush()
        await self.ctx.sleep(self.ctx.options.idle_poll)

    async def _shutdown(
        self, jobs: dict[asyncio.Task[None], Job], *, grace: float | None = None
    ) -> None:
        """Release what waits; give calls on the wire a grace; abandon the rest."""
        ctx = self.ctx
        grace = ctx.options.grace_seconds if grace is None else grace
        waiting = [t for t, j in jobs.items() if j.phase is Phase.WAITING]
        for task in waiting:
            task.cancel()
        await asyncio.gather(*waiting, return_exceptions=True)
        calling = [t for t in jobs if t not in waiting and not t.done()]
        if calling and grace <= 0:
            for task in calling:
                task.cancel()
            await asyncio.gather(*calling, return_exceptions=True)
        elif calling:
            timer: asyncio.Task[None] = asyncio.create_task(_sleep(ctx.sleep, grace))
            pending = set(calling)
            while pending and not timer.done():
                _, pending = await asyncio.wait({*pending, timer}, return_when="FIRST_COMPLETED")
                pending.discard(timer)
            timer.cancel()
            for task in pending:
                task.cancel()
            await asyncio.gather(*calling, return_exceptions=True)
        self.handler.outcomes.flush()
        unsent = [j.claim.custom_id for t, j in jobs.items() if not j.settled and t in waiting]
        if unsent:
            released = ctx.store.release_realtime(ctx.run.run_id, ctx.owner, unsent)
            ctx.run.report.released += released
        cut = [j for t, j in jobs.items() if not j.settled and t not in waiting]
        if cut:
            abandoned = ctx.store.recover_in_flight(ctx.run.run_id, owner=ctx.owner)
            ctx.run.report.abandoned += abandoned


async def _wait(event: asyncio.Event) -> None:
    await event.wait()


async def _sleep(sleep: Sleep, seconds: float) -> None:
    await sleep(seconds)
