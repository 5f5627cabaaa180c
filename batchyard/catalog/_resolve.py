"""The one place a model name becomes a row of the model table.

Owns `Catalog`, a read-only mapping of table rows whose lookups resolve any name the API
accepts, in this order:

1. the exact name, or an alias the table lists (`gpt-5.6` -> `gpt-5.6-sol`);
2. a dated snapshot -> its family: `gpt-4o-mini-2024-07-18` and `gpt-3.5-turbo-0125` are
   priced as `gpt-4o-mini` and `gpt-3.5-turbo` (a date suffix only: `gpt-4o-mini-foo` is
   not a snapshot of anything);
3. a fine-tuned model `ft:BASE:org:name:id[:ckpt-step-N]` -> the table's `ft:FAMILY` row,
   FAMILY being what BASE resolves to by 1-2 (fine-tuned inference has its own prices);
4. otherwise a `ConfigError` naming the `[models."NAME"]` table to add to batchyard.toml.

The name the user sent is never changed (it is what goes to the API); `Resolved` carries
both. No I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from batchyard.catalog._info import ModelInfo
from batchyard.errors import ConfigError

__all__ = ["Catalog", "Resolved", "as_catalog", "lookup"]

# A trailing date: -YYYY-MM-DD (gpt-4o-mini-2024-07-18) or -MMDD (gpt-3.5-turbo-0125).
_SNAPSHOT = re.compile(r"^(?P<base>.+?)-(?:\d{4}-\d{2}-\d{2}|\d{4})$")
_FT = re.compile(r"^ft:(?P<base>[^:]+):")


@dataclass(frozen=True, slots=True)
class Resolved:
    """`sent` (the name in the request) priced as table row `info`; `how` says why."""

    sent: str
    info: ModelInfo
    how: str  # "exact", "alias", "snapshot" or "fine-tuned"

    @property
    def entry(self) -> str:
        return self.info.name


def _unknown(name: str, detail: str = "") -> ConfigError:
    return ConfigError(
        f"The model {name!r} is not in batchyard's model table, so its prices and limits are "
        f'unknown{detail}. Add it to batchyard.toml under [models."{name}"] (input, output, '
        "batch_input and batch_output prices at least); `batchyard models` lists the table."
    )


class Catalog(Mapping[str, ModelInfo]):
    """The model table; `catalog[name]` and `catalog.get(name)` resolve any API name."""

    def __init__(self, rows: Mapping[str, ModelInfo], *, date: str = "", tier: str = "") -> None:
        self._rows = dict(rows)
        self.date = date  # the date of the newest source the shipped table was built from
        self.tier = tier  # the usage tier its default limits are for
        self._aliases = {a: name for name, info in self._rows.items() for a in info.aliases}
        self._memo: dict[str, Resolved | None] = {}

    # -- Mapping: iteration is over table rows, lookups resolve ----------------------------
    def __iter__(self) -> Iterator[str]:
        return iter(self._rows)

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, name: str) -> ModelInfo:
        found = self._find(name)
        if found is None:
            raise KeyError(name)
        return found.info

    def __setitem__(self, name: str, info: ModelInfo) -> None:
        """Add or replace a row (as batchyard.toml would); lookups see it at once."""
        self._rows[name] = info if info.name == name else info.model_copy(update={"name": name})
        self._aliases = {a: n for n, row in self._rows.items() for a in row.aliases}
        self._memo.clear()

    def rows(self) -> dict[str, ModelInfo]:
        return dict(self._rows)

    def rate_limits(self) -> Mapping[str, tuple[int, int]]:
        """(rpm, tpm) by any model name the catalog resolves."""
        return _RateLimits(self)

    # -- resolution -----------------------------------------------------------------------
    def _family(self, name: str) -> tuple[ModelInfo, str] | None:
        row = self._rows.get(name)
        if row is not None:
            return row, "exact"
        alias = self._aliases.get(name)
        if alias is not None:
            return self._rows[alias], "alias"
        snap = _SNAPSHOT.match(name)
        if snap is not None:
            base = snap.group("base")
            row = self._rows.get(base) or self._rows.get(self._aliases.get(base, ""))
            if row is not None:
                return row, "snapshot"
        return None

    def _find(self, name: str) -> Resolved | None:
        if name in self._memo:
            return self._memo[name]
        found: Resolved | None = None
        family = self._family(name)
        if family is not None:
            found = Resolved(name, family[0], family[1])
        else:
            ft = _FT.match(name)
            base = self._family(ft.group("base")) if ft else None
            if base is not None:
                row = self._rows.get(f"ft:{base[0].name}")
                if row is not None:
                    found = Resolved(name, row, "fine-tuned")
        self._memo[name] = found
        return found

    def find(self, name: str) -> ModelInfo | None:
        found = self._find(name)
        return found.info if found else None

    def resolve(self, name: str) -> Resolved:
        """`name` resolved, or a ConfigError saying which table to add to batchyard.toml."""
        found = self._find(name)
        if found is not None:
            return found
        ft = _FT.match(name)
        if ft is not None:
            base = self._family(ft.group("base"))
            if base is not None:
                raise _unknown(
                    name,
                    f" (fine-tuned {base[0].name} has its own prices, and the table has no "
                    f'[models."ft:{base[0].name}"] row for them)',
                )
        raise _unknown(name)

    def require(self, name: str) -> ModelInfo:
        return self.resolve(name).info


class _RateLimits(Mapping[str, tuple[int, int]]):
    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog

    def __getitem__(self, name: str) -> tuple[int, int]:
        info = self._catalog[name]
        return info.rpm, info.tpm

    def __iter__(self) -> Iterator[str]:
        return iter(self._catalog)

    def __len__(self) -> int:
        return len(self._catalog)


def as_catalog(models: Mapping[str, ModelInfo]) -> Catalog:
    """`models` itself when it is a Catalog, else a Catalog over its rows."""
    return models if isinstance(models, Catalog) else Catalog(models)


def lookup(models: Mapping[str, ModelInfo], name: str) -> ModelInfo | None:
    """The row `name` resolves to in `models` (any mapping of rows), or None."""
    return as_catalog(models).find(name)
