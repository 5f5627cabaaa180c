"""Requests: routing a run's lines, reading them back, checked changes.

Owns the bulk changes of the `requests` table (chunked, one transaction per chunk; the
first recording of a file's lines is `recording.py`) and the paged reads (never the whole
run in memory). Every status change here is checked against
`transitions.REQUEST_TRANSITIONS`. Totals are in `summary.py`, results in `results.py`,
real-time claims in `claims.py`; it must not touch batches beyond reading a shard's status.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from batchyard.errors import IllegalTransition, NotFound
from batchyard.models import BatchStatus, RequestStatus, Route

from .base import (
    CHUNK,
    LOOKUP,
    StoreBase,
    by_name,
    chunked,
    one_by_name,
    placeholders,
    record,
)
from .codec import body_text, decode_body
from .rows import RequestRow
from .transitions import PROVIDER_TERMINAL, REQUEST_TERMINAL, check_request

__all__ = ["RequestsMixin"]

_COLS = (
    "run_id, custom_id, line, endpoint, model, priority, est_input_tokens, est_output_tokens, "
    "est_cost_standard, est_cost_flex, est_cost_batch, route, route_reason, status, attempts, "
    "shard, owner, not_before, status_code, error_code, error_message, input_tokens, "
    "output_tokens, cost, updated_at, finished_at, request_id, max_output_tokens, fingerprint, "
    "reused_from, saved, requeues, requeue_cost, fallback, not_before_reason"
)
_BATCH_HOLD = "status = 'routed' AND route = 'batch' AND ? <> 'batch'"  # old row, new route
_SHARD_DONE = {s.value for s in PROVIDER_TERMINAL} | {BatchStatus.APPLIED.value}
_REROUTABLE = {
    s.value for s in (RequestStatus.PENDING, RequestStatus.ROUTED, RequestStatus.RETRYABLE)
}


def request_row(r: dict[str, Any], *, raw_response: bool = False) -> RequestRow:
    """The record of a `requests` row read with `_COLS` (and `body`, `response_body` when
    selected: they stay None otherwise). `raw_response`: the response body is kept as its
    stored JSON text (`response_text`), not decoded."""
    response = r.get("response_body")
    text = body_text(response) if raw_response and response is not None else None
    return record(
        RequestRow,
        r,
        route=Route(r["route"]) if r["route"] is not None else None,
        status=RequestStatus(r["status"]),
        body=decode_body(r.get("body")),
        response_body=None if raw_response else decode_body(response),
        response_text=text,
        reused_from=json.loads(r["reused_from"]) if r["reused_from"] else None,
        fallback=json.loads(r["fallback"]) if r["fallback"] else None,
    )


class RequestsMixin(StoreBase):
    def _lookup(
        self, conn: sqlite3.Connection, run_id: str, ids: Sequence[str], cols: str
    ) -> dict[str, dict[str, Any]]:
        """custom_id -> {column: value} of `cols` for the ids that exist; raises NotFound for
        any missing."""
        found: dict[str, dict[str, Any]] = {}
        for part in chunked(ids, LOOKUP):
            for row in by_name(
                conn.execute(
                    f"SELECT custom_id, {cols} FROM requests WHERE run_id = ? AND custom_id IN "
                    f"({placeholders(len(part))})",
                    (run_id, *part),
                )
            ):
                found[row["custom_id"]] = row
        missing = [i for i in ids if i not in found]
        if missing:
            shown = ", ".join(repr(m) for m in missing[:5])
            raise NotFound(f"Run {run_id} has no request(s) with custom_id {shown}.")
        return found

    def set_routes(
        self,
        run_id: str,
        routes: Iterable[tuple[str, Route, str]],
        *,
        chunk_size: int = CHUNK,
        pending_only: bool = False,
        unless_taken: bool = False,
    ) -> int:
        """Record the router's (custom_id, route, reason) decisions: -> routed, checked.

        A re-route (routed or retryable -> routed) leaves the request's old shard, which
        must be finished: a request in a live or planned shard cannot be re-routed.
        `pending_only`: a request no longer pending (answered meanwhile) is left as it is.
        `unless_taken`: so is a request that has been sent, or put in a live or planned
        shard, since the caller read it (decisions made from an earlier read, while other
        processes drive the same run). Returns the number of requests routed.
        """
        self._require_run(run_id)
        total = 0
        for chunk in chunked(routes, chunk_size):
            with self._write() as conn:
                ids = [c[0] for c in chunk]
                cur = self._lookup(conn, run_id, ids, "id, status, shard")
                shard_status = self._shard_statuses(conn, {v["shard"] for v in cur.values()})
                now = self.now()
                updates = []
                for custom_id, route, reason in chunk:
                    row = cur[custom_id]
                    shard = row["shard"]
                    if pending_only and row["status"] != RequestStatus.PENDING.value:
                        continue
                    live = shard is not None and shard_status[shard] not in _SHARD_DONE
                    if unless_taken and (live or row["status"] not in _REROUTABLE):
                        continue
                    check_request(
                        run_id, custom_id, RequestStatus(row["status"]), RequestStatus.ROUTED
                    )
                    if live:
                        raise IllegalTransition(
                            f"Request '{custom_id}' of run {run_id} is in batch shard {shard} "
                            f"({shard_status[shard]}); it cannot be re-routed until that "
                            "shard is finished or cancelled."
                        )
                    value = Route(route).value
                    updates.append((value, reason, value, value, now, row["id"]))
                # A routed batch line's wait (`waits.hold`: lines of a failed batch waiting
                # to be re-submitted) is the batch path's: moved elsewhere, it goes as its
                # new route says.
                conn.executemany(
                    "UPDATE requests SET route = ?, route_reason = ?, "
                    f"not_before = CASE WHEN {_BATCH_HOLD} THEN NULL ELSE not_before END, "
                    f"not_before_reason = CASE WHEN {_BATCH_HOLD} THEN NULL "
                    "ELSE not_before_reason END, "
                    "status = 'routed', shard = NULL, updated_at = ? WHERE id = ?",
                    updates,
                )
            total += len(updates)
        return total

    def release_shard(self, run_id: str, shard: int, route: Route, reason: str) -> int:
        """Send the lines of a shard whose cancel is still pending to `route` (real time).

        For when the cancel has not finished by the last moment real time can still start:
        the deadline comes first. The lines leave the shard (`submitted` -> `routed`); the
        shard's attempt stays open, so when the cancelled shard is applied its answers for
        them are either taken (line not yet sent again) or recorded as paid twice. Returns
        how many lines were released.
        """
        self._require_run(run_id)
        with self._write() as conn:
            found = one_by_name(
                conn.execute(
                    "SELECT status FROM batches WHERE id = ? AND run_id = ?", (shard, run_id)
                )
            )
            status = found["status"] if found else "unknown"
            if status != BatchStatus.CANCELLING.value:
                raise IllegalTransition(
                    f"Shard {shard} of run {run_id} is {status}: "
                    "only the lines of a shard still cancelling can be released."
                )
            n = conn.execute(
                "UPDATE requests SET route = ?, route_reason = ?, status = 'routed', "
                "shard = NULL, updated_at = ? "
                "WHERE run_id = ? AND shard = ? AND status = 'submitted'",
                (Route(route).value, reason, self.now(), run_id, shard),
            ).rowcount
            if n:
                self._event(
                    conn,
                    run_id,
                    "route.release",
                    f"{n} line(s) of shard {shard} sent to {Route(route).value}: {reason}",
                    {"released": n, "route": Route(route).value},
                    shard=shard,
                )
        return int(n)

    def _shard_statuses(self, conn: sqlite3.Connection, shards: set[Any]) -> dict[int, str]:
        shards.discard(None)
        if not shards:
            return {}
        rows = conn.execute(
            f"SELECT id, status FROM batches WHERE id IN ({placeholders(len(shards))})",
            tuple(shards),
        )
        return {shard: status for shard, status in rows}

    def transition_requests(
        self,
        run_id: str,
        custom_ids: Iterable[str],
        to: RequestStatus,
        *,
        error_code: str | None = None,
        error_message: str | None = None,
        chunk_size: int = CHUNK,
    ) -> int:
        """Move requests to `to`, each change checked; a chunk with one illegal change
        is not written at all. Terminal targets set finished_at. Returns the count."""
        self._require_run(run_id)
        terminal = to in REQUEST_TERMINAL
        total = 0
        for chunk in chunked(custom_ids, chunk_size):
            with self._write() as conn:
                cur = self._lookup(conn, run_id, chunk, "id, status")
                now = self.now()
                for custom_id in chunk:
                    check_request(run_id, custom_id, RequestStatus(cur[custom_id]["status"]), to)
                conn.executemany(
                    "UPDATE requests SET status = ?, updated_at = ?, owner = NULL, "
                    "finished_at = ?, error_code = coalesce(?, error_code), "
                    "error_message = coalesce(?, error_message) WHERE id = ?",
                    [
                        (
                            to.value,
                            now,
                            now if terminal else None,
                            error_code,
                            error_message,
                            cur[c]["id"],
                        )
                        for c in chunk
                    ],
                )
                if terminal:
                    self._finished(run_id, (cur[c]["id"] for c in chunk))
            total += len(chunk)
        return total

    def iter_requests(
        self,
        run_id: str,
        *,
        statuses: Sequence[RequestStatus] | None = None,
        routes: Sequence[Route] | None = None,
        shard: int | None = None,
        with_body: bool = False,
        with_response: bool = False,
        raw_response: bool = False,
        page_size: int = 1000,
    ) -> Iterator[RequestRow]:
        """The run's requests in line order, filtered, fetched `page_size` at a time.

        `raw_response`: the response body as its stored JSON text (`response_text`), not
        decoded (for writing it out as it is)."""
        rows = self._request_rows(
            run_id, statuses, routes, shard, with_body, with_response or raw_response, page_size
        )
        for r in rows:
            yield request_row(r, raw_response=raw_response)

    def _request_rows(
        self,
        run_id: str,
        statuses: Sequence[RequestStatus] | None,
        routes: Sequence[Route] | None,
        shard: int | None,
        with_body: bool,
        with_response: bool,
        page_size: int,
    ) -> Iterator[dict[str, Any]]:
        self._require_run(run_id)
        where, params = ["run_id = ?"], [run_id]
        params_any: list[Any] = params
        if statuses:
            where.append(f"status IN ({placeholders(len(statuses))})")
            params.extend(RequestStatus(s).value for s in statuses)
        if routes:
            where.append(f"route IN ({placeholders(len(routes))})")
            params.extend(Route(r).value for r in routes)
        if shard is not None:
            where.append("shard = ?")
            params_any.append(shard)
        # A shard's rows are a small part of a run: walk its own index, not the run's.
        hint = "INDEXED BY requests_shard" if shard is not None else ""
        extra = (", body" if with_body else "") + (", response_body" if with_response else "")
        sql = (
            f"SELECT {_COLS}, id{extra} FROM requests {hint} WHERE {' AND '.join(where)} "
            "AND (line, id) > (?, ?) ORDER BY line, id LIMIT ?"
        )
        after: tuple[int, int] = (-(2**62), 0)
        while True:
            page = list(by_name(self.db.conn.execute(sql, (*params, *after, page_size))))
            yield from page
            if len(page) < page_size:
                return
            after = (page[-1]["line"], page[-1]["id"])

    def get_request(self, run_id: str, custom_id: str, *, with_body: bool = True) -> RequestRow:
        """One request (with its body and response unless `with_body=False`)."""
        extra = ", body, response_body" if with_body else ""
        r = one_by_name(
            self.db.conn.execute(
                f"SELECT {_COLS}{extra} FROM requests WHERE run_id = ? AND custom_id = ?",
                (run_id, custom_id),
            )
        )
        if r is None:
            self._require_run(run_id)
            raise NotFound(f"Run {run_id} has no request with custom_id '{custom_id}'.")
        return request_row(r)

    def get_bodies(self, run_id: str, custom_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """custom_id -> request body, for the given ids (NotFound if one is missing)."""
        ids = list(custom_ids)
        found = self._lookup(self.db.conn, run_id, ids, "body")
        out: dict[str, dict[str, Any]] = {}
        for i in ids:
            body = decode_body(found[i]["body"])
            assert body is not None
            out[i] = body
        return out
