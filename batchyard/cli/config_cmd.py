"""`batchyard config show`: the effective configuration and where each value came from.

Owns the provenance of each setting, checked in the order `Settings` applies them: the
command line (`--db`, `--base-url`), the environment (`OPENAI_*`, `BATCHYARD_*`), the
`batchyard.toml` files (current directory, then the user config directory), the default.
The API key is shown as a hint (first three and last four characters), never in full.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

import typer
from pydantic import AliasChoices, SecretStr

from batchyard.cli.app import app, state
from batchyard.cli.edge import guarded
from batchyard.cli.options import Json
from batchyard.cli.render import emit_json
from batchyard.cli.render_runs import config_table
from batchyard.config import Settings, config_files, prices_date

__all__ = ["config_app", "sources"]

config_app = typer.Typer(
    help="Inspect batchyard's configuration.", no_args_is_help=True, add_completion=False
)
app.add_typer(config_app, name="config")


@config_app.callback()
def _group() -> None:
    """Inspect batchyard's configuration."""


_OPTIONS = {"db": "--db", "base_url": "--base-url"}


def _names(name: str) -> list[str]:
    """The keys a setting is read under, in the order pydantic-settings tries them."""
    alias = Settings.model_fields[name].validation_alias
    if isinstance(alias, AliasChoices):
        return [str(c) for c in alias.choices if isinstance(c, str)]
    return [name]


def _env_names(name: str) -> list[str]:
    aliases = _names(name)
    if aliases == [name]:
        return [f"BATCHYARD_{name}".upper()]
    return [a.upper() for a in aliases if a != name]


def _load(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError):
        return {}


def sources(explicit: dict[str, Any]) -> dict[str, str]:
    """For each setting, where its effective value came from."""
    env = {k.upper(): k for k in os.environ}
    tomls = [(p, _load(p)) for p in config_files() if p.is_file()]
    found: dict[str, str] = {}
    for name in Settings.model_fields:
        if name in explicit:
            found[name] = f"option {_OPTIONS.get(name, name)}"
            continue
        hit = next((env[e] for e in _env_names(name) if e in env), None)
        if hit is not None:
            found[name] = f"env {hit}"
            continue
        keys = [*_names(name), name]
        toml = next((p for p, data in tomls if any(k in data for k in keys)), None)
        found[name] = str(toml) if toml is not None else "default"
    return found


def _shown(name: str, settings: Settings) -> Any:
    value = getattr(settings, name)
    if name == "api_key":
        # Here, not at the top: the client module brings the OpenAI SDK, which every
        # command would then pay for at start (about 0.8 s).
        from batchyard.orchestrator._calls.client import key_hint

        return key_hint(settings)
    if isinstance(value, SecretStr):
        return "(set)"  # a secret is never shown
    if name == "base_url" and value is None:
        return "(OpenAI: https://api.openai.com/v1)"
    if name == "db" and value is None:
        return f"(default: {settings.db_path()})"
    if name == "models":
        return sorted(value) if value else []
    if isinstance(value, Path):
        return str(value)
    return value


@config_app.command("show")
def show(ctx: typer.Context, json_: Json = False) -> None:
    """Show the effective configuration and where each value came from.

    Sources: an option, the environment, a batchyard.toml, or the default. The API key
    is shown as a hint only.

    Example: batchyard config show
    """
    cli = state(ctx)

    def body() -> None:
        settings = cli.settings()
        origin = sources(cli.explicit())
        values = {name: _shown(name, settings) for name in Settings.model_fields}
        files = [str(p) for p in config_files()]
        if json_:
            emit_json(
                {
                    "settings": {
                        n: {"value": values[n], "source": origin[n]} for n in Settings.model_fields
                    },
                    "db_path": str(settings.db_path()),
                    "config_files": files,
                    "prices_date": prices_date(),
                }
            )
            return
        rows = []
        for name in Settings.model_fields:
            value = values[name]
            if name == "models":
                value = ", ".join(value) if value else "(shipped table only)"
            rows.append((name, "-" if value is None else str(value), origin[name]))
        cli.out.print(config_table(rows))
        cli.out.print(
            f"config files, first wins: {', '.join(files)}\n"
            f'model prices as of {prices_date()} (override under [models."NAME"])',
            markup=False,
        )

    guarded(cli, body)
