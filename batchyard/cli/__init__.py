"""The `batchyard` command line: a thin typer + rich adapter over the Python API.

Owns nothing but wiring: importing the command modules registers their commands on `app`;
`main()` is the console script and `python -m batchyard`. Each command parses options,
makes one call into `batchyard.orchestrator`, renders the result (data on stdout, progress
and errors on stderr, `--json` on every command that prints data) and exits with a code
from `batchyard.cli.exits.EXIT_CODES`. Importing `batchyard` itself never imports this.
"""

from __future__ import annotations

# Importing a command module registers its commands; `--help` lists them in this order.
# isort: off
from batchyard.cli import running, commands, build_cmd, prune_cmd, models_cmd  # noqa: F401
from batchyard.cli import config_cmd, sim, webhooks_cmd, demo  # noqa: F401

# isort: on
from batchyard.cli.app import app
from batchyard.cli.exits import EXIT_CODES

__all__ = ["EXIT_CODES", "app", "main"]


def main() -> None:
    """Entry point of the `batchyard` console script."""
    app(prog_name="batchyard")
