"""What every part of the real-time path shares: the twin of the batch path's `BatchContext`.

Owns `RealtimeContext` (the store, the clients, the model table, settings, injected time,
the owner id, options, the retry policy, admission per (model, tier), one circuit breaker
per model, the models whose flex tier is being fallen back from, and why dispatch stopped)
and `RunDispatch` (the state of one `RealtimeRunner.run`: its run id, flex fallback, report,
halt signal, results and failed sends waiting for the group commit, the stall watch and the
calls in flight). With these two
a `RequestHandler` can be built and tested without a runner. Plain state: no calls, no SQL.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field

import openai

from batchyard.catalog import Catalog, ModelInfo, as_catalog
from batchyard.config import Settings
from batchyard.errors import DispatchStopped
from batchyard.metrics import Metrics
from batchyard.orchestrator._answers.checks import Judges
from batchyard.orchestrator._calls.client import flex_options
from batchyard.orchestrator._calls.retry import RetryPolicy
from batchyard.orchestrator._calls.timing import Clock, Sleep
from batchyard.orchestrator.realtime.admission import RateLimitTable
from batchyard.orchestrator.realtime.breaker import CircuitBreaker
from batchyard.orchestrator.realtime.stall import StallWatch
from batchyard.orchestrator.realtime.types import (
    FlexFallback,
    OnProgress,
    RealtimeEvent,
    RealtimeOptions,
    RealtimeReport,
)
from batchyard.store import FailedSend, Result, Store

__all__ = ["RealtimeContext", "RunDispatch"]


@dataclass(slots=True)
class RunDispatch:
    """The state of one `RealtimeRunner.run`; a new one for every run."""

    run_id: str = ""
    fallback: FlexFallback = FlexFallback.STANDARD
    report: RealtimeReport = field(default_factory=lambda: RealtimeReport(run_id=""))
    halt: asyncio.Event = field(default_factory=asyncio.Event)  # stop sending (quota, bug)
    buffer: list[Result] = field(default_factory=list)  # results awaiting the group commit
    sends: list[FailedSend] = field(default_factory=list)  # failed sends, same commit
    stall: StallWatch = field(default_factory=lambda: StallWatch(60.0))
    flush_wanted: asyncio.Event = field(default_factory=asyncio.Event)
    in_flight: int = 0


@dataclass(slots=True)
class RealtimeContext:
    """What the runner and the request handler share, for as long as the runner lives."""

    store: Store
    client: openai.AsyncOpenAI
    flex_client: openai.AsyncOpenAI  # the same client with flex's longer read timeout
    models: Catalog
    settings: Settings
    clock: Clock
    sleep: Sleep
    owner: str
    options: RealtimeOptions
    policy: RetryPolicy
    admission: RateLimitTable
    judges: Judges  # the checks every answer must pass (a run's own, by its options)
    on_progress: OnProgress | None = None
    metrics: Metrics = field(default_factory=Metrics)  # latency, errors, remaining limits
    breakers: dict[str, CircuitBreaker] = field(default_factory=dict)
    flex_down_until: dict[str, float] = field(default_factory=dict)  # model -> until when
    # Set once dispatch stopped (the quota is used up, or the key or URL was refused):
    # every later run on this context raises it without calling.
    stop_error: DispatchStopped | None = None
    run: RunDispatch = field(default_factory=RunDispatch)

    @classmethod
    def build(
        cls,
        store: Store,
        client: openai.AsyncOpenAI,
        models: Mapping[str, ModelInfo],
        settings: Settings,
        *,
        clock: Clock,
        sleep: Sleep,
        owner: str,
        on_progress: OnProgress | None = None,
        options: RealtimeOptions | None = None,
        judges: Judges | None = None,
        metrics: Metrics | None = None,
    ) -> RealtimeContext:
        options = options or RealtimeOptions()
        catalog = as_catalog(models)
        ctx = cls(
            store=store,
            client=client,
            flex_client=flex_options(client, settings),
            models=catalog,
            settings=settings,
            clock=clock,
            sleep=sleep,
            owner=owner,
            options=options,
            policy=options.policy or RetryPolicy(max_attempts=settings.max_attempts),
            admission=RateLimitTable(
                catalog.rate_limits(),
                clock,
                sleep,
                concurrency=settings.concurrency,
                headroom=options.headroom,
                duration_scale=options.provider_time_scale,
            ),
            judges=judges or Judges(store, catalog),
            on_progress=on_progress,
            metrics=metrics or Metrics(),
        )
        for name in catalog:
            ctx.breaker(name)
        return ctx

    def breaker(self, model: str) -> CircuitBreaker:
        found = self.breakers.get(model)
        if found is None:
            found = CircuitBreaker(
                self.clock,
                failure_threshold=self.options.breaker_threshold,
                reset_timeout=self.options.breaker_timeout,
                on_change=lambda old, new: self.emit(
                    "breaker", f"{model}: circuit {old} -> {new}", None, model
                ),
            )
            self.breakers[model] = found
        return found

    def emit(self, kind: str, message: str, custom_id: str | None, model: str | None) -> None:
        """Tell the progress callback, with the current run's running totals."""
        if self.on_progress is None:
            return
        run, r = self.run, self.run.report
        event = RealtimeEvent(
            kind, message, custom_id, model, r.succeeded, r.failed, run.in_flight, r.cost
        )
        self.on_progress("realtime", {"run_id": run.run_id, **dataclasses.asdict(event)})
