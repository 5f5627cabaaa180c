"""The one edge where a command's async work runs and its errors and Ctrl-C are handled.

Owns `execute` (the single `asyncio.run()` of a command, which builds its Orchestrator and
stops it gracefully on the first Ctrl-C), `guarded` (a `BatchyardError` becomes a one- or
two-sentence message and an exit code, Ctrl-C exit 130 with how to carry on), `fail` and
`interrupted` (the message, and with `--json` the error document), and serving metrics
while a command runs. Nothing here decides routes or touches the store directly.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from typing import TYPE_CHECKING, Any, TypeVar

import typer
from typer._click.exceptions import UsageError

from batchyard.cli.app import Cli, state
from batchyard.cli.exits import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, exit_code
from batchyard.cli.failures import emit_error, error_details, error_type
from batchyard.errors import BatchyardError
from batchyard.metrics import serving

if TYPE_CHECKING:
    from batchyard.orchestrator._orchestrator import Orchestrator
    from batchyard.orchestrator._reporting.reader import Reader

__all__ = ["execute", "fail", "guarded", "interrupted"]

T = TypeVar("T")
log = logging.getLogger("batchyard.cli")


def _interrupted(cli: Cli) -> str:
    if cli.run_id is None:
        return (
            "Stopped; nothing is lost: `batchyard runs` shows whether the run was recorded, "
            "and `batchyard resume RUN` carries it on."
        )
    return f"Stopped; nothing is lost: run `batchyard resume {cli.run_id}` to carry on."


@contextmanager
def _metrics(cli: Cli) -> Iterator[None]:
    with ExitStack() as stack:
        if cli.metrics_port is not None:
            port = stack.enter_context(serving(cli.metrics, cli.metrics_port))
            cli.err.print(f"Metrics on http://127.0.0.1:{port}/metrics")
        yield


def interrupted(cli: Cli, *, printed: bool = False) -> typer.Exit:
    """Ctrl-C: how to carry on (stderr; with `--json` the error document, unless the
    command stopped gracefully and `printed` its own), exit 130."""
    message = _interrupted(cli)
    cli.err.print(message, markup=False)
    if cli.json and not printed:
        emit_error("Interrupted", message, EXIT_INTERRUPTED, {"run_id": cli.run_id})
    return typer.Exit(EXIT_INTERRUPTED)


def fail(cli: Cli, exc: BaseException, message: str, code: int) -> typer.Exit:
    """A failure: `Error: ...` on stderr; with `--json` the one error document on stdout."""
    cli.err.print(f"Error: {message}", markup=False)
    if cli.json:
        details = error_details(exc)
        if cli.run_id is not None:
            details.setdefault("run_id", cli.run_id)
        emit_error(error_type(exc), message, code, details)
    return typer.Exit(code)


def guarded(cli: Cli, body: Callable[[], T]) -> T:
    """Run `body`; a BatchyardError or Ctrl-C becomes a message and an exit code."""
    try:
        with _metrics(cli):
            return body()
    except KeyboardInterrupt:
        log.info("interrupted", extra={"run_id": cli.run_id})
        raise interrupted(cli) from None
    except UsageError as exc:  # a bad option value found once the command runs
        raise fail(cli, exc, exc.format_message(), EXIT_USAGE) from None
    except BatchyardError as exc:
        log.warning("error", exc_info=exc)
        if cli.debug:
            raise
        raise fail(cli, exc, str(exc), exit_code(exc)) from None
    except (typer.Exit, typer.Abort, SystemExit):
        raise
    except Exception as exc:
        log.error("unexpected error", exc_info=exc)
        if cli.debug:
            raise
        message = (
            f"{type(exc).__name__}: {exc}. This is a bug in batchyard; run again with "
            "--debug for the traceback and report it."
        )
        raise fail(cli, exc, message, EXIT_ERROR) from None


def execute_reading(ctx: typer.Context, body: Callable[[Reader], int | None]) -> None:
    """Run `body` on a `Reader` of the job database and exit with its code: for a command
    that makes no API call (`fetch`), which then does not wait for the OpenAI SDK's import
    that building an Orchestrator brings."""
    from batchyard.orchestrator._reporting.reader import Reader

    cli = state(ctx)

    def main() -> int | None:
        reader = Reader(cli.settings())
        try:
            return body(reader)
        finally:
            reader.close()

    raise typer.Exit(guarded(cli, main) or EXIT_OK)


def execute(
    ctx: typer.Context,
    body: Callable[[Orchestrator], Awaitable[int | None]],
    **parts: Any,
) -> None:
    """Build the Orchestrator, run `body` under one `asyncio.run()`, exit with its code."""
    cli = state(ctx)
    stopped = False

    async def main() -> int | None:
        nonlocal stopped
        orch = cli.orchestrator(**parts)
        task = asyncio.current_task()

        def on_interrupt() -> None:
            # First Ctrl-C: stop gracefully (calls on the wire get their grace, nothing
            # new starts). A second one: stop at once (still nothing is lost).
            nonlocal stopped
            if stopped and task is not None:
                task.cancel()
                return
            stopped = True
            cli.err.print("Stopping: letting calls in flight finish (Ctrl-C again to stop now).")
            orch.stop()

        loop = asyncio.get_running_loop()
        with suppress(NotImplementedError, RuntimeError):  # no signal handlers: plain ^C
            loop.add_signal_handler(signal.SIGINT, on_interrupt)
        try:
            return await body(orch)
        except asyncio.CancelledError:
            raise KeyboardInterrupt from None
        finally:
            with suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(signal.SIGINT)
            await orch.aclose()

    code = guarded(cli, lambda: asyncio.run(main()))
    if stopped:  # the command finished its output before stopping
        raise interrupted(cli, printed=True)
    raise typer.Exit(code or EXIT_OK)
