"""The parts one `Orchestrator` is made of, each made on first use.

Owns `Parts`: what the orchestrator is given (settings, store, client, clock, sleep, user
checks, metrics, a workdir) and what it makes from them when first needed: the store, the
client (planning needs no key), the provider's clock, the run checks, the two executors and
the three collaborators the facade hands its calls to (`Planner`, `RunDriver`, `Reporter`),
wired to each other; and closing them. No SQL, no printing, no clock reads of its own.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import openai

from batchyard.catalog import Catalog
from batchyard.checks import CheckFn
from batchyard.config import Settings
from batchyard.metrics import Metrics
from batchyard.orchestrator import _routing as routing
from batchyard.orchestrator._answers.checks import Judges
from batchyard.orchestrator._calls.client import make_client
from batchyard.orchestrator._calls.timing import Clock, Sleep
from batchyard.orchestrator._driving.driver import RunDriver
from batchyard.orchestrator._planning.planner import Planner
from batchyard.orchestrator._reporting.progress import OnProgress
from batchyard.orchestrator._reporting.reporter import Reporter
from batchyard.orchestrator._routing.provider_clock import ClockMap, ProviderClock
from batchyard.orchestrator.batch.remote import new_owner
from batchyard.orchestrator.batch.runner import BatchRunner
from batchyard.orchestrator.realtime.runner import RealtimeRunner
from batchyard.router import ModelCapacity
from batchyard.store import Store

__all__ = ["Parts"]


class Parts:
    """The store, the client, the executors and the collaborators of one orchestrator.

    `store` and `client` are made from the settings when not given (the store when first
    needed, the client too: planning needs no key); `progress` hears what the executors and
    the driver report; `workdir` holds shard files (None: a temporary folder made with the
    batch runner and removed by `aclose`); `checks` are user checks by name.
    """

    def __init__(
        self,
        settings: Settings,
        store: Store | None,
        client: openai.AsyncOpenAI | None,
        *,
        clock: Clock,
        sleep: Sleep,
        progress: OnProgress,
        workdir: Path | None,
        checks: Mapping[str, CheckFn],
        metrics: Metrics,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.models: Catalog = settings.model_table()
        self.prior, self.cancel_prior = routing.priors(settings)
        self.clock = clock
        self.sleep = sleep
        self.progress = progress
        self.owner = new_owner()
        self.stopping = asyncio.Event()  # set to finish gracefully
        self._store = store
        # One retry layer: ours. A client handed in keeps its transport and settings,
        # but never retries on its own.
        self._client = client.with_options(max_retries=0) if client is not None else None
        self._workdir = workdir
        self._tempdir: Path | None = None  # made here (no workdir given): removed on close
        self._registry: dict[str, CheckFn] = dict(checks)  # user checks by name
        self._blocked: dict[str, str] = {}  # run -> why real-time dispatch stopped
        self._judges: Judges | None = None
        self._provider_clock: ProviderClock | None = None
        self._planner: Planner | None = None
        self._driver: RunDriver | None = None
        self._reporter: Reporter | None = None

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
    def planner(self) -> Planner:
        """Intake, plans and recording runs."""
        if self._planner is None:
            self._planner = Planner(
                self.settings,
                self.models,
                self.store,
                self.judges,
                clock=self.clock,
                prior=self.prior,
                cancel_prior=self.cancel_prior,
                capacities=self.capacities,
                clock_map=self.clock_map,
            )
        return self._planner

    @property
    def reporter(self) -> Reporter:
        """Runs, status, costs, answers."""
        if self._reporter is None:
            self._reporter = Reporter(
                self.store,
                self.models,
                clock=self.clock,
                prior=self.prior,
                clock_map=self.clock_map,
                blocked=self._blocked,
            )
        return self._reporter

    @property
    def driver(self) -> RunDriver:
        """Rounds of batch polling and real-time work (makes the batch runner)."""
        if self._driver is None:
            store, client = self.store, self.client
            workdir = self._workdir
            if workdir is None:
                workdir = self._tempdir = Path(tempfile.mkdtemp(prefix="batchyard-"))
            batch = BatchRunner(
                store,
                client,
                self.models,
                self.settings,
                workdir=workdir,
                provider_clock=self.provider_clock,
                **self._timing(),
            )
            batch.ctx.judges = self.judges
            self._driver = RunDriver(
                store,
                batch,
                self._make_realtime,
                self.reporter,
                settings=self.settings,
                models=self.models,
                clock=self.clock,
                sleep=self.sleep,
                owner=self.owner,
                provider_clock=self.provider_clock,
                prior=self.prior,
                cancel_prior=self.cancel_prior,
                stopping=self.stopping,
                blocked=self._blocked,
                progress=self.progress,
            )
            batch.ctx.deadline_view = self._driver.deadline_view
        return self._driver

    def _make_realtime(self) -> RealtimeRunner:
        return RealtimeRunner(
            self.store,
            self.client,
            self.models,
            self.settings,
            judges=self.judges,
            metrics=self.metrics,
            **self._timing(),
        )

    def _timing(self) -> dict[str, Any]:
        return {
            "clock": self.clock,
            "sleep": self.sleep,
            "owner": self.owner,
            "on_progress": self.progress,
        }

    def capacities(self, names: list[str]) -> dict[str, ModelCapacity]:
        """The models' limits for a plan: with the real-time runner's view once it runs."""
        if self._driver is not None:
            return self._driver.capacities(names)
        return routing.live_capacities(self.models, names, self._store, None)

    async def aclose(self) -> None:
        """Close the client and the store, and remove the temporary folder this object
        made for shard files (a `workdir` handed in is left alone)."""
        if self._client is not None:
            await self._client.close()
        if self._store is not None:
            if self._driver is not None:
                self._driver.release()
            self._store.close()
        if self._tempdir is not None:
            shutil.rmtree(self._tempdir, ignore_errors=True)
            self._tempdir = None
