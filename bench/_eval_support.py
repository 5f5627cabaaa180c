"""Running batchyard end to end against the simulator on virtual time, for the routing eval.

Owns `VirtualTime` (one discrete-event clock shared by the simulator and the orchestrator),
`Scenario` (a workload and the simulator it meets), `Harness` (a fresh simulator, job store
and `Orchestrator` wired together in-process) and `RunOutcome` (what one run cost according
to the simulator's ledger, and when each request finished according to the store). Used by
`bench/routing_eval.py` and `tests/test_routing_e2e.py`. It decides nothing about routing
and never touches the network.

Virtual time: `sleep(s)` parks the caller until the clock reaches now + s, and the clock
moves only when every task is parked (the event loop has nothing ready to run), straight to
the earliest wake-up. So CPU time costs no simulated time, 24 simulated hours pass in a
moment, and real-time throughput is set by the simulated RPM/TPM alone, not by how fast
this machine answers HTTP in-process. The simulator's `SimClock` is frozen to this clock
(its real-time source is a constant and `time_scale` is 1, so durations in its headers are
our seconds). Detecting "nothing ready" reads the event loop's private `_ready` queue: fine
for a benchmark harness on the default asyncio loop, and checked at start-up.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import random
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx2

from batchyard.config import load_settings
from batchyard.models import RequestStatus, RouteOverride
from batchyard.orchestrator._calls.client import make_client
from batchyard.orchestrator._orchestrator import Orchestrator
from batchyard.orchestrator._reporting.reports import SubmitResult
from batchyard.samples import write_sample
from batchyard.simulator import SimState, create_app, load_config
from batchyard.simulator.clock import SimClock
from batchyard.simulator.state import LedgerEntry

__all__ = ["START", "Harness", "RunOutcome", "Scenario", "VirtualTime", "batch_line_times"]

# batchyard paces Files/Batches API calls with aiolimiter, which sleeps on the event loop's
# real clock, not the injected one: on virtual time that would only add real waits (time
# stands still meanwhile), so the harness lifts that pace unless a test sets it.
_HARNESS_SETTINGS: dict[str, Any] = {"batch_api_rpm": 1_000_000}
START = 1_767_225_600.0  # 2026-01-01T00:00:00Z: every scenario starts here, in virtual time
T = TypeVar("T")


class VirtualTime:
    """A discrete-event clock: `now()` reads it, `await sleep(s)` parks until now + s.

    Run the whole program under `await vt.run(coro)`: whenever nothing else is ready, it
    moves the clock to the earliest parked wake-up and releases every sleeper due by then.
    """

    def __init__(self, start: float = START) -> None:
        self.sim_clock = SimClock(start=start, time_scale=1.0, real=lambda: 0.0)
        self._heap: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()
        self.jumps = 0

    def now(self) -> float:
        return self.sim_clock.now()

    def __call__(self) -> float:
        return self.now()

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._heap, (self.now() + seconds, next(self._seq), fut))
        await fut

    async def run(self, coro: Coroutine[Any, Any, T], *, limit_s: float = 30 * 86_400.0) -> T:
        """Run `coro` to the end on virtual time; give up past `limit_s` simulated seconds."""
        loop = asyncio.get_running_loop()
        ready = getattr(loop, "_ready", None)
        if ready is None:
            raise RuntimeError("VirtualTime needs the default asyncio event loop.")
        task = asyncio.ensure_future(coro)
        end = self.now() + limit_s
        try:
            while not task.done():
                await asyncio.sleep(0)
                if ready or task.done():
                    continue
                while self._heap and self._heap[0][2].done():
                    heapq.heappop(self._heap)
                if not self._heap:
                    await asyncio.sleep(0.001)  # something waits on real time (rare)
                    continue
                when = self._heap[0][0]
                if when > end:
                    raise TimeoutError(f"still running after {limit_s:.0f} simulated seconds")
                if when > self.now():
                    self.sim_clock.advance(when - self.now())
                    self.jumps += 1
                while self._heap and self._heap[0][0] <= self.now():
                    _, _, fut = heapq.heappop(self._heap)
                    if not fut.done():
                        fut.set_result(None)
        finally:
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        return task.result()


@dataclass(frozen=True)
class Scenario:
    """One workload and the simulator it runs against. Times in simulated seconds.

    `turnaround_s` is every batch's fixed time in progress (no spread); past 24 h batches
    expire. `rpm`/`tpm` apply to every model, in the simulator and in batchyard's table.
    `batch` overrides the simulator's batch settings (e.g. `cancelling_seconds`).
    `history`: how many identical runs go first in the same store and simulator, so the
    measured run starts with what the store learned from them; only the last is measured.
    """

    name: str
    requests: int
    models: tuple[str, ...] = ("gpt-4o-mini",)
    deadline_s: float | None = None
    turnaround_s: float = 1_800.0
    rpm: int = 5_000
    tpm: int = 2_000_000
    enqueued_token_limit: int = 20_000_000
    faults: dict[str, float] = field(default_factory=dict)
    seed: int = 0
    batch: dict[str, float] = field(default_factory=dict)
    history: int = 0

    def sim_config(self) -> dict[str, Any]:
        limits = {
            "rpm": self.rpm,
            "tpm": self.tpm,
            "enqueued_token_limit": self.enqueued_token_limit,
        }
        return {
            "models": {m: dict(limits) for m in self.models},
            "batch": {
                "turnaround_seconds": self.turnaround_s,
                "turnaround_sigma": 0.0,
                **self.batch,
            },
            "faults": dict(self.faults),
            "seed": self.seed,
        }


@dataclass
class RunOutcome:
    """One run, measured from the simulator's ledger and the job store."""

    route: str
    run_id: str
    submit: SubmitResult
    cost: float  # USD billed by the simulator
    cost_by_path: dict[str, float]
    cost_by_model: dict[str, float]
    tokens: dict[str, tuple[int, int]]  # custom_id -> (input, output) as billed
    finished: dict[str, float]  # custom_id -> when the store recorded its answer
    started_at: float  # when it was submitted
    succeeded: int
    failed: int
    not_done_by_model: dict[str, int]  # model -> requests failed or unfinished
    finished_by_model: dict[str, float]  # model -> when its last request finished
    finished_at: float
    deadline_at: float | None
    unfinished: int  # requests not finished when measured (only with `stop_at`)
    billed_twice: int  # custom_ids billed more than once
    paid_twice_usd: float  # what billing a custom_id more than once added
    real_seconds: float
    ledger: list[LedgerEntry]

    @property
    def deadline_met(self) -> bool | None:
        if self.deadline_at is None:
            return None
        return self.failed == 0 and self.unfinished == 0 and self.finished_at <= self.deadline_at


