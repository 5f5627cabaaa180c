"""`batchyard demo`: a whole run against the embedded simulator, in under a minute, no key.

Owns the demo's set-up: the simulator in-process (an `httpx2.ASGITransport`, no socket)
with an accelerated clock and the orchestrator on the matching scaled clock, a sample file
of chat requests over three models and a deadline that shows every path: gpt-4o-mini goes
to batch and comes back in time, gpt-5-mini goes to flex (it costs what batch costs), and
gpt-4.1-mini goes to batch on a simulator whose batches for it are slow, so at its
escalation point the batch is cancelled, the lines it finished are kept and the rest are
sent in standard real time. The run is kept out of the user's job database, in a demo
database beside it (`batchyard-demo.db`, or `--db`), whose `status` command is printed.
Then it does what a user would: submit, watch, fetch, costs. The work is the orchestrator's.
"""

from __future__ import annotations

import shlex
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import httpx2
import typer

from batchyard.cli.app import app, state
from batchyard.cli.edge import execute, guarded
from batchyard.cli.exits import EXIT_OK
from batchyard.cli.live import watching
from batchyard.cli.options import Json
from batchyard.cli.render import emit_json, plan_view, submit_lines
from batchyard.cli.render_runs import costs_view, fetch_lines
from batchyard.config import load_settings

if TYPE_CHECKING:
    from batchyard.orchestrator._orchestrator import Orchestrator

__all__ = ["DEMO_MODELS", "SLOW_MODEL", "demo_db_path"]

DEMO_MODELS = ("gpt-4o-mini", "gpt-5-mini", "gpt-4.1-mini")
SLOW_MODEL = "gpt-4.1-mini"  # its batches outlast the deadline: the demo's escalation
_SLOW_TURNAROUND_S = 5 * 3600.0  # simulated; the deadline is 3 h
_DEMO_URL = "http://simulator/v1"
_MARGIN_REAL_S = 8.0


def demo_db_path() -> Path:
    """Where demo runs are kept: `batchyard-demo.db` beside the job database, so they stay
    out of it (and what the simulator taught stays out of what the router learned)."""
    from batchyard.store import default_db_path

    return default_db_path().parent / "batchyard-demo.db"


@app.command()
def demo(
    ctx: typer.Context,
    requests: Annotated[
        int, typer.Option("--requests", "-n", help="How many sample requests to send.", min=1)
    ] = 1000,
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

    A few thousand sample chat requests over three models and a deadline: batch, flex,
    and a slow batch cancelled at its escalation point (its finished lines kept, the rest
    sent in standard real time); live progress, the merged results and the cost report.
    The run is kept in batchyard-demo.db beside the job database (or --db); the command
    that shows it again is printed.

    Example: batchyard demo -n 500 -o demo.jsonl
    """
    from batchyard.orchestrator._calls.client import make_client
    from batchyard.orchestrator._calls.timing import scaled
    from batchyard.samples import write_sample
    from batchyard.simulator import create_app, load_config

    cli = state(ctx)
    with tempfile.TemporaryDirectory(prefix="batchyard-demo-") as tmp:
        workdir = Path(tmp)
        sample = write_sample(workdir / "demo-requests.jsonl", requests, DEMO_MODELS)
        start = time.time()
        sim = create_app(
            load_config(
                None,
                clock={"start": start, "time_scale": time_scale},
                batch={"model_turnaround_seconds": {SLOW_MODEL: _SLOW_TURNAROUND_S}},
            )
        )
        clock, sleep = scaled(time_scale, start=start)
        settings = guarded(
            cli,
            lambda: load_settings(
                db=cli.db or demo_db_path(),
                api_key="sk-demo",
                base_url=_DEMO_URL,
                # Real-time calls take real time, which the scaled clock multiplies: keep
                # a few real seconds free before the deadline, whatever the machine's load.
                margin_seconds=_MARGIN_REAL_S * time_scale,
            ),
        )
        client = make_client(
            settings, http_client=httpx2.AsyncClient(transport=httpx2.ASGITransport(app=sim))
        )

        async def body(orch: Orchestrator) -> int:
            cli.err.print(
                f"Demo: {requests:,} chat requests over {', '.join(DEMO_MODELS)}, deadline "
                f"{deadline}, against the embedded simulator (clock x{time_scale:g}).",
                markup=False,
            )
            # The demo's sample is the same every time: answering it from an earlier demo's
            # answers would show nothing of the routing, so this run buys its answers.
            result = await orch.submit(sample, deadline=deadline, reuse=False)
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
            db = orch.settings.db_path()
            cli.err.print(
                f"The run is {result.run_id}: `batchyard --db {shlex.quote(str(db))} status "
                f"{result.run_id}` shows it again.",
                markup=False,
            )
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
