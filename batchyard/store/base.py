"""The connection, clock and write-transaction helper every part of the store shares.

Owns `StoreBase`: the sqlite-utils `Database`, the injected clock, `_write()` (one
`BEGIN IMMEDIATE` transaction, ending with `_before_commit`) and the private event writer.
It must not know about runs, requests or batches; the mixins beside it do.

Why `BEGIN IMMEDIATE` and not `db.atomic()`'s plain `BEGIN`: our write units read state
(current statuses, claim owners) and then write. A deferred transaction that starts by
reading can fail with SQLITE_BUSY_SNAPSHOT when another process commits in between, without
waiting on the busy timeout. Taking the write lock up front makes every unit serialisable
across processes and makes the busy timeout apply. It is the same all-or-nothing unit as
`db.atomic()`: commit at the end of the block, roll back on any exception (or crash).
"""

from __future__ import annotations

import dataclasses
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from itertools import repeat
from pathlib import Path
from typing import Any, TypeVar

from sqlite_utils import Database
from sqlite_utils.utils import chunks

from batchyard.errors import NotFound, StoreError

from .codec import dumps

__all__ = ["StoreBase", "by_name", "chunked", "one_by_name", "record"]

T = TypeVar("T")

# Rows per write transaction for bulk work, and ids per `IN (...)` lookup.
CHUNK = 5000
LOOKUP = 500


def chunked(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Lists of at most `size` items, streaming (never materialises `items`): sqlite-utils'
    `chunks`, each chunk read into a list (its chunks share one iterator)."""
    for chunk in chunks(items, size):
        yield list(chunk)


def by_name(cursor: sqlite3.Cursor) -> Iterator[dict[str, Any]]:
    """The cursor's rows as dicts keyed by column name.

    Records are read by name so that adding or reordering a column in a SELECT cannot put
    a value in the wrong field. Dicts rather than `sqlite3.Row`: a dict lookup is
    constant-time, `sqlite3.Row` searches its column names on every access.
    """
    names = [d[0] for d in cursor.description]
    # Built in C, not by a generator: a few percent less time on a large read.
    return map(dict, map(zip, repeat(names), cursor))  # rows are as wide as the description


def one_by_name(cursor: sqlite3.Cursor) -> dict[str, Any] | None:
    """The cursor's first row keyed by column name, or None."""
    return next(by_name(cursor), None)


_FIELDS: dict[type, tuple[str, ...]] = {}


def record(cls: type[T], row: Mapping[str, Any], **converted: Any) -> T:
    """The dataclass `cls` built from a row by field name: each field takes
    `converted[name]` when given (a decoded or typed value), else `row[name]`; a field that
    is neither raises KeyError. (Fields are passed in order: a positional call is the
    cheapest way to build a frozen dataclass, and reads of many rows go through here.)"""
    names = _FIELDS.get(cls)
    if names is None:
        names = _FIELDS[cls] = tuple(f.name for f in dataclasses.fields(cls))  # type: ignore[arg-type]
    return cls(*[converted[n] if n in converted else row[n] for n in names])


def placeholders(n: int) -> str:
    return ",".join("?" * n)


class StoreBase:
    """Shared state of a `Store`: use `Store.open`, not this class."""

    def __init__(
        self,
        db: Database,
        path: Path,
        *,
        now: Callable[[], float] = time.time,
        compress_min_bytes: int = 2048,
    ) -> None:
        self.db = db
        self.path = path
        self.now = now
        self.compress_min_bytes = compress_min_bytes
        self._finished_ids: list[tuple[str, int]] = []

    def close(self) -> None:
        """Close the connection (the WAL is checkpointed by SQLite on last close)."""
        self.db.close()

    def __enter__(self) -> StoreBase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One all-or-nothing write unit holding the database's write lock."""
        conn = self.db.conn
        if conn.in_transaction:
            raise StoreError("Internal error: a store write was started inside another one.")
        conn.execute("BEGIN IMMEDIATE")
        self._finished_ids.clear()
        try:
            yield conn
            self._before_commit(conn)
        except BaseException:
            self._finished_ids.clear()
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _finished(self, run_id: str, row_ids: Iterable[int]) -> None:
        """Note requests of `run_id` this write unit moved into a finished status: every
        write that finishes a request says so, and `_before_commit` marks them due their
        output lines (`answers.py`)."""
        self._finished_ids.extend((run_id, row_id) for row_id in row_ids)

    def _before_commit(self, conn: sqlite3.Connection) -> None:
        """The last writes of every write unit, in its transaction (mixins add theirs)."""

    def _one(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        row: tuple[Any, ...] | None = self.db.conn.execute(sql, params).fetchone()
        return row

    def _require_run(self, run_id: str) -> None:
        if self._one("SELECT 1 FROM runs WHERE id = ?", (run_id,)) is None:
            raise NotFound(
                f"No run '{run_id}' in {self.path}. `batchyard runs` lists the runs it holds."
            )

    def _event(
        self,
        conn: sqlite3.Connection,
        run_id: str,
        kind: str,
        message: str,
        data: dict[str, Any] | None = None,
        *,
        custom_id: str | None = None,
        shard: int | None = None,
    ) -> int:
        cur = conn.execute(
            "INSERT INTO events (run_id, at, kind, message, data, custom_id, shard) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (run_id, self.now(), kind, message, dumps(data or {}), custom_id, shard),
        )
        return int(cur.lastrowid or 0)
