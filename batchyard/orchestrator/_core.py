"""What every part of the orchestrator shares, and reading a run.

Owns `OrchestratorCore`: the settings, the store, the client and both executors (created on
first use), the injected clock and sleep, the progress callback and the metrics; and the
reading side of the API (`runs`, `status`, `costs`, `fetch`, `results`, `verify`). Driving a
run is `_driving.py`, planning and submitting `_orchestrator.py`; `Orchestrator` is the
three together. It never writes SQL, never prints, and reads time only through the clock.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Self

import openai

from batchyard.catalog import Catalog
from batchyard.checks import CheckFn
from batchyard.config import Settings, load_settings
from batchyard.metrics import Metrics
from batchyard.orchestrator import _client as key_checks
from batchyard.orchestrator import _costs, _fetch, _status
from batchyard.orchestrator import _routing as routing
from batchyard.orchestrator._answer_checks import Judges
from batchyard.orchestrator._answers import Result, iter_results
from batchyard.orchestrator._client import make_client
from batchyard.orchestrator._progress import OnProgress
from batchyard.orchestrator._provider_clock import ClockMap, ProviderClock
from batchyard.orchestrator._reports import (
    CostReport,
    FetchReport,
    RunInfo,
    RunStatus,
    VerifyReport,
)
from batchyard.orchestrator._steering import (
    budget_warning,
    route_unbatchable,
    stall_reason,
)
from batchyard.orchestrator._timing import Clock, Sleep, real_clock, real_sleep
from batchyard.orchestrator.batch.remote import new_owner
from batchyard.orchestrator.batch.runner import BatchRunner
from batchyard.orchestrator.batch.submit import SubmitReport
from batchyard.orchestrator.realtime.runner import RealtimeRunner
from batchyard.router import (
    ModelCapacity,
    Turnaround,
)
from batchyard.store import Store

__all__ = ["OrchestratorCore"]

# The priors count as this many observed batches (or cancels): the first few of this
# store's own move the estimate most of the way.
_PRIOR_WEIGHT = 2.0


class OrchestratorCore:
    """The shared state and the reading side of `Orchestrator` (use that class)."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        store: Store | None = None,
        client: openai.AsyncOpenAI | None = None,
        clock: Clock = real_clock,
        sleep: Sleep = real_sleep,
        on_progress: OnProgress | None = None,
        workdir: Path | None = None,
        checks: Mapping[str, CheckFn] | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.settings = settings or load_settings()
        # Prometheus series in a registry of this orchestrator's own (`--metrics-port`).
        self.metrics = metrics or Metrics()
        self.models: Catalog = self.settings.model_table()
        self.prior = Turnaround.from_median_p95(
            self.settings.batch_turnaround_median_seconds,
            self.settings.batch_turnaround_p95_seconds,
            weight=_PRIOR_WEIGHT,
        )
        self.cancel_prior = Turnaround.from_median_p95(
            self.settings.cancel_latency_median_seconds,
            self.settings.cancel_latency_p95_seconds,
            max_s=3600.0,
            weight=_PRIOR_WEIGHT,
        )
        self.clock = clock
        self.sleep = sleep
        self.on_progress = on_progress
        self.owner = new_owner()
        self.stopping = asyncio.Event()  # set by stop(): finish gracefully
        self._escalation: dict[str, float | None] = {}  # run -> next escalation point
        self._store = store
        # One retry layer: ours. A client handed in keeps its transport and settings,
        # but never retries on its own.
        self._client = client.with_options(max_retries=0) if client is not None else None
        self._workdir = workdir
        self._tempdir: Path | None = None  # made here (no workdir given): removed on close
        self._batch: BatchRunner | None = None
        self._realtime: RealtimeRunner | None = None
        self._blocked: dict[str, str] = {}  # run -> why real-time dispatch stopped
        self._said: dict[tuple[str, str], str] = {}  # (run, kind) -> last message recorded
        self._registry: dict[str, CheckFn] = dict(checks or {})  # user checks by name
        self._judges: Judges | None = None
        self._warned: set[str] = set()  # runs whose budget warning is recorded
        self._driving: set[str] = set()  # runs this object drives (its `drivers` rows)
        self._provider_clock: ProviderClock | None = None

    # ---- parts, created on first use ----------------------------------------------------
    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = Store.open(self.settings.db_path(), now=self.clock)
        return self._store

    @property
    def client(self) -> openai.AsyncOpenAI:
        if self._client is None:
            self._client = make_client(self.settings)
        return self._client

    @property
    def provider_clock(self) -> ProviderClock:
        """The provider's clock as read off its responses (kept in the store per base URL)."""
        if self._provider_clock is None:
            self._provider_clock = ProviderClock(self.store, self.settings.base_url, self.clock)
        return self._provider_clock

    def clock_map(self) -> ClockMap:
        """Provider times onto our clock: the offset and rate fitted so far."""
        return self.provider_clock.map()

    @property
    def judges(self) -> Judges:
        """Each run's checks on answers (user checks passed in are found here by name)."""
        if self._judges is None:
            self._judges = Judges(self.store, self.models, self._registry)
        return self._judges

    @property
    def batch(self) -> BatchRunner:
        if self._batch is None:
            workdir = self._workdir
            if workdir is None:
                workdir = self._tempdir = Path(tempfile.mkdtemp(prefix="batchyard-"))
            self._batch = BatchRunner(
                *self._parts(),
                workdir=workdir,
                provider_clock=self.provider_clock,
                **self._timing(),
            )
            self._batch.ctx.judges = self.judges
            self._batch.ctx.deadline_view = self._deadline_view
        return self._batch

    @property
    def realtime(self) -> RealtimeRunner:
        if self._realtime is None:
            self._realtime = RealtimeRunner(
                *self._parts(), judges=self.judges, metrics=self.metrics, **self._timing()
            )
        return self._realtime

    def _parts(self) -> tuple[Store, openai.AsyncOpenAI, Catalog, Settings]:
        """What both executors share: the store, the client, the models, the settings."""
        return self.store, self.client, self.models, self.settings

    def _timing(self) -> dict[str, Any]:
        return {
            "clock": self.clock,
            "sleep": self.sleep,
            "owner": self.owner,
            "on_progress": self._progress,
        }

    def _progress(self, kind: str, data: dict[str, Any]) -> None:
        if self.on_progress is not None:
            self.on_progress(kind, data)

    async def aclose(self) -> None:
        """Close the client and the store, and remove the temporary folder this object
        made for shard files (a `workdir` handed in is left alone)."""
        if self._client is not None:
            await self._client.close()
        if self._store is not None:
            for run_id in self._driving:
                self._store.stop_driving(run_id, self.owner)
            self._store.close()
        if self._tempdir is not None:
            shutil.rmtree(self._tempdir, ignore_errors=True)
            self._tempdir = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _capacities(self, names: list[str]) -> dict[str, ModelCapacity]:
        return routing.live_capacities(self.models, names, self._store, self._realtime)

    async def _submit_batches(self, run_id: str) -> SubmitReport:
        report = await self.batch.submit(run_id)
        self.provider_clock.flush()
        route_unbatchable(self.store, run_id, report.unbatchable, self.models)
        return report

    def _deadline_view(self, run_id: str, model: str) -> tuple[float | None, float]:
        """For lines sent again: the run's next escalation point (else its deadline) and
        the model's median turnaround, on our clock."""
        batches, clock = self.store.list_batches(), self.clock_map()
        median = routing.turnarounds(batches, [model], self.prior, clock)[model].median_s
        point = self._escalation.get(run_id)
        return (point if point is not None else self.store.get_run(run_id).deadline_at), median

    def _warn_budget(self, run_id: str) -> None:
        """Once a run has spent the warning share of its budget: one `budget.warning`
        event (also for other processes on the run), a progress event and so a metric; the
        status line and the live view show it from then on."""
        if run_id in self._warned:
            return
        run = self.store.get_run(run_id)
        message = budget_warning(self.store, run, self.settings.budget_warn_share)
        if message is None:
            return
        self._warned.add(run_id)
        if self.store.list_events(run_id, kinds=["budget.warning"], limit=1):
            return
        data = {"budget": run.budget, "spent": run.actual_cost}
        self.store.add_event(run_id, "budget.warning", message, data)
        self._progress("budget.warning", {"run_id": run_id, "message": message, **data})

    def _say(self, run_id: str, kind: str, message: str) -> None:
        """Record an event unless it repeats the last one of its kind (rounds repeat)."""
        if self._said.get((run_id, kind)) != message:
            self._said[(run_id, kind)] = message
            self.store.add_event(run_id, kind, message)

    # ---- reading ------------------------------------------------------------------------------
    def runs(self, limit: int | None = None) -> list[RunInfo]:
        """The runs in the job database, newest first."""
        return [RunInfo.from_row(run) for run in self.store.list_runs(limit=limit)]

    def status(self, run_id: str) -> RunStatus:
        stalled = stall_reason(self.store, run_id, self._blocked.get(run_id))
        run = self.store.get_run(run_id)
        return _status.status(
            self.store, run, self.clock(), stalled, self.prior, self.models, self.clock_map()
        )

    def refresh(self, last: RunStatus) -> RunStatus:
        """`last` with the counts, batches and cost as the store has them now (cheap: for a
        view redrawn every second)."""
        return _status.refresh(self.store, last, self.clock_map())

    def costs(self, run_id: str | None = None) -> CostReport:
        return _costs.costs(self.store, self.models, run_id)

    def fetch(
        self,
        run_id: str,
        output: str | os.PathLike[str],
        errors: str | os.PathLike[str] | None = None,
        *,
        group: bool = False,
    ) -> FetchReport:
        """Merged results in input order; `group`: one line per original request with its
        fan-out variants side by side (`{"custom_id", "variants": {LABEL: line}}`)."""
        errs = Path(errors) if errors else None
        return _fetch.fetch(self.store, run_id, Path(output), errs, group=group)

    def results(self, run_id: str) -> Iterator[Result]:
        """The run's results as `Result` objects, one per request, in input order, read
        from the store a page at a time (no file is written)."""
        return iter_results(self.store, run_id)

    async def verify(self) -> VerifyReport:
        """Check the key and base URL with a models call; the key is never shown."""
        return await key_checks.verify(self.client, self.settings, self.sleep)
