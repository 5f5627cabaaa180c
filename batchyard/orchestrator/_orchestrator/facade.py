"""The orchestrator: one object that plans, submits, drives, reports and fetches runs.

Owns `Orchestrator`, the facade of the Python API and the CLI: the public calls and what
they return, each handed to one of three collaborators, a `Planner` (`_planning/`: intake,
plan, recording), a `RunDriver` (`_driving/`: rounds until a run is done) and a `Reporter`
(`_reporting/`: status, costs, fetch, results), which its `Parts` (`parts.py`) make on
first use. Every decision and change of course is recorded as an event in the store with
its reason. It never writes SQL (the store does), never prints (callers render), and reads
time only through the injected clock.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Self

import openai

from batchyard.build import BuildReport, Variation, build_file
from batchyard.checks import CheckFn
from batchyard.config import Settings, load_settings
from batchyard.errors import ProviderError
from batchyard.metrics import Metrics
from batchyard.models import RouteOverride
from batchyard.orchestrator import _routing as routing
from batchyard.orchestrator._answers.checks import Judges
from batchyard.orchestrator._answers.results import Result
from batchyard.orchestrator._calls import client as key_checks
from batchyard.orchestrator._calls.timing import Clock, Sleep, real_clock, real_sleep
from batchyard.orchestrator._driving.driver import OnRound, RunDriver
from batchyard.orchestrator._orchestrator.parts import Parts
from batchyard.orchestrator._planning.planner import Planner
from batchyard.orchestrator._planning.sources import Requests, Source, prepare_source
from batchyard.orchestrator._reporting.notify import notify_secret
from batchyard.orchestrator._reporting.progress import OnProgress
from batchyard.orchestrator._reporting.reporter import Reporter
from batchyard.orchestrator._reporting.reports import (
    CostReport,
    FetchReport,
    RunInfo,
    RunStatus,
    SubmitResult,
    VerifyReport,
)
from batchyard.orchestrator._routing.provider_clock import ClockMap, ProviderClock
from batchyard.orchestrator.batch.runner import BatchRunner
from batchyard.orchestrator.realtime.runner import RealtimeRunner
from batchyard.router import Plan, RunPolicy
from batchyard.store import Store

__all__ = ["OnProgress", "Orchestrator"]


class Orchestrator:
    """Async entry point of the Python API. See `batchyard.Batchyard` for a sync facade.

    `client` or `http_client` point the SDK somewhere else (the embedded simulator, a
    proxy); `clock`/`sleep` let tests and the demo run on simulated time.
    """

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
        self.on_progress = on_progress
        self.parts = parts = Parts(
            settings or load_settings(),
            store,
            client,
            clock=clock,
            sleep=sleep,
            progress=self._progress,
            workdir=workdir,
            checks=checks or {},
            # Prometheus series in a registry of this orchestrator's own (`--metrics-port`).
            metrics=metrics or Metrics(),
        )
        self.settings, self.metrics, self.models = parts.settings, parts.metrics, parts.models
        self.prior, self.cancel_prior = parts.prior, parts.cancel_prior
        self.clock, self.sleep = clock, sleep
        self.owner = parts.owner
        self.stopping = parts.stopping  # set by stop(): finish gracefully

    def _progress(self, kind: str, data: dict[str, Any]) -> None:
        if self.on_progress is not None:
            self.on_progress(kind, data)

    # ---- its parts, each made on first use (see `Parts`) -----------------------------------
    @property
    def store(self) -> Store:
        return self.parts.store

    @property
    def client(self) -> openai.AsyncOpenAI:
        return self.parts.client

    @property
    def provider_clock(self) -> ProviderClock:
        return self.parts.provider_clock

    def clock_map(self) -> ClockMap:
        """Provider times onto our clock: the offset and rate fitted so far."""
        return self.parts.clock_map()

    @property
    def judges(self) -> Judges:
        return self.parts.judges

    @property
    def planner(self) -> Planner:
        return self.parts.planner

    @property
    def driver(self) -> RunDriver:
        return self.parts.driver

    @property
    def reporter(self) -> Reporter:
        return self.parts.reporter

    @property
    def batch(self) -> BatchRunner:
        return self.parts.driver.batch

    @property
    def realtime(self) -> RealtimeRunner:
        return self.parts.driver.realtime

    async def aclose(self) -> None:
        """Close the client and the store, and remove the temporary folder this object
        made for shard files (a `workdir` handed in is left alone)."""
        await self.parts.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ---- planning -------------------------------------------------------------------------
    def policy(
        self,
        *,
        deadline: str | float | None = None,
        budget: float | None = None,
        route: RouteOverride | str = RouteOverride.AUTO,
        strict: bool = False,
    ) -> RunPolicy:
        return routing.user_policy(
            self.settings,
            self.clock(),
            deadline=deadline,
            budget=budget if budget is not None else self.settings.budget,
            route=route,
            strict=strict,
        )

    def _source(
        self,
        path: Requests,
        template: str | os.PathLike[str] | None,
        vary: Sequence[str],
        samples: int,
        spool: Path | None = None,
    ) -> Source:
        return prepare_source(
            path,
            self.models,
            spool or self.settings.db_path().parent / "requests",
            template=template,
            variation=Variation.parse(vary, samples),
        )

    def plan(
        self,
        path: Requests,
        *,
        deadline: str | float | None = None,
        budget: float | None = None,
        route: RouteOverride | str = RouteOverride.AUTO,
        strict: bool = False,
        template: str | os.PathLike[str] | None = None,
        vary: Sequence[str] = (),
        samples: int = 1,
        reuse: bool | None = None,
    ) -> Plan:
        """The plan for a file: routes, escalation point, costs, and how many lines earlier
        answers will answer (`reuse`, default from settings). No API calls.

        With `template`, `path` is a data file (CSV or JSONL) rendered through it; `vary`
        (`"temperature=0,0.7"`) and `samples` multiply every line into variants."""
        with tempfile.TemporaryDirectory(prefix="batchyard-plan-") as spool:
            source = self._source(path, template, vary, samples, Path(spool))
            intake = self.planner.intake(source.path, reuse=reuse)
        # the plan's assignments stream from the intake's spill while the plan lives
        routable, preview = self.planner.preview(intake)
        policy = self.policy(deadline=deadline, budget=budget, route=route, strict=strict)
        return self.planner.decide(routable, preview, policy)

    def build(
        self,
        template: str | os.PathLike[str],
        data: str | os.PathLike[str],
        output: str | os.PathLike[str],
        *,
        vary: Sequence[str] = (),
        samples: int = 1,
    ) -> BuildReport:
        """Write the request file `output` from `template` and the rows of `data`, each
        row multiplied into variants by `vary` and `samples`; validated as `submit` does."""
        variation = Variation.parse(vary, samples)
        return build_file(Path(template), Path(data), Path(output), self.models, variation)

    # ---- submit ---------------------------------------------------------------------------
    async def submit(
        self,
        path: Requests,
        *,
        deadline: str | float | None = None,
        budget: float | None = None,
        route: RouteOverride | str = RouteOverride.AUTO,
        strict: bool = False,
        skip_invalid: bool = False,
        rejects: str | os.PathLike[str] | None = None,
        template: str | os.PathLike[str] | None = None,
        vary: Sequence[str] = (),
        samples: int = 1,
        notify: str | None = None,
        checks: Sequence[str | CheckFn] | None = None,
        requeues: int | None = None,
        reuse: bool | None = None,
        fallback: str | Mapping[str, str] | None = None,
    ) -> SubmitResult:
        """Validate, plan, record the run and submit its batch shards.

        `path` is a request file, or requests in memory: an iterable of `Request` objects
        or batch-format dicts, in input order (spooled to the database's `requests/`
        directory and validated like a file; line N is the Nth request).

        Nothing is recorded or sent when a line is invalid, unless `skip_invalid`, in which
        case the invalid lines are written to `rejects` (default: FILE.rejects.jsonl). The
        real-time share is left routed: run it with `step`/`wait` (the CLI does).

        With `template`, `path` is a data file rendered through it; `vary` and `samples`
        multiply every line into variants. The built request file is kept under the
        database's directory (`requests/`) and recorded as the run's source.

        `notify`: a URL called once (signed with the `notify_secret` setting, Standard
        Webhooks) when the run finishes, by whichever process drives it to the end.

        `checks` (names, `module:function` or callables; default: the settings' list, every
        shipped check) judge each answer; one that fails is sent again up to `requeues` times
        (default: settings' `check_requeues`), then the line ends `invalid`. With `reuse`
        (default on), lines identical to an answered request are answered from the store
        and identical lines of the file are sent once.

        `fallback` (a model for every model of the file, or {model: fallback model};
        default: the settings' `fallback` table) answers lines whose model the API refuses
        (`model_not_found`) or whose real-time breaker stays open past the escalation
        point; checked here (`OptionError`: not a known model, or not serving an endpoint
        the lines use).
        """
        if notify is not None:
            notify_secret(self.settings)  # refuse before anything is recorded
        source = self._source(path, template, vary, samples).path
        planner = self.planner
        options = planner.check_options(checks, requeues)
        kept = Path(rejects) if rejects else None
        intake = planner.intake(
            source, reuse=reuse, skip_invalid=skip_invalid, rejects=kept, bodies=True
        )
        options |= planner.fallback_options(intake, fallback)
        policy = self.policy(deadline=deadline, budget=budget, route=route, strict=strict)
        routable, preview = planner.preview(intake)
        await key_checks.preflight(self.client, self.sleep)
        plan = planner.decide(routable, preview, policy)  # may raise PlanRefused
        run_id = planner.record(intake, routable, policy, plan, options)
        if notify is not None:
            self.store.set_notify(run_id, notify)
        report = await self.driver.submit_batches(run_id)
        if report.errors and not report.submitted:
            raise ProviderError(
                f"{report.errors[0]} The run {run_id} is recorded: run "
                f"`batchyard resume {run_id}` once the API can be reached."
            )
        checked = intake.checked
        return SubmitResult(
            run_id=run_id,
            plan=plan,
            accepted=checked.valid,
            rejected=checked.invalid_lines,
            rejects_path=intake.rejects_path,
            shards_submitted=report.submitted,
            waiting_requests=report.waiting_requests,
        )

    # ---- driving --------------------------------------------------------------------------
    async def step(self, run_id: str, *, realtime: bool = True) -> RunStatus:
        """One round: poll and apply batches, re-decide, submit shards, run real-time work."""
        return await self.driver.step(run_id, realtime=realtime)

    async def wait(
        self, run_id: str, *, on_round: OnRound | None = None, max_rounds: int | None = None
    ) -> RunStatus:
        """Drive the run until every request is finished (real time and batch together).

        Returns early, the run still open, when it cannot progress without the user (real
        time stopped for the quota or the budget, nothing else left): a `run.stalled` event
        and `status().last_errors` say why.
        """
        return await self.driver.wait(run_id, on_round=on_round, max_rounds=max_rounds)

    async def drive_realtime(self, run_id: str, *, on_round: OnRound | None = None) -> RunStatus:
        """Rounds of `step` until no real-time work is left; the batches carry on without
        this call (follow them with `wait`, or later with `resume`). What `submit` in the
        CLI does in the foreground."""
        return await self.driver.drive_realtime(run_id, on_round=on_round)

    def stop(self) -> None:
        """Stop gracefully (Ctrl-C): no new calls or rounds; calls on the wire get the
        real-time grace to finish, the rest is left pending for `resume`."""
        self.stopping.set()

    async def resume(self, run_id: str, *, realtime: bool = True) -> RunStatus:
        """After a crash: reconcile remote batches and in-flight calls, then one round
        (without its real-time share when `realtime` is False)."""
        return await self.driver.resume(run_id, realtime=realtime)

    async def cancel(self, run_id: str) -> RunStatus:
        """Cancel active batches (finished lines kept) and every request not yet finished."""
        return await self.driver.cancel(run_id)

    # ---- reading ----------------------------------------------------------------------------
    def runs(self, limit: int | None = None) -> list[RunInfo]:
        """The runs in the job database, newest first."""
        return self.reporter.runs(limit)

    def status(self, run_id: str) -> RunStatus:
        return self.reporter.status(run_id)

    def refresh(self, last: RunStatus) -> RunStatus:
        """`last` with the counts, batches and cost as the store has them now (cheap: for a
        view redrawn every second)."""
        return self.reporter.refresh(last)

    def costs(self, run_id: str | None = None) -> CostReport:
        return self.reporter.costs(run_id)

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
        return self.reporter.fetch(run_id, Path(output), errs, group=group)

    def results(self, run_id: str) -> Iterator[Result]:
        """The run's results as `Result` objects, one per request, in input order, read
        from the store a page at a time (no file is written)."""
        return self.reporter.results(run_id)

    async def verify(self) -> VerifyReport:
        """Check the key and base URL with a models call; the key is never shown."""
        return await key_checks.verify(self.client, self.settings, self.sleep)
