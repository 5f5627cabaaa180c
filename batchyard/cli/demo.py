"""`batchyard demo`: a whole run against the embedded simulator, in under a minute, no key.

Owns the demo's set-up: the simulator in-process (an `httpx2.ASGITransport`, no socket)
with an accelerated clock and the orchestrator on the matching scaled clock, a sample file
of chat requests over two models, a deadline that makes the router split the run between
real time and batch, and a temporary job database unless `--db` is given. Then it does
what a user would: submit, watch, fetch, costs. The work is the orchestrator's.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import httpx2
import typer

from batchyard.cli.app import EXIT_OK, app, execute, guarded, state
from batchyard.cli.live import watching
from batchyard.cli.options import Json
from batchyard.cli.render import emit_json, plan_view, submit_lines
from batchyard.cli.render_runs import costs_view, fetch_lines
from batchyard.config import load_settings

if TYPE_CHECKING:
    from batchyard.orchestrator._orchestrator import Orchestrator

__all__ = ["DEMO_MODELS"]

DEMO_MODELS = ("gpt-4o-mini", "gpt-5-mini")
_DEMO_URL = "http://simulator/v1"


@app.command()
def demo(
    ctx: typer.Context,
    requests: Annotated[
        int, typer.Option("--requests", "-n", help="How many sample requests to send.", min=1)
    ] = 2500,
    output: Annotated[
        Path, typer.Option("-o", "--output", help="Where the merged results go.")
    ] = Path("batchyard-demo-results.jsonl"),
    deadline: Annotated[
        str, typer.Option("--deadline", help="The run's deadline, in simulated time.")
    ] = "3h",
    time_scale: Annotated[
        float,
        typer.Option("--time-scale", help="Simulated seconds per real second.", min=1.0),
    ] = 600.0,
    json_: Json = False,
) -> None:
    """Run a whole job against the embedded simulator: no API key, under a minute.

    A few thousand sample chat requests over two models, a deadline that splits them
    between real time and batch, live progress, the merged results and the cost report.

    Example: batchyard demo -n 500 -o demo.jsonl
    """
    from batchyard.orchestrator._client import make_client
    from batchyard.orchestrator._timing import scaled
    from batchyard.samples import write_sample
    from batchyard.simulator import create_app, load_config

    cli = state(ctx)
    with tempfile.TemporaryDirectory(prefix="batchyard-demo-") as tmp:
        workdir = Path(tmp)
        sample = write_sample(workdir / "demo-requests.jsonl", requests, DEMO_MODELS)
        start = time.time()
        sim = create_app(load_config(None, clock={"start": start, "time_scale": time_scale}))
        clock, sleep = scaled(time_scale, start=start)
        settings = guarded(
            cli,
            lambda: load_settings(
                db=cli.db or workdir / "demo.db", api_key="sk-demo", base_url=_DEMO_URL
            ),
        )
        client = make_client(
            settings, http_client=httpx2.AsyncClient(transport=httpx2.ASGITransport(app=sim))
        )

        async def body(orch: Orchestrator) -> int:
            cli.err.print(
                f"Demo: {requests:,} chat requests over {' and '.join(DEMO_MODELS)}, deadline "
                f"{deadline}, against the embedded simulator (clock x{time_scale:g}).",
                markup=False,
            )
            result = await orch.submit(sample, deadline=deadline)
            cli.run_id = result.run_id
            if not json_:
                cli.out.print(plan_view(result.plan))
                for line in submit_lines(result):
                    cli.out.print(line, markup=False)
            async with watching(cli, orch, result.run_id) as progress:
                status = progress.final(await orch.wait(result.run_id, on_round=progress))
            fetched = orch.fetch(result.run_id, output)
            report = orch.costs(result.run_id)
            cli.metrics.observe_costs(report)
            if json_:
                emit_json({"submit": result, "status": status, "fetch": fetched, "costs": report})
                return EXIT_OK
            for line in fetch_lines(fetched):
                cli.out.print(line, markup=False)
            cli.out.print(costs_view(report))
            return EXIT_OK

        execute(
            ctx,
            body,
            settings=settings,
            client=client,
            clock=clock,
            sleep=sleep,
            workdir=workdir,
        )
