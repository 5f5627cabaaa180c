"""Real-time claims: taking work for one owner, finishing or releasing it, crash recovery.

Owns the claim protocol (`claim_realtime`, `finish_realtime`, `release_realtime`,
`in_flight_owners`, `recover_in_flight`) and explicit attempt rows (`record_attempt`).
Every change is checked against `transitions.REQUEST_TRANSITIONS` and runs in one
`BEGIN IMMEDIATE` unit, so two processes never claim the same request. Outcomes are
applied by `results.py`. It must not create or change batches.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

from batchyard.errors import NotFound
from batchyard.models import RequestStatus, Route

from .base import CHUNK, by_name, chunked, one_by_name, placeholders, record
from .codec import decode_body
from .results import CLOSE_ATTEMPT, REALTIME_ROUTES, ResultsMixin
from .rows import ApplyReport, Claim, FailedSend, Result
from .transitions import check_request

__all__ = ["ClaimsMixin"]


class ClaimsMixin(ResultsMixin):
    def claim_realtime(
        self,
        run_id: str,
        *,
        owner: str,
        limit: int,
        routes: Sequence[Route] = REALTIME_ROUTES,
    ) -> list[Claim]:
        """Atomically take up to `limit` routed/retryable real-time requests for `owner`.

        Highest priority first, then line order; skips retryables whose `not_before` is
        in the future. Each claimed request goes to in_flight, its attempt counter goes
        up and an attempt row is written, all before any call is made (intent first).
        Two processes calling this at once never get the same request.
        """
        routes = [Route(r) for r in routes if Route(r) in REALTIME_ROUTES]
        if not routes or limit <= 0:
            return []
        now = self.now()
        with self._write() as conn:
            rows = list(
                by_name(
                    conn.execute(
                        "SELECT id, custom_id, line, endpoint, model, route, attempts, status, "
                        "body, faults FROM requests WHERE run_id = ? "
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
                "attempts = attempts + 1, not_before = NULL, not_before_reason = NULL, "
                "updated_at = ? WHERE id = ?",
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

    def finish_realtime(
        self,
        run_id: str,
        owner: str,
        results: Sequence[Result],
        sends: Sequence[FailedSend] = (),
    ) -> ApplyReport:
        """Record the outcomes of `owner`'s claimed calls and the sends that failed and were
        tried again before them (one transaction; the sends first).

        A result for a request that is no longer in flight under `owner` (it was
        recovered by another process) is counted `stale` and not applied.
        """
        with self._write() as conn:
            self._record_failed_sends(conn, run_id, owner, sends)
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
                    (
                        now,
                        outcome,
                        None,
                        None,
                        None,
                        None,
                        None,
                        run_id,
                        r["custom_id"],
                        r["attempts"],
                    )
                    for r in rows
                ]
                conn.executemany(CLOSE_ATTEMPT, closes)
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
