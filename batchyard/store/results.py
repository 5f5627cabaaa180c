"""Outcomes and real-time claims: applying results, claiming work, crash recovery.

Owns `apply_results` (chunked, idempotent) and settling released lines; the real-time
claim protocol that shares its checks is `claims.py`.
Every change is checked against `transitions.REQUEST_TRANSITIONS` and runs in one
`BEGIN IMMEDIATE` unit, so two processes never claim or apply the same request.
It must not create or change batches.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

from batchyard.errors import IllegalTransition
from batchyard.models import RequestStatus, Route

from .base import CHUNK, LOOKUP, by_name, chunked, placeholders
from .codec import encode_body
from .reuse import ReuseMixin
from .rows import ApplyReport, Result
from .sends import SendsMixin
from .transitions import REQUEST_TERMINAL, check_request

__all__ = ["CLOSE_ATTEMPT", "REALTIME_ROUTES", "ResultsMixin"]

_OUTCOMES = (
    RequestStatus.SUCCEEDED,
    RequestStatus.FAILED,
    RequestStatus.RETRYABLE,
    RequestStatus.INVALID,
)
_UNSENT = (RequestStatus.PENDING, RequestStatus.TWIN)
REALTIME_ROUTES = (Route.STANDARD, Route.FLEX, Route.FAST)

_UPDATE = (
    "UPDATE requests SET status = ?, status_code = ?, response_body = ?, error_code = ?, "
    "error_message = ?, input_tokens = ?, output_tokens = ?, cost = ?, not_before = ?, "
    "not_before_reason = ?, owner = NULL, updated_at = ?, finished_at = ?, request_id = ?, "
    "requeues = requeues + ?, requeue_cost = requeue_cost + ? WHERE id = ?"
)
CLOSE_ATTEMPT = (
    "UPDATE attempts SET finished_at = ?, outcome = ?, status_code = ?, error_code = ?, "
    "cost = ?, request_id = ?, error_kind = ? "
    "WHERE run_id = ? AND custom_id = ? AND attempt = ? AND finished_at IS NULL"
)


class ResultsMixin(ReuseMixin, SendsMixin):
    def apply_results(
        self, run_id: str, results: Iterable[Result], *, chunk_size: int = CHUNK
    ) -> ApplyReport:
        """Record outcomes (from batch output/error files or real-time calls), chunked.

        Idempotent: a request that already has this outcome, or any terminal one, is
        counted as a duplicate and left alone, so re-applying a file after a crash is
        safe. A result naming a `shard` the request has left is `stale` and ignored.
        A result the transition table forbids (e.g. for a pending request) raises
        `IllegalTransition` and its chunk is not written. Adds the applied cost to the run.
        """
        self._require_run(run_id)
        report = ApplyReport()
        for chunk in chunked(results, chunk_size):
            with self._write() as conn:
                report += self._apply(conn, run_id, chunk, owner=None)
        return report

    def _apply(
        self, conn: sqlite3.Connection, run_id: str, chunk: Sequence[Result], owner: str | None
    ) -> ApplyReport:
        current: dict[str, dict[str, Any]] = {}
        ids = list({r.custom_id: None for r in chunk})
        for part in chunked(ids, LOOKUP):
            for found in by_name(
                conn.execute(
                    "SELECT custom_id, id, status, shard, attempts, owner, requeues FROM requests "
                    f"WHERE run_id = ? AND custom_id IN ({placeholders(len(part))})",
                    (run_id, *part),
                )
            ):
                current[found["custom_id"]] = found
        now = self.now()
        minimum = self.compress_min_bytes
        updates: list[tuple[Any, ...]] = []
        closes: list[tuple[Any, ...]] = []
        resends: list[tuple[Any, ...]] = []
        settled: list[str] = []
        finished: list[int] = []
        applied = duplicates = stale = unknown = 0
        unknown_ids: list[str] = []
        released: list[Result] = []
        cost = 0.0
        for res in chunk:
            if res.status not in _OUTCOMES:
                raise ValueError(f"a Result's status must be one of {_OUTCOMES}, not {res.status}")
            row = current.get(res.custom_id)
            if row is None:
                unknown += 1
                if len(unknown_ids) < 20:
                    unknown_ids.append(res.custom_id)
                continue
            old = RequestStatus(row["status"])
            if (
                res.requeue
                and res.status == RequestStatus.RETRYABLE
                and row["requeues"] >= res.requeue_limit
            ):
                # Re-queues spent: the line ends invalid, its last answer and reason kept.
                res = dataclasses.replace(res, status=RequestStatus.INVALID, requeue=False)
            if owner is None and res.shard is not None and row["shard"] != res.shard:
                released.append(res)  # settled below: a released line, or stale
                continue
            if owner is not None and (old != RequestStatus.IN_FLIGHT or row["owner"] != owner):
                stale += 1
                continue
            if old in REQUEST_TERMINAL or old == res.status:
                duplicates += 1
                continue
            if old in _UNSENT:  # pending -> succeeded is only for answers from the store
                raise IllegalTransition(
                    f"Request '{res.custom_id}' of run {run_id} was never sent (status "
                    f"'{old}'); a result cannot be applied to it."
                )
            check_request(run_id, res.custom_id, old, res.status)
            row["status"] = res.status.value  # a second result for the same id in this chunk
            terminal = res.status != RequestStatus.RETRYABLE
            body = encode_body(res.response_body, minimum) if res.response_body else None
            # An answer that failed a check and goes again: paid, but not this line's cost.
            requeue = res.requeue and res.status == RequestStatus.RETRYABLE
            if requeue and res.resend_body is not None:
                resends.append((encode_body(res.resend_body, minimum), row["id"]))
            updates.append(
                (
                    res.status.value,
                    res.status_code,
                    body,
                    res.error_code,
                    res.error_message,
                    res.input_tokens,
                    res.output_tokens,
                    None if requeue else res.cost,
                    res.not_before,
                    res.wait_reason if res.not_before is not None else None,
                    now,
                    now if terminal else None,
                    res.request_id,
                    1 if requeue else 0,
                    res.cost if requeue else 0.0,
                    row["id"],
                )
            )
            if terminal:
                settled.append(res.custom_id)
                finished.append(row["id"])
            if old == RequestStatus.IN_FLIGHT:  # batch attempts close when the shard is applied
                closes.append(
                    (
                        now,
                        res.status.value,
                        res.status_code,
                        res.error_code,
                        res.cost,
                        res.request_id,
                        res.error_kind,
                        run_id,
                        res.custom_id,
                        row["attempts"],
                    )
                )
            applied += 1
            cost += res.cost
        conn.executemany(_UPDATE, updates)
        self._finished(run_id, finished)
        conn.executemany(CLOSE_ATTEMPT, closes)
        conn.executemany("UPDATE requests SET body = ? WHERE id = ?", resends)
        if settled:
            self._settle_twins(conn, run_id, settled, now)
        late = self._settle_released(conn, run_id, released, current, now)
        stale += len(released) - late.applied - late.paid_twice
        applied += late.applied
        cost += late.cost
        if cost:
            conn.execute(
                "UPDATE runs SET actual_cost = actual_cost + ?, updated_at = ? WHERE id = ?",
                (cost, now, run_id),
            )
        return ApplyReport(
            applied,
            duplicates,
            stale,
            unknown,
            tuple(unknown_ids),
            cost,
            late.paid_twice,
            late.paid_twice_cost,
        )

    def _settle_released(
        self,
        conn: sqlite3.Connection,
        run_id: str,
        results: Sequence[Result],
        current: dict[str, dict[str, Any]],
        now: float,
    ) -> ApplyReport:
        """Settle batch results for lines that left their shard (`applied`: answers taken,
        `paid_twice`: answers billed and not used; `cost` covers both).

        A line released from a shard whose cancel was too slow still has that shard's
        attempt open. If it has not been sent again yet and the batch answered it, the
        batch's answer is taken (and the line leaves the real-time queue). Otherwise the
        answer is billed but not used: its attempt closes as `paid_twice` and the cost is
        added to the run, because the provider bills it. A result whose shard attempt is
        already closed (or never existed) is stale, as before.
        """
        if not results:
            return ApplyReport()
        open_attempts: dict[tuple[str, int], int] = {}
        ids = list({r.custom_id for r in results})
        for part in chunked(ids, LOOKUP):
            for cid, number, shard in conn.execute(
                "SELECT custom_id, attempt, shard FROM attempts WHERE run_id = ? "
                f"AND finished_at IS NULL AND shard IS NOT NULL AND custom_id IN "
                f"({placeholders(len(part))})",
                (run_id, *part),
            ):
                open_attempts[(cid, int(shard))] = int(number)
        taken = twice = 0
        cost = twice_cost = 0.0
        answered: list[str] = []
        minimum = self.compress_min_bytes
        for res in results:
            assert res.shard is not None
            number = open_attempts.pop((res.custom_id, res.shard), None)
            if number is None:
                continue
            row = current[res.custom_id]
            old = RequestStatus(row["status"])
            waiting = old in (RequestStatus.ROUTED, RequestStatus.RETRYABLE)
            if waiting and res.status is RequestStatus.SUCCEEDED:
                body = encode_body(res.response_body, minimum) if res.response_body else None
                conn.execute(
                    _UPDATE,
                    (
                        res.status.value,
                        res.status_code,
                        body,
                        None,
                        None,
                        res.input_tokens,
                        res.output_tokens,
                        res.cost,
                        None,
                        None,
                        now,
                        now,
                        res.request_id,
                        0,
                        0.0,
                        row["id"],
                    ),
                )
                row["status"] = res.status.value
                self._finished(run_id, [row["id"]])
                answered.append(res.custom_id)
                outcome = res.status.value
                taken += 1
            elif res.status is RequestStatus.SUCCEEDED:
                outcome = "paid_twice"
                twice += 1
                twice_cost += res.cost
            else:
                outcome = res.status.value
            cost += res.cost  # billed either way: taken, or paid twice
            conn.execute(
                "UPDATE attempts SET finished_at = ?, outcome = ?, status_code = ?, "
                "error_code = ?, cost = ? WHERE run_id = ? AND custom_id = ? AND attempt = ?",
                (
                    now,
                    outcome,
                    res.status_code,
                    res.error_code,
                    res.cost,
                    run_id,
                    res.custom_id,
                    number,
                ),
            )
        self._settle_twins(conn, run_id, answered, now)
        return ApplyReport(applied=taken, cost=cost, paid_twice=twice, paid_twice_cost=twice_cost)
