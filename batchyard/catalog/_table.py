"""Loading the shipped model table and merging batchyard.toml's overrides into it.

Owns the file format of `batchyard/data/models.toml` (a `date`, the usage tier its limits
are for, and one `[models."NAME"]` table per model with its prices, limits and `sources`),
the merge of `[models."NAME"]` overrides (new models allowed; every value a user sets is
recorded in `overridden`, so `batchyard models` can say where it came from) and the
staleness notice `plan` and `submit` print for a table older than 90 days.
Reads one packaged file; no network.
"""

from __future__ import annotations

import tomllib
from datetime import date
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from batchyard.catalog._info import ModelInfo
from batchyard.catalog._resolve import Catalog
from batchyard.errors import ConfigError

__all__ = ["STALE_AFTER_DAYS", "load_catalog", "shipped_date", "stale_notice"]

_TABLE = Path(__file__).resolve().parent.parent / "data" / "models.toml"
STALE_AFTER_DAYS = 90


@cache
def _shipped() -> dict[str, Any]:
    with _TABLE.open("rb") as f:
        return tomllib.load(f)


def shipped_date() -> str:
    """The date of the newest source the shipped table was built from (YYYY-MM-DD)."""
    return str(_shipped()["date"])


def load_catalog(overrides: dict[str, dict[str, Any]] | None = None) -> Catalog:
    """The shipped table with per-model overrides from batchyard.toml merged in."""
    data = _shipped()
    merged: dict[str, dict[str, Any]] = {
        name: dict(values) for name, values in data["models"].items()
    }
    for name, values in (overrides or {}).items():
        if not isinstance(values, dict):
            raise ConfigError(f'[models."{name}"] in batchyard.toml must be a table of values.')
        base = merged.get(name, {})
        changed = tuple(sorted(k for k in values if k not in ("sources", "overridden")))
        merged[name] = {**base, **values, "overridden": changed}
        if not base:
            merged[name].setdefault("sources", {"all": "batchyard.toml"})
    try:
        rows = {name: ModelInfo(name=name, **values) for name, values in merged.items()}
    except (ValidationError, TypeError) as exc:
        raise ConfigError(f"The model table is invalid: {exc}") from exc
    return Catalog(rows, date=shipped_date(), tier=str(data.get("limits_tier", "")))


def stale_notice(table_date: str, today: date) -> str | None:
    """One line saying the table is older than 90 days and how to override a price."""
    try:
        age = (today - date.fromisoformat(table_date)).days
    except ValueError:
        return None
    if age <= STALE_AFTER_DAYS:
        return None
    return (
        f"Note: batchyard's model table is dated {table_date} ({age} days old); prices may "
        'have changed. Override one in batchyard.toml, e.g. [models."gpt-4o-mini"] input = 0.15.'
    )
