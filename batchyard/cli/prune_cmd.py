"""`batchyard prune`: remove finished runs' requests, answers and history, then reclaim space.

Owns the command's options (`--older-than`, `--dry-run`, `--forget-learned`, RUN...) and
its output. The work, and every rule about what may go, is the store's `prune`.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated

import typer

from batchyard.cli.app import app, state
from batchyard.cli.edge import execute
from batchyard.cli.exits import EXIT_OK
from batchyard.cli.options import Json
from batchyard.cli.render import emit_json
from batchyard.router.parse import format_time

if TYPE_CHECKING:
    from batchyard.orchestrator._orchestrator import Orchestrator
    from batchyard.store.prune import PruneReport

__all__ = ["parse_age"]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_AGE = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")


def parse_age(text: str) -> float:
    """Seconds for `--older-than`: 30d, 12h, 2w, 1d12h."""
    compact = text.strip().replace(" ", "").lower()
    parts = _AGE.findall(compact)
    if not parts or "".join(n + u for n, u in parts) != compact:
        raise typer.BadParameter(f"{text!r} is not an age; use 30d, 12h, 2w or 1d12h.")
    return sum(float(n) * _UNITS[u] for n, u in parts)


def _checked_age(text: str | None) -> str | None:
    if text is not None:
        parse_age(text)
    return text


def _mb(n: int) -> str:
    return f"{n / 1_048_576:,.1f} MB"


def _lines(report: PruneReport) -> list[str]:
    verb = "would remove" if report.dry_run else "removed"
    lines = [
        f"{r.run_id} ({r.state}"
        + (f", finished {format_time(r.finished_at)}" if r.finished_at else "")
        + f"): {verb} {r.requests:,} request(s), {r.events:,} event(s), "
        f"{r.attempts:,} attempt(s)"
        for r in report.runs
    ]
    lines.extend(f"{run_id} stays: {why}" for run_id, why in report.skipped.items())
    if not report.runs:
        lines.append("Nothing to prune.")
    elif report.dry_run:
        lines.append(f"Dry run: nothing removed ({len(report.runs)} run(s) would go).")
    else:
        kept = (
            "the runs, their batches and the learned output lengths are gone too"
            if report.forgot_learned
            else "run totals, batch turnaround, cancel latency and output lengths are kept"
        )
        lines.append(
            f"Pruned {len(report.runs)} run(s); database {_mb(report.bytes_before)} -> "
            f"{_mb(report.bytes_after)}; {kept}."
        )
    if report.note:
        lines.append(f"Note: {report.note}.")
    return lines


@app.command()
def prune(
    ctx: typer.Context,
    run_ids: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="RUN...", help="Runs to prune; every finished run old enough when left out."
        ),
    ] = None,
    older_than: Annotated[
        str | None,
        typer.Option(
            "--older-than",
            callback=_checked_age,
            help="Only runs that finished longer ago than this (default 30d without RUN).",
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what would go; remove nothing.")
    ] = False,
    forget_learned: Annotated[
        bool,
        typer.Option(
            "--forget-learned",
            help="Also remove the run rows and batches (turnaround and cancel latency "
            "learned from them) and skip keeping output lengths.",
        ),
    ] = False,
    json_: Json = False,
) -> None:
    """Remove finished runs' requests, answers, attempts and events, then reclaim the space.

    Only completed or cancelled runs go; running ones are never touched, so it is safe
    beside `watch`. Without RUN, every run that finished more than 30 days ago. What the
    router learned stays unless --forget-learned. Pruned runs can no longer be fetched.

    Example: batchyard prune --older-than 30d --dry-run
    """
    cli = state(ctx)
    age = parse_age(older_than) if older_than is not None else None
    if age is None and not run_ids:
        age = parse_age("30d")

    async def body(orch: Orchestrator) -> int:
        cutoff = orch.clock() - age if age is not None else None
        report = orch.store.prune(
            run_ids or (), finished_before=cutoff, dry_run=dry_run, forget=forget_learned
        )
        if json_:
            emit_json(report)
        else:
            for line in _lines(report):
                cli.out.print(line, markup=False)
        return EXIT_OK

    execute(ctx, body)
