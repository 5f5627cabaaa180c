"""A set of keys kept on disk, for checks over a whole file that must not grow in memory.

Owns `DiskSet`: a private temporary SQLite database (removed when closed) holding one
indexed column of keys and the first line that used each, asked a chunk of keys at a time.
Used where a streaming pass must know whether it saw a key before (a duplicate custom_id,
identical lines for reuse's twins) without a Python object per line. It is not the job
store and shares nothing with it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import TypeVar

from .base import placeholders

__all__ = ["DiskSet"]

L = TypeVar("L", int, str)
_PART = 500  # keys per query (well under SQLite's limit on bound parameters)


class DiskSet:
    """Keys seen so far, on disk; SQLite's page cache (a few MB) is all it holds in memory."""

    def __init__(self, cache_kib: int = 2048, path: str | None = None) -> None:
        # "" opens a private temporary database on disk, deleted when closed; a `path` is
        # kept after closing (the caller removes it), so another process can compare sets
        self.path = path
        self._db = sqlite3.connect(path or "", isolation_level=None)
        self._db.execute("PRAGMA journal_mode = OFF")
        self._db.execute("PRAGMA synchronous = OFF")
        self._db.execute(f"PRAGMA cache_size = -{int(cache_kib)}")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS keys (key TEXT PRIMARY KEY, line INTEGER) WITHOUT ROWID"
        )
        self.count = 0
        self._added = 0

    def add(self, keys: Sequence[str | bytes]) -> list[bool]:
        """Add `keys` in order; for each, whether it was new (not seen before, in an earlier
        call or earlier in this one)."""
        at = range(self._added, self._added + len(keys))  # positions, unique across calls
        self._added += len(keys)
        return [first == i for i, first in zip(at, self.first_lines(keys, at), strict=True)]

    def first_lines(self, keys: Sequence[str | bytes], lines: Sequence[L]) -> list[L]:
        """Add `keys` (each with its line: a number, or any name such as a custom_id) in
        order; for each, the line that used it first: its own when new, else the earlier
        one (from an earlier call or this one)."""
        first: list[L] = []
        for start in range(0, len(keys), _PART):
            part = keys[start : start + _PART]
            known: dict[str | bytes, L] = dict(
                self._db.execute(
                    f"SELECT key, line FROM keys WHERE key IN ({placeholders(len(part))})", part
                ).fetchall()
            )
            new: list[tuple[str | bytes, L]] = []
            for key, line in zip(part, lines[start : start + _PART], strict=True):
                earlier = known.get(key)
                if earlier is None:
                    known[key] = earlier = line
                    new.append((key, line))
                first.append(earlier)
            if new:
                self._db.execute("BEGIN")
                self._db.executemany("INSERT INTO keys (key, line) VALUES (?, ?)", new)
                self._db.execute("COMMIT")
                self.count += len(new)
        return first

    def shared_key(self, other: str) -> tuple[str | bytes, int, int] | None:
        """A key this set has in common with the closed set kept at path `other`: the key,
        its first line here and its first line there; None when they share none."""
        self._db.execute("ATTACH DATABASE ? AS other", (other,))
        try:
            row = self._db.execute(
                "SELECT mine.key, mine.line, theirs.line FROM main.keys AS mine "
                "JOIN other.keys AS theirs ON theirs.key = mine.key LIMIT 1"
            ).fetchone()
        finally:
            self._db.execute("DETACH DATABASE other")
        return None if row is None else (row[0], row[1], row[2])

    def close(self) -> None:
        self._db.close()
