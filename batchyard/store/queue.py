"""The organisation's enqueued-token queue as this store's books see it, and who drives runs.

Owns the `drivers` table (a row per process driving a run, refreshed every round) and the
per-model reads the queue admission needs across runs: the tokens the queue holds
(`enqueued_tokens`, from the shards in `IN_QUEUE` and their `SHARD_TOKENS_KEY` metadata),
which runs hold them (`queue_holders`) and which wait for room (`queue_demand`). The queue
is the organisation's, so these reads span every run in the store; they never change a
batch or a request.
"""

from __future__ import annotations

import sqlite3

from batchyard.models import BatchStatus

from .base import StoreBase, placeholders

__all__ = ["IN_QUEUE", "QueueMixin"]

B = BatchStatus
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
_LIVE_RUNS = ("pending", "running")


class QueueMixin(StoreBase):
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

    def mark_driving(self, run_id: str, owner: str) -> None:
        """`owner` drives `run_id` now (called every round)."""
        with self._write() as conn:
            conn.execute(
                "INSERT INTO drivers (run_id, owner, seen_at) VALUES (?, ?, ?) "
                "ON CONFLICT (run_id, owner) DO UPDATE SET seen_at = excluded.seen_at",
                (run_id, owner, self.now()),
            )

    def stop_driving(self, run_id: str, owner: str) -> None:
        """`owner` no longer drives `run_id` (it stopped or finished)."""
        with self._write() as conn:
            conn.execute("DELETE FROM drivers WHERE run_id = ? AND owner = ?", (run_id, owner))

    def drivers(self, run_id: str, *, since: float) -> dict[str, float]:
        """The processes seen driving `run_id` at or after `since`: owner -> last seen."""
        rows = self.db.conn.execute(
            "SELECT owner, seen_at FROM drivers WHERE run_id = ? AND seen_at >= ?",
            (run_id, since),
        )
        return {str(r[0]): float(r[1]) for r in rows}

    def queue_holders(self, model: str) -> dict[str, int]:
        """Run -> input tokens of its unfinished shards of `model` (what holds the queue)."""
        rows = self.db.conn.execute(
            "SELECT run_id, coalesce(sum(CAST(json_extract(metadata, '$.batchyard_tokens') "
            "AS INTEGER)), 0) FROM batches "
            f"WHERE model = ? AND status IN ({placeholders(len(IN_QUEUE))}) GROUP BY run_id",
            (model, *(s.value for s in IN_QUEUE)),
        )
        return {str(r[0]): int(r[1]) for r in rows}

    def queue_demand(self, model: str) -> dict[str, int]:
        """Run -> estimated input tokens of its batch requests of `model` that wait for
        room (routed to batch, in no shard yet), over the runs still open."""
        out: dict[str, int] = {}
        runs = [
            r[0]
            for r in self.db.conn.execute(
                f"SELECT id FROM runs WHERE state IN ({placeholders(len(_LIVE_RUNS))})",
                _LIVE_RUNS,
            )
        ]
        for run_id in runs:
            (n,) = self.db.conn.execute(
                "SELECT coalesce(sum(est_input_tokens), 0) FROM requests WHERE run_id = ? "
                "AND route = 'batch' AND status = 'routed' AND shard IS NULL AND model = ?",
                (run_id, model),
            ).fetchone()
            if n:
                out[str(run_id)] = int(n)
        return out
