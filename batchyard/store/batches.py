"""Batches (shards) once planned: their rows, statuses, and the provider's view of them.

Owns reading the `batches` table (`get_batch`, `find_batch`, `list_batches`,
`shard_outcomes`), checked status changes, and the request changes that go with the
provider batch: routed -> submitted when it exists (`record_batch_remote`), and each polled
Batch JSON (`update_batch_from_provider`). Provider statuses map explicitly onto
`BatchStatus` (`PROVIDER_STATUS`); an unknown one raises. Planning a shard is `shards.py`;
the leases to submit or apply one, and finishing it, are `leases.py`. No remote calls here.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any

from batchyard.errors import NotFound, ProviderError, StoreError
from batchyard.models import BatchStatus, RequestStatus

from .base import StoreBase, by_name, chunked, one_by_name, placeholders, record
from .codec import loads_dict
from .files import FilesMixin
from .rows import BatchRow
from .transitions import check_batch, check_request

__all__ = ["PROVIDER_STATUS", "BatchesMixin"]

B = BatchStatus
PROVIDER_STATUS: dict[str, BatchStatus] = {
    "validating": B.VALIDATING,
    "in_progress": B.IN_PROGRESS,
    "finalizing": B.FINALIZING,
    "completed": B.COMPLETED,
    "failed": B.FAILED,
    "expired": B.EXPIRED,
    "cancelling": B.CANCELLING,
    "cancelled": B.CANCELLED,
}
PROVIDER_TIMES = (
    "in_progress_at",
    "expires_at",
    "finalizing_at",
    "completed_at",
    "failed_at",
    "expired_at",
    "cancelling_at",
    "cancelled_at",
)
_COLS = (
    "id, run_id, endpoint, model, status, provider_batch_id, input_file_row, input_file_id, "
    "output_file_id, error_file_id, request_count, counts_total, counts_completed, "
    "counts_failed, metadata, errors, raw, claim_owner, claim_expires_at, created_at, "
    "updated_at, applied_at, provider_created_at, " + ", ".join(PROVIDER_TIMES)
)


def _batch(r: dict[str, Any]) -> BatchRow:
    times = {"created_at": r["provider_created_at"]} | {t: r[t] for t in PROVIDER_TIMES}
    return record(
        BatchRow,
        r,
        status=B(r["status"]),
        metadata={k: str(v) for k, v in loads_dict(r["metadata"]).items()},
        provider_times={k: v for k, v in times.items() if v is not None},
        errors=loads_dict(r["errors"]) or None,
        raw=loads_dict(r["raw"]) or None,
    )


class BatchesMixin(FilesMixin, StoreBase):
    def get_batch(self, shard: int) -> BatchRow:
        r = one_by_name(self.db.conn.execute(f"SELECT {_COLS} FROM batches WHERE id = ?", (shard,)))
        if r is None:
            raise NotFound(f"No batch shard {shard} in {self.path}.")
        return _batch(r)

    def find_batch(self, provider_batch_id: str) -> BatchRow | None:
        """The shard with this provider batch id, if any."""
        r = one_by_name(
            self.db.conn.execute(
                f"SELECT {_COLS} FROM batches WHERE provider_batch_id = ?", (provider_batch_id,)
            )
        )
        return _batch(r) if r else None

    def list_batches(
        self, run_id: str | None = None, *, statuses: Sequence[BatchStatus] | None = None
    ) -> list[BatchRow]:
        where, params = ["1"], []
        if run_id is not None:
            where.append("run_id = ?")
            params.append(run_id)
        if statuses:
            where.append(f"status IN ({placeholders(len(statuses))})")
            params.extend(B(s).value for s in statuses)
        sql = f"SELECT {_COLS} FROM batches WHERE {' AND '.join(where)} ORDER BY id"
        return [_batch(r) for r in by_name(self.db.conn.execute(sql, params))]

    def list_active_batches(self, run_id: str | None = None) -> list[BatchRow]:
        """Shards with work left: not applied, and not cancelled before reaching the API."""
        return [
            b
            for b in self.list_batches(run_id)
            if b.status != B.APPLIED and not (b.status == B.CANCELLED and not b.provider_batch_id)
        ]

    def set_batch_status(
        self,
        shard: int,
        to: BatchStatus,
        *,
        expect: BatchStatus | None = None,
        owner: str | None = None,
    ) -> bool:
        """Move a shard to `to` (checked), e.g. uploaded -> creating before batches.create.

        With `expect`, returns False (changing nothing) if the shard is not in that
        status. With `owner`, raises `StoreError` unless `owner` holds the shard's lease.
        """
        with self._write() as conn:
            b = self._batch_for_update(conn, shard)
            if expect is not None and b.status != expect:
                return False
            if owner is not None:
                self._check_lease(b, owner)
            self._set_batch_status(conn, b.run_id, shard, b.status, to)
        return True

    def _batch_for_update(self, conn: sqlite3.Connection, shard: int) -> BatchRow:
        r = one_by_name(conn.execute(f"SELECT {_COLS} FROM batches WHERE id = ?", (shard,)))
        if r is None:
            raise NotFound(f"No batch shard {shard} in {self.path}.")
        return _batch(r)

    def _check_lease(self, b: BatchRow, owner: str) -> None:
        """The shard's lease must still be `owner`'s. A lease that ran out is still the
        holder's until another process takes it over (then `claim_owner` names that one):
        a step that outlived its lease on a slow machine, or on a fast simulated clock,
        finishes rather than failing a shard nobody else touched."""
        if b.claim_owner != owner:
            raise StoreError(
                f"Batch shard {b.id} is not claimed by {owner} (claimed by "
                f"{b.claim_owner or 'nobody'}); another process may be handling it."
            )

    def record_batch_remote(
        self, shard: int, provider_batch_id: str, provider: dict[str, Any] | None = None
    ) -> BatchRow:
        """Right after batches.create: record the provider id; the shard's requests go
        routed -> submitted (attempt rows written) in the same transaction.

        Idempotent for the same id. `provider` (the returned Batch JSON) is stored as
        by `update_batch_from_provider`; without it the shard becomes validating.
        """
        with self._write() as conn:
            b = self._batch_for_update(conn, shard)
            if b.provider_batch_id == provider_batch_id:
                return b
            if b.provider_batch_id is not None:
                raise StoreError(
                    f"Batch shard {shard} already is {b.provider_batch_id}; "
                    f"refusing to record {provider_batch_id} too."
                )
            check_batch(shard, b.status, B.VALIDATING)  # must be creating
            bad = one_by_name(
                conn.execute(
                    "SELECT custom_id, status FROM requests WHERE shard = ? "
                    "AND status != 'routed' LIMIT 1",
                    (shard,),
                )
            )
            if bad is not None:
                old = RequestStatus(bad["status"])
                check_request(b.run_id, bad["custom_id"], old, RequestStatus.SUBMITTED)
            now = self.now()
            conn.execute(
                "UPDATE batches SET provider_batch_id = ?, updated_at = ? WHERE id = ?",
                (provider_batch_id, now, shard),
            )
            conn.execute(
                "UPDATE requests SET status = 'submitted', attempts = attempts + 1, "
                "updated_at = ? WHERE shard = ?",
                (now, shard),
            )
            conn.execute(
                "INSERT INTO attempts (run_id, custom_id, attempt, route, shard, started_at) "
                "SELECT run_id, custom_id, attempts, 'batch', shard, ? FROM requests "
                "WHERE shard = ?",
                (now, shard),
            )
            self._event(
                conn,
                b.run_id,
                "batch.created",
                f"Shard {shard} is {provider_batch_id}",
                {"provider_batch_id": provider_batch_id},
                shard=shard,
            )
            self._apply_provider(conn, b, provider or {"status": "validating"})
            return self._batch_for_update(conn, shard)

    def shard_outcomes(self, shards: Sequence[int]) -> dict[int, dict[str, int]]:
        """Per shard, where its lines ended, in the words every count uses: `succeeded` or
        `failed` (a final error) in this batch, `cancelled` (by the user), `re-routed` (sent
        again, in real time or a later batch, and counted there), `open` (no result yet).
        Read from the shard's attempt rows, so lines that left the shard still count."""
        out: dict[int, dict[str, int]] = {}
        for part in chunked(list(shards), 500):
            rows = self.db.conn.execute(
                "SELECT a.shard, CASE "
                "WHEN a.attempt = r.attempts AND r.status = 'succeeded' THEN 'succeeded' "
                "WHEN a.attempt = r.attempts AND r.status IN ('failed', 'invalid') THEN 'failed' "
                "WHEN a.attempt = r.attempts AND r.status = 'cancelled' THEN 'cancelled' "
                "WHEN a.attempt = r.attempts OR a.finished_at IS NULL THEN 'open' "
                "ELSE 're-routed' END AS bucket, count(*) FROM attempts AS a "
                "JOIN requests AS r ON r.run_id = a.run_id AND r.custom_id = a.custom_id "
                f"WHERE a.shard IN ({placeholders(len(part))}) GROUP BY a.shard, bucket",
                tuple(part),
            )
            for shard, bucket, n in rows:
                out.setdefault(int(shard), {})[str(bucket)] = int(n)
        return out

    def batch_creations_since(self, since: float) -> int:
        """How many batches were created (by any run in this store) at or after `since`:
        OpenAI allows an organisation a fixed number of batch creations per hour."""
        (n,) = self.db.conn.execute(
            "SELECT count(*) FROM events WHERE kind = 'batch.created' AND at >= ?", (since,)
        ).fetchone()
        return int(n)

    def update_batch_from_provider(self, shard: int, provider: dict[str, Any]) -> BatchRow:
        """Store a polled Batch JSON: status (mapped, checked), counts, times, file ids, raw.

        An applied shard ignores late polls. A status the map does not know raises
        `ProviderError`; one the transition table forbids raises `IllegalTransition`.
        """
        with self._write() as conn:
            b = self._batch_for_update(conn, shard)
            if b.provider_batch_id is None:
                raise StoreError(
                    f"Batch shard {shard} has no provider batch id yet; use "
                    "record_batch_remote first."
                )
            if provider.get("id") not in (None, b.provider_batch_id):
                raise StoreError(
                    f"Batch shard {shard} is {b.provider_batch_id}, not {provider.get('id')}."
                )
            if b.status != B.APPLIED:
                self._apply_provider(conn, b, provider)
            return self._batch_for_update(conn, shard)

    def _apply_provider(self, conn: sqlite3.Connection, b: BatchRow, p: dict[str, Any]) -> None:
        raw_status = p.get("status")
        new = PROVIDER_STATUS.get(str(raw_status))
        if new is None:
            raise ProviderError(
                f"The API reported status {raw_status!r} for batch {b.provider_batch_id} "
                f"(shard {b.id}), which this batchyard does not know. Upgrade batchyard."
            )
        if new != b.status:
            self._set_batch_status(conn, b.run_id, b.id, b.status, new)
        counts = p.get("request_counts") or {}
        errors = p.get("errors")
        conn.execute(
            "UPDATE batches SET counts_total = ?, counts_completed = ?, counts_failed = ?, "
            "output_file_id = ?, error_file_id = ?, errors = ?, raw = ?, "
            "provider_created_at = ?, "
            + ", ".join(f"{t} = ?" for t in PROVIDER_TIMES)
            + ", updated_at = ? WHERE id = ?",
            (
                counts.get("total"),
                counts.get("completed"),
                counts.get("failed"),
                p.get("output_file_id"),
                p.get("error_file_id"),
                json.dumps(errors) if errors else None,
                json.dumps(p),
                p.get("created_at"),
                *(p.get(t) for t in PROVIDER_TIMES),
                self.now(),
                b.id,
            ),
        )
