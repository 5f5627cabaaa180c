"""Webhook deliveries received, batches to poll at once, and run-finished notifications.

Owns the `webhook_events`, `poll_marks` and `notifications` tables. A verified delivery is
recorded once by its `webhook-id` (a duplicate changes nothing) and, when its batch is one
of ours, marks the batch to be polled in the next round; the poll then clears the mark.
No remote calls here: the receiver verifies, the batch runner polls.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from .base import StoreBase, one_by_name, record

__all__ = ["HooksMixin", "Notification", "WebhookReceipt"]


@dataclass(frozen=True, slots=True)
class WebhookReceipt:
    """What a delivery did: `duplicate` (seen before, nothing changed), and the run and
    shard it marked for polling (None when the batch is not in this database)."""

    duplicate: bool
    run_id: str | None = None
    shard: int | None = None


@dataclass(frozen=True, slots=True)
class Notification:
    run_id: str
    url: str
    webhook_id: str  # the same on every attempt, so the receiver can de-duplicate
    state: str  # waiting, sent, failed
    attempts: int
    last_error: str | None


class HooksMixin(StoreBase):
    def record_webhook(
        self, webhook_id: str, event_type: str, provider_batch_id: str | None
    ) -> WebhookReceipt:
        """Record one verified delivery; mark its batch for polling unless seen before."""
        with self._write() as conn:
            seen = conn.execute(
                "SELECT 1 FROM webhook_events WHERE webhook_id = ?", (webhook_id,)
            ).fetchone()
            if seen is not None:
                return WebhookReceipt(duplicate=True)
            found = conn.execute(
                "SELECT id, run_id FROM batches WHERE provider_batch_id = ?",
                (provider_batch_id,),
            ).fetchone()
            shard, run_id = (found[0], found[1]) if found else (None, None)
            conn.execute(
                "INSERT INTO webhook_events (webhook_id, type, provider_batch_id, batch_id, "
                "received_at) VALUES (?, ?, ?, ?, ?)",
                (webhook_id, event_type, provider_batch_id, shard, self.now()),
            )
            if shard is not None and run_id is not None:
                conn.execute(
                    "INSERT INTO poll_marks (batch_id, marked_at, reason) VALUES (?, ?, ?) "
                    "ON CONFLICT (batch_id) DO UPDATE SET marked_at = excluded.marked_at, "
                    "reason = excluded.reason",
                    (shard, self.now(), event_type),
                )
                self._event(
                    conn,
                    run_id,
                    "batch.webhook",
                    f"Shard {shard}: {event_type} received for {provider_batch_id}; "
                    "it is polled in the next round.",
                    {"webhook_id": webhook_id, "type": event_type},
                    shard=shard,
                )
            return WebhookReceipt(False, run_id, shard)

    def poll_marks(self, run_id: str) -> set[int]:
        """The run's shards marked to be polled at once."""
        rows = self.db.conn.execute(
            "SELECT m.batch_id FROM poll_marks m JOIN batches b ON b.id = m.batch_id "
            "WHERE b.run_id = ?",
            (run_id,),
        ).fetchall()
        return {shard for (shard,) in rows}

    def clear_poll_mark(self, shard: int) -> None:
        with self._write() as conn:
            conn.execute("DELETE FROM poll_marks WHERE batch_id = ?", (shard,))

    def set_notify(self, run_id: str, url: str) -> None:
        """Call `url` (signed) when the run finishes."""
        self._require_run(run_id)
        with self._write() as conn:
            conn.execute(
                "INSERT INTO notifications (run_id, url, webhook_id, state) "
                "VALUES (?, ?, ?, 'waiting') ON CONFLICT (run_id) DO UPDATE SET "
                "url = excluded.url, state = 'waiting', attempts = 0, last_error = NULL",
                (run_id, url, "wh_" + secrets.token_hex(16)),
            )

    def get_notification(self, run_id: str) -> Notification | None:
        row = one_by_name(
            self.db.conn.execute(
                "SELECT run_id, url, webhook_id, state, attempts, last_error "
                "FROM notifications WHERE run_id = ?",
                (run_id,),
            )
        )
        if row is None:
            return None
        return record(Notification, row)

    def record_notification(self, run_id: str, *, sent: bool, error: str | None = None) -> None:
        """One attempt at the run's notification: sent, or failed with why."""
        with self._write() as conn:
            conn.execute(
                "UPDATE notifications SET attempts = attempts + 1, state = ?, sent_at = ?, "
                "last_error = ? WHERE run_id = ?",
                ("sent" if sent else "failed", self.now() if sent else None, error, run_id),
            )
            message = (
                "The run's notification was sent."
                if sent
                else f"The run's notification could not be sent: {error}"
            )
            self._event(conn, run_id, "run.notify", message)
