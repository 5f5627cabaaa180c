"""A small synchronous facade over `Orchestrator`, for scripts and notebooks.

Owns one private event loop on a background thread, so it also works where a loop is
already running (Jupyter). Every method blocks until the orchestrator call returns, and
repeats the async signature in full (a typo in a keyword is a type error, not a surprise).
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import openai

from batchyard.build import BuildReport
from batchyard.checks import CheckFn
from batchyard.config import Settings
from batchyard.models import RouteOverride
from batchyard.orchestrator import (
    CostReport,
    FetchReport,
    OnProgress,
    Orchestrator,
    Result,
    RunInfo,
    RunStatus,
    SubmitResult,
    VerifyReport,
)
from batchyard.orchestrator._calls.timing import Clock, Sleep, real_clock, real_sleep
from batchyard.orchestrator._planning.sources import Requests
from batchyard.router import Plan
from batchyard.store import Store

__all__ = ["Batchyard"]

T = TypeVar("T")


class Batchyard:
    """`with Batchyard() as by: run = by.submit("requests.jsonl", deadline="2h")`."""

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
    ) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.orchestrator = Orchestrator(
            settings,
            store=store,
            client=client,
            clock=clock,
            sleep=sleep,
            on_progress=on_progress,
            workdir=workdir,
        )

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

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
        return self.orchestrator.plan(
            path,
            deadline=deadline,
            budget=budget,
            route=route,
            strict=strict,
            template=template,
            vary=vary,
            samples=samples,
            reuse=reuse,
        )

    def build(
        self,
        template: str | os.PathLike[str],
        data: str | os.PathLike[str],
        output: str | os.PathLike[str],
        *,
        vary: Sequence[str] = (),
        samples: int = 1,
    ) -> BuildReport:
        return self.orchestrator.build(template, data, output, vary=vary, samples=samples)

    def submit(
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
        return self._run(
            self.orchestrator.submit(
                path,
                deadline=deadline,
                budget=budget,
                route=route,
                strict=strict,
                skip_invalid=skip_invalid,
                rejects=rejects,
                template=template,
                vary=vary,
                samples=samples,
                notify=notify,
                checks=checks,
                requeues=requeues,
                reuse=reuse,
                fallback=fallback,
            )
        )

    def drive_realtime(self, run_id: str) -> RunStatus:
        return self._run(self.orchestrator.drive_realtime(run_id))

    def step(self, run_id: str, *, realtime: bool = True) -> RunStatus:
        return self._run(self.orchestrator.step(run_id, realtime=realtime))

    def wait(
        self,
        run_id: str,
        *,
        on_round: Callable[[RunStatus], None] | None = None,
        max_rounds: int | None = None,
    ) -> RunStatus:
        return self._run(self.orchestrator.wait(run_id, on_round=on_round, max_rounds=max_rounds))

    def resume(self, run_id: str, *, realtime: bool = True) -> RunStatus:
        return self._run(self.orchestrator.resume(run_id, realtime=realtime))

    def cancel(self, run_id: str) -> RunStatus:
        return self._run(self.orchestrator.cancel(run_id))

    def status(self, run_id: str) -> RunStatus:
        return self.orchestrator.status(run_id)

    def runs(self, limit: int | None = None) -> list[RunInfo]:
        return self.orchestrator.runs(limit)

    def costs(self, run_id: str | None = None) -> CostReport:
        return self.orchestrator.costs(run_id)

    def fetch(
        self,
        run_id: str,
        output: str | os.PathLike[str],
        errors: str | os.PathLike[str] | None = None,
        *,
        group: bool = False,
    ) -> FetchReport:
        return self.orchestrator.fetch(run_id, output, errors, group=group)

    def results(self, run_id: str) -> Iterator[Result]:
        return self.orchestrator.results(run_id)

    def verify(self) -> VerifyReport:
        return self._run(self.orchestrator.verify())

    def close(self) -> None:
        try:
            self._run(self.orchestrator.aclose())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
            self._loop.close()

    def __enter__(self) -> Batchyard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
