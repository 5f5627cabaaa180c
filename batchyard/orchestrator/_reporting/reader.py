"""The reports a command can make from the job database alone, without an `Orchestrator`.

Owns `Reader`: `runs` and `fetch` on a store opened from the settings. `batchyard fetch`
uses it: building an `Orchestrator` imports the OpenAI SDK and the paths that call it, about
0.8 s that a command making no API call should not wait for (a sixth of fetching a million
answered lines). It reads the store only.
"""

from __future__ import annotations

from pathlib import Path

from batchyard.config import Settings
from batchyard.orchestrator._reporting import fetch as _fetch
from batchyard.orchestrator._reporting.reports import FetchReport, RunInfo
from batchyard.store import Store

__all__ = ["Reader", "run_infos"]


def run_infos(store: Store, limit: int | None = None) -> list[RunInfo]:
    """The runs in the store, newest first."""
    return [RunInfo.from_row(run) for run in store.list_runs(limit=limit)]


class Reader:
    """Runs and answers of the job database the settings name. Close it when done."""

    def __init__(self, settings: Settings) -> None:
        self.store = Store.open(settings.db_path())

    def runs(self, limit: int | None = None) -> list[RunInfo]:
        """The runs in the store, newest first."""
        return run_infos(self.store, limit)

    def fetch(
        self, run_id: str, output: Path, errors: Path | None = None, *, group: bool = False
    ) -> FetchReport:
        """Write the run's answers to `output` in input order (errors apart when asked)."""
        return _fetch.fetch(self.store, run_id, output, errors, group=group)

    def close(self) -> None:
        self.store.close()
