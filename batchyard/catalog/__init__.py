"""The model catalog: today's OpenAI models, how names resolve to them, what usage costs.

Owns the model table (`batchyard/data/models.toml` plus batchyard.toml overrides), the one
model-name resolver every layer uses (`Catalog.resolve`, `lookup`) and the billing rules
(`ModelInfo.cost` over a `Usage`). Imports `models`, `errors` and pydantic only; no I/O
beyond reading the packaged table.
"""

from __future__ import annotations

from batchyard.catalog._info import ModelInfo, Usage, usage_from_body
from batchyard.catalog._resolve import Catalog, Resolved, as_catalog, lookup
from batchyard.catalog._table import STALE_AFTER_DAYS, load_catalog, shipped_date, stale_notice

__all__ = [
    "STALE_AFTER_DAYS",
    "Catalog",
    "ModelInfo",
    "Resolved",
    "Usage",
    "as_catalog",
    "load_catalog",
    "lookup",
    "shipped_date",
    "stale_notice",
    "usage_from_body",
]
