"""The first schema (m001): runs, requests, files, batches, attempts and events.

Owns `m001_initial`. The tables it creates are documented column by column in
docs/store.md; later changes to them are migrations of their own (`changes.py`), never
edits here: a database that already applied m001 would never see them.
"""

from __future__ import annotations

from sqlite_utils import Database

from batchyard.models import BatchStatus, RequestStatus, Route, RunState

from .base import in_list, migration

__all__ = ["m001_initial"]


@migration
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
            state TEXT NOT NULL CHECK (state IN ({in_list(RunState)})),
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
            status TEXT NOT NULL CHECK (status IN ({in_list(BatchStatus)})),
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
            route TEXT CHECK (route IN ({in_list(Route)})),
            route_reason TEXT,
            status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ({in_list(RequestStatus)})),
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
