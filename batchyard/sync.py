"""A small synchronous facade over `Orchestrator`, for scripts and notebooks.

Owns one private event loop on a background thread, so it also works where a loop is
already running (Jupyter). Every method blocks until the orchestrator call returns.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from batchyard.config import Settings
from batchyard.orchestrator import (
    CostReport,
    FetchReport,
    Orchestrator,
    RunStatus,
    SubmitResult,
    VerifyReport,
)
from batchyard.router import Plan
from batchyard.store.rows import RunRow

__all__ = ["Batchyard"]

T = TypeVar("T")


class Batchyard:
    """`with Batchyard() as by: run = by.submit("requests.jsonl", deadline="2h")`."""

    def __init__(self, settings: Settings | None = None, **kwargs: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.orchestrator = Orchestrator(settings, **kwargs)

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def plan(self, path: str | os.PathLike[str], **policy: Any) -> Plan:
        return self.orchestrator.plan(path, **policy)

    def submit(self, path: str | os.PathLike[str], **options: Any) -> SubmitResult:
        return self._run(self.orchestrator.submit(path, **options))

    def step(self, run_id: str) -> RunStatus:
        return self._run(self.orchestrator.step(run_id))

    def wait(self, run_id: str) -> RunStatus:
        return self._run(self.orchestrator.wait(run_id))

    def resume(self, run_id: str) -> RunStatus:
        return self._run(self.orchestrator.resume(run_id))

    def cancel(self, run_id: str) -> RunStatus:
        return self._run(self.orchestrator.cancel(run_id))

    def status(self, run_id: str) -> RunStatus:
        return self.orchestrator.status(run_id)

    def runs(self, limit: int | None = None) -> list[RunRow]:
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
