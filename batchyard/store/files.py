"""Files: uploaded shard inputs and downloaded batch outputs, with intent before upload.

Owns the `files` table. An input file's row is committed (intent, no remote id) before the
upload starts, and moves its shard planned -> uploading in the same transaction; the
remote id is recorded right after the upload, moving the shard to uploaded. A crash in
between leaves an intent without a remote id, which `pending_uploads` lists for reconcile.
It must not make any remote call.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from batchyard.errors import NotFound, StoreError
from batchyard.models import BatchStatus

from .base import StoreBase, by_name, one_by_name, record
from .rows import FileKind, FileRow
from .transitions import check_batch

__all__ = ["FilesMixin"]

_COLS = (
    "id, run_id, shard, kind, remote_id, local_path, bytes, sha256, created_at, remote_at, "
    "deleted_at"
)


def _file(r: dict[str, Any]) -> FileRow:
    return record(FileRow, r, kind=FileKind(r["kind"]))


class FilesMixin(StoreBase):
    def _batch_status(self, conn: sqlite3.Connection, shard: int) -> BatchStatus:
        row = one_by_name(conn.execute("SELECT status FROM batches WHERE id = ?", (shard,)))
        if row is None:
            raise NotFound(f"No batch shard {shard} in {self.path}.")
        return BatchStatus(row["status"])

    def _set_batch_status(
        self, conn: sqlite3.Connection, run_id: str, shard: int, old: BatchStatus, new: BatchStatus
    ) -> None:
        check_batch(shard, old, new)
        conn.execute(
            "UPDATE batches SET status = ?, updated_at = ? WHERE id = ?",
            (new.value, self.now(), shard),
        )
        self._event(
            conn,
            run_id,
            "batch.status",
            f"Batch shard {shard}: {old} -> {new}",
            {"from": old.value, "to": new.value},
            shard=shard,
        )

    def record_file_intent(
        self,
        run_id: str,
        kind: FileKind,
        *,
        local_path: str,
        bytes: int,
        sha256: str,
        shard: int | None = None,
    ) -> int:
        """Commit a file row before uploading it; returns the row id.

        For an input file of a shard, the shard moves planned -> uploading in the same
        transaction (`IllegalTransition` if it is not planned).
        """
        self._require_run(run_id)
        with self._write() as conn:
            cur = conn.execute(
                f"INSERT INTO files ({_COLS}) VALUES (NULL, ?, ?, ?, NULL, ?, ?, ?, ?, NULL, NULL)",
                (run_id, shard, FileKind(kind).value, local_path, bytes, sha256, self.now()),
            )
            row_id = int(cur.lastrowid or 0)
            if shard is not None and kind == FileKind.INPUT:
                old = self._batch_status(conn, shard)
                self._set_batch_status(conn, run_id, shard, old, BatchStatus.UPLOADING)
                conn.execute("UPDATE batches SET input_file_row = ? WHERE id = ?", (row_id, shard))
            self._event(
                conn,
                run_id,
                "file.intent",
                f"About to upload {local_path}",
                {"file": row_id, "bytes": bytes, "sha256": sha256},
                shard=shard,
            )
        return row_id

    def set_file_remote_id(self, file_row: int, remote_id: str) -> FileRow:
        """Record the provider's id for an uploaded file (right after the upload).

        Idempotent for the same id; a different id raises `StoreError`. An input file of
        a shard moves the shard uploading -> uploaded and sets its input_file_id.
        """
        with self._write() as conn:
            f = self._file(conn, file_row)
            if f.remote_id == remote_id:
                return f
            if f.remote_id is not None:
                raise StoreError(
                    f"File row {file_row} already has remote id {f.remote_id}; refusing to "
                    f"replace it with {remote_id}."
                )
            now = self.now()
            conn.execute(
                "UPDATE files SET remote_id = ?, remote_at = ? WHERE id = ?",
                (remote_id, now, file_row),
            )
            if f.shard is not None and f.kind == FileKind.INPUT:
                old = self._batch_status(conn, f.shard)
                self._set_batch_status(conn, f.run_id, f.shard, old, BatchStatus.UPLOADED)
                conn.execute(
                    "UPDATE batches SET input_file_id = ? WHERE id = ?", (remote_id, f.shard)
                )
            self._event(
                conn,
                f.run_id,
                "file.uploaded",
                f"Uploaded as {remote_id}",
                {"file": file_row, "remote_id": remote_id},
                shard=f.shard,
            )
            return self._file(conn, file_row)

    def abandon_upload(self, file_row: int) -> None:
        """Reconcile found the upload never happened: close the intent, shard -> planned."""
        with self._write() as conn:
            f = self._file(conn, file_row)
            if f.remote_id is not None:
                raise StoreError(
                    f"File row {file_row} was uploaded as {f.remote_id}; it cannot be abandoned."
                )
            conn.execute("UPDATE files SET deleted_at = ? WHERE id = ?", (self.now(), file_row))
            if f.shard is not None and f.kind == FileKind.INPUT:
                old = self._batch_status(conn, f.shard)
                self._set_batch_status(conn, f.run_id, f.shard, old, BatchStatus.PLANNED)
                conn.execute("UPDATE batches SET input_file_row = NULL WHERE id = ?", (f.shard,))
            self._event(
                conn,
                f.run_id,
                "file.abandoned",
                "Upload never happened; will retry",
                {"file": file_row},
                shard=f.shard,
            )

    def pending_uploads(self, run_id: str | None = None) -> list[FileRow]:
        """Upload intents with no remote id (to reconcile after a crash)."""
        sql = (
            f"SELECT {_COLS} FROM files WHERE kind = 'input' AND remote_id IS NULL "
            "AND deleted_at IS NULL"
        )
        params: list[Any] = []
        if run_id is not None:
            sql += " AND run_id = ?"
            params.append(run_id)
        return [_file(r) for r in by_name(self.db.conn.execute(sql + " ORDER BY id", params))]

    def record_downloaded_file(
        self,
        run_id: str,
        shard: int,
        kind: FileKind,
        *,
        remote_id: str,
        local_path: str,
        bytes: int,
        sha256: str,
    ) -> int:
        """Record a batch output or error file that was downloaded; returns its row id."""
        with self._write() as conn:
            now = self.now()
            cur = conn.execute(
                f"INSERT INTO files ({_COLS}) VALUES (NULL, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)",
                (
                    run_id,
                    shard,
                    FileKind(kind).value,
                    remote_id,
                    local_path,
                    bytes,
                    sha256,
                    now,
                    now,
                ),
            )
            return int(cur.lastrowid or 0)

    def mark_file_deleted(self, file_row: int) -> None:
        """Record that the file was deleted (remotely and/or locally)."""
        with self._write() as conn:
            f = self._file(conn, file_row)
            conn.execute("UPDATE files SET deleted_at = ? WHERE id = ?", (self.now(), file_row))
            self._event(
                conn,
                f.run_id,
                "file.deleted",
                f"Deleted file {f.remote_id or file_row}",
                {"file": file_row},
                shard=f.shard,
            )

    def list_files(self, run_id: str) -> list[FileRow]:
        """The run's files, oldest first."""
        rows = self.db.conn.execute(
            f"SELECT {_COLS} FROM files WHERE run_id = ? ORDER BY id", (run_id,)
        )
        return [_file(r) for r in by_name(rows)]

    def _file(self, conn: sqlite3.Connection, file_row: int) -> FileRow:
        r = one_by_name(conn.execute(f"SELECT {_COLS} FROM files WHERE id = ?", (file_row,)))
        if r is None:
            raise NotFound(f"No file row {file_row} in {self.path}.")
        return _file(r)
