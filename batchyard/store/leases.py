"""Leases on shards: which process may submit or apply one, and finishing an applied one.

Owns the claim columns of the `batches` table (`claim_batch_for_submit`,
`claim_batch_for_apply`, `release_batch_claim`; each in one `BEGIN IMMEDIATE` unit, so two
processes never submit or apply the same shard) and `mark_applied`, which the lease holder
alone may call: the shard becomes applied, its requests without a result are left over
(retryable or failed) and its attempts are closed. No remote calls here.
"""

from __future__ import annotations

from collections.abc import Sequence

from batchyard.errors import IllegalTransition
from batchyard.models import BatchStatus, RequestStatus

from .batches import BatchesMixin
from .transitions import PROVIDER_TERMINAL

__all__ = ["BatchLeasesMixin"]

B = BatchStatus
_SUBMITTABLE = (B.PLANNED, B.UPLOADING, B.UPLOADED, B.CREATING)


class BatchLeasesMixin(BatchesMixin):
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
            left = conn.execute(
                "UPDATE requests SET status = ?, error_code = ?, error_message = ?, "
                "updated_at = ?, finished_at = ? WHERE shard = ? AND status = 'submitted' "
                "RETURNING id",
                (
                    leftover.value,
                    error_code,
                    f"No result for this request in batch {b.provider_batch_id} ({b.status}).",
                    now,
                    terminal,
                    shard,
                ),
            ).fetchall()
            if terminal is not None:
                self._finished(b.run_id, (i for (i,) in left))
            n = len(left)
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