class Harness:
    """A fresh simulator, store and Orchestrator on one `VirtualTime`, all in-process."""

    def __init__(
        self,
        scenario: Scenario,
        workdir: Path | None = None,
        *,
        settings: dict[str, Any] | None = None,
    ) -> None:
        self.scenario = scenario
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="batchyard-eval-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.vt = VirtualTime()
        config = load_config(None, **scenario.sim_config())
        self.state = SimState(
            config=config,
            clock=self.vt.sim_clock,
            rng=random.Random(config.seed),
            faults=config.faults.model_copy(),
        )
        app = create_app(state=self.state)
        limits = {
            "rpm": scenario.rpm,
            "tpm": scenario.tpm,
            "enqueued_token_limit": scenario.enqueued_token_limit,
        }
        self.settings = load_settings(
            db=self.workdir / "eval.db",
            api_key="sk-eval",
            base_url="http://simulator/v1",
            models={m: dict(limits) for m in scenario.models},
            **{**_HARNESS_SETTINGS, **(settings or {})},
        )
        http = httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app))
        self.orch = Orchestrator(
            self.settings,
            client=make_client(self.settings, http_client=http),
            clock=self.vt.now,
            sleep=self.vt.sleep,
            workdir=self.workdir,
        )
        self.path = write_sample(
            self.workdir / "requests.jsonl", scenario.requests, scenario.models
        )

    def deadline_from(self, start: float) -> float | None:
        d = self.scenario.deadline_s
        return None if d is None else start + d

    def run(
        self,
        route: RouteOverride | str = RouteOverride.AUTO,
        *,
        budget: float | None = None,
        during: Callable[[Harness, str], Awaitable[None]] | None = None,
        stop_at: float | None = None,
    ) -> RunOutcome:
        """Submit the scenario's file and wait until the run is done; measure it.

        `stop_at`: stop waiting at this simulated time even if the run is not done (its
        unfinished requests then count as missing the deadline).
        """
        coro = self.arun(route, budget=budget, during=during, stop_at=stop_at)
        return asyncio.run(self.vt.run(coro))

    async def arun(
        self,
        route: RouteOverride | str = RouteOverride.AUTO,
        *,
        budget: float | None = None,
        during: Callable[[Harness, str], Awaitable[None]] | None = None,
        stop_at: float | None = None,
    ) -> RunOutcome:
        started = time.perf_counter()
        try:
            # History teaches turnaround, cancel latency and output lengths; its answers are
            # not reused, so the measured run buys what the baselines buy.
            for _ in range(self.scenario.history):
                earlier = await self.orch.submit(
                    self.path, deadline=self.deadline_from(self.vt.now()), route=route, reuse=False
                )
                await self.orch.wait(earlier.run_id)
            mark, begun = len(self.state.ledger), self.vt.now()
            submitted = await self.orch.submit(
                self.path,
                deadline=self.deadline_from(begun),
                budget=budget,
                route=route,
                reuse=False,
            )
            waiting = self._wait(submitted.run_id, stop_at)
            if during is not None:
                await asyncio.gather(waiting, during(self, submitted.run_id))
            else:
                await waiting
        finally:
            await self.orch.client.close()  # the store stays open for inspection
        return self.measure(str(RouteOverride(route).value), submitted, started, mark, begun)

    async def _wait(self, run_id: str, stop_at: float | None) -> None:
        if stop_at is None:
            await self.orch.wait(run_id)
            return
        while self.vt.now() < stop_at:
            if (await self.orch.wait(run_id, max_rounds=20)).done:
                return

    def measure(
        self,
        route: str,
        submitted: SubmitResult,
        started: float,
        mark: int = 0,
        begun: float = START,
    ) -> RunOutcome:
        """Measure the run `submitted` at `begun`: ledger entries from index `mark` on."""
        run_id = submitted.run_id
        ledger = list(self.state.ledger[mark:])
        by_path: dict[str, float] = defaultdict(float)
        by_model: dict[str, float] = defaultdict(float)
        tokens: dict[str, tuple[int, int]] = {}
        billed = Counter[str]()
        cheapest: dict[str, float] = {}
        for e in ledger:
            by_path[e.path] += e.cost
            by_model[e.model] += e.cost
            if e.custom_id is not None:
                billed[e.custom_id] += 1
                tokens[e.custom_id] = (e.input_tokens, e.output_tokens)
                cheapest[e.custom_id] = min(cheapest.get(e.custom_id, e.cost), e.cost)
        total_billed = sum(e.cost for e in ledger if e.custom_id is not None)
        finished: dict[str, float] = {}
        per_line: dict[str, float] = {}
        ok = bad = open_ = 0
        not_done: dict[str, int] = defaultdict(int)
        for r in self.orch.store.iter_requests(run_id):
            at = r.finished_at if r.finished_at is not None else float("inf")
            per_line[r.custom_id] = at
            finished[r.model] = max(finished.get(r.model, begun), at)
            if r.status is RequestStatus.SUCCEEDED:
                ok += 1
                continue
            not_done[r.model] += 1
            if r.status in (RequestStatus.FAILED, RequestStatus.CANCELLED):
                bad += 1
            else:
                open_ += 1
        return RunOutcome(
            route=route,
            run_id=run_id,
            submit=submitted,
            cost=sum(by_path.values()),
            cost_by_path=dict(by_path),
            cost_by_model=dict(by_model),
            tokens=tokens,
            finished=per_line,
            started_at=begun,
            succeeded=ok,
            failed=bad,
            not_done_by_model=dict(not_done),
            finished_by_model=finished,
            finished_at=max(finished.values(), default=begun),
            deadline_at=self.deadline_from(begun),
            unfinished=open_,
            billed_twice=sum(1 for n in billed.values() if n > 1),
            paid_twice_usd=total_billed - sum(cheapest.values()),
            real_seconds=time.perf_counter() - started,
            ledger=ledger,
        )


def batch_line_times(state: SimState) -> dict[str, float]:
    """When each batch line's answer could first be had, from the simulator's own schedule.

    A line finishes at its place in the batch's completion order (lines finish evenly over
    the turnaround); its answer can be had no sooner than a cancel right after it takes
    (`cancelling_seconds`), nor later than the batch's own end (completed, expired or
    cancelled). Only lines that succeeded count; a line that succeeded in several batches
    keeps the earliest.
    """
    cancel_s = state.config.batch.cancelling_seconds
    times: dict[str, float] = {}
    for rec in state.batches.values():
        start = rec.times.get("in_progress_at")
        if start is None or not rec.lines:
            continue
        ends = ("completed_at", "expired_at", "cancelled_at")
        ended = min((rec.times[k] for k in ends if k in rec.times), default=float("inf"))
        n = len(rec.lines)
        for k, result in enumerate(rec.results):
            if not result.succeeded:
                continue
            done = start + (k + 1) * rec.turnaround / n
            at = min(ended, done + cancel_s)
            times[result.custom_id] = min(times.get(result.custom_id, at), at)
    return times
