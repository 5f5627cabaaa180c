"""Driving a run: rounds of real-time work and batch polling until it is done.

Owns `RunDriver`, which moves runs on (`step`, `wait`, `drive_realtime`, `resume`,
`cancel`): re-routing between rounds, the real-time share, batch rounds, the budget warning
and when the next round is due. It is built from the store, the batch runner, a way to make
the real-time runner (made on first use: planning needs no key) and a `Reporter` for the
status each round returns; `Orchestrator` hands these calls to one. Every change of course
is an event in the store with its reason. No SQL, no printing, the injected clock.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from batchyard.catalog import Catalog
from batchyard.config import Settings
from batchyard.errors import DispatchStopped
from batchyard.models import RouteOverride, RunState
from batchyard.orchestrator import _routing as routing
from batchyard.orchestrator._calls.timing import Clock, Sleep, sleep_unless
from batchyard.orchestrator._driving.steering import (
    budget_guard,
    budget_warning,
    cancel_realtime,
    check_recorded,
    finish_if_done,
    recover_claims,
    recover_dead_claims,
    route_unbatchable,
    set_state,
    stall_reason,
    watch_cancels,
)
from batchyard.orchestrator._driving.steering import (
    reroute as reroute_open_work,
)
from batchyard.orchestrator._reporting.notify import notify_if_finished
from batchyard.orchestrator._reporting.progress import OnProgress
from batchyard.orchestrator._reporting.reporter import Reporter
from batchyard.orchestrator._reporting.reports import RunStatus
from batchyard.orchestrator._routing.fallback import breaker_fallback
from batchyard.orchestrator._routing.provider_clock import ProviderClock
from batchyard.orchestrator.batch.runner import BatchRunner
from batchyard.orchestrator.batch.submit import SubmitReport
from batchyard.orchestrator.realtime.runner import RealtimeRunner
from batchyard.orchestrator.realtime.types import FlexFallback
from batchyard.router import ModelCapacity, Turnaround
from batchyard.store import Store
from batchyard.store.rows import RunRow

__all__ = ["OnRound", "RunDriver"]

OnRound = Callable[[RunStatus], None]  # told each round's status


class RunDriver:
    """Moves runs on, as the process whose `owner` it is.

    `realtime` makes the real-time runner, once, when a run first needs it; `stopping` is
    set to finish gracefully; `blocked` (why real-time dispatch stopped, per run) is shared
    with the `Reporter`, whose status says a run is stalled by it; `progress` hears of the
    budget warning.
    """

    def __init__(
        self,
        store: Store,
        batch: BatchRunner,
        realtime: Callable[[], RealtimeRunner],
        reporter: Reporter,
        *,
        settings: Settings,
        models: Catalog,
        clock: Clock,
        sleep: Sleep,
        owner: str,
        provider_clock: ProviderClock,
        prior: Turnaround,
        cancel_prior: Turnaround,
        stopping: asyncio.Event | None = None,
        blocked: dict[str, str] | None = None,
        progress: OnProgress | None = None,
    ) -> None:
        self.store = store
        self.batch = batch
        self.reporter = reporter
        self.settings = settings
        self.models = models
        self.clock = clock
        self.sleep = sleep
        self.owner = owner
        self.provider_clock = provider_clock
        self.prior = prior
        self.cancel_prior = cancel_prior
        self.stopping = stopping if stopping is not None else asyncio.Event()
        self.blocked: dict[str, str] = blocked if blocked is not None else {}
        self._make_realtime = realtime
        self._realtime: RealtimeRunner | None = None
        self._progress_to = progress
        self._escalation: dict[str, float | None] = {}  # run -> next escalation point
        self._said: dict[tuple[str, str], str] = {}  # (run, kind) -> last message recorded
        self._warned: set[str] = set()  # runs whose budget warning is recorded
        self._driving: set[str] = set()  # runs this object drives (its `drivers` rows)

    @property
    def realtime(self) -> RealtimeRunner:
        """The real-time runner, made on first use."""
        if self._realtime is None:
            self._realtime = self._make_realtime()
        return self._realtime

    def capacities(self, names: list[str]) -> dict[str, ModelCapacity]:
        """Each model's limits as the store and the real-time runner (once made) see them."""
        return routing.live_capacities(self.models, names, self.store, self._realtime)

    def release(self) -> None:
        """Say in the store that this process no longer drives the runs it drove."""
        for run_id in self._driving:
            self.store.stop_driving(run_id, self.owner)

    def _progress(self, kind: str, data: dict[str, Any]) -> None:
        if self._progress_to is not None:
            self._progress_to(kind, data)

    async def submit_batches(self, run_id: str) -> SubmitReport:
        """Submit the run's batch shards that are due; lines the Batch API cannot take go
        to real time."""
        report = await self.batch.submit(run_id)
        self.provider_clock.flush()
        route_unbatchable(self.store, run_id, report.unbatchable, self.models)
        return report

    def deadline_view(self, run_id: str, model: str) -> tuple[float | None, float]:
        """For lines sent again: the run's next escalation point (else its deadline) and
        the model's median turnaround, on our clock."""
        batches, clock = self.store.list_batches(), self.provider_clock.map()
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

    async def reroute(self, run: RunRow) -> None:
        """Re-decide the open work: escalate late batches, move work off failing paths
        (to the run's fallback models, for a breaker still open past the escalation point)."""
        points: dict[str, float] = {}
        self._escalation[run.id] = await reroute_open_work(
            self.store,
            self.batch,
            run,
            routing.run_policy(run, self.settings),
            self.capacities,
            self.clock(),
            self._progress,
            self.prior,
            self.cancel_prior,
            self.provider_clock.map(),
            points=points,
        )
        if self._realtime is not None and points:
            opened = self._realtime.open_breakers()
            breaker_fallback(self.store, self.models, run, points, opened, self.clock())

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
            self.blocked[run_id] = stop
            self._say(run_id, "budget.stop", stop)
            return
        recover_dead_claims(self.store, run_id)
        try:
            await self.realtime.run(run_id, stop=self.stopping, flex_fallback=fallback)
            self.blocked.pop(run_id, None)
        except DispatchStopped as exc:
            self.blocked[run_id] = str(exc)
            self._say(run_id, "realtime.quota", str(exc))
            await self.reroute(self.store.get_run(run_id))
            await self.submit_batches(run_id)

    async def _batch_round(self, run: RunRow) -> bool:
        """Poll, re-decide, submit. False while the run is being cancelled: then only the
        cancelled shards are still applied and nothing new starts."""
        self.store.mark_driving(run.id, self.owner)  # the queue's urgency counts driven runs
        self._driving.add(run.id)
        self._poll_now_if_due(run.id)
        if repaired := await self.batch.repair(run.id):
            self.store.add_event(run.id, "run.repaired", f"Repaired: {repaired}")
        await self.batch.poll(run.id)
        # The lines `fetch` reads, of what finished since the last round (this poll's
        # results, and real-time answers meanwhile): made here, not while applying.
        self.store.store_answer_lines(run.id)
        self.provider_clock.flush()
        if run.state is RunState.CANCELLING:
            return False
        await self.reroute(run)
        await self.submit_batches(run.id)
        return True

    async def step(self, run_id: str, *, realtime: bool = True) -> RunStatus:
        """One round (`Orchestrator.step`)."""
        run = check_recorded(self.store, self.store.get_run(run_id))
        if run.state in (RunState.COMPLETED, RunState.CANCELLED):
            return self.reporter.status(run_id)
        if await self._batch_round(run) and realtime and not self.stopping.is_set():
            await self._run_realtime(run_id)
            if stalled := stall_reason(self.store, run_id, self.blocked.get(run_id)):
                self._say(run_id, "run.stalled", stalled)
        finish_if_done(self.store, run_id)
        self._warn_budget(run_id)
        return await self._finished(run_id)

    async def _finished(self, run_id: str) -> RunStatus:
        """The run's status, after its `--notify` call if it has just finished."""
        self.store.store_answer_lines(run_id)
        status = self.reporter.status(run_id)
        if await notify_if_finished(self.store, self.settings, status, self.clock):
            status = self.reporter.status(run_id)
        return status

    async def wait(
        self, run_id: str, *, on_round: OnRound | None = None, max_rounds: int | None = None
    ) -> RunStatus:
        """Rounds, the real-time share running beside the batch rounds, until the run is
        done or stalled (`Orchestrator.wait`)."""
        rounds = 0
        rt_task: asyncio.Task[object] | None = None
        try:
            while not self.stopping.is_set():
                run = check_recorded(self.store, self.store.get_run(run_id))
                if run.state in (RunState.COMPLETED, RunState.CANCELLED):
                    if on_round is not None and rounds == 0:
                        on_round(self.reporter.status(run_id))  # finished before: one round still
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
                status = self.reporter.status(run_id)
                if on_round is not None:
                    on_round(status)
                rounds += 1
                if status.done or (max_rounds is not None and rounds >= max_rounds):
                    break
                if rt_task is None or rt_task.done():
                    stalled = stall_reason(self.store, run_id, self.blocked.get(run_id))
                    if stalled is not None:
                        self._say(run_id, "run.stalled", stalled)
                        break
                await sleep_unless(self.sleep, self._next_round_in(run_id), self.stopping)
        finally:
            if rt_task is not None and not rt_task.done():
                await rt_task
        return await self._finished(run_id)

    async def drive_realtime(self, run_id: str, *, on_round: OnRound | None = None) -> RunStatus:
        """Rounds of `step` until no real-time work is left (`Orchestrator.drive_realtime`)."""
        status = self.reporter.status(run_id)
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

    async def resume(self, run_id: str, *, realtime: bool = True) -> RunStatus:
        """Reconcile after a crash, then one round (`Orchestrator.resume`)."""
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
        """Cancel the run's batches and open requests (`Orchestrator.cancel`)."""
        run = self.store.get_run(run_id)
        if run.state in (RunState.COMPLETED, RunState.CANCELLED):
            return self.reporter.status(run_id)
        if run.state is not RunState.CANCELLING:
            set_state(self.store, run_id, RunState.CANCELLING)
        if cancelled := cancel_realtime(self.store, run_id):
            self.store.add_event(
                run_id, "run.cancel", f"{cancelled} real-time request(s) cancelled before sending"
            )
        watch_cancels(self.batch, await self.batch.cancel(run_id), self.clock())
        self.provider_clock.flush()
        finish_if_done(self.store, run_id)
        return await self._finished(run_id)
