"""The job database's schema: its numbered migrations and the runner that applies them.

Owns `SCHEMA_TABLES`, `MIGRATIONS` (sqlite-utils 4 `Migrations("batchyard")`, functions
`m001_...` registered in number order), `MIGRATION_NAMES` (the same names, in that order),
the first schema (`initial.py`), every change since (`changes.py`) and `migrate`, which
refuses a database written by a newer batchyard and applies what is pending. It must not
hold any store logic: the schema is documented column by column in docs/store.md, keep
both in step. There is no column for an API key, and none may be added.

Adding a migration is one change: a new `@migration` function at the end of `changes.py`.
"""

from __future__ import annotations

from pathlib import Path

from sqlite_utils import Database, Migrations

from batchyard.errors import SchemaTooNew

from . import changes, initial  # noqa: F401  (importing them declares their migrations)
from .base import DECLARED

__all__ = ["MIGRATIONS", "MIGRATION_NAMES", "SCHEMA_TABLES", "migrate"]

_IN_ORDER = sorted(DECLARED, key=lambda fn: fn.__name__)  # mNNN_...: by number
MIGRATIONS = Migrations("batchyard")
for _fn in _IN_ORDER:
    MIGRATIONS()(_fn)
MIGRATION_NAMES: list[str] = [fn.__name__ for fn in _IN_ORDER]  # in the order they apply

# Tables the current schema defines (tests assert them; docs/store.md documents them).
SCHEMA_TABLES = (
    "answers",
    "answers_due",
    "attempts",
    "batches",
    "clock_observations",
    "drivers",
    "events",
    "files",
    "learned_output",
    "notifications",
    "poll_marks",
    "requests",
    "runs",
    "webhook_events",
)


def migrate(db: Database, path: Path) -> None:
    """Refuse a newer schema, then apply pending migrations under one write lock."""
    known = set(MIGRATION_NAMES)
    db.conn.execute("BEGIN IMMEDIATE")  # two processes opening a blank file: one migrates
    try:
        unknown = [m.name for m in MIGRATIONS.applied(db) if m.name not in known]
        if unknown:
            raise SchemaTooNew(
                f"The job database {path} was written by a newer batchyard "
                f"(it has schema migration(s) {', '.join(unknown)} that this version "
                "does not know). Upgrade batchyard, or point --db / BATCHYARD_DB at "
                "another file."
            )
        if MIGRATIONS.pending(db):
            MIGRATIONS.apply(db)
    except BaseException:
        db.rollback()
        raise
    db.commit()
