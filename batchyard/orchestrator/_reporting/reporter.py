"""The reading side of the orchestrator: what a run looks like, what it cost, its answers.

Owns `Reporter`, built from a store, the model table, the clock and the turnaround prior:
`runs`, `status`, `refresh`, `costs`, `fetch` and `results`. `Orchestrator` hands these
calls to one; a script or a test can build one on a store alone. It changes nothing in the
store, makes no API calls and reads time only through the clock it is given.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from batchyard.catalog import Catalog
from batchyard.orchestrator._answers.results import Result, iter_results
from batchyard.orchestrator._calls.timing import Clock
from batchyard.orchestrator._driving.steering import stall_reason
from batchyard.orchestrator._reporting import costs as _costs
from batchyard.orchestrator._reporting import fetch as _fetch
from batchyard.orchestrator._reporting import status as _status
from batchyard.orchestrator._reporting.reader import run_infos
from batchyard.orchestrator._reporting.reports import CostReport, FetchReport, RunInfo, RunStatus
from batchyard.orchestrator._routing.provider_clock import IDENTITY, ClockMap
from batchyard.router import Turnaround
from batchyard.store import Store

__all__ = ["Reporter"]


class Reporter:
    """Reports on the runs of one store.

    `clock_map` maps the provider's times onto ours (default: they agree); `blocked` is
    why real-time dispatch stopped, per run, as the process driving it says (a run is
    stalled only when that is so and nothing else can move).
    """

    def __init__(
        self,
        store: Store,
        models: Catalog,
        *,
        clock: Clock,
        prior: Turnaround,
        clock_map: Callable[[], ClockMap] = lambda: IDENTITY,
        blocked: Mapping[str, str] | None = None,
    ) -> None:
        self.store = store
        self.models = models
        self.clock = clock
        self.prior = prior
        self.clock_map = clock_map
        self.blocked: Mapping[str, str] = blocked if blocked is not None else {}

    def runs(self, limit: int | None = None) -> list[RunInfo]:
        """The runs in the store, newest first."""
        return run_infos(self.store, limit)

    def status(self, run_id: str) -> RunStatus:
        """The full report of one run now."""
        stalled = stall_reason(self.store, run_id, self.blocked.get(run_id))
        run = self.store.get_run(run_id)
        return _status.status(
            self.store, run, self.clock(), stalled, self.prior, self.models, self.clock_map()
        )

    def refresh(self, last: RunStatus) -> RunStatus:
        """`last` with the counts, batches and cost as the store has them now."""
        return _status.refresh(self.store, last, self.clock_map())

    def costs(self, run_id: str | None = None) -> CostReport:
        """Estimated against actual cost, for one run or every run."""
        return _costs.costs(self.store, self.models, run_id)

    def fetch(
        self, run_id: str, output: Path, errors: Path | None = None, *, group: bool = False
    ) -> FetchReport:
        """Write the run's answers to `output` in input order (errors apart when asked)."""
        return _fetch.fetch(self.store, run_id, output, errors, group=group)

    def results(self, run_id: str) -> Iterator[Result]:
        """The run's results, one per request, in input order, a page at a time."""
        return iter_results(self.store, run_id)
