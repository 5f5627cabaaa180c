"""Option types shared by several commands, so each is spelled and documented once.

Owns the typer annotations for `--json`, `--deadline`, `--budget`, `--route`, `--strict`,
the RUN argument, the building options (`--template`, `--vary`, `--samples`) and
`budget_value()` (the one parse of `--budget`). Nothing else.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from batchyard.errors import ConfigError
from batchyard.models import RouteOverride
from batchyard.router.parse import parse_budget, parse_deadline

__all__ = [
    "Budget",
    "Deadline",
    "CheckOpt",
    "FallbackOpt",
    "Json",
    "NewestRun",
    "NoReuse",
    "Requeues",
    "RequestFile",
    "RouteOpt",
    "RunArg",
    "Samples",
    "Strict",
    "TemplateOpt",
    "Vary",
    "budget_value",
]


def _checked_deadline(text: str | None) -> str | None:
    """A deadline that cannot be read is a wrong command line (exit 2), found before any
    work starts; the orchestrator reads it again against its own clock."""
    if text is not None:
        try:
            parse_deadline(text, time.time())
        except ConfigError as exc:
            raise typer.BadParameter(str(exc).removeprefix("--deadline ")) from None
    return text


def _checked_budget(text: str | None) -> str | None:
    if text is not None:
        try:
            parse_budget(text)
        except ConfigError as exc:
            raise typer.BadParameter(str(exc).removeprefix("--budget ")) from None
    return text


Json = Annotated[bool, typer.Option("--json", help="Print one JSON document to stdout.")]
Deadline = Annotated[
    str | None,
    typer.Option(
        "--deadline",
        callback=_checked_deadline,
        help="When everything must be answered: a duration (90m, 2h, 1d) or an ISO-8601 time.",
    ),
]
Budget = Annotated[
    str | None,
    typer.Option(
        "--budget", callback=_checked_budget, help="Most USD the run may cost, e.g. 25 or $7.50."
    ),
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
FallbackOpt = Annotated[
    str | None,
    typer.Option(
        "--fallback",
        metavar="MODEL",
        help="Send lines whose model the API refuses (model_not_found), or whose real-time "
        "breaker stays open past the escalation point, to MODEL instead (default: the "
        "[fallback] table of batchyard.toml; none).",
    ),
]
RunArg = Annotated[
    str, typer.Argument(metavar="RUN", help="The run id, as `batchyard runs` lists it.")
]
NewestRun = Annotated[
    str | None,
    typer.Argument(
        metavar="RUN",
        help="The run id, as `batchyard runs` lists it; the newest run when left out.",
    ),
]
RequestFile = Annotated[
    Path,
    typer.Argument(
        metavar="FILE",
        help="A JSONL request file in the OpenAI batch format (--template: CSV or JSONL data).",
        exists=True,
        dir_okay=False,
        readable=True,
    ),
]

TemplateOpt = Annotated[
    Path | None,
    typer.Option(
        "--template",
        help="A TOML request template: FILE is then data (CSV or JSONL), one request per row.",
        exists=True,
        dir_okay=False,
        readable=True,
    ),
]
Vary = Annotated[
    list[str] | None,
    typer.Option(
        "--vary",
        help="Send each request once per value: KEY=A,B,... (repeatable), e.g. temperature=0,1.",
    ),
]
Samples = Annotated[
    int,
    typer.Option("--samples", min=1, help="Send each request (each variant) N times."),
]


def budget_value(text: str | None) -> float | None:
    return parse_budget(text) if text is not None else None
