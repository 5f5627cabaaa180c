"""How the CLI shows the bookkeeping commands: runs, costs, fetch, verify and config.

Owns turning `RunInfo` rows, `CostReport`, `FetchReport` and `VerifyReport` into rich
tables and plain lines (the status and plan views, and the shared formatting helpers, are
`render.py`). It never calls the orchestrator, never decides anything, and never writes the
API key.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from batchyard.cli.render import fallback_lines
from batchyard.router.parse import format_time, format_usd

if TYPE_CHECKING:
    from batchyard.orchestrator._reporting.reports import (
        CostReport,
        FetchReport,
        RunInfo,
        VerifyReport,
    )

__all__ = [
    "config_table",
    "costs_view",
    "fetch_lines",
    "runs_table",
    "verify_lines",
]


# ---- runs, costs, fetch, verify, config --------------------------------------------------------
def runs_table(rows: Sequence[RunInfo]) -> Table:
    table = Table(title="runs, newest first", title_justify="left")
    names = ("run", "state", "created", "requests", "deadline", "estimated", "actual", "source")
    for name in names:
        table.add_column(name, no_wrap=name in ("run", "state"))
    for r in rows:
        table.add_row(
            r.id,
            r.state.value,
            format_time(r.created_at),
            f"{r.request_count:,}",
            format_time(r.deadline_at) if r.deadline_at is not None else "-",
            format_usd(r.estimated_cost),
            format_usd(r.actual_cost),
            r.source_path,
        )
    return table


def costs_view(report: CostReport) -> RenderableType:
    scope = f"run {report.run_id}" if report.run_id else "all runs"
    table = Table(title=f"costs, {scope}", title_justify="left")
    for name in (
        "model",
        "route",
        "requests",
        "succeeded",
        "input tok",
        "output tok",
        "estimated",
        "actual",
        "all-standard",
    ):
        table.add_column(name, justify="left" if name in ("model", "route") else "right")
    for r in report.rows:
        table.add_row(
            r.model,
            r.route,
            f"{r.requests:,}",
            f"{r.succeeded:,}",
            f"{r.input_tokens:,}",
            f"{r.output_tokens:,}",
            format_usd(r.estimated),
            format_usd(r.actual),
            format_usd(r.all_standard),
        )
    parts: list[RenderableType] = [table]
    if report.variants:
        by_variant = Table(title="by variant", title_justify="left")
        for name in ("variant", "requests", "succeeded", "output tok", "estimated", "actual"):
            by_variant.add_column(name, justify="left" if name == "variant" else "right")
        for v in report.variants:
            by_variant.add_row(
                v.variant,
                f"{v.requests:,}",
                f"{v.succeeded:,}",
                f"{v.output_tokens:,}",
                format_usd(v.estimated),
                format_usd(v.actual),
            )
        parts.append(by_variant)
    pct = 100.0 * report.saving / report.all_standard if report.all_standard > 0 else 0.0
    worst = (
        f", worst case {format_usd(report.estimated_worst)}"
        if report.estimated_worst is not None and report.estimated_worst > report.estimated
        else ""
    )
    total = (
        f"estimated {format_usd(report.estimated)} expected{worst}; actual "
        f"{format_usd(report.actual)}; all-standard would have cost "
        f"{format_usd(report.all_standard)}: saving {format_usd(report.saving)} ({pct:.0f}%)"
    )
    if report.paid_twice:
        total += (
            f"\npaid twice to hold the deadline: {report.paid_twice:,} line(s), "
            f"{format_usd(report.paid_twice_cost)} (in actual)"
        )
    if report.reused:
        total += (
            f"\nreused answers: {report.reused:,} line(s) not bought again, saving "
            f"{format_usd(report.reuse_saving)}"
        )
    if report.requeues or report.invalid:
        total += (
            f"\nre-sends after a failed check: {report.requeues:,}, costing "
            f"{format_usd(report.requeue_cost)} (outside the all-standard comparison); "
            f"{report.invalid:,} line(s) invalid"
        )
    for line in fallback_lines(report.fallbacks):
        total += f"\n{line} (in the fallback model's rows)"
    return Group(*parts, Text(total))


def fetch_lines(report: FetchReport) -> list[str]:
    lines = [
        f"wrote {report.lines:,} line(s) to {report.output}: {report.succeeded:,} succeeded, "
        f"{report.failed:,} failed"
        + (f" ({report.invalid:,} invalid: failed a check)" if report.invalid else "")
        + (f", {report.cancelled:,} cancelled" if report.cancelled else "")
        + f", {report.unfinished:,} not finished yet"
        + (f"; {report.fallback:,} answered by a fallback model" if report.fallback else "")
    ]
    if report.errors is not None and report.failed + report.cancelled + report.unfinished:
        lines.append(f"failed, cancelled and unfinished lines also in {report.errors}")
    elif report.errors is not None:
        lines.append("no failed or unfinished lines")
    if report.unfinished:
        lines.append(f"The run is not done: fetch again after `batchyard watch {report.run_id}`.")
    return lines


def verify_lines(report: VerifyReport) -> list[str]:
    shown = ", ".join(report.models[:8]) + (", ..." if len(report.models) > 8 else "")
    return [
        f"base URL: {report.base_url}",
        f"API key:  {report.key_hint}",
        f"{'ok' if report.ok else 'FAILED'}: {report.message}",
        *([f"models: {shown}"] if report.models else []),
    ]


def config_table(rows: Iterable[tuple[str, str, str]]) -> Table:
    table = Table(title="effective configuration", title_justify="left")
    table.add_column("setting", no_wrap=True)
    table.add_column("value")
    table.add_column("from")
    for name, value, source in rows:
        table.add_row(name, value, source)
    return table
