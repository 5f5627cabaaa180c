"""Commands that drive a run: `submit`, `watch`, `poll`, `resume`.

Owns their options and what each shows while the orchestrator works (live view, plain
lines, the final status) and the exit code of a finished run (5 when requests failed).
The work itself is the orchestrator's `submit`, `step`, `wait` and `resume`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from batchyard.cli.app import app, state
from batchyard.cli.edge import execute
from batchyard.cli.exits import EXIT_ERROR, EXIT_FAILED_REQUESTS, EXIT_OK
from batchyard.cli.live import watching
from batchyard.cli.models_cmd import warn_if_stale
from batchyard.cli.options import (
    Budget,
    CheckOpt,
    Deadline,
    FallbackOpt,
    Json,
    NewestRun,
    NoReuse,
    RequestFile,
    Requeues,
    RouteOpt,
    RunArg,
    Samples,
    Strict,
    TemplateOpt,
    Vary,
    budget_value,
)
from batchyard.cli.render import (
    emit_json,
    open_work_hint,
    plan_view,
    status_line,
    status_view,
    submit_lines,
)
from batchyard.cli.render_runs import fetch_lines
from batchyard.models import RouteOverride

if TYPE_CHECKING:
    from batchyard.orchestrator._orchestrator import Orchestrator
    from batchyard.orchestrator._reporting.reports import RunStatus

__all__ = ["finished_code"]


def finished_code(status: RunStatus) -> int:
    if status.stalled:
        return EXIT_ERROR
    return EXIT_FAILED_REQUESTS if status.done and status.failed else EXIT_OK


@app.command()
def submit(
    ctx: typer.Context,
    file: RequestFile,
    deadline: Deadline = None,
    budget: Budget = None,
    route: RouteOpt = RouteOverride.AUTO,
    strict: Strict = False,
    skip_invalid: Annotated[
        bool,
        typer.Option(
            "--skip-invalid",
            help="Submit the valid lines and write the invalid ones to --rejects.",
        ),
    ] = False,
    rejects: Annotated[
        Path | None,
        typer.Option(
            "--rejects", help="Where --skip-invalid writes bad lines (FILE.rejects.jsonl)."
        ),
    ] = None,
    detach: Annotated[
        bool,
        typer.Option("--detach", help="Return once the batches are submitted."),
    ] = False,
    wait: Annotated[
        bool,
        typer.Option("--wait", help="Stay until every request is finished, then fetch."),
    ] = False,
    output: Annotated[
        Path | None,
        typer.Option("-o", "--output", help="With --wait: results file (FILE.results.jsonl)."),
    ] = None,
    template: TemplateOpt = None,
    vary: Vary = None,
    samples: Samples = 1,
    notify: Annotated[
        str | None,
        typer.Option(
            "--notify",
            help="Call this URL once the run finishes (signed with BATCHYARD_NOTIFY_SECRET).",
        ),
    ] = None,
    check: CheckOpt = None,
    requeues: Requeues = None,
    no_reuse: NoReuse = False,
    fallback: FallbackOpt = None,
    json_: Json = False,
) -> None:
    """Submit FILE: validate, plan, record, send batches, run the real-time share.

    Without --detach or --wait it stays until the real-time share is done; the batches
    carry on and `watch`, `poll` or `resume` finish them.

    With --template T, FILE is a data file (CSV or JSONL) and each row becomes a request;
    --vary and --samples send each request as several variants (see `batchyard build`).

    Example: batchyard submit requests.jsonl --deadline 6h --budget 20
    """
    if detach and wait:
        raise typer.BadParameter("choose one of --detach and --wait.", param_hint="--detach")
    cli = state(ctx)
    warn_if_stale(cli)

    async def body(orch: Orchestrator) -> int:
        money = budget_value(budget)  # inside: a bad value is a message, not a traceback
        result = await orch.submit(
            file,
            deadline=deadline,
            budget=money,
            route=route,
            strict=strict,
            skip_invalid=skip_invalid,
            rejects=rejects,
            template=template,
            vary=vary or (),
            samples=samples,
            notify=notify,
            checks=check,
            requeues=requeues,
            reuse=False if no_reuse else None,
            fallback=fallback,
        )
        cli.run_id = result.run_id
        if not json_:
            cli.out.print(plan_view(result.plan))
            for line in submit_lines(result):
                cli.out.print(line, markup=False)
        fetched = None
        if detach:
            status = orch.status(result.run_id)
        else:
            async with watching(cli, orch, result.run_id) as progress:
                if wait:
                    status = await orch.wait(result.run_id, on_round=progress)
                else:
                    status = await orch.drive_realtime(result.run_id, on_round=progress)
                progress.final(status)
        if wait:
            target = output or file.with_suffix(".results.jsonl")
            fetched = orch.fetch(result.run_id, target)
        if json_:
            emit_json(
                {"run_id": result.run_id, "submit": result, "status": status, "fetch": fetched}
            )
            return finished_code(status)
        if fetched is not None:
            for line in fetch_lines(fetched):
                cli.out.print(line, markup=False)
        if status.stalled:
            cli.err.print(f"Stalled: {status.stalled}", markup=False)
        elif fetched is None and not status.done:
            cli.err.print(open_work_hint(status, status.realtime_open), markup=False)
        elif fetched is None:
            cli.err.print(
                f"Done. Fetch the results with `batchyard fetch {result.run_id} -o results.jsonl`.",
                markup=False,
            )
        return finished_code(status)

    execute(ctx, body)


@app.command()
def watch(ctx: typer.Context, given: NewestRun = None, json_: Json = False) -> None:
    """Drive RUN to the end with a live view.

    Polls batches, runs pending real-time work and escalates near the deadline. Safe to
    stop and start again, and next to another `watch`. Without RUN, the newest run.

    Example: batchyard watch run_20261121_ab12cd
    """
    cli = state(ctx)

    async def body(orch: Orchestrator) -> int:
        run_id = cli.pick_run(orch, given)
        async with watching(cli, orch, run_id) as progress:
            status = progress.final(await orch.wait(run_id, on_round=progress))
        if json_:
            emit_json(status)
        else:
            cli.out.print(status_view(status, orch.clock()))
        return finished_code(status)

    execute(ctx, body)


@app.command()
def poll(
    ctx: typer.Context,
    given: NewestRun = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="Keep going, one line per round, until RUN is done.")
    ] = False,
    json_: Json = False,
) -> None:
    """Do one round of `watch`'s work on RUN (or every round with --wait), in plain lines.

    The scripted twin of `watch`, for cron jobs and CI. Without RUN, the newest run.

    Example: batchyard poll run_20261121_ab12cd --wait
    """
    cli = state(ctx)

    async def body(orch: Orchestrator) -> int:
        run_id = cli.pick_run(orch, given)
        orch.status(run_id)
        if wait:
            # The lines are the output (stdout), the last one once; with --json they are
            # progress (stderr) and the document is the output.
            shown = cli.err if json_ else cli.out
            async with watching(cli, orch, run_id, console=shown, plain=True) as p:
                status = p.final(await orch.wait(run_id, on_round=p))
        else:
            status = await orch.step(run_id)
            cli.metrics.observe_status(status)
        if json_:
            emit_json(status)
        elif not wait:
            cli.out.print(status_line(status), markup=False, highlight=False)
        return finished_code(status) if wait else EXIT_OK

    execute(ctx, body)


@app.command()
def resume(
    ctx: typer.Context,
    run_id: RunArg,
    detach: Annotated[
        bool,
        typer.Option(
            "--detach",
            help="Only reconcile and do one round of batch work; real-time work waits for "
            "`watch` or `poll`.",
        ),
    ] = False,
    json_: Json = False,
) -> None:
    """Reconcile RUN after a crash or Ctrl-C, then carry on until it is done.

    Remote batches are matched to the store and in-flight calls are retried; no batch is
    submitted twice.

    Example: batchyard resume run_20261121_ab12cd
    """
    cli = state(ctx)
    cli.run_id = run_id

    async def body(orch: Orchestrator) -> int:
        if detach:
            status = await orch.resume(run_id, realtime=False)
        else:
            async with watching(cli, orch, run_id) as progress:
                status = await orch.resume(run_id)
                progress(status)
                if not status.done:
                    status = await orch.wait(run_id, on_round=progress)
                progress.final(status)
        if json_:
            emit_json(status)
        else:
            cli.out.print(status_view(status, orch.clock()))
        return finished_code(status) if not detach else EXIT_OK

    execute(ctx, body)
