"""How a failure reaches the user: one sentence on stderr, and with `--json` one document.

Owns the error document `--json` promises (`{"error": {"type", "message", "exit_code",
"details"}}`, exactly one on stdout, per-line problems included) and the plain rendering of
command-line mistakes (click's usage errors, without a box, exit 2). It decides no exit code
of its own: callers pass the code from `batchyard.cli.exits`'s table.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from typing import Any

import typer
from typer._click.exceptions import (  # typer vendors click
    BadParameter,
    ClickException,
    NoSuchOption,
    UsageError,
)

from batchyard.errors import BatchyardError, ValidationFailed

__all__ = ["emit_error", "error_details", "error_type", "show_usage_error"]


def error_details(exc: BaseException) -> dict[str, Any]:
    """What a program needs beyond the message: the invalid lines, the bad parameter."""
    if isinstance(exc, ValidationFailed):
        lines = sorted({p.line for p in exc.problems})
        return {"invalid_lines": len(lines), "problems": [asdict(p) for p in exc.problems]}
    if isinstance(exc, BadParameter) and exc.param is not None:
        return {"param": exc.param.opts[0] if exc.param.opts else exc.param.name}
    if isinstance(exc, NoSuchOption):
        return {"option": exc.option_name}
    return {}


def emit_error(
    error_type: str, message: str, exit_code: int, details: dict[str, Any] | None = None
) -> None:
    """The one JSON document of a failed `--json` command, on stdout."""
    document = {
        "error": {
            "type": error_type,
            "message": message,
            "exit_code": exit_code,
            "details": details or {},
        }
    }
    sys.stdout.write(json.dumps(document, indent=2) + "\n")
    sys.stdout.flush()


def error_type(exc: BaseException) -> str:
    if isinstance(exc, BatchyardError):
        return type(exc).__name__
    if isinstance(exc, UsageError):
        return "UsageError"
    return "InternalError"


def show_usage_error(exc: ClickException, *, json_mode: bool) -> int:
    """A wrong command line: `Error: ...` (with the usage line) on stderr; the JSON
    document on stdout too with `--json`. Returns the exit code (2)."""
    message = exc.format_message()
    if json_mode:
        emit_error(error_type(exc), message, exc.exit_code, error_details(exc))
    ctx = getattr(exc, "ctx", None)
    lines = []
    if ctx is not None:
        lines.append(ctx.get_usage())
        if ctx.command.get_help_option(ctx) is not None:
            lines.append(f"Try '{ctx.command_path} -h' for help.")
        lines.append("")
    lines.append(f"Error: {message}")
    typer.echo("\n".join(lines), err=True)
    return exc.exit_code
