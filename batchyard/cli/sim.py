"""`batchyard sim serve`: run the OpenAI-compatible simulator on a loopback port.

Owns the command's options (host, port, config file, clock speed) and its banner, which
says how to point batchyard at it. The simulator itself lives in `batchyard.simulator`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from batchyard.cli.app import app, state
from batchyard.cli.edge import guarded
from batchyard.errors import ConfigError

__all__ = ["sim_app"]

sim_app = typer.Typer(
    help="The OpenAI-compatible simulator, for trying batchyard offline.",
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(sim_app, name="sim")


@sim_app.callback()
def _group() -> None:
    """The OpenAI-compatible simulator, for trying batchyard offline."""


@sim_app.command("serve")
def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", "-p", help="Port to listen on.")] = 8080,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            exists=True,
            dir_okay=False,
            help="A simulator TOML file (models, limits, latency, faults, clock).",
        ),
    ] = None,
    time_scale: Annotated[
        float | None,
        typer.Option(
            "--time-scale",
            help="Simulated seconds per real second (600: a 30-minute batch takes 3 s).",
        ),
    ] = None,
) -> None:
    """Serve the OpenAI-compatible simulator until Ctrl-C.

    Point batchyard at it with OPENAI_BASE_URL=http://HOST:PORT/v1 and any OPENAI_API_KEY.

    Example: batchyard sim serve --port 8080 --time-scale 600
    """
    cli = state(ctx)

    def body() -> None:
        from batchyard.simulator import load_config
        from batchyard.simulator.server import serve as run_server

        try:
            cfg = load_config(config)
        except ValueError as exc:
            raise ConfigError(f"The simulator config {config} is invalid: {exc}") from exc
        if time_scale is not None:
            if time_scale <= 0:
                raise ConfigError("--time-scale must be more than 0, e.g. 600.")
            cfg.clock.time_scale = time_scale
        cli.err.print(
            f"Simulator on http://{host}:{port}/v1 (clock x{cfg.clock.time_scale:g}). In another "
            f"shell:\n  export OPENAI_BASE_URL=http://{host}:{port}/v1 OPENAI_API_KEY=sk-sim\n"
            f"Stop with Ctrl-C, or `kill {os.getpid()}` when it runs in the background.",
            markup=False,
        )
        run_server(host, port, cfg)

    guarded(cli, body)
