"""The `models` command: the model table batchyard prices and routes with, and its sources.

Owns listing the catalog (prices per tier, limits, the table's date, and where each row's
values came from: the shipped table or batchyard.toml) and the one-line notice `plan` and
`submit` print on stderr when the shipped table is older than 90 days. Reads the catalog
only; user text (model names from batchyard.toml) is rendered as plain text, never markup.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import typer
from rich.table import Table
from rich.text import Text

from batchyard.catalog import Catalog, ModelInfo, stale_notice
from batchyard.cli.app import Cli, app, state
from batchyard.cli.edge import guarded
from batchyard.cli.options import Json
from batchyard.cli.render import emit_json

__all__ = ["models_table", "warn_if_stale"]


def warn_if_stale(cli: Cli, today: date | None = None) -> None:
    """One line on stderr when the shipped table is older than 90 days."""
    catalog = cli.settings().model_table()
    notice = stale_notice(catalog.date, today or date.today())
    if notice is not None:
        cli.err.print(Text(notice))


def _price(*values: float | None) -> str:
    if values[0] is None:
        return "-"
    return " / ".join("-" if v is None else f"{v:g}" for v in values)


def _origin(info: ModelInfo) -> str:
    if info.sources.get("all") == "batchyard.toml":
        return "batchyard.toml"
    if info.overridden:
        return "shipped; batchyard.toml: " + ", ".join(info.overridden)
    return "shipped"


def _row(info: ModelInfo) -> dict[str, Any]:
    data = info.model_dump(mode="json")
    data["from"] = _origin(info)
    return data


def models_table(catalog: Catalog) -> Table:
    table = Table(
        title=Text(
            f"Model table dated {catalog.date} (limits: {catalog.tier} defaults); "
            "USD per 1M tokens: input / cached / output"
        ),
        title_justify="left",
    )
    for column in (
        "model", "standard", "cache write", "batch", "flex", "fast", "long context",
        "context", "RPM / TPM / queue", "date", "from",
    ):  # fmt: skip
        table.add_column(column)
    for name in catalog:
        m = catalog[name]
        band = f">{m.long_context_threshold:,}" if m.long_context_threshold else "-"
        table.add_row(
            Text(name + (f" ({', '.join(m.aliases)})" if m.aliases else "")),
            _price(m.input, m.cached_input, m.output),
            _price(m.cache_write),
            _price(m.batch_input, m.batch_cached_input, m.batch_output),
            _price(m.flex_input, m.flex_cached_input, m.flex_output),
            _price(m.fast_input, m.fast_cached_input, m.fast_output),
            band,
            f"{m.context_window:,}",
            f"{m.rpm:,} / {m.tpm:,} / {m.enqueued_token_limit:,}",
            m.date or "-",
            Text(_origin(m)),
        )
    return table


@app.command()
def models(ctx: typer.Context, json_: Json = False) -> None:
    """List the model table: prices per tier, limits, its date and where each value came from.

    Dated snapshots (gpt-4o-mini-2024-07-18) price as their family and fine-tuned models
    (ft:BASE:org:name:id) at the table's ft:BASE row; add or override a model in
    batchyard.toml under [models."NAME"]. `--json` includes every value's source.

    Example: batchyard models --json
    """
    cli = state(ctx)

    def body() -> None:
        catalog = cli.settings().model_table()
        if json_:
            emit_json(
                {
                    "date": catalog.date,
                    "limits_tier": catalog.tier,
                    "models": [_row(catalog[name]) for name in catalog],
                }
            )
            return
        cli.out.print(models_table(catalog))

    guarded(cli, body)
