"""Driving a run: rounds of real-time work and batch polling until it is done.

Owns `RunDriving`, the part of `Orchestrator` that moves runs on (`step`, `wait`,
`drive_realtime`, `resume`, `cancel`, `stop`): re-routing between rounds, the real-time
share, batch rounds, the budget warning and when the next round is due. Every change of
course is an event in the store with its reason. No SQL, no printing, the injected clock.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from batchyard.errors import DispatchStopped
from batchyard.models import RouteOverride, RunState
from batchyard.orchestrator import _routing as routing
from batchyard.orchestrator._core import OrchestratorCore
from batchyard.orchestrator._fallback import breaker_fallback
from batchyard.orchestrator._notify import notify_if_finished
from batchyard.orchestrator._reports import (
    RunStatus,
)
from batchyard.orchestrator._steering import (
    budget_guard,
    cancel_realtime,
    check_recorded,
    finish_if_done,
    recover_claims,
    recover_dead_claims,
    reroute,
    set_state,
    stall_reason,
    watch_cancels,
)
from batchyard.orchestrator._timing import sleep_unless
from batchyard.orchestrator.realtime.types import FlexFallback
from batchyard.store.rows import RunRow

__all__ = ["RunDriving"]


class RunDriving(OrchestratorCore):
    """Driving runs; part of `Orchestrator` (use that class)."""

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
            self.clock_map(),
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
        self.provider_clock.flush()
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
        self.provider_clock.flush()
        finish_if_done(self.store, run_id)
        return await self._finished(run_id)
