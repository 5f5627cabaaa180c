"""Progress while a run is driven: one live rich view on a terminal, plain lines otherwise.

Owns `ProgressView`, the `on_round` callback `submit`, `watch`, `resume`, `poll --wait` and
`demo` hand to the orchestrator, and the view it draws: per path (standard, flex, fast,
batch) a bar with done/total, the rate and ETA observed from throughput, each batch with its
state and request counts, cost so far against the estimate, the deadline and the escalation
points. Besides each round's full status it refreshes itself every second from the store
(`refresh`, a few cheap queries), so the view moves while a round runs and whatever the poll
schedule. Relative times ("in 3m") are computed when drawn, from the run's clock, never
stored. When the console is not a terminal (or `plain=True`) it prints a plain line when
the numbers change, at most every few seconds, and the last one once. It does no work itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from batchyard.cli.render import (
    ENDED_BATCH,
    batch_columns,
    batch_row,
    estimate_text,
    percent,
    retried_text,
    status_line,
    when,
)
from batchyard.metrics import Metrics
from batchyard.models import RequestStatus, Route
from batchyard.router.parse import format_duration, format_usd

if TYPE_CHECKING:
    from batchyard.cli.app import Cli
    from batchyard.orchestrator._orchestrator import Orchestrator
    from batchyard.orchestrator._reporting.reports import RunStatus

__all__ = ["PATHS", "ProgressView", "Rates", "live_view", "watching"]

PATHS = (Route.STANDARD, Route.FAST, Route.FLEX, Route.BATCH)
_TERMINAL = (RequestStatus.SUCCEEDED, RequestStatus.FAILED, RequestStatus.CANCELLED)
# Batches whose lines are done at the provider but not yet in the store.
_REMOTE = ("in_progress", "finalizing", "completed", "cancelling", "expired", "cancelled")
Refresh = Callable[["RunStatus"], "RunStatus"]


def path_counts(status: RunStatus) -> dict[Route | None, tuple[int, int]]:
    """Per path with work (None: not routed yet, shown last): (finished, total). The batch
    path also counts the lines its running batches report done (`request_counts`), before
    their output is applied."""
    out: dict[Route | None, tuple[int, int]] = {}
    for key, n in status.counts.items():
        done, total = out.get(key.route, (0, 0))
        out[key.route] = (done + (n if key.status in _TERMINAL else 0), total + n)
    if Route.BATCH in out:
        done, total = out[Route.BATCH]
        remote = sum(b.completed + b.failed for b in status.batches if b.status in _REMOTE)
        out[Route.BATCH] = (min(total, done + remote), total)
    return {p: out[p] for p in (*PATHS, None) if p in out}


class Rates:
    """Throughput per path observed over the last `window` samples, on the run's clock."""

    def __init__(self, window: int = 30) -> None:
        self._samples: dict[Route | None, deque[tuple[float, int]]] = {}
        self.window = window

    def observe(self, now: float, status: RunStatus) -> None:
        for path, (done, _) in path_counts(status).items():
            samples = self._samples.setdefault(path, deque(maxlen=self.window))
            if not samples or now > samples[-1][0]:
                samples.append((now, done))

    def rate(self, path: Route | None) -> float | None:
        """Requests per second of the run's clock, or None before anything moved."""
        samples = self._samples.get(path)
        if not samples or len(samples) < 2:
            return None
        (t0, d0), (t1, d1) = samples[0], samples[-1]
        if t1 <= t0 or d1 <= d0:
            return None
        return (d1 - d0) / (t1 - t0)


def _rate_text(rate: float | None) -> str:
    if rate is None:
        return "-"
    return f"{rate:,.1f}/s" if rate < 100 else f"{rate:,.0f}/s"


def _eta(
    status: RunStatus, path: Route | None, done: int, total: int, rate: float | None, now: float
) -> str:
    if done >= total:
        return "done"
    if rate:
        return f"in {format_duration((total - done) / rate)}"
    if path is Route.BATCH:
        live = [b.expected_finish for b in status.batches if b.status not in ENDED_BATCH]
        ahead = [t for t in live if t is not None]
        if ahead:
            return f"expected {when(max(ahead), now)}"
    return "-"


