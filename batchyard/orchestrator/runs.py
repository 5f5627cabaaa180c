"""The orchestrator: one object that plans, submits, drives, reports and fetches runs.

Owns the run lifecycle as users see it (`submit`, `step`, `wait`, `status`, `fetch`,
`cancel`, `resume`, `costs`), gluing ingest → store → router → the two executors
(`BatchRunner` for the Batch API, `RealtimeRunner` for real time). Every decision and change
of course is recorded as an event in the store with its reason. It never writes SQL (the
store does), never prints (callers render), and reads time only through the injected clock.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import openai

from batchyard.config import ModelInfo, Settings, load_settings
from batchyard.errors import ConfigError, InputError, ProviderError, QuotaExhausted
from batchyard.models import RequestStatus, RouteOverride, RunState
from batchyard.orchestrator import reporting, routing
from batchyard.orchestrator.batch_submit import SubmitReport
from batchyard.orchestrator.batches import BatchRunner
from batchyard.orchestrator.client import make_client
from batchyard.orchestrator.intake import check_file, sha256_file
from batchyard.orchestrator.realtime import RealtimeRunner
from batchyard.orchestrator.reports import (
    CostReport,
    FetchReport,
    RunStatus,
    SubmitResult,
    VerifyReport,
)
from batchyard.orchestrator.retry import RetryPolicy, call_with_retry
from batchyard.orchestrator.steering import budget_guard, reroute, route_unbatchable
from batchyard.orchestrator.timing import Clock, Sleep, real_clock, real_sleep
from batchyard.router import (
    Plan,
    RunPolicy,
    decide,
    make_plan,
    parse_deadline,
    plan_from_decision,
)
from batchyard.store import Store
from batchyard.store.rows import RunRow

__all__ = ["Orchestrator", "Progress"]

Progress = Callable[[str, dict[str, Any]], None]
"""Progress callback: (event kind, data). Kinds include "realtime", "batch", "route"."""

_TERMINAL = (RequestStatus.SUCCEEDED, RequestStatus.FAILED, RequestStatus.CANCELLED)


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


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
    ) -> None:
        self.settings = settings or load_settings()
        self.models: dict[str, ModelInfo] = self.settings.model_table()
        self.clock = clock
        self.sleep = sleep
        self.on_progress = on_progress
        self.owner = _owner()
        self._store = store
        self._client = client
        self._workdir = workdir
        self._batch: BatchRunner | None = None
        self._realtime: RealtimeRunner | None = None

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
    def batch(self) -> BatchRunner:
        if self._batch is None:
            workdir = self._workdir or Path(tempfile.mkdtemp(prefix="batchyard-"))
            self._batch = BatchRunner(
                self.store,
                self.client,
                self.models,
                self.settings,
                clock=self.clock,
                sleep=self.sleep,
                owner=self.owner,
                workdir=workdir,
                on_progress=self._progress,
            )
        return self._batch

    @property
    def realtime(self) -> RealtimeRunner:
        if self._realtime is None:
            self._realtime = RealtimeRunner(
                self.store,
                self.client,
                self.models,
                self.settings,
                clock=self.clock,
                sleep=self.sleep,
                owner=self.owner,
                on_progress=self._progress,
            )
        return self._realtime

    def _progress(self, kind: str, data: dict[str, Any]) -> None:
        if self.on_progress is not None:
            self.on_progress(kind, data)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
        if self._store is not None:
            self._store.close()

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
        now = self.clock()
        when = deadline if deadline is not None else self.settings.deadline
        at = when if isinstance(when, float | int) or when is None else parse_deadline(when, now)
        return RunPolicy(
            deadline=float(at) if at is not None else None,
            budget_usd=budget,
            route=RouteOverride(route),
            margin_s=self.settings.margin_seconds,
            strict=strict,
            small_run_requests=self.settings.small_run_requests,
            small_run_usd=self.settings.small_run_usd,
        )

    def _capacities(self, names: list[str], run_id: str | None = None) -> dict[str, Any]:
        rt = self._realtime
        return routing.capacities(
            self.models,
            names,
            in_flight_tokens=routing.in_flight_tokens(self.store) if self._store else None,
            breaker_open=rt.open_breakers() if rt else (),
            quota_exhausted=bool(rt and rt.quota_exhausted),
            flex_unavailable=rt.flex_unavailable() if rt else (),
            rate_views=rt.rate_views() if rt else None,
        )

    def plan(
        self,
        path: str | os.PathLike[str],
        *,
        deadline: str | float | None = None,
        budget: float | None = None,
        route: RouteOverride | str = RouteOverride.AUTO,
        strict: bool = False,
    ) -> Plan:
        """The plan for a file: routes, escalation point, costs. No API calls."""
        intake = check_file(Path(path), self.models)
        requests = intake.features()
        policy = self.policy(deadline=deadline, budget=budget, route=route, strict=strict)
        caps = self._capacities(sorted({r.model for r in requests}))
        history = routing.turnarounds(self.store.list_batches())
        return make_plan(requests, policy, caps, self.clock(), history)

    # ---- submit ---------------------------------------------------------------------------
    async def submit(
        self,
        path: str | os.PathLike[str],
        *,
        deadline: str | float | None = None,
        budget: float | None = None,
        route: RouteOverride | str = RouteOverride.AUTO,
        strict: bool = False,
        skip_invalid: bool = False,
        rejects: str | os.PathLike[str] | None = None,
    ) -> SubmitResult:
        """Validate, plan, record the run and submit its batch shards.

        Nothing is recorded or sent when a line is invalid, unless `skip_invalid`, in which
        case the invalid lines are written to `rejects` (default: FILE.rejects.jsonl). The
        real-time share is left routed: run it with `step`/`wait` (the CLI does).
        """
        source = Path(path)
        intake = check_file(
            source,
            self.models,
            skip_invalid=skip_invalid,
            rejects=Path(rejects) if rejects else None,
        )
        policy = self.policy(deadline=deadline, budget=budget, route=route, strict=strict)
        requests = intake.features()
        names = sorted({r.model for r in requests})
        await self._preflight()
        now = self.clock()
        caps = self._capacities(names)
        history = routing.turnarounds(self.store.list_batches())
        decision = decide(requests, policy, caps, now, history)  # may raise PlanRefused
        plan = plan_from_decision(decision, requests, policy, caps, history)
        del requests
        checked = intake.checked
        run_id = self.store.create_run(
            source_path=str(source.resolve()),
            source_sha256=sha256_file(source),
            endpoint=intake.endpoint,
            models=names,
            route_override=policy.route,
            deadline_at=policy.deadline,
            budget=policy.budget_usd,
            estimated_cost=plan.expected,
            options={
                "strict": strict,
                "margin_s": policy.margin_s,
                "requests": checked.valid,
                "rejected": checked.invalid_lines,
                "rejects_path": str(intake.rejects_path) if intake.rejects_path else None,
            },
        )
        self.store.add_requests(run_id, intake.new_requests())
        self.store.set_routes(
            run_id, ((a.custom_id, a.route, a.reason) for a in decision.assignments)
        )
        self.store.add_event(run_id, "route.plan", decision.reason, plan.to_dict())
        self.store.set_run_state(run_id, RunState.RUNNING)
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

    async def _preflight(self) -> None:
        """One models call before anything is recorded, so a wrong key or URL fails fast."""
        base = str(self.client.base_url)
        try:
            await call_with_retry(
                self.client.models.list, RetryPolicy(max_attempts=3), sleep=self.sleep
            )
        except openai.AuthenticationError as exc:
            raise ConfigError(
                f"The API at {base} refused the key (401); check OPENAI_API_KEY. "
                "Nothing was recorded."
            ) from exc
        except openai.APIConnectionError as exc:
            raise ProviderError(
                f"Cannot reach the API at {base}; check OPENAI_BASE_URL and the network. "
                "Nothing was recorded."
            ) from exc

    # ---- driving a run ------------------------------------------------------------------------
    def _policy_of(self, run: RunRow) -> RunPolicy:
        return RunPolicy(
            deadline=run.deadline_at,
            budget_usd=run.budget,
            route=run.route_override,
            margin_s=float(run.options.get("margin_s", self.settings.margin_seconds)),
            strict=False,
            small_run_requests=self.settings.small_run_requests,
            small_run_usd=self.settings.small_run_usd,
        )

    async def _reroute(self, run: RunRow) -> None:
        """Re-decide the open work: escalate late batches, move work off failing paths."""
        await reroute(
            self.store,
            self.batch,
            run,
            self._policy_of(run),
            self._capacities,
            self.clock(),
            self._progress,
        )

    async def _run_realtime(self, run_id: str) -> None:
        """The real-time share, unless the budget says stop (the run then says why)."""
        stop = budget_guard(self.store, self.store.get_run(run_id))
        if stop is not None:
            self.store.add_event(run_id, "budget.stop", stop)
            return
        try:
            await self.realtime.run(run_id)
        except QuotaExhausted as exc:
            self.store.add_event(run_id, "realtime.quota", str(exc))
            await self._reroute(self.store.get_run(run_id))
            await self._submit_batches(run_id)

    async def step(self, run_id: str, *, realtime: bool = True) -> RunStatus:
        """One round: poll and apply batches, re-decide, submit shards, run real-time work."""
        run = self._check_recorded(self.store.get_run(run_id))
        if run.state in (RunState.COMPLETED, RunState.CANCELLED):
            return self.status(run_id)
        await self.batch.poll(run_id)
        await self._reroute(run)
        await self._submit_batches(run_id)
        if realtime:
            await self._run_realtime(run_id)
        self._finish_if_done(run_id)
        return self.status(run_id)

    def _finish_if_done(self, run_id: str) -> None:
        counts = self.store.count_requests(run_id)
        open_ = sum(n for (_, status), n in counts.items() if status not in _TERMINAL)
        active = self.store.list_active_batches(run_id)
        run = self.store.get_run(run_id)
        if open_ == 0 and not active and run.state in (RunState.RUNNING, RunState.PENDING):
            self.store.set_run_state(run_id, RunState.COMPLETED)
            self.store.add_event(run_id, "run.completed", "Every request is finished.")
        elif open_ == 0 and not active and run.state is RunState.CANCELLING:
            self.store.set_run_state(run_id, RunState.CANCELLED)

    async def wait(
        self,
        run_id: str,
        *,
        on_round: Callable[[RunStatus], None] | None = None,
        max_rounds: int | None = None,
    ) -> RunStatus:
        """Drive the run until every request is finished (real time and batch together)."""
        rounds = 0
        rt_task: asyncio.Task[object] | None = None
        try:
            while True:
                run = self._check_recorded(self.store.get_run(run_id))
                if run.state in (RunState.COMPLETED, RunState.CANCELLED):
                    break
                await self.batch.poll(run_id)
                await self._reroute(run)
                await self._submit_batches(run_id)
                if rt_task is None or rt_task.done():
                    if rt_task is not None and (exc := rt_task.exception()) is not None:
                        raise exc
                    rt_task = asyncio.ensure_future(self._run_realtime(run_id))
                self._finish_if_done(run_id)
                status = self.status(run_id)
                if on_round is not None:
                    on_round(status)
                rounds += 1
                if status.done or (max_rounds is not None and rounds >= max_rounds):
                    break
                await self.sleep(self.batch.next_poll_in(run_id))
        finally:
            if rt_task is not None and not rt_task.done():
                await rt_task
        return self.status(run_id)

    async def resume(self, run_id: str) -> RunStatus:
        """After a crash: reconcile remote batches and in-flight calls, then one round."""
        self._check_recorded(self.store.get_run(run_id))
        recovered = self.store.recover_in_flight(run_id)
        report = await self.batch.reconcile(run_id)
        self.store.add_event(
            run_id,
            "run.resumed",
            f"Resumed: {recovered} in-flight request(s) will be retried; {report}",
        )
        return await self.step(run_id)

    def _check_recorded(self, run: RunRow) -> RunRow:
        """A run still `pending` was interrupted while `submit` recorded it (nothing was sent
        yet): carry on if every request and route made it, else close it and say so."""
        if run.state is not RunState.PENDING:
            return run
        expected = int(run.options.get("requests", run.request_count))
        counts = self.store.count_requests(run.id)
        unrouted = sum(n for (route, _), n in counts.items() if route is None)
        if run.request_count == expected and unrouted == 0:
            return self.store.set_run_state(run.id, RunState.RUNNING)
        self.store.set_run_state(run.id, RunState.CANCELLED)
        message = (
            f"Run {run.id} was interrupted while it was being recorded "
            f"({run.request_count} of {expected} requests); nothing was sent. "
            f"Submit {run.source_path} again."
        )
        self.store.add_event(run.id, "run.incomplete", message)
        raise InputError(message)

    async def cancel(self, run_id: str) -> RunStatus:
        """Cancel active batches (finished lines kept) and every request not yet finished."""
        run = self.store.get_run(run_id)
        if run.state in (RunState.COMPLETED, RunState.CANCELLED):
            return self.status(run_id)
        if run.state is not RunState.CANCELLING:
            self.store.set_run_state(run_id, RunState.CANCELLING)
        await self.batch.cancel(run_id)
        self._finish_if_done(run_id)
        return self.status(run_id)

    # ---- reading ------------------------------------------------------------------------------
    def runs(self, limit: int | None = None) -> list[RunRow]:
        return self.store.list_runs(limit=limit)

    def status(self, run_id: str) -> RunStatus:
        return reporting.status(self.store, self.store.get_run(run_id), self.clock())

    def costs(self, run_id: str | None = None) -> CostReport:
        return reporting.costs(self.store, self.models, run_id)

    def fetch(
        self,
        run_id: str,
        output: str | os.PathLike[str],
        errors: str | os.PathLike[str] | None = None,
    ) -> FetchReport:
        return reporting.fetch(self.store, run_id, Path(output), Path(errors) if errors else None)

    async def verify(self) -> VerifyReport:
        """Check the key and base URL with a models call; the key is never shown."""
        base = str(self.client.base_url)
        key = self.settings.api_key.get_secret_value() if self.settings.api_key else ""
        hint = f"{key[:3]}...{key[-4:]}" if len(key) > 12 else "(set)" if key else "(missing)"
        try:
            page = await self.client.models.list()
        except openai.AuthenticationError:
            return VerifyReport(base, False, [], "The API key was refused (401).", hint)
        except openai.APIConnectionError:
            return VerifyReport(base, False, [], f"Cannot connect to {base}.", hint)
        except openai.APIStatusError as exc:
            return VerifyReport(base, False, [], f"The API answered {exc.status_code}.", hint)
        names = sorted(m.id for m in page.data)
        return VerifyReport(base, True, names, f"{len(names)} model(s) available.", hint)
