"""The orchestrator: one object that plans, submits, drives, reports and fetches runs.

Owns the run lifecycle as users see it (`submit`, `step`, `wait`, `status`, `fetch`,
`cancel`, `resume`, `costs`), gluing ingest → store → router → the two executors
(`BatchRunner` for the Batch API, `RealtimeRunner` for real time). Every decision and change
of course is recorded as an event in the store with its reason. It never writes SQL (the
store does), never prints (callers render), and reads time only through the injected clock.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
import socket
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openai

from batchyard.config import ModelInfo, Settings, load_settings
from batchyard.errors import ConfigError, QuotaExhausted
from batchyard.ingest import ParsedRequest, read_requests, validate_file, write_rejects
from batchyard.models import RequestStatus, RouteOverride, RunState
from batchyard.orchestrator import reporting, routing
from batchyard.orchestrator.batches import BatchRunner
from batchyard.orchestrator.client import make_client
from batchyard.orchestrator.realtime import RealtimeRunner
from batchyard.orchestrator.reports import (
    CostReport,
    FetchReport,
    RunStatus,
    SubmitResult,
    VerifyReport,
)
from batchyard.orchestrator.timing import Clock, Sleep, real_clock, real_sleep
from batchyard.router import (
    Plan,
    RequestFeatures,
    RunPolicy,
    decide,
    make_plan,
    parse_deadline,
    plan_from_decision,
    redecide,
)
from batchyard.store import Store
from batchyard.store.rows import NewRequest, RunRow

__all__ = ["Orchestrator", "Progress"]

Progress = Callable[[str, dict[str, Any]], None]
"""Progress callback: (event kind, data). Kinds include "realtime", "batch", "route"."""

_TERMINAL = (RequestStatus.SUCCEEDED, RequestStatus.FAILED, RequestStatus.CANCELLED)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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

    def _feature(self, p: ParsedRequest) -> RequestFeatures:
        return routing.from_new(self._new_request(p))

    def _new_request(self, p: ParsedRequest) -> NewRequest:
        info = self.models[p.model] if p.model in self.models else _base_model(self.models, p.model)
        out = routing.expected_output(p.endpoint, p.output_tokens)
        return NewRequest(
            custom_id=p.custom_id,
            line=p.line,
            endpoint=p.endpoint.value,
            model=p.model,
            body=p.body,
            input_tokens=p.input_tokens,
            output_tokens=out,
            cost_standard=info.cost("standard", p.input_tokens, out),
            cost_flex=info.cost("flex", p.input_tokens, out) if info.flex else None,
            cost_batch=info.cost("batch", p.input_tokens, out),
            priority=p.priority,
        )

    def _valid(self, path: Path) -> Iterator[ParsedRequest]:
        for item in read_requests(path, self.models):
            if isinstance(item, ParsedRequest):
                yield item

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
        source = Path(path)
        validate_file(source, self.models).raise_if_invalid()
        requests = [self._feature(p) for p in self._valid(source)]
        policy = self.policy(deadline=deadline, budget=budget, route=route, strict=strict)
        names = sorted({r.model for r in requests})
        caps = self._capacities(names)
        history = routing.turnarounds(self.store.list_batches()) if self._store else {}
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
        checked = validate_file(source, self.models)
        rejects_path: Path | None = None
        if not checked.ok:
            if not skip_invalid:
                checked.raise_if_invalid()
            rejects_path = Path(rejects) if rejects else source.with_suffix(".rejects.jsonl")
            problems = [
                p for p in read_requests(source, self.models) if not isinstance(p, ParsedRequest)
            ]
            write_rejects(problems, rejects_path)
        if checked.valid == 0:
            raise ConfigError(f"{source} has no valid request to submit.")
        policy = self.policy(deadline=deadline, budget=budget, route=route, strict=strict)
        requests = [self._feature(p) for p in self._valid(source)]
        names = sorted({r.model for r in requests})
        now = self.clock()
        caps = self._capacities(names)
        history = routing.turnarounds(self.store.list_batches())
        decision = decide(requests, policy, caps, now, history)  # may raise PlanRefused
        plan = plan_from_decision(decision, requests, policy, caps, history)
        del requests
        endpoints = sorted({g[0].value for g in checked.groups})
        run_id = self.store.create_run(
            source_path=str(source.resolve()),
            source_sha256=_sha256(source),
            endpoint=endpoints[0] if len(endpoints) == 1 else ",".join(endpoints),
            models=names,
            route_override=policy.route,
            deadline_at=policy.deadline,
            budget=policy.budget_usd,
            estimated_cost=plan.expected,
            options={
                "strict": strict,
                "margin_s": policy.margin_s,
                "rejected": checked.invalid_lines,
                "rejects_path": str(rejects_path) if rejects_path else None,
            },
        )
        self.store.add_requests(run_id, (self._new_request(p) for p in self._valid(source)))
        self.store.set_routes(
            run_id, ((a.custom_id, a.route, a.reason) for a in decision.assignments)
        )
        self.store.add_event(run_id, "route.plan", decision.reason, plan.to_dict())
        self.store.set_run_state(run_id, RunState.RUNNING)
        report = await self.batch.submit(run_id)
        return SubmitResult(
            run_id=run_id,
            plan=plan,
            accepted=checked.valid,
            rejected=checked.invalid_lines,
            rejects_path=rejects_path,
            shards_submitted=report.submitted,
            waiting_shards=report.waiting,
        )

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
        rows = list(self.store.iter_requests(run.id, statuses=routing.OPEN_STATUSES))
        movable = [r for r in rows if r.status is not RequestStatus.IN_FLIGHT]
        if not movable:
            return
        names = sorted({r.model for r in rows})
        shards = routing.shard_states(self.store, run.id)
        red = redecide(
            routing.features(movable),
            self._policy_of(run),
            self._capacities(names),
            self.clock(),
            routing.turnarounds(self.store.list_batches()),
            shards=shards,
            current_routes=routing.current_routes(movable),
        )
        for change in red.changes:
            if change.action == "cancel_shard":
                self.store.add_event(
                    run.id, "route.escalate", change.reason, shard=int(change.subject)
                )
        if red.cancel_shards:
            await self.batch.cancel_shards(
                run.id, [int(s) for s in red.cancel_shards], "escalation point reached"
            )
        status_of = {r.custom_id: r.status for r in movable}
        moves = [
            (c.subject, c.to_route, c.reason)
            for c in red.changes
            if c.action == "reroute"
            and c.to_route is not None
            and status_of.get(c.subject) in (RequestStatus.ROUTED, RequestStatus.RETRYABLE)
        ]
        unrouted = [
            (a.custom_id, a.route, a.reason)
            for a in red.decision.assignments
            if status_of.get(a.custom_id) is RequestStatus.PENDING
        ]
        if moves or unrouted:
            self.store.set_routes(run.id, [*moves, *unrouted])
            for cid, to, why in moves[:50]:
                self.store.add_event(run.id, "route.change", f"{cid} -> {to}: {why}", custom_id=cid)
            self._progress("route", {"run_id": run.id, "moved": len(moves)})

    async def step(self, run_id: str, *, realtime: bool = True) -> RunStatus:
        """One round: poll and apply batches, re-decide, submit shards, run real-time work."""
        run = self.store.get_run(run_id)
        if run.state in (RunState.COMPLETED, RunState.CANCELLED):
            return self.status(run_id)
        await self.batch.poll(run_id)
        await self._reroute(run)
        await self.batch.submit(run_id)
        if realtime:
            try:
                await self.realtime.run(run_id)
            except QuotaExhausted as exc:
                self.store.add_event(run_id, "realtime.quota", str(exc))
                await self._reroute(run)
                await self.batch.submit(run_id)
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
                run = self.store.get_run(run_id)
                if run.state in (RunState.COMPLETED, RunState.CANCELLED):
                    break
                await self.batch.poll(run_id)
                await self._reroute(run)
                await self.batch.submit(run_id)
                if rt_task is None or rt_task.done():
                    if rt_task is not None and (exc := rt_task.exception()) is not None:
                        if not isinstance(exc, QuotaExhausted):
                            raise exc
                        self.store.add_event(run_id, "realtime.quota", str(exc))
                    rt_task = asyncio.ensure_future(self.realtime.run(run_id))
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
        run = self.store.get_run(run_id)
        recovered = self.store.recover_in_flight(run_id)
        report = await self.batch.reconcile(run_id)
        self.store.add_event(
            run_id,
            "run.resumed",
            f"Resumed: {recovered} in-flight request(s) will be retried; {report}",
        )
        if run.state is RunState.PENDING:
            self.store.set_run_state(run_id, RunState.RUNNING)
        return await self.step(run_id)

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


def _base_model(models: dict[str, ModelInfo], name: str) -> ModelInfo:
    for known in sorted(models, key=len, reverse=True):
        if name.startswith(known):
            return models[known]
    raise ConfigError(f'Unknown model {name!r}: add [models."{name}"] to batchyard.toml.')