def _paths(status: RunStatus, rates: Rates, now: float) -> Table:
    table = Table(box=None, pad_edge=False, show_edge=False, title_justify="left")
    for name, justify in (
        ("path", "left"),
        ("progress", "left"),
        ("", "right"),
        ("done/total", "right"),
        ("rate", "right"),
        ("ETA", "left"),
    ):
        table.add_column(name, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    for path, (done, total) in path_counts(status).items():
        rate = rates.rate(path)
        table.add_row(
            path.value if path else "-",
            ProgressBar(total=max(total, 1), completed=done, width=30),
            f"{percent(done, total)}%",
            f"{done:,}/{total:,}",
            _rate_text(rate),
            _eta(status, path, done, total, rate, now),
        )
    return table


def _batches(status: RunStatus, now: float) -> Table:
    table = Table(title="batches", title_justify="left", box=None, pad_edge=False)
    counts = batch_columns(status)
    for name in ("shard", "batch id", "model", "status", *counts, "total", "ETA"):
        table.add_column(name, no_wrap=True)
    shown = status.batches[-8:]  # the newest; a long run can have hundreds
    for b in shown:
        table.add_row(*batch_row(b, now, counts))
    return table


def live_view(status: RunStatus, rates: Rates, now: float) -> RenderableType:
    """The live view of a run at `now` (relative times are computed here)."""
    budget = f"; budget {format_usd(status.budget)}" if status.budget is not None else ""
    head = [
        f"run {status.run_id}: {status.state}"
        + (" (done)" if status.done else "")
        + f", {status.finished:,}/{status.requests:,} finished "
        f"({percent(status.finished, status.requests)}%): {status.succeeded:,} succeeded, "
        f"{status.failed:,} failed"
        + (f", {status.cancelled:,} cancelled" if status.cancelled else ""),
        f"cost so far {format_usd(status.actual_cost)} of {estimate_text(status)}{budget}",
    ]
    if status.deadline_at is not None:
        verdict = {True: "will be met", False: "AT RISK", None: "-"}[status.deadline_ok]
        head.append(f"deadline {when(status.deadline_at, now)}: {verdict}")
    if not status.done:
        for model, at in status.escalation_at.items():
            head.append(f"escalation point for {model}: {when(at, now)}")
    parts: list[RenderableType] = [Text("\n".join(head)), _paths(status, rates, now)]
    if status.batches:
        parts.append(_batches(status, now))
    if status.queue_wait and not status.done:
        parts.append(Text(f"waiting for queue room: {status.queue_wait}"))
    if status.retried:
        parts.append(Text(retried_text(status)))
    if status.stalled:
        parts.append(Text(f"stalled: {status.stalled}"))
    elif status.send_stall and not status.done:
        parts.append(Text(status.send_stall))
    elif status.last_errors and not status.done:
        kind, message = list(status.last_errors.items())[-1]
        parts.append(Text(f"last error ({kind}): {message}"))
    return Group(*parts)


class _Frame:
    """What `Live` redraws (4 times a second): relative times move even between refreshes."""

    def __init__(self, progress: ProgressView) -> None:
        self.progress = progress

    def __rich__(self) -> RenderableType:
        p = self.progress
        if p.last is None:
            return Text("starting...")
        return live_view(p.last, p.rates, p.clock())


class ProgressView:
    """Shows a run while a command drives it; `async with` around the driving call.

    `refresh` (usually `Orchestrator.refresh` over the store) turns the last status into a
    fresh one; it is called every `interval` real seconds while the command works.
    """

    def __init__(
        self,
        console: Console,
        *,
        clock: Callable[[], float],
        metrics: Metrics | None = None,
        plain: bool | None = None,
        refresh: Refresh | None = None,
        interval: float = 1.0,
        plain_interval: float = 5.0,
    ) -> None:
        self.console = console
        self.clock = clock
        self.metrics = metrics
        self.plain = (not console.is_terminal) if plain is None else plain
        self.refresh = refresh
        self.interval = interval
        self.plain_interval = plain_interval
        self.rates = Rates()
        self.last: RunStatus | None = None
        self._printed: str | None = None
        self._printed_at = 0.0
        self._live: Live | None = None
        self._ticker: asyncio.Task[None] | None = None

    async def __aenter__(self) -> ProgressView:
        if not self.plain:
            self._live = Live(
                _Frame(self), console=self.console, refresh_per_second=4, transient=False
            )
            self._live.__enter__()
        if self.refresh is not None:
            self._ticker = asyncio.ensure_future(self._tick())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        if self._live is not None:
            self._live.refresh()
            self._live.__exit__(exc_type, exc, tb)
            self._live = None
        elif self.last is not None and status_line(self.last) != self._printed:
            self._print(status_line(self.last))

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.interval)  # real seconds, whatever the run's clock
            if self.last is None or self.refresh is None:
                continue
            try:
                fresh = self.refresh(self.last)
            except Exception:  # a busy database: the next tick tries again
                continue
            self._show(fresh, forced=False)

    def final(self, status: RunStatus) -> RunStatus:
        """The status the command ends on: shown once (even when no round ran)."""
        self._show(status, forced=False)
        return status

    def __call__(self, status: RunStatus) -> None:
        """A round's full status (the orchestrator's `on_round`)."""
        if self.metrics is not None:
            self.metrics.observe_status(status)
        self._show(status, forced=True)

    def _show(self, status: RunStatus, *, forced: bool) -> None:
        self.last = status
        self.rates.observe(self.clock(), status)
        if self._live is not None:
            self._live.refresh()
            return
        line = status_line(status)
        due = time.monotonic() - self._printed_at >= self.plain_interval
        if line != self._printed and (forced or due) and not status.done:
            self._print(line)

    def _print(self, line: str) -> None:
        self.console.print(line, markup=False, highlight=False)
        self._printed = line
        self._printed_at = time.monotonic()


def watching(
    cli: Cli,
    orch: Orchestrator,
    run_id: str,
    *,
    console: Console | None = None,
    plain: bool | None = None,
) -> ProgressView:
    """The view of `run_id` for a command: starts from its status now, then refreshes from
    the store every second and takes each round's full status."""

    progress = ProgressView(
        console or cli.err,
        clock=orch.clock,
        metrics=cli.metrics,
        plain=plain,
        refresh=orch.refresh,
    )
    progress.last = orch.status(run_id)
    return progress
