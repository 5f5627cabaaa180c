"""Outcomes and real-time claims: applying results, claiming work, crash recovery.

Owns `apply_results` (chunked, idempotent), the real-time claim protocol (`claim_realtime`,
`finish_realtime`, `release_realtime`, `recover_in_flight`) and explicit attempt rows.
Every change is checked against `transitions.REQUEST_TRANSITIONS` and runs in one
`BEGIN IMMEDIATE` unit, so two processes never claim or apply the same request.
It must not create or change batches.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

from batchyard.errors import IllegalTransition, NotFound
from batchyard.models import RequestStatus, Route

from .base import CHUNK, LOOKUP, by_name, chunked, one_by_name, placeholders, record
from .codec import decode_body, encode_body
from .reuse import ReuseMixin
from .rows import ApplyReport, Claim, Result
from .transitions import REQUEST_TERMINAL, check_request

__all__ = ["ResultsMixin"]

_OUTCOMES = (
    RequestStatus.SUCCEEDED,
    RequestStatus.FAILED,
    RequestStatus.RETRYABLE,
    RequestStatus.INVALID,
)
_UNSENT = (RequestStatus.PENDING, RequestStatus.TWIN)
_REALTIME = (Route.STANDARD, Route.FLEX, Route.FAST)

_UPDATE = (
    "UPDATE requests SET status = ?, status_code = ?, response_body = ?, error_code = ?, "
    "error_message = ?, input_tokens = ?, output_tokens = ?, cost = ?, not_before = ?, "
    "owner = NULL, updated_at = ?, finished_at = ?, request_id = ?, "
    "requeues = requeues + ?, requeue_cost = requeue_cost + ? WHERE id = ?"
)
_CLOSE_ATTEMPT = (
    "UPDATE attempts SET finished_at = ?, outcome = ?, status_code = ?, error_code = ?, "
    "cost = ? WHERE run_id = ? AND custom_id = ? AND attempt = ? AND finished_at IS NULL"
)


class ResultsMixin(ReuseMixin):
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
            if old == RequestStatus.IN_FLIGHT:  # batch attempts close when the shard is applied
                closes.append(
                    (
                        now,
                        res.status.value,
                        res.status_code,
                        res.error_code,
                        res.cost,
                        run_id,
                        res.custom_id,
                        row["attempts"],
                    )
                )
            applied += 1
            cost += res.cost
        conn.executemany(_UPDATE, updates)
        conn.executemany(_CLOSE_ATTEMPT, closes)
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
                        now,
                        now,
                        res.request_id,
                        0,
                        0.0,
                        row["id"],
                    ),
                )
                row["status"] = res.status.value
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

    # ---- real-time claims -------------------------------------------------------------
    def claim_realtime(
        self,
        run_id: str,
        *,
        owner: str,
        limit: int,
        routes: Sequence[Route] = _REALTIME,
    ) -> list[Claim]:
        """Atomically take up to `limit` routed/retryable real-time requests for `owner`.

        Highest priority first, then line order; skips retryables whose `not_before` is
        in the future. Each claimed request goes to in_flight, its attempt counter goes
        up and an attempt row is written, all before any call is made (intent first).
        Two processes calling this at once never get the same request.
        """
        routes = [Route(r) for r in routes if Route(r) in _REALTIME]
        if not routes or limit <= 0:
            return []
        now = self.now()
        with self._write() as conn:
            rows = list(
                by_name(
                    conn.execute(
                        "SELECT id, custom_id, line, endpoint, model, route, attempts, status, "
                        "body FROM requests WHERE run_id = ? "
                        "AND status IN ('routed', 'retryable') "
                        "AND route IN ('standard', 'flex', 'fast') "
                        f"AND route IN ({placeholders(len(routes))}) "
                        "AND (not_before IS NULL OR not_before <= ?) "
                        "ORDER BY priority DESC, line LIMIT ?",
                        (run_id, *(r.value for r in routes), now, limit),
                    )
                )
            )
            for r in rows:
                check_request(
                    run_id, r["custom_id"], RequestStatus(r["status"]), RequestStatus.IN_FLIGHT
                )
            conn.executemany(
                "UPDATE requests SET status = 'in_flight', owner = ?, claimed_at = ?, "
                "attempts = attempts + 1, not_before = NULL, updated_at = ? WHERE id = ?",
                [(owner, now, now, r["id"]) for r in rows],
            )
            conn.executemany(
                "INSERT INTO attempts (run_id, custom_id, attempt, route, owner, started_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [(run_id, r["custom_id"], r["attempts"] + 1, r["route"], owner, now) for r in rows],
            )
        claims = []
        for r in rows:
            body = decode_body(r["body"])
            assert body is not None
            claims.append(
                record(Claim, r, route=Route(r["route"]), attempt=r["attempts"] + 1, body=body)
            )
        return claims

    def finish_realtime(self, run_id: str, owner: str, results: Sequence[Result]) -> ApplyReport:
        """Record the outcomes of `owner`'s claimed calls (one transaction).

        A result for a request that is no longer in flight under `owner` (it was
        recovered by another process) is counted `stale` and not applied.
        """
        with self._write() as conn:
            return self._apply(conn, run_id, results, owner=owner)

    def release_realtime(self, run_id: str, owner: str, custom_ids: Iterable[str]) -> int:
        """Give back claims whose call was never made (in_flight -> routed).

        The attempt row stays, closed as 'released', and still counts as an attempt.
        Returns how many were released (ids not in flight under `owner` are skipped).
        """
        ids = list(custom_ids)
        return self._unclaim(run_id, ids, RequestStatus.ROUTED, "released", owner=owner)

    def in_flight_owners(self, run_id: str) -> dict[str, int]:
        """Who holds the run's in-flight claims, and how many each."""
        rows = self.db.conn.execute(
            "SELECT owner, count(*) FROM requests WHERE run_id = ? AND status = 'in_flight' "
            "GROUP BY owner",
            (run_id,),
        )
        return {str(holder): int(count) for holder, count in rows}

    def recover_in_flight(
        self, run_id: str, *, older_than: float | None = None, owner: str | None = None
    ) -> int:
        """On resume: move in_flight requests back to retryable (their attempt is closed
        as 'abandoned'). Only claims older than `older_than` seconds, or of `owner`, when
        given. A request that was in flight at a crash may have reached the API and may be
        billed twice when it is retried; the event written says how many.
        """
        self._require_run(run_id)
        sql = "SELECT custom_id FROM requests WHERE run_id = ? AND status = 'in_flight'"
        params: list[Any] = [run_id]
        if older_than is not None:
            sql += " AND claimed_at < ?"
            params.append(self.now() - older_than)
        if owner is not None:
            sql += " AND owner = ?"
            params.append(owner)
        ids = [cid for (cid,) in self.db.conn.execute(sql, params)]
        n = self._unclaim(run_id, ids, RequestStatus.RETRYABLE, "abandoned", owner=owner)
        if n:
            with self._write() as conn:
                self._event(
                    conn,
                    run_id,
                    "requests.recovered",
                    f"{n} request(s) were in flight at an interruption and will be retried; "
                    "they may be billed twice if the API had already received them.",
                    {"count": n},
                )
        return n

    def _unclaim(
        self, run_id: str, ids: list[str], to: RequestStatus, outcome: str, *, owner: str | None
    ) -> int:
        done = 0
        for chunk in chunked(ids, CHUNK):
            with self._write() as conn:
                now = self.now()
                rows = [
                    r
                    for r in by_name(
                        conn.execute(
                            "SELECT id, custom_id, status, owner, attempts FROM requests "
                            f"WHERE run_id = ? AND custom_id IN ({placeholders(len(chunk))}) "
                            "AND status = 'in_flight'",
                            (run_id, *chunk),
                        )
                    )
                    if owner is None or r["owner"] == owner
                ]
                for r in rows:
                    check_request(run_id, r["custom_id"], RequestStatus(r["status"]), to)
                conn.executemany(
                    "UPDATE requests SET status = ?, owner = NULL, updated_at = ? WHERE id = ?",
                    [(to.value, now, r["id"]) for r in rows],
                )
                closes = [
                    (now, outcome, None, None, None, run_id, r["custom_id"], r["attempts"])
                    for r in rows
                ]
                conn.executemany(_CLOSE_ATTEMPT, closes)
                done += len(rows)
        return done

    def record_attempt(
        self,
        run_id: str,
        custom_id: str,
        *,
        route: Route,
        outcome: str,
        started_at: float,
        status_code: int | None = None,
        error_code: str | None = None,
        cost: float | None = None,
        shard: int | None = None,
    ) -> int:
        """Append a finished attempt for a call made outside a claim; returns its number.

        The request's attempt counter goes up; its status does not change (use
        `apply_results` or `transition_requests` for that).
        """
        with self._write() as conn:
            row = self._lookup_one(conn, run_id, custom_id)
            number = int(row) + 1
            conn.execute(
                "UPDATE requests SET attempts = ?, updated_at = ? "
                "WHERE run_id = ? AND custom_id = ?",
                (number, self.now(), run_id, custom_id),
            )
            conn.execute(
                "INSERT INTO attempts (run_id, custom_id, attempt, route, shard, started_at, "
                "finished_at, outcome, status_code, error_code, cost) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    run_id,
                    custom_id,
                    number,
                    Route(route).value,
                    shard,
                    started_at,
                    self.now(),
                    outcome,
                    status_code,
                    error_code,
                    cost,
                ),
            )
        return number

    def _lookup_one(self, conn: sqlite3.Connection, run_id: str, custom_id: str) -> int:
        row = one_by_name(
            conn.execute(
                "SELECT attempts FROM requests WHERE run_id = ? AND custom_id = ?",
                (run_id, custom_id),
            )
        )
        if row is None:
            raise NotFound(f"Run {run_id} has no request with custom_id '{custom_id}'.")
        return int(row["attempts"])
