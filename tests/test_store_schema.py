"""The job database file: migrations from blank, pragmas, location, permissions, refusal."""

from __future__ import annotations

import os
import re
import sqlite3
import stat
from pathlib import Path

import pytest
from test_store_support import make_run

from batchyard.errors import SchemaTooNew
from batchyard.store import Store, default_db_path, migrations
from batchyard.store.migrations import MIGRATION_NAMES, SCHEMA_TABLES

EXPECTED_COLUMNS = {
    "webhook_events": {"webhook_id", "type", "provider_batch_id", "batch_id", "received_at"},
    "poll_marks": {"batch_id", "marked_at", "reason"},
    "drivers": {"run_id", "owner", "seen_at"},
    "notifications": {
        "run_id",
        "url",
        "webhook_id",
        "state",
        "attempts",
        "sent_at",
        "last_error",
    },
    "runs": {
        "id",
        "source_path",
        "source_sha256",
        "endpoint",
        "models",
        "route_override",
        "deadline_at",
        "budget",
        "state",
        "created_at",
        "updated_at",
        "finished_at",
        "estimated_cost",
        "actual_cost",
        "request_count",
        "options",
        "pruned_at",
    },
    "learned_output": {"model", "endpoint", "requests", "output_tokens", "high"},
    "requests": {
        "id",
        "run_id",
        "custom_id",
        "line",
        "endpoint",
        "model",
        "priority",
        "body",
        "est_input_tokens",
        "est_output_tokens",
        "est_cost_standard",
        "est_cost_flex",
        "est_cost_batch",
        "route",
        "route_reason",
        "status",
        "attempts",
        "shard",
        "owner",
        "claimed_at",
        "not_before",
        "status_code",
        "response_body",
        "error_code",
        "error_message",
        "input_tokens",
        "output_tokens",
        "cost",
        "updated_at",
        "finished_at",
        "request_id",
        "max_output_tokens",
        "fingerprint",
        "reuse_of",
        "reused_from",
        "saved",
        "requeues",
        "requeue_cost",
        "not_before_reason",
        "faults",
        "fallback",
        "body_bytes",
    },
    "batches": {
        "id",
        "run_id",
        "endpoint",
        "model",
        "status",
        "provider_batch_id",
        "input_file_row",
        "input_file_id",
        "output_file_id",
        "error_file_id",
        "request_count",
        "counts_total",
        "counts_completed",
        "counts_failed",
        "metadata",
        "errors",
        "raw",
        "provider_created_at",
        "in_progress_at",
        "expires_at",
        "finalizing_at",
        "completed_at",
        "failed_at",
        "expired_at",
        "cancelling_at",
        "cancelled_at",
        "claim_owner",
        "claim_expires_at",
        "created_at",
        "updated_at",
        "applied_at",
        "next_poll_at",  # m014_poll_waits
        "poll_reason",
    },
    "files": {
        "id",
        "run_id",
        "shard",
        "kind",
        "remote_id",
        "local_path",
        "bytes",
        "sha256",
        "created_at",
        "remote_at",
        "deleted_at",
    },
    "attempts": {
        "run_id",
        "custom_id",
        "attempt",
        "route",
        "shard",
        "owner",
        "started_at",
        "finished_at",
        "outcome",
        "status_code",
        "error_code",
        "cost",
        "error_kind",
        "request_id",
        "not_before",
    },
    "events": {"id", "run_id", "at", "kind", "message", "data", "custom_id", "shard"},
    "clock_observations": {"id", "base_url", "provider_at", "local_at"},
    "answers": {"id", "run_id", "line", "status", "fallback", "text"},
    "answers_due": {"run_id", "id"},
}


def test_blank_file_is_migrated_to_the_documented_schema(tmp_path: Path) -> None:
    with Store.open(tmp_path / "new.db") as store:
        tables = set(store.db.table_names())
        assert set(SCHEMA_TABLES) <= tables
        assert tables - set(SCHEMA_TABLES) == {"_sqlite_migrations"}
        for table, columns in EXPECTED_COLUMNS.items():
            assert set(store.db[table].columns_dict) == columns, table
        applied = [
            r["name"]
            for r in store.db.query(
                "SELECT name FROM _sqlite_migrations WHERE migration_set = 'batchyard'"
            )
        ]
        assert applied == MIGRATION_NAMES
        assert store.db.journal_mode == "wal"
        assert store.db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert store.db.execute("PRAGMA busy_timeout").fetchone()[0] >= 1000


def test_migrations_are_numbered_once_each_and_defined_in_number_order() -> None:
    numbered = re.compile(r"m(\d{3})_[a-z0-9_]+")
    assert MIGRATION_NAMES[0] == "m001_initial"
    numbers = []
    for name in MIGRATION_NAMES:
        match = numbered.fullmatch(name)
        assert match, name
        numbers.append(int(match.group(1)))
    assert numbers == sorted(set(numbers))  # applied in number order, no number used twice
    defined: list[str] = []
    for module in (migrations.initial, migrations.changes):
        names = [n for n in vars(module) if numbered.fullmatch(n)]
        assert names == sorted(names), module.__name__  # a new one goes at the end
        defined += names
    assert sorted(defined) == MIGRATION_NAMES  # none defined without its decorator


