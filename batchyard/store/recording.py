"""Recording a file's lines: one `requests` row per line, a block per transaction.

Owns `request_values` (the row a `NewRequest` becomes, in `INSERT_COLUMNS` order),
`add_requests` (streamed `NewRequest`s, chunked) and `add_request_values` (rows already
made, a block at a time). The second exists so that the Python work of making rows can be
done elsewhere, in worker processes that each make the rows of a part of a large file,
while this process only inserts them: on a million-line file, making the rows costs about
as much as inserting them. Both write the same rows the same way: each block is committed
whole or not at all, the run's request count grows with it, and a duplicate custom_id
raises `StoreError` naming both lines.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

from batchyard.errors import StoreError

from .base import CHUNK, LOOKUP, StoreBase, chunked, one_by_name, placeholders
from .codec import DEFAULT_MIN_BYTES, encode_sized
from .rows import NewRequest

__all__ = ["INSERT_COLUMNS", "RecordingMixin", "request_values"]

INSERT_COLUMNS = (
    "run_id",
    "custom_id",
    "line",
    "endpoint",
    "model",
    "priority",
    "body",
    "body_bytes",
    "est_input_tokens",
    "est_output_tokens",
    "est_cost_standard",
    "est_cost_flex",
    "est_cost_batch",
    "max_output_tokens",
    "status",
    "updated_at",
    "fingerprint",
    "route",
    "route_reason",
    "reuse_of",
)
_INSERT = (
    f"INSERT INTO requests ({', '.join(INSERT_COLUMNS)}) "
    f"VALUES ({placeholders(len(INSERT_COLUMNS))})"
)
_CUSTOM_ID, _LINE = INSERT_COLUMNS.index("custom_id"), INSERT_COLUMNS.index("line")

Values = tuple[Any, ...]


def request_values(
    run_id: str, now: float, r: NewRequest, min_bytes: int = DEFAULT_MIN_BYTES
) -> Values:
    """The row `r` is recorded as (`INSERT_COLUMNS`): routed where it carries its route, a
    twin where it names its first line, else pending; its body as given (`stored_body`)
    or encoded here, compressed from `min_bytes`."""
    stored = (r.stored_body, r.body_bytes) if r.body is None else encode_sized(r.body, min_bytes)
    return (
        run_id,
        r.custom_id,
        r.line,
        r.endpoint,
        r.model,
        r.priority,
        *stored,
        r.input_tokens,
        r.output_tokens,
        r.cost_standard,
        r.cost_flex,
        r.cost_batch,
        r.max_output_tokens,
        "twin" if r.twin_of else "pending" if r.route is None else "routed",
        now,
        r.fingerprint,
        None if r.route is None else r.route.value,
        r.reason,
        r.twin_of,
    )


class RecordingMixin(StoreBase):
    def add_requests(
        self, run_id: str, requests: Iterable[NewRequest], *, chunk_size: int = CHUNK
    ) -> int:
        """Record input lines, `chunk_size` rows per transaction: pending, or routed where
        the request carries its route (the plan's, recorded in the same insert).

        Streams: `requests` may be a generator over a file of any size. Each chunk is
        committed whole or not at all; a duplicate custom_id raises `StoreError` and
        leaves that chunk unwritten. Returns the number of rows recorded.
        """
        self._require_run(run_id)
        minimum = self.compress_min_bytes
        blocks = (
            [request_values(run_id, self.now(), r, minimum) for r in chunk]
            for chunk in chunked(requests, chunk_size)
        )
        return self.add_request_values(run_id, blocks)

    def add_request_values(self, run_id: str, blocks: Iterable[Sequence[Values]]) -> int:
        """Record rows made by `request_values` for this run, one transaction per block
        (as `add_requests`); returns the number of rows recorded."""
        self._require_run(run_id)
        total = 0
        for rows in blocks:
            try:
                with self._write() as conn:
                    conn.executemany(_INSERT, rows)
                    conn.execute(
                        "UPDATE runs SET request_count = request_count + ?, updated_at = ? "
                        "WHERE id = ?",
                        (len(rows), self.now(), run_id),
                    )
            except sqlite3.IntegrityError as exc:
                raise StoreError(self._duplicate_message(run_id, rows, exc)) from exc
            total += len(rows)
        with self._write() as conn:
            self._event(
                conn, run_id, "requests.added", f"Recorded {total} request(s)", {"count": total}
            )
        return total

    def _duplicate_message(
        self, run_id: str, rows: Sequence[Values], exc: sqlite3.IntegrityError
    ) -> str:
        seen: dict[str, int] = {}
        for row in rows:
            custom_id, line = row[_CUSTOM_ID], row[_LINE]
            if custom_id in seen:
                return (
                    f"custom_id '{custom_id}' appears on line {seen[custom_id]} and "
                    f"line {line}; each request needs its own custom_id."
                )
            seen[custom_id] = line
        for part in chunked(list(seen), LOOKUP):
            hit = one_by_name(
                self.db.conn.execute(
                    f"SELECT custom_id, line FROM requests WHERE run_id = ? AND custom_id IN "
                    f"({placeholders(len(part))}) LIMIT 1",
                    (run_id, *part),
                )
            )
            if hit:
                cid = hit["custom_id"]
                return (
                    f"custom_id '{cid}' (line {seen[cid]}) is already recorded for "
                    f"run {run_id} at line {hit['line']}; each request needs its own custom_id."
                )
        return f"Cannot record requests for run {run_id}: {exc}."
