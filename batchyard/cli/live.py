"""Progress while a run is driven: a live rich view on a terminal, plain lines otherwise.

Owns `Progress`, the `on_round` callback `watch`, `submit`, `resume` and `demo` hand to the
orchestrator: it redraws the status view (rich.live, on stderr) or prints one plain line
per round when stderr is not a terminal (or `plain=True`, as `poll` asks), and feeds the
metrics. It does no work itself: the orchestrator's `step`/`wait` do.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING

from rich.console import Console
from rich.live import Live

from batchyard.cli.render import status_line, status_view
from batchyard.metrics import Metrics

if TYPE_CHECKING:
    from batchyard.orchestrator.reports import RunStatus

__all__ = ["Progress"]


class Progress:
    """Shows each round's `RunStatus`; use as a context manager around the driving call."""

    def __init__(
        self,
        console: Console,
        *,
        clock: Callable[[], float],
        metrics: Metrics | None = None,
        plain: bool | None = None,
        min_interval: int = 1,
    ) -> None:
        self.console = console
        self.clock = clock
        self.metrics = metrics
        self.plain = (not console.is_terminal) if plain is None else plain
        self.min_interval = max(1, min_interval)  # plain mode: print every Nth round
        self.rounds = 0
        self.last: RunStatus | None = None
        self._printed: str | None = None
        self._live: Live | None = None

    def __enter__(self) -> Progress:
        if not self.plain:
            self._live = Live(console=self.console, refresh_per_second=4, transient=False)
            self._live.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._live is not None:
            self._live.__exit__(exc_type, exc, tb)
            self._live = None
        elif self.last is not None and status_line(self.last) != self._printed:
            self._print(status_line(self.last))

    def _print(self, line: str) -> None:
        self.console.print(line, markup=False, highlight=False)
        self._printed = line

    def final(self, status: RunStatus) -> RunStatus:
        """The status the command ends on: shown once (even when no round ran)."""
        self.last = status
        return status

    def __call__(self, status: RunStatus) -> None:
        self.rounds += 1
        self.last = status
        if self.metrics is not None:
            self.metrics.observe_status(status)
        if self._live is not None:
            self._live.update(status_view(status, self.clock()))
            return
        line = status_line(status)
        if line != self._printed and (status.done or self.rounds % self.min_interval == 0):
            self._print(line)
