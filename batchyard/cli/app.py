"""The typer app, its global options, and what every command shares.

Owns `app` (global options `--db`, `--base-url`, `--metrics-port`, `--debug`, which may
also follow the command; a wrong command line is a plain `Error:` line and exit 2) and
`Cli` (what every command needs: settings, one way to build the Orchestrator, the
consoles), found with `state(ctx)`. Running a command and handling its errors is
`edge.py`; the exit codes are `exits.py`. Commands live in the other modules of this
package; nothing here decides routes or touches the store directly.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from typer._click.core import Command, Context  # typer vendors click
from typer._click.exceptions import ClickException, NoArgsIsHelpError
from typer.core import TyperGroup, TyperOption

from batchyard import __version__, logs
from batchyard.cli.exits import EXIT_ERROR, EXIT_OK
from batchyard.cli.failures import show_usage_error
from batchyard.config import Settings, load_settings
from batchyard.errors import NotFound
from batchyard.metrics import Metrics

if TYPE_CHECKING:
    from batchyard.orchestrator._orchestrator import Orchestrator
    from batchyard.orchestrator._reporting.reader import Reader

__all__ = ["Cli", "app", "state"]

log = logging.getLogger("batchyard.cli")

_GLOBAL_VALUES = ("--db", "--base-url", "--metrics-port")
_GLOBAL_FLAGS = ("--debug",)


def hoist_global_options(args: list[str]) -> list[str]:
    """Global options may also follow the command (`batchyard submit F --db x.db`):
    move them in front of it, where click expects them. Stops at `--`."""
    front: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            rest.extend(args[i:])
            break
        name = arg.split("=", 1)[0]
        if name in _GLOBAL_FLAGS or (name in _GLOBAL_VALUES and "=" in arg):
            front.append(arg)
        elif name in _GLOBAL_VALUES and i + 1 < len(args):
            front.extend(args[i : i + 2])
            i += 1
        else:
            rest.append(arg)
        i += 1
    return front + rest


def _wants_json(args: list[str]) -> bool:
    return "--json" in (args[: args.index("--")] if "--" in args else args)


def _plain_flags(command: Command, names: list[str]) -> None:
    """On/off flags take no value: show none (typer would print `<bool>`)."""
    ctx = Context(command, help_option_names=names)
    for param in command.get_params(ctx):
        if isinstance(param, TyperOption) and param.is_flag:
            param.metavar = ""
    if isinstance(command, TyperGroup):
        for sub in command.commands.values():
            _plain_flags(sub, names)


class _Group(TyperGroup):
    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return super().parse_args(ctx, hoist_global_options(list(args)))

    def main(  # type: ignore[override]
        self,
        args: list[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        """click's main, except that a wrong command line is a plain `Error:` line (and,
        with `--json`, the error document on stdout) and exits 2."""
        argv = list(sys.argv[1:] if args is None else args)
        _plain_flags(self, list(self.context_settings.get("help_option_names", ["--help"])))
        try:
            code = super().main(argv, prog_name, complete_var, standalone_mode=False, **extra)
        except NoArgsIsHelpError as exc:
            exc.show()
            code = exc.exit_code
        except ClickException as exc:
            code = show_usage_error(exc, json_mode=_wants_json(argv))
        except typer.Abort:
            typer.echo("Aborted.", err=True)
            code = EXIT_ERROR
        code = code if isinstance(code, int) else EXIT_OK
        if not standalone_mode:
            return code
        sys.exit(code)


app = typer.Typer(
    cls=_Group,
    name="batchyard",
    help=(
        "Get large files of OpenAI API requests answered at the lowest cost that still "
        "meets your deadline, splitting them between real time and the Batch API."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _console(*, stderr: bool) -> Console:
    """A console; when it is not a terminal (a pipe, a file, CI), wide enough that tables
    keep whole ids and numbers instead of squeezing them into 80 columns."""
    # Everything the CLI prints is data or user text (model names, paths, custom_ids, API
    # messages): never rich markup or emoji codes, or `ft:gpt-4o-mini:org:x:abc` would
    # print as `ft:gpt-4o-mini:org❌abc` and `[b]` would vanish.
    console = Console(stderr=stderr, soft_wrap=True, highlight=False, markup=False, emoji=False)
    if not console.is_terminal:
        console.width = 200
    return console


@dataclass
class Cli:
    """What every command shares: global options, consoles, metrics, and the run in hand."""

    db: Path | None = None
    base_url: str | None = None
    debug: bool = False
    metrics_port: int | None = None
    metrics: Metrics = field(default_factory=Metrics)
    out: Console = field(default_factory=lambda: _console(stderr=False))
    err: Console = field(default_factory=lambda: _console(stderr=True))
    run_id: str | None = None  # the run a command is working on, for the Ctrl-C message
    json: bool = False  # the command was given --json: failures are a JSON document too

    def settings(self) -> Settings:
        return load_settings(db=self.db, base_url=self.base_url)

    def explicit(self) -> dict[str, Any]:
        """Settings given on the command line, for `config show`."""
        return {k: v for k, v in (("db", self.db), ("base_url", self.base_url)) if v is not None}

    def orchestrator(self, **parts: Any) -> Orchestrator:
        """The one way a command builds its Orchestrator (`parts`: store, client, clock, ...)."""
        from batchyard.orchestrator._orchestrator import Orchestrator

        settings = parts.pop("settings", None) or self.settings()
        parts.setdefault("on_progress", self.progress)
        parts.setdefault("metrics", self.metrics)  # the registry `--metrics-port` serves
        return Orchestrator(settings, **parts)

    def pick_run(self, orch: Orchestrator | Reader, run_id: str | None) -> str:
        """`run_id`, or the newest run when it is left out (said on stderr)."""
        if run_id is None:
            newest = orch.runs(1)
            if not newest:
                raise NotFound("No runs yet: start one with `batchyard submit FILE`.")
            run_id = newest[0].id
            self.err.print(f"Using the newest run, {run_id}.", markup=False)
        self.run_id = run_id
        return run_id

    def progress(self, kind: Any, data: Any = None) -> None:
        """Progress events from the orchestrator: logged and counted, never printed here."""
        name = str(getattr(kind, "kind", kind))
        payload = data if isinstance(data, dict) else dict(getattr(kind, "data", None) or {})
        message = getattr(kind, "message", None)
        # One line per answered request would be most of the file: those are debug (--debug
        # logs them); failures, retries and every batch or routing change stay info.
        routine = name == "realtime" and payload.get("kind") == "succeeded"
        level = logging.DEBUG if routine else logging.INFO
        log.log(level, message or name, extra={"event": name, "data": payload})
        self.metrics.observe_event(name, payload)


def _state(ctx: typer.Context) -> Cli:
    obj = ctx.find_root().obj
    if not isinstance(obj, Cli):  # invoked without the callback (tests calling a command)
        obj = Cli()
        ctx.find_root().obj = obj
    if ctx.params.get("json_"):
        obj.json = True
    return obj


def _version(value: bool) -> None:
    if value:
        typer.echo(f"batchyard {__version__}")
        raise typer.Exit(EXIT_OK)


@app.callback()
def _global(
    ctx: typer.Context,
    db: Annotated[
        Path | None,
        typer.Option(
            "--db",
            help="The job database (default: $BATCHYARD_DB, else batchyard.db in the user "
            "data directory).",
        ),
    ] = None,
    base_url: Annotated[
        str | None,
        typer.Option(
            "--base-url",
            help="An OpenAI-compatible API base URL, e.g. http://127.0.0.1:8080/v1 "
            "(default: $OPENAI_BASE_URL, else OpenAI).",
        ),
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            "--metrics-port",
            help="Serve Prometheus metrics on http://127.0.0.1:PORT/metrics while running.",
        ),
    ] = None,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show the full traceback when something fails.")
    ] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", help="Print the version and exit.", is_eager=True, callback=_version
        ),
    ] = False,
) -> None:
    """Get OpenAI requests answered at the lowest cost that meets a deadline."""
    ctx.obj = Cli(db=db, base_url=base_url, debug=debug, metrics_port=metrics_port)
    logs.setup(level=logging.DEBUG if debug else logging.INFO)
    log.info("command", extra={"argv": sys.argv[1:]})


def state(ctx: typer.Context) -> Cli:
    """The shared `Cli` of this invocation."""
    return _state(ctx)
