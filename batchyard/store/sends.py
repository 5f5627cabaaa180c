"""Sends: an attempt row for every real-time send.

Owns `_record_failed_sends` (a send that failed and is tried again inside its claim: its
attempt row closes as `retry` with the error's kind, status, code and request id, the next
send's row opens, and the request's `not_before` / `not_before_reason` say when and why it
goes again), written in the same transaction as the group commit of results, and the
read `status` shows: sends tried again by kind (the requests held back right now, with
their reasons, are `waits.py`'s). It must not decide when a request is tried again: the
orchestrator does, and records the decision here.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from .base import LOOKUP, StoreBase, chunked, placeholders
from .rows import FailedSend

__all__ = ["SendsMixin"]

_CLOSE_AS_RETRY = (
    "UPDATE attempts SET finished_at = ?, outcome = 'retry', status_code = ?, error_code = ?, "
    "error_kind = ?, request_id = ?, not_before = ? "
    "WHERE run_id = ? AND custom_id = ? AND attempt = ? AND finished_at IS NULL"
)
_OPEN_NEXT = (
    "INSERT INTO attempts (run_id, custom_id, attempt, route, owner, started_at) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)
_WAIT = (
    "UPDATE requests SET attempts = ?, faults = faults + ?, not_before = ?, "
    "not_before_reason = ?, updated_at = ? WHERE id = ?"
)


class SendsMixin(StoreBase):
    def _record_failed_sends(
        self, conn: sqlite3.Connection, run_id: str, owner: str, sends: Sequence[FailedSend]
    ) -> int:
        """Record `owner`'s failed sends (in order; several may name one request). A send
        of a request no longer in flight under `owner` is skipped. Returns how many were
        recorded."""
        if not sends:
            return 0
        current: dict[str, list[Any]] = {}
        ids = list({s.custom_id: None for s in sends})
        for part in chunked(ids, LOOKUP):
            for row in conn.execute(
                "SELECT custom_id, id, attempts, route FROM requests WHERE run_id = ? "
                f"AND status = 'in_flight' AND owner = ? AND custom_id IN "
                f"({placeholders(len(part))})",
                (run_id, owner, *part),
            ):
                current[row[0]] = list(row[1:])
        now = self.now()
        closes: list[tuple[Any, ...]] = []
        opens: list[tuple[Any, ...]] = []
        waits: dict[int, list[Any]] = {}
        for send in sends:
            row = current.get(send.custom_id)
            if row is None:
                continue
            row_id, number, route = row
            closes.append(
                (
                    send.finished_at,
                    send.status_code,
                    send.error_code,
                    send.error_kind,
                    send.request_id,
                    send.not_before,
                    run_id,
                    send.custom_id,
                    number,
                )
            )
            start = max(send.finished_at, send.not_before or send.finished_at)
            opens.append((run_id, send.custom_id, number + 1, route, owner, start))
            row[1] = number + 1
            wait = waits.setdefault(row_id, [0, 0, None, None])
            wait[0] = number + 1
            wait[1] += 1 if send.fault else 0
            wait[2], wait[3] = send.not_before, send.reason
        # Opens first: a request with two failed sends here closes the row the first opens.
        conn.executemany(_OPEN_NEXT, opens)
        conn.executemany(_CLOSE_AS_RETRY, closes)
        conn.executemany(
            _WAIT,
            [(n, faults, nb, why, now, row_id) for row_id, (n, faults, nb, why) in waits.items()],
        )
        return len(closes)

    def retried_sends(self, run_id: str) -> dict[str, int]:
        """Real-time sends of the run that met a retryable error, per kind (rate_limit,
        flex_unavailable, server, timeout, connection, conflict): those tried again in
        place, deferred to later, or the last of a spent fault budget."""
        self._require_run(run_id)
        rows = self.db.conn.execute(
            "SELECT error_kind, count(*) FROM attempts WHERE run_id = ? "
            "AND error_kind IS NOT NULL GROUP BY 1 ORDER BY 2 DESC, 1",
            (run_id,),
        )
        return {str(r[0]): int(r[1]) for r in rows}