def test_schema_documented_in_docs_has_every_column() -> None:
    doc = (Path(__file__).parent.parent / "docs" / "store.md").read_text()
    for table, columns in EXPECTED_COLUMNS.items():
        assert f"### `{table}`" in doc, table
        for column in columns:
            assert f"`{column}`" in doc, f"{table}.{column} is not documented"


def test_no_column_can_hold_an_api_key(tmp_path: Path) -> None:
    with Store.open(tmp_path / "k.db") as store:
        for table in SCHEMA_TABLES:
            for column in store.db[table].columns_dict:
                assert not any(w in column for w in ("key", "secret", "auth", "password"))


def test_reopening_applies_nothing_twice_and_keeps_data(tmp_path: Path) -> None:
    path = tmp_path / "again.db"
    with Store.open(path) as store:
        run_id = make_run(store, 3)
    with Store.open(path) as store:
        assert store.get_run(run_id).request_count == 3
        n = store.db.execute("SELECT count(*) FROM _sqlite_migrations").fetchone()[0]
        assert n == len(MIGRATION_NAMES)


def test_database_from_a_newer_batchyard_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    Store.open(path).close()
    conn = sqlite3.connect(path)
    conn.execute(
        "INSERT INTO _sqlite_migrations (migration_set, name, applied_at) "
        "VALUES ('batchyard', 'm999_from_the_future', '2030-01-01')"
    )
    conn.commit()
    conn.close()
    with pytest.raises(SchemaTooNew) as err:
        Store.open(path)
    assert "m999_from_the_future" in str(err.value)
    assert str(path) in str(err.value)


def test_file_is_private_to_the_user(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "private.db"
    old = os.umask(0o022)
    try:
        with Store.open(path) as store:
            make_run(store, 1)
            for p in (path, Path(f"{path}-wal")):
                assert stat.S_IMODE(p.stat().st_mode) == 0o600, p
    finally:
        os.umask(old)


def test_batchyard_db_variable_chooses_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "elsewhere" / "jobs.db"
    monkeypatch.setenv("BATCHYARD_DB", str(target))
    with Store.open() as store:
        make_run(store)
        assert store.path == target
    assert target.exists()


def test_default_location_is_the_user_data_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BATCHYARD_DB", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert default_db_path() == tmp_path / "data" / "batchyard" / "batchyard.db"
    explicit = tmp_path / "explicit.db"
    with Store.open(explicit) as store:  # an explicit path (--db) wins
        assert store.path == explicit


def test_history_cannot_be_rewritten(tmp_path: Path) -> None:
    with Store.open(tmp_path / "h.db") as store:
        run_id = make_run(store)
        store.add_event(run_id, "note", "hello")
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            store.db.execute("UPDATE events SET message = 'changed'")
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            store.db.execute("DELETE FROM events")
        assert [e.message for e in store.list_events(run_id, kinds=["note"])] == ["hello"]


def test_a_database_of_the_first_schema_is_upgraded_in_place(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "old.db"
    with Store.open(path) as store:
        run_id = store.create_run(
            source_path="in.jsonl", source_sha256="0" * 64, endpoint="/v1/embeddings",
            models=["m"],
        )  # fmt: skip
    with sqlite3.connect(path) as db:  # roll the file back to what m001 alone made
        db.execute("ALTER TABLE requests DROP COLUMN request_id")
        db.execute("DELETE FROM _sqlite_migrations WHERE name = 'm002_request_id'")
    with Store.open(path) as store:
        assert "request_id" in store.db["requests"].columns_dict
        assert store.get_run(run_id).id == run_id  # the data is still there


def test_m003_lets_an_older_database_store_the_fast_route(tmp_path: Path) -> None:
    from sqlite_utils import Database

    from batchyard.store.migrations.changes import m003_fast_route

    db = Database(tmp_path / "old.db")
    db.execute(
        "CREATE TABLE requests (id INTEGER PRIMARY KEY, run_id TEXT, priority INTEGER, "
        "line INTEGER, status TEXT, "
        "route TEXT CHECK (route IN ('standard', 'flex', 'batch')))"
    )
    db.execute("INSERT INTO requests (route, status) VALUES ('batch', 'routed')")
    with pytest.raises(sqlite3.IntegrityError):
        db.execute("INSERT INTO requests (route) VALUES ('fast')")
    m003_fast_route(db)
    db.execute("INSERT INTO requests (route, status) VALUES ('fast', 'routed')")
    assert [r[0] for r in db.execute("SELECT route FROM requests ORDER BY id")] == ["batch", "fast"]
    index = db.execute(
        "SELECT sql FROM sqlite_master WHERE name = 'requests_realtime_queue'"
    ).fetchone()[0]
    assert "'fast'" in index
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_m009_keeps_older_requests_readable_without_a_cap(tmp_path: Path) -> None:
    """A database from before caps were kept: its rows read back with no cap, and the
    router then counts their estimated output (which was the cap) against TPM."""
    path = tmp_path / "old.db"
    with Store.open(path) as store:
        run_id = store.create_run(
            source_path="in.jsonl", source_sha256="0" * 64, endpoint="/v1/embeddings",
            models=["m"],
        )  # fmt: skip
    with sqlite3.connect(path) as db:
        db.execute("ALTER TABLE requests DROP COLUMN max_output_tokens")
        db.execute("DELETE FROM _sqlite_migrations WHERE name = 'm009_output_cap'")
    with Store.open(path) as store:
        assert "max_output_tokens" in store.db["requests"].columns_dict
        assert store.get_run(run_id).id == run_id
