"""`batchyard webhooks serve`: receive OpenAI's batch events so runs poll those batches at once.

Owns the command's options and banner; the receiver is `batchyard.webhooks`.
"""

from __future__ import annotations

from typing import Annotated

import typer

from batchyard.cli.app import app, state
from batchyard.cli.edge import guarded

__all__ = ["webhooks_app"]

webhooks_app = typer.Typer(
    help="Receive OpenAI's batch webhooks (optional: polling stays the truth).",
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(webhooks_app, name="webhooks")


@webhooks_app.callback()
def _group() -> None:
    """Receive OpenAI's batch webhooks (optional: polling stays the truth)."""


@webhooks_app.command("serve")
def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", "-p", help="Port to listen on.")] = 9000,
    path: Annotated[str, typer.Option("--path", help="The URL path to answer.")] = "/",
) -> None:
    """Receive OpenAI batch events and make the next round poll those batches at once.

    Deliveries are verified with OPENAI_WEBHOOK_SECRET through the openai SDK's
    webhooks.unwrap; a bad or stale signature gets 400 and changes nothing, and a
    repeated webhook-id changes nothing. `watch` or `poll` still do the work.

    Example: batchyard webhooks serve --port 9000
    """
    cli = state(ctx)

    def body() -> None:
        from batchyard.webhooks import serve as run_receiver
        from batchyard.webhooks import webhook_secret

        settings = cli.settings()
        webhook_secret(settings)  # a missing secret is an error before the banner
        cli.err.print(
            f"Receiving webhooks on http://{host}:{port}{path} for {settings.db_path()}. "
            "Stop with Ctrl-C.",
            markup=False,
        )
        run_receiver(settings, host, port, path)

    guarded(cli, body)
