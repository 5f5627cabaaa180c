"""Why requests wait: the one answer to "when is this request tried again?".

Owns the reads of that answer and the batch path's writes of it. Every mechanism records
its decision where this module reads it: on the request (`not_before`,
`not_before_reason`: a real-time retry, a deferral, an open breaker, lines of a failed batch
waiting to be re-submitted, `hold`) or, for a line inside a live batch, on its shard
(`batches.next_poll_at`, `batches.poll_reason`: the poll backoff, `record_poll`; one write
per shard and poll, never one per line). `next_try` answers for one request and
`waiting_reasons` sums the same answer per reason for `status`; both read it through the
SQL below, so they cannot disagree. It must not decide when anything is tried again: the
orchestrator does, and records the decision here.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from batchyard.models import BatchStatus

from .base import one_by_name
from .requests import RequestsMixin
from .rows import NextTry

__all__ = ["WaitsMixin"]

_LIVE = ", ".join(
    f"'{s.value}'"
    for s in (
        BatchStatus.VALIDATING,
        BatchStatus.IN_PROGRESS,
        BatchStatus.FINALIZING,
        BatchStatus.CANCELLING,
    )
)
# A line in a live batch goes again when its shard is polled; any other unfinished request
# when its own `not_before` says (NULL: nothing holds it back).
_IN_LIVE_BATCH = f"r.status = 'submitted' AND b.status IN ({_LIVE})"
_HELD = "r.status IN ('routed', 'retryable', 'in_flight') AND r.not_before IS NOT NULL"
_AT = f"CASE WHEN {_IN_LIVE_BATCH} THEN b.next_poll_at WHEN {_HELD} THEN r.not_before END"
_WHY = (
    f"CASE WHEN {_IN_LIVE_BATCH} THEN "
    "coalesce(b.poll_reason, b.status || ': polled at the next round') "
    f"WHEN {_HELD} THEN coalesce(r.not_before_reason, 'waiting') END"
)
_FROM = "requests AS r LEFT JOIN batches AS b ON b.id = r.shard"


class WaitsMixin(RequestsMixin):
    def next_try(self, run_id: str, custom_id: str) -> NextTry | None:
        """When `custom_id` is tried again and why: for a line in a live batch, its shard's
        next poll; for any other unfinished request, its own `not_before` and reason.
        None when nothing holds it back (it goes when a driver gets to it) or it is
        finished. Raises `NotFound` for an unknown request."""
        row = one_by_name(
            self.db.conn.execute(
                f"SELECT {_AT} AS at, {_WHY} AS why FROM {_FROM} "
                "WHERE r.run_id = ? AND r.custom_id = ?",
                (run_id, custom_id),
            )
        )
        if row is None:
            self.get_request(run_id, custom_id, with_body=False)  # raises NotFound
        if row is None or row["why"] is None:
            return None
        return NextTry(None if row["at"] is None else float(row["at"]), str(row["why"]))

    def waiting_reasons(self, run_id: str) -> list[tuple[str, int, float]]:
        """Requests held back right now (`next_try` in the future), per reason:
        (reason, how many, when the first of them is due)."""
        self._require_run(run_id)
        rows = self.db.conn.execute(
            f"SELECT {_WHY}, count(*), min({_AT}) FROM {_FROM} "
            f"WHERE r.run_id = ? AND {_AT} > ? GROUP BY 1 ORDER BY 2 DESC",
            (run_id, self.now()),
        )
        return [(str(r[0]), int(r[1]), float(r[2])) for r in rows]

    def record_poll(self, shard: int, at: float | None, reason: str | None) -> None:
        """The poll backoff's decision for `shard`: polled next at `at`, for `reason`
        (None, None: due at the next round)."""
        with self._write() as conn:
            conn.execute(
                "UPDATE batches SET next_poll_at = ?, poll_reason = ? WHERE id = ?",
                (at, reason, shard),
            )

    def next_poll(self, shards: Iterable[int]) -> float | None:
        """The earliest recorded next poll of `shards` (None: none recorded, due at once)."""
        row = self.db.conn.execute(
            "SELECT min(next_poll_at) FROM batches WHERE id IN (SELECT value FROM json_each(?))",
            (json.dumps(list(shards)),),
        ).fetchone()
        return None if row[0] is None else float(row[0])

    def hold(
        self, run_id: str, custom_ids: Iterable[str], until: float | None, reason: str | None
    ) -> int:
        """Record that these routed requests wait until `until` for `reason` (None, None:
        they go now): one statement for the group, rows already saying so left alone.
        Returns how many changed."""
        ids = json.dumps(list(custom_ids))
        with self._write() as conn:
            cur = conn.execute(
                "UPDATE requests SET not_before = ?, not_before_reason = ?, updated_at = ? "
                "WHERE run_id = ? AND status = 'routed' "
                "AND custom_id IN (SELECT value FROM json_each(?)) "
                "AND (not_before IS NOT ? OR not_before_reason IS NOT ?)",
                (until, reason, self.now(), run_id, ids, until, reason),
            )
            return cur.rowcount
