"""Batches (shards): planning, intent before create, provider status, claims to apply.

Owns the `batches` table and the request changes that go with a shard (assignment when
planned, routed -> submitted when the provider batch exists, leftovers when applied).
Provider statuses map explicitly onto `BatchStatus` (`PROVIDER_STATUS`); an unknown one
raises. Leases (`claim_batch_for_submit` / `claim_batch_for_apply`, `BEGIN IMMEDIATE`)
make sure two processes never submit or apply the same shard. No remote calls here.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any

from batchyard.errors import IllegalTransition, NotFound, ProviderError, StoreError
from batchyard.models import BatchStatus, RequestStatus

from .base import StoreBase, by_name, chunked, one_by_name, placeholders, record
from .codec import dumps, loads_dict
from .files import FilesMixin
from .rows import BatchRow
from .transitions import PROVIDER_TERMINAL, check_batch, check_request

__all__ = ["IN_QUEUE", "PROVIDER_STATUS", "SHARD_TOKENS_KEY", "BatchesMixin"]

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
# Shards whose input tokens count against the model's enqueued-token queue (planned ones
# are committed to it); their tokens are the `batchyard_tokens` metadata set when planned.
IN_QUEUE = frozenset(
    {
        B.PLANNED,
        B.UPLOADING,
        B.UPLOADED,
        B.CREATING,
        B.VALIDATING,
        B.IN_PROGRESS,
        B.FINALIZING,
        B.CANCELLING,
    }
)
SHARD_TOKENS_KEY = "batchyard_tokens"  # store-only shard metadata; never sent to the provider
_SUBMITTABLE = (B.PLANNED, B.UPLOADING, B.UPLOADED, B.CREATING)
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
    def create_shard(
        self,
        run_id: str,
        *,
        endpoint: str,
        model: str,
        custom_ids: Sequence[str],
        metadata: dict[str, str] | None = None,
    ) -> int:
        """Plan a shard of routed batch requests (one transaction); returns its id.

        Every request must be routed to batch, have this model and endpoint, and be in
        no other shard. The shard's metadata gets `batchyard_run` and `batchyard_shard`,
        the tag that finds the provider batch again if a crash hides its id.
        """
        shard = self._plan_shard(run_id, endpoint, model, custom_ids, metadata, None, strict=True)
        assert shard is not None
        return shard

    def claim_shard(
        self,
        run_id: str,
        *,
        endpoint: str,
        model: str,
        custom_ids: Sequence[str],
        input_tokens: int,
        queue_limit: int | None,
        metadata: dict[str, str] | None = None,
    ) -> int | None:
        """`create_shard` as a claim several processes may race for: None (nothing
        written) when another process has already put one of the requests in a shard or
        moved it on, or when the model's queue has no room for `input_tokens` beside the
        tokens of every unfinished shard of the model (all runs), read in the same
        transaction. The loser reads the requests again next round."""
        tokens = dict(metadata or {}) | {SHARD_TOKENS_KEY: str(input_tokens)}
        queue = (input_tokens, queue_limit)
        return self._plan_shard(run_id, endpoint, model, custom_ids, tokens, queue, strict=False)

    def enqueued_tokens(self, model: str) -> int:
        """The input tokens of every unfinished shard of `model`, all runs: what the
        organisation's enqueued-token queue holds by this store's books."""
        return self._enqueued(self.db.conn, model)

    def _enqueued(self, conn: sqlite3.Connection, model: str) -> int:
        (n,) = conn.execute(
            "SELECT coalesce(sum(CAST(json_extract(metadata, '$.batchyard_tokens') "
            "AS INTEGER)), 0) "
            f"FROM batches WHERE model = ? AND status IN ({placeholders(len(IN_QUEUE))})",
            (model, *(s.value for s in IN_QUEUE)),
        ).fetchone()
        return int(n)

    def _plan_shard(
        self,
        run_id: str,
        endpoint: str,
        model: str,
        custom_ids: Sequence[str],
        metadata: dict[str, str] | None,
        queue: tuple[int, int | None] | None,
        *,
        strict: bool,
    ) -> int | None:
        self._require_run(run_id)
        if not custom_ids:
            raise StoreError("A batch shard needs at least one request.")
        with self._write() as conn:
            ids: list[int] = []
            joinable = {
                "status": "routed",
                "route": "batch",
                "shard": None,
                "model": model,
                "endpoint": endpoint,
            }
            for part in chunked(custom_ids, 500):
                rows = {
                    r["custom_id"]: r
                    for r in by_name(
                        conn.execute(
                            "SELECT custom_id, id, status, route, shard, model, endpoint "
                            "FROM requests WHERE run_id = ? "
                            f"AND custom_id IN ({placeholders(len(part))})",
                            (run_id, *part),
                        )
                    )
                }
                for cid in part:
                    r = rows.get(cid)
                    if r is None:
                        raise NotFound(f"Run {run_id} has no request with custom_id '{cid}'.")
                    if any(r[k] != v for k, v in joinable.items()):
                        if not strict and (r["model"], r["endpoint"]) == (model, endpoint):
                            return None  # another process planned or moved it first
                        raise StoreError(
                            f"Request '{cid}' cannot join a {model} {endpoint} batch shard: it "
                            f"is {r['status']}, route {r['route']}, shard {r['shard']}, "
                            f"model {r['model']}, endpoint {r['endpoint']}."
                        )
                    ids.append(r["id"])
            if queue is not None:
                tokens, limit = queue
                if limit is not None and self._enqueued(conn, model) + tokens > limit:
                    return None  # another run's shard took the room first
            now = self.now()
            cur = conn.execute(
                "INSERT INTO batches (run_id, endpoint, model, status, request_count, "
                "created_at, updated_at) VALUES (?, ?, ?, 'planned', ?, ?, ?)",
                (run_id, endpoint, model, len(custom_ids), now, now),
            )
            shard = int(cur.lastrowid or 0)
            tag = dict(metadata or {}) | {"batchyard_run": run_id, "batchyard_shard": str(shard)}
            conn.execute("UPDATE batches SET metadata = ? WHERE id = ?", (dumps(tag), shard))
            conn.executemany(
                "UPDATE requests SET shard = ?, updated_at = ? WHERE id = ?",
                [(shard, now, i) for i in ids],
            )
            self._event(
                conn,
                run_id,
                "batch.planned",
                f"Planned shard {shard} of {len(custom_ids)} {model} request(s)",
                {"requests": len(custom_ids)},
                shard=shard,
            )
        return shard

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

    def _claim(self, shard: int, owner: str, lease: float, allowed: Sequence[BatchStatus]) -> bool:
        with self._write() as conn:
            b = self._batch_for_update(conn, shard)
            now = self.now()
            held = b.claim_owner not in (None, owner) and (b.claim_expires_at or 0) >= now
            if b.status not in allowed or held:
                return False
            conn.execute(
                "UPDATE batches SET claim_owner = ?, claim_expires_at = ? WHERE id = ?",
                (owner, now + lease, shard),
            )
            return True

    def claim_batch_for_submit(self, shard: int, owner: str, lease_seconds: float = 600) -> bool:
        """Take (or renew) the lease to upload/create this shard; False if another holds it
        or the shard is past creation. Only the holder should make its remote calls."""
        return self._claim(shard, owner, lease_seconds, _SUBMITTABLE)

    def claim_batch_for_apply(self, shard: int, owner: str, lease_seconds: float = 600) -> bool:
        """Take (or renew) the lease to download and apply a provider-terminal shard;
        False if it is not terminal, already applied, or another process holds it."""
        return self._claim(shard, owner, lease_seconds, tuple(PROVIDER_TERMINAL))

    def release_batch_claim(self, shard: int, owner: str) -> None:
        with self._write() as conn:
            conn.execute(
                "UPDATE batches SET claim_owner = NULL, claim_expires_at = NULL "
                "WHERE id = ? AND claim_owner = ?",
                (shard, owner),
            )

    def mark_applied(
        self,
        shard: int,
        owner: str,
        *,
        leftover: RequestStatus = RequestStatus.RETRYABLE,
        error_code: str = "batch_incomplete",
    ) -> int:
        """Finish an applied shard (the lease holder only): -> applied, lease released.

        Requests of the shard still `submitted` (no line for them in either file) go to
        `leftover` (retryable or failed) with `error_code`, so none is left hanging.
        Returns how many were left over.
        """
        if leftover not in (RequestStatus.RETRYABLE, RequestStatus.FAILED):
            raise IllegalTransition(
                f"Leftover requests can only become retryable or failed, not {leftover}."
            )
        with self._write() as conn:
            b = self._batch_for_update(conn, shard)
            self._check_lease(b, owner)
            self._set_batch_status(conn, b.run_id, shard, b.status, B.APPLIED)
            now = self.now()
            terminal = now if leftover == RequestStatus.FAILED else None
            n = conn.execute(
                "UPDATE requests SET status = ?, error_code = ?, error_message = ?, "
                "updated_at = ?, finished_at = ? WHERE shard = ? AND status = 'submitted'",
                (
                    leftover.value,
                    error_code,
                    f"No result for this request in batch {b.provider_batch_id} ({b.status}).",
                    now,
                    terminal,
                    shard,
                ),
            ).rowcount
            # Close the shard's attempts in two set-based statements (not row by row):
            # from the request's outcome, or "retryable" if it has moved on since.
            conn.execute(
                "UPDATE attempts SET finished_at = ?, outcome = CASE WHEN r.status IN "
                "('succeeded', 'failed', 'retryable', 'invalid') THEN r.status "
                "ELSE 'retryable' END, "
                "status_code = r.status_code, error_code = r.error_code, cost = r.cost "
                "FROM requests AS r WHERE attempts.shard = ? AND attempts.finished_at IS NULL "
                "AND r.run_id = attempts.run_id AND r.custom_id = attempts.custom_id "
                "AND r.attempts = attempts.attempt",
                (now, shard),
            )
            conn.execute(
                "UPDATE attempts SET finished_at = ?, outcome = 'retryable' "
                "WHERE shard = ? AND finished_at IS NULL",
                (now, shard),
            )
            conn.execute(
                "UPDATE batches SET applied_at = ?, claim_owner = NULL, claim_expires_at = NULL "
                "WHERE id = ?",
                (now, shard),
            )
            self._event(
                conn,
                b.run_id,
                "batch.applied",
                f"Shard {shard} applied; {n} request(s) without a result became {leftover}",
                {"leftover": n},
                shard=shard,
            )
        return n
