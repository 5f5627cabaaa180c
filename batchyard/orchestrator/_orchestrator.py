"""The orchestrator: one object that plans, submits, drives, reports and fetches runs.

Owns the run lifecycle as users see it (`submit`, `step`, `drive_realtime`, `wait`, `status`,
`fetch`, `cancel`, `resume`, `costs`), gluing ingest → store → router → the two executors
(`BatchRunner` for the Batch API, `RealtimeRunner` for real time). Every decision and change
of course is recorded as an event in the store with its reason. It never writes SQL (the
store does), never prints (callers render), and reads time only through the injected clock.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import openai

from batchyard.build import BuildReport, Variation, build_file
from batchyard.catalog import Catalog
from batchyard.checks import CheckFn
from batchyard.config import Settings, load_settings
from batchyard.errors import DispatchStopped, ProviderError
from batchyard.models import RouteOverride, RunState
from batchyard.orchestrator import _client as key_checks
from batchyard.orchestrator import _reports as reporting
from batchyard.orchestrator import _routing as routing
from batchyard.orchestrator._answer_checks import Judges, check_options
from batchyard.orchestrator._answers import Result, iter_results
from batchyard.orchestrator._client import make_client
from batchyard.orchestrator._fallback import OPTION as FALLBACK_OPTION
from batchyard.orchestrator._fallback import breaker_fallback, resolve_fallbacks
from batchyard.orchestrator._intake import check_file, record_run, reuse_preview, with_reuse
from batchyard.orchestrator._notify import notify_if_finished, notify_secret
from batchyard.orchestrator._reports import (
    CostReport,
    FetchReport,
    RunStatus,
    SubmitResult,
    VerifyReport,
)
from batchyard.orchestrator._sources import Requests, Source, prepare_source
from batchyard.orchestrator._steering import (
    budget_guard,
    budget_warning,
    cancel_realtime,
    check_recorded,
    finish_if_done,
    recover_claims,
    recover_dead_claims,
    reroute,
    route_unbatchable,
    set_state,
    stall_reason,
    watch_cancels,
)
from batchyard.orchestrator._timing import Clock, Sleep, real_clock, real_sleep, sleep_unless
from batchyard.orchestrator.batch.remote import new_owner
from batchyard.orchestrator.batch.runner import BatchRunner
from batchyard.orchestrator.batch.submit import SubmitReport
from batchyard.orchestrator.realtime.runner import RealtimeRunner
from batchyard.orchestrator.realtime.types import FlexFallback
from batchyard.router import (
    ModelCapacity,
    Plan,
    RunPolicy,
    Turnaround,
    decide,
    is_small_run,
    make_plan,
    plan_from_decision,
)
from batchyard.store import Store
from batchyard.store.rows import RunRow

__all__ = ["Orchestrator", "Progress"]

# The priors count as this many observed batches (or cancels): the first few of this
# store's own move the estimate most of the way.
_PRIOR_WEIGHT = 2.0

Progress = Callable[[str, dict[str, Any]], None]
"""Progress callback: (event kind, data). Kinds include "realtime", "batch", "route"."""


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
        on_progress: Progress | None = None,
        workdir: Path | None = None,
        checks: Mapping[str, CheckFn] | None = None,
    ) -> None:
        self.settings = settings or load_settings()
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
            self._batch = BatchRunner(*self._parts(), workdir=workdir, **self._timing())
            self._batch.ctx.judges = self.judges
        return self._batch

    @property
    def realtime(self) -> RealtimeRunner:
        if self._realtime is None:
            self._realtime = RealtimeRunner(*self._parts(), judges=self.judges, **self._timing())
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

    async def __aenter__(self) -> Orchestrator:
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

    def _capacities(self, names: list[str]) -> dict[str, ModelCapacity]:
        return routing.live_capacities(self.models, names, self._store, self._realtime)

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
            intake = check_file(
                source.path,
                self.models,
                learned_output=self.store.output_evidence(),
                reuse=self.settings.reuse if reuse is None else reuse,
            )
            requests, preview = reuse_preview(intake, self.store)
        policy = self.policy(deadline=deadline, budget=budget, route=route, strict=strict)
        names = sorted({r.model for r in requests})
        caps = self._capacities(names)
        batches = self.store.list_batches()
        history = routing.turnarounds(batches, names, self.prior)
        cancel = routing.cancel_latency(batches, self.cancel_prior)
        plan = make_plan(requests, policy, caps, self.clock(), history, cancel=cancel)
        return with_reuse(plan, preview, intake)

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
        self.judges.register(checks)
        options = check_options(
            list(checks) if checks is not None else self.settings.checks,
            self.settings.check_requeues if requeues is None else requeues,
            self.settings.length_raise,
        )
        intake = check_file(
            source,
            self.models,
            skip_invalid=skip_invalid,
            rejects=Path(rejects) if rejects else None,
            learned_output=self.store.output_evidence(),
            reuse=self.settings.reuse if reuse is None else reuse,
        )
        groups = ((str(endpoint), model) for endpoint, model in intake.checked.groups)
        fallbacks = resolve_fallbacks(fallback, self.settings.fallback, self.models, groups)
        if fallbacks:
            options[FALLBACK_OPTION] = fallbacks
        policy = self.policy(deadline=deadline, budget=budget, route=route, strict=strict)
        requests, preview = reuse_preview(intake, self.store)
        names = sorted({r.model for r in requests})
        await key_checks.preflight(self.client, self.sleep)
        now = self.clock()
        caps = self._capacities(names)
        batches = self.store.list_batches()
        history = routing.turnarounds(batches, names, self.prior)
        cancel = routing.cancel_latency(batches, self.cancel_prior)
        # may raise PlanRefused
        decision, est = decide(requests, policy, caps, now, history, cancel=cancel)
        plan = with_reuse(plan_from_decision(decision, est, policy), preview, intake)
        small = is_small_run(requests, policy)
        del requests
        checked = intake.checked
        run_id = record_run(
            self.store, intake, policy, decision, plan, small=small, options=options
        )
        if notify is not None:
            self.store.set_notify(run_id, notify)
        report = await self._submit_batches(run_id)
        if report.errors and not report.submitted:
            raise ProviderError(
                f"{report.errors[0]} The run {run_id} is recorded: run "
                f"`batchyard resume {run_id}` once the API can be reached."
            )
        return SubmitResult(
            run_id=run_id,
            plan=plan,
            accepted=checked.valid,
            rejected=checked.invalid_lines,
            rejects_path=intake.rejects_path,
            shards_submitted=report.submitted,
            waiting_shards=report.waiting,
        )

    async def _submit_batches(self, run_id: str) -> SubmitReport:
        report = await self.batch.submit(run_id)
        route_unbatchable(self.store, run_id, report.unbatchable, self.models)
        return report

    # ---- driving a run ------------------------------------------------------------------------
    async def _reroute(self, run: RunRow) -> None:
        """Re-decide the open work: escalate late batches, move work off failing paths
        (to the run's fallback models, for a breaker still open past the escalation point)."""
        points: dict[str, float] = {}
        self._escalation[run.id] = await reroute(
            self.store,
            self.batch,
            run,
            routing.run_policy(run, self.settings),
            self._capacities,
            self.clock(),
            self._progress,
            self.prior,
            self.cancel_prior,
            points=points,
        )
        if self._realtime is not None and points:
            opened = self._realtime.open_breakers()
            breaker_fallback(self.store, self.models, run, points, opened, self.clock())

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

    async def _run_realtime(self, run_id: str) -> None:
        """The real-time share, unless the budget says stop (the run then says why). Flex
        that stays unavailable falls back as the run's policy says: standard for `--route
        flex` (answers now), else batch at the same price (the router escalates if needed)."""
        run = self.store.get_run(run_id)
        fallback = (
            FlexFallback.STANDARD
            if run.route_override is RouteOverride.FLEX
            else FlexFallback.BATCH
        )
        stop = budget_guard(self.store, run)
        if stop is not None:
            self._blocked[run_id] = stop
            self._say(run_id, "budget.stop", stop)
            return
        recover_dead_claims(self.store, run_id)
        try:
            await self.realtime.run(run_id, stop=self.stopping, flex_fallback=fallback)
            self._blocked.pop(run_id, None)
        except DispatchStopped as exc:
            self._blocked[run_id] = str(exc)
            self._say(run_id, "realtime.quota", str(exc))
            await self._reroute(self.store.get_run(run_id))
            await self._submit_batches(run_id)

    async def _batch_round(self, run: RunRow) -> bool:
        """Poll, re-decide, submit. False while the run is being cancelled: then only the
        cancelled shards are still applied and nothing new starts."""
        self.store.mark_driving(run.id, self.owner)  # the queue's urgency counts driven runs
        self._driving.add(run.id)
        self._poll_now_if_due(run.id)
        if repaired := await self.batch.repair(run.id):
            self.store.add_event(run.id, "run.repaired", f"Repaired: {repaired}")
        await self.batch.poll(run.id)
        if run.state is RunState.CANCELLING:
            return False
        await self._reroute(run)
        await self._submit_batches(run.id)
        return True

    async def step(self, run_id: str, *, realtime: bool = True) -> RunStatus:
        """One round: poll and apply batches, re-decide, submit shards, run real-time work."""
        run = check_recorded(self.store, self.store.get_run(run_id))
        if run.state in (RunState.COMPLETED, RunState.CANCELLED):
            return self.status(run_id)
        if await self._batch_round(run) and realtime and not self.stopping.is_set():
            await self._run_realtime(run_id)
            if stalled := stall_reason(self.store, run_id, self._blocked.get(run_id)):
                self._say(run_id, "run.stalled", stalled)
        finish_if_done(self.store, run_id)
        self._warn_budget(run_id)
        return await self._finished(run_id)

    async def _finished(self, run_id: str) -> RunStatus:
        """The run's status, after its `--notify` call if it has just finished."""
        status = self.status(run_id)
        if await notify_if_finished(self.store, self.settings, status, self.clock):
            status = self.status(run_id)
        return status

    async def wait(
        self,
        run_id: str,
        *,
        on_round: Callable[[RunStatus], None] | None = None,
        max_rounds: int | None = None,
    ) -> RunStatus:
        """Drive the run until every request is finished (real time and batch together).

        Returns early, the run still open, when it cannot progress without the user (real
        time stopped for the quota or the budget, nothing else left): a `run.stalled` event
        and `status().last_errors` say why.
        """
        rounds = 0
        rt_task: asyncio.Task[object] | None = None
        try:
            while not self.stopping.is_set():
                run = check_recorded(self.store, self.store.get_run(run_id))
                if run.state in (RunState.COMPLETED, RunState.CANCELLED):
                    if on_round is not None and rounds == 0:
                        on_round(self.status(run_id))  # finished before: one round still
                    break
                if await self._batch_round(run) and (rt_task is None or rt_task.done()):
                    if rt_task is not None and (exc := rt_task.exception()) is not None:
                        raise exc
                    rt_task = asyncio.ensure_future(self._run_realtime(run_id))
                # Let the real-time task run even when the injected sleep never yields
                # (a simulated clock): otherwise it would only start once the loop ends.
                await asyncio.sleep(0)
                finish_if_done(self.store, run_id)
                self._warn_budget(run_id)
                status = self.status(run_id)
                if on_round is not None:
                    on_round(status)
                rounds += 1
                if status.done or (max_rounds is not None and rounds >= max_rounds):
                    break
                if rt_task is None or rt_task.done():
                    stalled = stall_reason(self.store, run_id, self._blocked.get(run_id))
                    if stalled is not None:
                        self._say(run_id, "run.stalled", stalled)
                        break
                await sleep_unless(self.sleep, self._next_round_in(run_id), self.stopping)
        finally:
            if rt_task is not None and not rt_task.done():
                await rt_task
        return await self._finished(run_id)

    async def drive_realtime(
        self, run_id: str, *, on_round: Callable[[RunStatus], None] | None = None
    ) -> RunStatus:
        """Rounds of `step` until no real-time work is left; the batches carry on without
        this call (follow them with `wait`, or later with `resume`). What `submit` in the
        CLI does in the foreground."""
        status = self.status(run_id)
        if on_round is not None:
            on_round(status)

        def more() -> bool:
            return (
                not status.done
                and not status.stalled
                and status.realtime_open > 0
                and not self.stopping.is_set()
            )

        while more():
            status = await self.step(run_id)
            if on_round is not None:
                on_round(status)
            if more():
                await self.sleep(self.settings.poll_min_seconds)
        return status

    def _poll_now_if_due(self, run_id: str) -> None:
        """At an escalation or release point, what moves depends on how far the shards
        have come: poll them now, not when their (backed-off) schedule says."""
        wake = self._escalation.get(run_id)
        if wake is not None and self.clock() >= wake:
            for b in self.store.list_active_batches(run_id):
                self.batch.schedule.forget(b.id)

    def _next_round_in(self, run_id: str) -> float:
        """Until the next batch poll is due, or the next escalation or release point if
        sooner (so late batch work is moved the moment it must be, not a poll interval
        later)."""
        wait = self.batch.next_poll_in(run_id)
        escalation = self._escalation.get(run_id)
        if escalation is not None:
            wait = min(wait, max(0.0, escalation - self.clock()))
        return wait

    def stop(self) -> None:
        """Stop gracefully (Ctrl-C): no new calls or rounds; calls on the wire get the
        real-time grace to finish, the rest is left pending for `resume`."""
        self.stopping.set()

    async def resume(self, run_id: str, *, realtime: bool = True) -> RunStatus:
        """After a crash: reconcile remote batches and in-flight calls, then one round
        (without its real-time share when `realtime` is False)."""
        check_recorded(self.store, self.store.get_run(run_id))
        recovered = recover_claims(
            self.store, run_id, self.owner, self.realtime.stale_claim_seconds
        )
        report = await self.batch.reconcile(run_id)
        self.store.add_event(
            run_id,
            "run.resumed",
            f"Resumed: {recovered} in-flight request(s) will be retried; {report}",
        )
        return await self.step(run_id, realtime=realtime)

    async def cancel(self, run_id: str) -> RunStatus:
        """Cancel active batches (finished lines kept) and every request not yet finished."""
        run = self.store.get_run(run_id)
        if run.state in (RunState.COMPLETED, RunState.CANCELLED):
            return self.status(run_id)
        if run.state is not RunState.CANCELLING:
            set_state(self.store, run_id, RunState.CANCELLING)
        if cancelled := cancel_realtime(self.store, run_id):
            self.store.add_event(
                run_id, "run.cancel", f"{cancelled} real-time request(s) cancelled before sending"
            )
        watch_cancels(self.batch, await self.batch.cancel(run_id), self.clock())
        finish_if_done(self.store, run_id)
        return await self._finished(run_id)

    # ---- reading ------------------------------------------------------------------------------
    def runs(self, limit: int | None = None) -> list[RunRow]:
        return self.store.list_runs(limit=limit)

    def status(self, run_id: str) -> RunStatus:
        stalled = stall_reason(self.store, run_id, self._blocked.get(run_id))
        run = self.store.get_run(run_id)
        return reporting.status(self.store, run, self.clock(), stalled, self.prior, self.models)

    def costs(self, run_id: str | None = None) -> CostReport:
        return reporting.costs(self.store, self.models, run_id)

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
        return reporting.fetch(self.store, run_id, Path(output), errs, group=group)

    def results(self, run_id: str) -> Iterator[Result]:
        """The run's results as `Result` objects, one per request, in input order, read
        from the store a page at a time (no file is written)."""
        return iter_results(self.store, run_id)

    async def verify(self) -> VerifyReport:
        """Check the key and base URL with a models call; the key is never shown."""
        return await key_checks.verify(self.client, self.settings)
