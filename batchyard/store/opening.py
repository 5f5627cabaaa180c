"""Opening the job database file: created private (0600), with batchyard's pragmas.

Owns `connect`: the file and its folder created readable by the owner only, and the
pragmas every connection gets (WAL, busy timeout, foreign keys, synchronous=FULL).
Migrating the opened database is `migrations`; it must not hold any store logic.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from sqlite_utils import Database

from batchyard.errors import StoreError

__all__ = ["connect"]


def _create_private(path: Path) -> None:
    """Create the file (and its folder) readable by the owner only, if missing."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return
    os.close(fd)
    os.chmod(path, 0o600)  # the umask may have removed bits, never added; be explicit


def connect(path: Path, *, busy_timeout: float = 30.0) -> Database:
    """Open (creating with mode 0600) the database at `path` with batchyard's pragmas."""
    _create_private(path)
    try:
        conn = sqlite3.connect(str(path), timeout=busy_timeout, check_same_thread=False)
        db = Database(conn)
        db.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        db.execute("PRAGMA foreign_keys = ON")
        db.enable_wal()
        # FULL: a committed intent row survives a power cut, not only a process crash.
        db.execute("PRAGMA synchronous = FULL")
    except sqlite3.DatabaseError as exc:
        raise StoreError(
            f"Cannot open the job database {path}: {exc}. "
            "Point --db or BATCHYARD_DB at a batchyard database or a new file."
        ) from exc
    return db
