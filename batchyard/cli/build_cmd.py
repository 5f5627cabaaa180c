"""The `build` command: a request file from a template and a data file, with fan-out.

Owns its options and output; the work is `batchyard.build.build_file` (one call).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from batchyard.cli.app import app, state
from batchyard.cli.edge import execute
from batchyard.cli.exits import EXIT_OK
from batchyard.cli.options import Json, Samples, Vary
from batchyard.cli.render import emit_json

if TYPE_CHECKING:
    from batchyard.orchestrator._orchestrator import Orchestrator

__all__: list[str] = []

_Existing = {"exists": True, "dir_okay": False, "readable": True}


@app.command()
def build(
    ctx: typer.Context,
    template: Annotated[
        Path, typer.Argument(help="A TOML request template (endpoint, model, body).", **_Existing)
    ],
    data: Annotated[
        Path, typer.Argument(help="The data: CSV with a header, or JSONL objects.", **_Existing)
    ],
    output: Annotated[
        Path, typer.Option("-o", "--output", help="The request file to write (JSONL).")
    ],
    vary: Vary = None,
    samples: Samples = 1,
    json_: Json = False,
) -> None:
    """Build a request file from TEMPLATE and the rows of DATA, validated as submit does.

    Every string in the template may hold Jinja2 placeholders naming the row's fields
    (`{{ question }}`); custom_id comes from `custom_id_column` or the `custom_id`
    template. --vary KEY=A,B and --samples N write each request as variants with the
    custom_id ORIGINAL#KEY=A[,sample=N]. A problem names the data row and the field, and
    nothing is written.

    Example: batchyard build prompt.toml questions.csv -o requests.jsonl --vary temperature=0,1
    """
    cli = state(ctx)

    async def body(orch: Orchestrator) -> int:
        report = orch.build(template, data, output, vary=vary or (), samples=samples)
        if json_:
            emit_json(report.to_dict())
        else:
            cli.out.print(
                f"Wrote {report.requests} request(s) from {report.rows} row(s) to {output}.",
                markup=False,
            )
        return EXIT_OK

    execute(ctx, body)
