"""Option types shared by several commands, so each is spelled and documented once.

Owns the typer annotations for `--json`, `--deadline`, `--budget`, `--route`, `--strict`
and the RUN argument, and `budget_value()` (the one parse of `--budget`). Nothing else.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from batchyard.models import RouteOverride
from batchyard.router.parse import parse_budget

__all__ = [
    "Budget",
    "Deadline",
    "CheckOpt",
    "Json",
    "NoReuse",
    "Requeues",
    "RequestFile",
    "RouteOpt",
    "RunArg",
    "Strict",
    "budget_value",
]

Json = Annotated[bool, typer.Option("--json", help="Print one JSON document to stdout.")]
Deadline = Annotated[
    str | None,
    typer.Option(
        "--deadline",
        help="When everything must be answered: a duration (90m, 2h, 1d) or an ISO-8601 time.",
    ),
]
Budget = Annotated[
    str | None,
    typer.Option("--budget", help="Most USD the run may cost, e.g. 25 or $7.50."),
]
RouteOpt = Annotated[
    RouteOverride,
    typer.Option(
        "--route",
        case_sensitive=False,
        help="auto lets the router choose; realtime, flex or batch send everything one way.",
    ),
]
Strict = Annotated[
    bool,
    typer.Option("--strict", help="Refuse (exit 4) when any request would miss the deadline."),
]
CheckOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--check",
        help="A check on every answer, repeatable: finish, refusal, json, schema, "
        "MODULE:FUNCTION for your own, or none. Default: finish, refusal, json, schema.",
    ),
]
Requeues = Annotated[
    int | None,
    typer.Option(
        "--requeues",
        min=0,
        help="Times a line whose answer fails a check is sent again before it ends "
        "invalid (default 2, setting check_requeues).",
    ),
]
NoReuse = Annotated[
    bool,
    typer.Option(
        "--no-reuse",
        help="Send every line as asked: no answers from earlier runs, identical lines not merged.",
    ),
]
RunArg = Annotated[str, typer.Argument(help="The run id, as `batchyard runs` lists it.")]
RequestFile = Annotated[
    Path,
    typer.Argument(
        help="A JSONL request file in the OpenAI batch format.",
        exists=True,
        dir_okay=False,
        readable=True,
    ),
]


def budget_value(text: str | None) -> float | None:
    return parse_budget(text) if text is not None else None
