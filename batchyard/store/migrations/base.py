"""How a migration is declared, and the helpers migrations share.

Owns the `migration` decorator, which collects each `mNNN_...` function in `DECLARED`
(the package registers them in number order, whatever order its modules are imported in),
`in_list` (an enum's values for a CHECK constraint) and `widen_check`. It must not define
a migration.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from enum import StrEnum
from typing import TypeVar

from sqlite_utils import Database

__all__ = ["DECLARED", "in_list", "migration", "widen_check"]

DECLARED: list[Callable[[Database], None]] = []  # every migration of this version

F = TypeVar("F", bound=Callable[[Database], None])


def migration(fn: F) -> F:
    DECLARED.append(fn)
    return fn


def in_list(values: Iterable[StrEnum]) -> str:
    return ", ".join(f"'{v.value}'" for v in values)


def widen_check(db: Database, table: str, old: str, new: str) -> None:
    """Replace a column definition `old` by `new` in `table`'s recorded SQL, where only a
    CHECK constraint's list of values grows: nothing stored changes, so the schema is edited
    in place (SQLite's documented procedure for constraint changes that existing rows
    already satisfy) instead of copying every row to a new table. A table created after the
    change already has `new` and is left as it is."""
    (sql,) = db.execute("SELECT sql FROM sqlite_master WHERE name = ?", [table]).fetchone()
    if old not in sql:
        return
    (version,) = db.execute("PRAGMA schema_version").fetchone()
    db.execute("PRAGMA writable_schema = ON")
    try:
        db.execute(
            "UPDATE sqlite_master SET sql = replace(sql, ?, ?) WHERE type = 'table' AND name = ?",
            [old, new, table],
        )
        db.execute(f"PRAGMA schema_version = {int(version) + 1}")
    finally:
        db.execute("PRAGMA writable_schema = OFF")
