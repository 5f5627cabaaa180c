"""The job database's schema, its numbered migrations and how a connection is opened.

Owns `MIGRATIONS` (sqlite-utils 4 `Migrations("batchyard")`, functions `m001_...`), the
pragmas every connection gets (WAL, busy timeout, foreign keys, synchronous=FULL), the
0600 file creation and the refusal of a database written by a newer batchyard. It must not
hold any store logic: the schema is documented column by column in docs/store.md, keep both
in step. There is no column for an API key, and none may be added.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterable
from enum import StrEnum
from pathlib import Path
from typing import TypeVar

from sqlite_utils import Database, Migrations

from batchyard.errors import SchemaTooNew, StoreError
from batchyard.models import BatchStatus, RequestStatus, Route, RunState

__all__ = ["MIGRATIONS", "MIGRATION_NAMES", "SCHEMA_TABLES", "connect", "migrate"]

MIGRATIONS = Migrations("batchyard")

# Tables the current schema defines (tests assert them; docs/store.md documents them).
SCHEMA_TABLES = (
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


MIGRATION_NAMES: list[str] = []  # every migration this version knows, in order

F = TypeVar("F", bound=Callable[[Database], None])


def _migration(fn: F) -> F:
    MIGRATION_NAMES.append(fn.__name__)
    return MIGRATIONS()(fn)


def _in(values: Iterable[StrEnum]) -> str:
    return ", ".join(f"'{v.value}'" for v in values)


@_migration
def m001_initial(db: Database) -> None:
    """Runs, requests, files, batches, attempts and events."""
    statements = [
        f"""CREATE TABLE runs (
            id TEXT PRIMARY KEY,
            source_path TEXT NOT NULL,
            source_sha256 TEXT NOT NULL,
            endpoint TEXT NOT NULL,
            models TEXT NOT NULL,
            route_override TEXT NOT NULL,
            deadline_at REAL,
            budget REAL,
            state TEXT NOT NULL CHECK (state IN ({_in(RunState)})),
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            finished_at REAL,
            estimated_cost REAL NOT NULL DEFAULT 0,
            actual_cost REAL NOT NULL DEFAULT 0,
            request_count INTEGER NOT NULL DEFAULT 0,
            options TEXT NOT NULL DEFAULT '{{}}'
        )""",
        "CREATE INDEX runs_created ON runs(created_at)",
        f"""CREATE TABLE batches (
            id INTEGER PRIMARY KEY,
            run_id TEXT NOT NULL REFERENCES runs(id),
            endpoint TEXT NOT NULL,
            model TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ({_in(BatchStatus)})),
            provider_batch_id TEXT UNIQUE,
            input_file_row INTEGER REFERENCES files(id),
            input_file_id TEXT,
            output_file_id TEXT,
            error_file_id TEXT,
            request_count INTEGER NOT NULL DEFAULT 0,
            counts_total INTEGER,
            counts_completed INTEGER,
            counts_failed INTEGER,
            metadata TEXT NOT NULL DEFAULT '{{}}',
            errors TEXT,
            raw TEXT,
            provider_created_at REAL,
            in_progress_at REAL,
            expires_at REAL,
            finalizing_at REAL,
            completed_at REAL,
            failed_at REAL,
            expired_at REAL,
            cancelling_at REAL,
            cancelled_at REAL,
            claim_owner TEXT,
            claim_expires_at REAL,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            applied_at REAL
        )""",
        "CREATE INDEX batches_run_status ON batches(run_id, status)",
        """CREATE TABLE files (
            id INTEGER PRIMARY KEY,
            run_id TEXT NOT NULL REFERENCES runs(id),
            shard INTEGER REFERENCES batches(id),
            kind TEXT NOT NULL CHECK (kind IN ('input', 'output', 'error')),
            remote_id TEXT,
            local_path TEXT,
            bytes INTEGER,
            sha256 TEXT,
            created_at REAL NOT NULL,
            remote_at REAL,
            deleted_at REAL
        )""",
        "CREATE INDEX files_run ON files(run_id)",
        "CREATE INDEX files_remote ON files(remote_id) WHERE remote_id IS NOT NULL",
        f"""CREATE TABLE requests (
            id INTEGER PRIMARY KEY,
            run_id TEXT NOT NULL REFERENCES runs(id),
            custom_id TEXT NOT NULL,
            line INTEGER NOT NULL,
            endpoint TEXT NOT NULL,
            model TEXT NOT NULL,
            priority INTEGER NOT NULL DEFAULT 0,
            body BLOB NOT NULL,
            est_input_tokens INTEGER NOT NULL,
            est_output_tokens INTEGER NOT NULL,
            est_cost_standard REAL NOT NULL,
            est_cost_flex REAL,
            est_cost_batch REAL,
            route TEXT CHECK (route IN ({_in(Route)})),
            route_reason TEXT,
            status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ({_in(RequestStatus)})),
            attempts INTEGER NOT NULL DEFAULT 0,
            shard INTEGER REFERENCES batches(id),
            owner TEXT,
            claimed_at REAL,
            not_before REAL,
            status_code INTEGER,
            response_body BLOB,
            error_code TEXT,
            error_message TEXT,
            input_tokens INTEGER,
            output_tokens INTEGER,
            cost REAL,
            updated_at REAL NOT NULL,
            finished_at REAL,
            UNIQUE (run_id, custom_id)
        )""",
        "CREATE INDEX requests_run_line ON requests(run_id, line)",
        "CREATE INDEX requests_shard ON requests(shard, line) WHERE shard IS NOT NULL",
        # The real-time dispatch queue: only rows waiting for a real-time call are in it,
        # so inserting a million pending rows does not touch it.
        """CREATE INDEX requests_realtime_queue ON requests(run_id, priority DESC, line)
            WHERE status IN ('routed', 'retryable') AND route IN ('standard', 'flex')""",
        "CREATE INDEX requests_in_flight ON requests(run_id) WHERE status = 'in_flight'",
        """CREATE TABLE attempts (
            run_id TEXT NOT NULL,
            custom_id TEXT NOT NULL,
            attempt INTEGER NOT NULL,
            route TEXT NOT NULL,
            shard INTEGER REFERENCES batches(id),
            owner TEXT,
            started_at REAL NOT NULL,
            finished_at REAL,
            outcome TEXT,
            status_code INTEGER,
            error_code TEXT,
            cost REAL,
            PRIMARY KEY (run_id, custom_id, attempt),
            FOREIGN KEY (run_id, custom_id) REFERENCES requests(run_id, custom_id)
        ) WITHOUT ROWID""",
        "CREATE INDEX attempts_shard ON attempts(shard) WHERE shard IS NOT NULL",
        """CREATE TABLE events (
            id INTEGER PRIMARY KEY,
            run_id TEXT NOT NULL REFERENCES runs(id),
            at REAL NOT NULL,
            kind TEXT NOT NULL,
            message TEXT NOT NULL,
            data TEXT NOT NULL DEFAULT '{}',
            custom_id TEXT,
            shard INTEGER REFERENCES batches(id)
        )""",
        "CREATE INDEX events_run ON events(run_id, id)",
        # History is append-only: the database itself refuses to rewrite it.
        """CREATE TRIGGER events_no_update BEFORE UPDATE ON events
            BEGIN SELECT RAISE(ABORT, 'events are append-only'); END""",
        """CREATE TRIGGER events_no_delete BEFORE DELETE ON events
            BEGIN SELECT RAISE(ABORT, 'events are append-only'); END""",
        """CREATE TRIGGER attempts_closed BEFORE UPDATE ON attempts
            WHEN OLD.finished_at IS NOT NULL
            BEGIN SELECT RAISE(ABORT, 'a finished attempt is history and cannot change'); END""",
        """CREATE TRIGGER attempts_no_delete BEFORE DELETE ON attempts
            BEGIN SELECT RAISE(ABORT, 'attempts are append-only'); END""",
    ]
    for sql in statements:
        db.execute(sql)


@_migration
def m002_request_id(db: Database) -> None:
    """The provider's request id of each answer (`x-request-id`, or a batch line's
    `response.request_id`), so results can be traced at OpenAI."""
    db.execute("ALTER TABLE requests ADD COLUMN request_id TEXT")


def _widen_check(db: Database, table: str, old: str, new: str) -> None:
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


@_migration
def m003_fast_route(db: Database) -> None:
    """Route `fast` (fast mode, `service_tier: "fast"`): allowed in `requests.route` and
    part of the real-time dispatch queue.

    Only the CHECK constraint's list of values grows, which changes nothing stored, so the
    table's recorded SQL is edited in place (SQLite's documented procedure for constraint
    changes that existing rows already satisfy) instead of copying every row to a new table.
    Databases created after this change already have the value and are left as they are.
    """
    old = "route TEXT CHECK (route IN ('standard', 'flex', 'batch'))"
    new = f"route TEXT CHECK (route IN ({_in(Route)}))"
    _widen_check(db, "requests", old, new)
    db.execute("DROP INDEX IF EXISTS requests_realtime_queue")
    db.execute(
        """CREATE INDEX requests_realtime_queue ON requests(run_id, priority DESC, line)
            WHERE status IN ('routed', 'retryable') AND route IN ('standard', 'flex', 'fast')"""
    )


_OLD_STATUSES = (
    "status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'routed', "
    "'submitted', 'in_flight', 'retryable', 'succeeded', 'failed', 'cancelled'))"
)


@_migration
def m006_live_view_and_prune(db: Database) -> None:
    """The live view and `prune`.

    A covering index for counting a run's requests by route and status (the live view asks
    every second; without it each count reads every request row, bodies and all).
    `runs.pruned_at`: when `prune` removed the run's requests, attempts and events (the run
    row and its batches stay: totals, turnaround and cancel latency are what the router
    learned). `learned_output`: per model and endpoint, the output tokens of pruned
    succeeded requests (count, sum, and the highest of their runs' p95), so the output
    estimates survive a prune. Events and attempts stay append-only while a
    run is open; once it is completed or cancelled, `prune` may delete them.
    """
    db.execute(
        "CREATE INDEX IF NOT EXISTS requests_run_route_status ON requests(run_id, route, status)"
    )
    db.execute("ALTER TABLE runs ADD COLUMN pruned_at REAL")
    db.execute(
        """CREATE TABLE learned_output (
            model TEXT NOT NULL,
            endpoint TEXT NOT NULL,
            requests INTEGER NOT NULL,
            output_tokens INTEGER NOT NULL,
            high INTEGER NOT NULL,
            PRIMARY KEY (model, endpoint)
        )"""
    )
    finished = "(SELECT state FROM runs WHERE id = OLD.run_id) NOT IN ('completed', 'cancelled')"
    for table, name, message in (
        ("events", "events_no_delete", "events are append-only"),
        ("attempts", "attempts_no_delete", "attempts are append-only"),
    ):
        db.execute(f"DROP TRIGGER IF EXISTS {name}")
        db.execute(
            f"""CREATE TRIGGER {name} BEFORE DELETE ON {table} WHEN {finished}
            BEGIN SELECT RAISE(ABORT, '{message} while their run is open'); END"""
        )


@_migration
def m007_webhooks(db: Database) -> None:
    """Webhooks: `webhook_events` (every verified delivery once, by its `webhook-id`, so a
    retried or replayed delivery changes nothing), `poll_marks` (a batch to poll in the
    next round whatever its backoff says; polling stays the truth) and `notifications`
    (a run's `--notify` URL and whether the signed call was made)."""
    db.execute(
        """CREATE TABLE webhook_events (
            webhook_id TEXT PRIMARY KEY,
            type TEXT NOT NULL,
            provider_batch_id TEXT,
            batch_id INTEGER REFERENCES batches(id),
            received_at REAL NOT NULL
        )"""
    )
    db.execute(
        """CREATE TABLE poll_marks (
            batch_id INTEGER PRIMARY KEY REFERENCES batches(id),
            marked_at REAL NOT NULL,
            reason TEXT NOT NULL
        )"""
    )
    db.execute(
        """CREATE TABLE notifications (
            run_id TEXT PRIMARY KEY REFERENCES runs(id),
            url TEXT NOT NULL,
            webhook_id TEXT NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('waiting', 'sent', 'failed')),
            attempts INTEGER NOT NULL DEFAULT 0,
            sent_at REAL,
            last_error TEXT
        )"""
    )


@_migration
def m008_checks_and_reuse(db: Database) -> None:
    """Answer checks and reuse: statuses `invalid` and `twin`, re-queue accounting and
    where a reused answer came from.

    - `requests.status` may be `invalid` (the answer failed a check every time) or `twin`
      (identical to an earlier line of the run, waiting for its outcome); as in m003 only
      the CHECK list grows, so the recorded SQL is edited in place.
    - `fingerprint`: digest of endpoint, normalised body and resolved model (NULL: never
      reused nor merged); `reuse_of`: the custom_id of the line a twin waits for;
      `reused_from`: JSON {run, custom_id, at} of the answer a line was given from the
      store; `saved`: what that answer cost when it was bought.
    - `requeues` / `requeue_cost`: sends after a failed check, and what the answers that
      failed a check cost (outside the all-standard comparison, shown apart).
    """
    new = f"status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ({_in(RequestStatus)}))"
    _widen_check(db, "requests", _OLD_STATUSES, new)
    for column in (
        "fingerprint TEXT",
        "reuse_of TEXT",
        "reused_from TEXT",
        "saved REAL",
        "requeues INTEGER NOT NULL DEFAULT 0",
        "requeue_cost REAL NOT NULL DEFAULT 0",
    ):
        db.execute(f"ALTER TABLE requests ADD COLUMN {column}")
    # Earlier answers that passed their checks, newest first, found by key across runs.
    db.execute(
        "CREATE INDEX requests_reuse ON requests(fingerprint, finished_at) "
        "WHERE status = 'succeeded' AND fingerprint IS NOT NULL"
    )
    db.execute(
        "CREATE INDEX requests_fingerprints ON requests(run_id, fingerprint, line) "
        "WHERE fingerprint IS NOT NULL"
    )
    db.execute("CREATE INDEX requests_twins ON requests(run_id, reuse_of) WHERE status = 'twin'")


@_migration
def m009_output_cap(db: Database) -> None:
    """Each request's own output cap (`max_tokens` and kin, times `n`; NULL when it sets
    none): OpenAI charges it against TPM, while the estimates use the expected output."""
    db.execute("ALTER TABLE requests ADD COLUMN max_output_tokens INTEGER")


@_migration
def m010_sends_and_waits(db: Database) -> None:
    """Every send is an attempt row, and one place says when a request is tried again.

    `attempts.error_kind` (rate_limit, server, timeout, connection, ...) and
    `attempts.request_id` (`x-request-id`) describe each send that failed and was tried
    again (outcome `retry`); `attempts.not_before` is when its next send was due.
    `requests.not_before_reason` says why `requests.not_before` holds the request back
    (whichever mechanism decided: a retry wait, a deferral, an open breaker), and
    `requests.faults` counts its sends that met a 5xx, a timeout or a dropped connection
    (the budget for those; 429s never use it)."""
    db.execute("ALTER TABLE attempts ADD COLUMN error_kind TEXT")
    db.execute("ALTER TABLE attempts ADD COLUMN request_id TEXT")
    db.execute("ALTER TABLE attempts ADD COLUMN not_before REAL")
    db.execute("ALTER TABLE requests ADD COLUMN not_before_reason TEXT")
    db.execute("ALTER TABLE requests ADD COLUMN faults INTEGER NOT NULL DEFAULT 0")
    db.execute(
        "CREATE INDEX attempts_kinds ON attempts(run_id, error_kind) WHERE error_kind IS NOT NULL"
    )


@_migration
def m011_drivers(db: Database) -> None:
    """Which processes drive which run, and when each was last seen: the enqueued-token
    queue goes to the most urgent run only while someone drives it."""
    db.execute(
        """CREATE TABLE drivers (
            run_id TEXT NOT NULL,
            owner TEXT NOT NULL,
            seen_at REAL NOT NULL,
            PRIMARY KEY (run_id, owner)
        ) WITHOUT ROWID"""
    )


@_migration
def m012_provider_clock(db: Database) -> None:
    """`clock_observations`: (provider time, our time at receipt) pairs per base URL, the
    newest few kept, from which the provider's clock is mapped onto ours (offset and rate)."""
    db.execute(
        """CREATE TABLE clock_observations (
            id INTEGER PRIMARY KEY,
            base_url TEXT NOT NULL,
            provider_at REAL NOT NULL,
            local_at REAL NOT NULL
        )"""
    )
    db.execute("CREATE INDEX idx_clock_observations ON clock_observations (base_url, id)")


@_migration
def m013_fallback(db: Database) -> None:
    """The fallback model a line was moved to (`--fallback`, `[fallback]` in batchyard.toml):
    `requests.fallback` is JSON {from, to, reason, error, at} (NULL: answered, or to be, by the
    model the file named). The line's `model` and body then name the fallback model, so
    shards, limits and prices follow it; `from` keeps the model the file asked for."""
    db.execute("ALTER TABLE requests ADD COLUMN fallback TEXT")


@_migration
def m015_body_bytes(db: Database) -> None:
    """`requests.body_bytes`: the size of the body's compact JSON (as a batch line carries
    it), so that shards are planned without reading, decompressing and encoding every body
    again. NULL for lines recorded before: their size is computed from the body."""
    db.execute("ALTER TABLE requests ADD COLUMN body_bytes INTEGER")


@_migration
def m016_pending_fingerprints(db: Database) -> None:
    """`requests_fingerprints` holds only lines still pending: those an earlier answer may
    answer when a run is recorded (its one use). A plan finds the twins of a file itself and
    records them linked to their first line, so the lines it routes (nearly all of them)
    are not indexed by a random key as they are inserted, which made recording a large
    file about twice as slow."""
    db.execute("DROP INDEX requests_fingerprints")
    db.execute(
        "CREATE INDEX requests_fingerprints ON requests(run_id, fingerprint, line) "
        "WHERE fingerprint IS NOT NULL AND status = 'pending'"
    )


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
