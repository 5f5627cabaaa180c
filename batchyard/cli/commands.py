"""Commands that read or settle a run: `plan`, `runs`, `status`, `fetch`, `cancel`, `costs`,
`verify`.

Owns their options and output (a rich table for people, one JSON document with `--json`).
Each makes one call into the orchestrator; nothing here decides routes or writes results.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from batchyard.cli.app import app, state
from batchyard.cli.edge import execute, execute_reading
from batchyard.cli.exits import EXIT_ERROR, EXIT_OK
from batchyard.cli.models_cmd import warn_if_stale
from batchyard.cli.options import (
    Budget,
    Deadline,
    Json,
    NewestRun,
    NoReuse,
    RequestFile,
    RouteOpt,
    RunArg,
    Samples,
    Strict,
    TemplateOpt,
    Vary,
    budget_value,
)
from batchyard.cli.render import emit_json, emit_plan_json, plan_view, status_view
from batchyard.cli.render_runs import costs_view, fetch_lines, runs_table, verify_lines
from batchyard.models import RouteOverride

if TYPE_CHECKING:
    from batchyard.orchestrator._orchestrator import Orchestrator
    from batchyard.orchestrator._reporting.reader import Reader

__all__: list[str] = []


@app.command()
def plan(
    ctx: typer.Context,
    file: RequestFile,
    deadline: Deadline = None,
    budget: Budget = None,
    route: RouteOpt = RouteOverride.AUTO,
    strict: Strict = False,
    template: TemplateOpt = None,
    vary: Vary = None,
    samples: Samples = 1,
    no_reuse: NoReuse = False,
    json_: Json = False,
) -> None:
    """Show the plan for FILE without calling the API or recording anything.

    Routes per model, escalation points, best/expected/worst cost and the saving. With
    --template T, FILE is a data file; --vary and --samples plan every variant.

    Example: batchyard plan requests.jsonl --deadline 3h
    """
    cli = state(ctx)
    warn_if_stale(cli)

    async def body(orch: Orchestrator) -> int:
        money = budget_value(budget)  # inside: a bad value is a message, not a traceback
        result = orch.plan(
            file,
            deadline=deadline,
            budget=money,
            route=route,
            strict=strict,
            template=template,
            vary=vary or (),
            samples=samples,
            reuse=False if no_reuse else None,
        )
        if json_:
            emit_plan_json(result)
        else:
            cli.out.print(plan_view(result))
        return EXIT_OK

    execute(ctx, body)


@app.command()
def runs(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option("--limit", "-n", help="Show at most this many.")] = 20,
    json_: Json = False,
) -> None:
    """List the runs in the job database, newest first.

    Example: batchyard runs -n 5
    """
    cli = state(ctx)

    async def body(orch: Orchestrator) -> int:
        rows = orch.runs(limit)
        if json_:
            emit_json(rows)
        elif not rows:
            cli.err.print("No runs yet: start one with `batchyard submit FILE`.", markup=False)
        else:
            cli.out.print(runs_table(rows))
        return EXIT_OK

    execute(ctx, body)


@app.command()
def status(ctx: typer.Context, run_id: NewestRun = None, json_: Json = False) -> None:
    """Show where RUN stands: requests, batches, cost, deadline, last errors.

    Requests per route and status, each batch with its counts and expected finish, cost
    so far against the estimate, the deadline and whether it will be met, and the last
    error of each kind. Without RUN, the newest run.

    Example: batchyard status run_20261121_ab12cd
    """
    cli = state(ctx)

    async def body(orch: Orchestrator) -> int:
        result = orch.status(cli.pick_run(orch, run_id))
        if json_:
            emit_json(result)
        else:
            cli.out.print(status_view(result, orch.clock()))
        return EXIT_OK

    execute(ctx, body)


@app.command()
def fetch(
    ctx: typer.Context,
    run_id: NewestRun = None,
    *,
    output: Annotated[
        Path, typer.Option("-o", "--output", help="Merged results, one line per input line.")
    ],
    errors: Annotated[
        Path | None,
        typer.Option("--errors", help="Also write failed and unfinished lines here."),
    ] = None,
    group: Annotated[
        bool,
        typer.Option(
            "--group", help="One line per original request, its fan-out variants side by side."
        ),
    ] = False,
    json_: Json = False,
) -> None:
    """Write RUN's merged results to a file, one line per input line, in input order.

    Lines have the Batch API's output shape plus a `batchyard` object (route, cost, ...).
    With --group, a fan-out run's variants of one request share a line:
    {"custom_id": ORIGINAL, "variants": {"temperature=0.7": LINE, ...}}.
    Without RUN, the newest run.

    Example: batchyard fetch run_20261121_ab12cd -o results.jsonl --errors errors.jsonl
    """
    cli = state(ctx)

    def body(reader: Reader) -> int:
        report = reader.fetch(cli.pick_run(reader, run_id), output, errors, group=group)
        if json_:
            emit_json(report)
        else:
            for line in fetch_lines(report):
                cli.out.print(line, markup=False)
        return EXIT_OK

    execute_reading(ctx, body)


@app.command()
def cancel(ctx: typer.Context, run_id: RunArg, json_: Json = False) -> None:
    """Cancel RUN: stop its batches and send nothing more.

    Active batches are cancelled (lines they finished are kept); requests not yet
    finished are not sent.

    Example: batchyard cancel run_20261121_ab12cd
    """
    cli = state(ctx)
    cli.run_id = run_id

    async def body(orch: Orchestrator) -> int:
        before = orch.status(run_id)
        result = await orch.cancel(run_id)
        if before.done:
            cli.err.print(
                f"Run {run_id} had already {before.state}: there was nothing to cancel.",
                markup=False,
            )
        if json_:
            emit_json({**result.to_dict(), "already_finished": before.done})
        else:
            cli.out.print(status_view(result, orch.clock()))
        return EXIT_OK

    execute(ctx, body)


@app.command()
def costs(
    ctx: typer.Context,
    run_id: Annotated[
        str | None, typer.Argument(help="One run; all runs in the database when left out.")
    ] = None,
    json_: Json = False,
) -> None:
    """Show costs by model and route, estimated versus actual, and the saving.

    The saving is against sending every finished request at standard prices. A fan-out
    run (--vary, --samples) is also broken down by variant, samples added together.

    Example: batchyard costs run_20261121_ab12cd
    """
    cli = state(ctx)

    async def body(orch: Orchestrator) -> int:
        report = orch.costs(run_id)
        cli.metrics.observe_costs(report)
        if json_:
            emit_json(report)
        else:
            cli.out.print(costs_view(report))
        return EXIT_OK

    execute(ctx, body)


@app.command()
def verify(ctx: typer.Context, json_: Json = False) -> None:
    """Check the API key and base URL with a models call.

    Prints the base URL, a hint of the key (never the key) and the models found.
    Exits 1 when the check fails.

    Example: batchyard verify
    """
    cli = state(ctx)

    async def body(orch: Orchestrator) -> int:
        report = await orch.verify()
        if json_:
            emit_json(report)
        else:
            for line in verify_lines(report):
                cli.out.print(line, markup=False)
        return EXIT_OK if report.ok else EXIT_ERROR

    execute(ctx, body)
