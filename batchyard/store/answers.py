"""A run's answers as `fetch` reads them: each finished request's output line, made once
after it finishes, read back in line order.

Owns the `answers` table (one row per finished request: succeeded, failed, invalid or
cancelled) with the line `fetch` writes for it (`outlines`), keyed by the request's row id
and read by `(run_id, line, id)`; and `answers_due`, the finished requests whose line is not
made yet. Every write that finishes a request notes it (`StoreBase._finished`: applying
results, settling twins, reuse, leftovers of a batch, `set_status`), and `_before_commit`
marks it due in that same unit, so a crash loses neither the outcome nor the mark.
`store_answer_lines` makes the due lines; the run driver calls it each round after applying
results, and when a run finishes. A finished request never changes again (the transition
table has no way out of a finished status), so a stored line never goes stale.

Why store the text and not make it when fetching: making a line reads 18 columns and a
compressed answer per request, which took 6x the time of copying the output at a million
lines; reading one narrow table in key order takes about as long as reading the file.
Why not make it while applying results: storing ~1.2 KB more a line inside `apply_results`
took it from ~0.65x to ~0.41x a bare UPDATE of the same rows (`bench/store_bench.py`),
holding the write lock that much longer in every process; marking it due costs a small
insert. A trigger would have marked them without help from the writers, but made applying
results 20% slower.

Also owns the reads `fetch` needs for lines with no stored text (due, still running, or
finished before batchyard stored them): `request_keys`, `request_rows`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Mapping
from typing import Any

from .base import CHUNK, LOOKUP, StoreBase, by_name, chunked, placeholders
from .outlines import PlainLines, Splice
from .requests import _COLS as REQUEST_COLUMNS
from .requests import request_row

__all__ = ["AnswerLine", "AnswersMixin", "answer_line"]

_PAGE = 2000

# A line as `fetch` writes it: its text (UTF-8, newline included), the request's status,
# and 1 when a fallback model answered it (else 0).
AnswerLine = tuple[bytes, str, int]

# What `PlainLines` reads of a row (all `output_line` shows), for each noted request.
_LINE_COLUMNS = (
    "id, run_id, line, custom_id, status, status_code, request_id, response_body, route, "
    "shard, attempts, cost, input_tokens, output_tokens, requeues, requeue_cost, "
    "reused_from, model, fallback"
)
_DUE = "INSERT OR IGNORE INTO answers_due (run_id, id) VALUES (?, ?)"
_STORE = (
    "INSERT OR REPLACE INTO answers (id, run_id, line, text, status, fallback) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)


def _full_rows(conn: sqlite3.Connection, row_ids: list[int]) -> Iterator[dict[str, Any]]:
    """The full rows of at most `LOOKUP` requests by row id, the response as stored."""
    return by_name(
        conn.execute(
            f"SELECT {REQUEST_COLUMNS}, id, response_body FROM requests "
            f"WHERE id IN ({placeholders(len(row_ids))})",
            row_ids,
        )
    )


def _lines(conn: sqlite3.Connection, run_id: str, due: list[int]) -> list[tuple[Any, ...]]:
    """The `answers` rows of the run's requests `due` (finished: their lines)."""
    rows: list[dict[str, Any]] = []
    for part in chunked(due, LOOKUP):
        rows += by_name(
            conn.execute(
                f"SELECT {_LINE_COLUMNS} FROM requests WHERE id IN ({placeholders(len(part))})",
                part,
            )
        )
    batch_ids: dict[int, str | None] = dict(
        conn.execute("SELECT id, provider_batch_id FROM batches WHERE run_id = ?", (run_id,))
    )
    plain = PlainLines(run_id, batch_ids)
    values: list[tuple[Any, ...]] = []
    others: list[int] = []
    for row in rows:
        text = plain(row)  # from the few columns read; a plain line has no fallback
        if text is None:
            others.append(row["id"])
        else:
            values.append((row["id"], run_id, row["line"], text.encode(), row["status"], 0))
    splice = Splice()
    for part in chunked(others, LOOKUP):
        for row in _full_rows(conn, part):
            line = answer_line(run_id, row, plain, splice, batch_ids)
            values.append((row["id"], run_id, row["line"], *line))
    return values


def answer_line(
    run_id: str,
    row: dict[str, Any],
    plain: PlainLines,
    splice: Splice,
    batch_ids: Mapping[int, str | None],
) -> AnswerLine:
    """The output line of a request's full row (`REQUEST_COLUMNS`, `id`, `response_body`
    as stored): `plain`'s text for the common line, else `splice`'s, newline included."""
    text = plain(row)
    if text is None:
        text = splice.line(run_id, request_row(row, raw_response=True), batch_ids) + "\n"
    return text.encode(), row["status"], int(row["fallback"] is not None)


class AnswersMixin(StoreBase):
    def _before_commit(self, conn: sqlite3.Connection) -> None:
        """Note the requests this write unit finished (`_finished`) as due a stored line."""
        super()._before_commit(conn)
        if self._finished_ids:
            conn.executemany(_DUE, dict.fromkeys(self._finished_ids))
            self._finished_ids.clear()

    def store_answer_lines(self, run_id: str, *, chunk_size: int = CHUNK) -> int:
        """Make and store the output lines of the run's requests due one (finished since the
        last call), a write unit per chunk; how many were stored.

        The common line is made from its row's `_LINE_COLUMNS` (`PlainLines`); only the
        others read their full row (35 columns, which cost as much again a line)."""
        stored = 0
        # Read first: most rounds have nothing due, and need not wait for the write lock.
        if self._one("SELECT 1 FROM answers_due WHERE run_id = ? LIMIT 1", (run_id,)) is None:
            return stored
        while True:
            with self._write() as conn:
                due = [
                    row_id
                    for (row_id,) in conn.execute(
                        "SELECT id FROM answers_due WHERE run_id = ? ORDER BY id LIMIT ?",
                        (run_id, chunk_size),
                    )
                ]
                if not due:
                    return stored
                conn.executemany(_STORE, _lines(conn, run_id, due))
                # the lowest ids due: under the write lock, no other is below the last one
                conn.execute(
                    "DELETE FROM answers_due WHERE run_id = ? AND id <= ?", (run_id, due[-1])
                )
            stored += len(due)

    def count_answer_lines(self, run_id: str) -> tuple[int, int]:
        """(requests of the run with a stored line, requests of the run)."""
        self._require_run(run_id)
        stored = self._one("SELECT count(*) FROM answers WHERE run_id = ?", (run_id,))
        total = self._one(
            "SELECT count(*) FROM requests INDEXED BY requests_run_line WHERE run_id = ?",
            (run_id,),
        )
        assert stored is not None and total is not None
        return int(stored[0]), int(total[0])

    def answer_lines(self, run_id: str) -> Iterator[list[tuple[int, int, bytes, str, int]]]:
        """The run's stored lines in line order, a page at a time, each as
        `(line, request id, *AnswerLine)`, from one read (one snapshot)."""
        self._require_run(run_id)
        cursor = self.db.conn.execute(
            "SELECT line, id, text, status, fallback FROM answers "
            "INDEXED BY answers_run_line WHERE run_id = ? ORDER BY line, id",
            (run_id,),
        )
        while page := cursor.fetchmany(_PAGE):
            yield page

    def request_keys(self, run_id: str) -> Iterator[tuple[int, int]]:
        """`(line, row id)` of each of the run's requests in line order (the index alone)."""
        self._require_run(run_id)
        cursor = self.db.conn.execute(
            "SELECT line, id FROM requests INDEXED BY requests_run_line WHERE run_id = ? "
            "ORDER BY line, id",
            (run_id,),
        )
        while page := cursor.fetchmany(_PAGE):
            yield from page

    def request_rows(self, row_ids: list[int]) -> dict[int, dict[str, Any]]:
        """Requests' full rows by row id (`REQUEST_COLUMNS`, `id`, the response as stored,
        for `answer_line`); ids not in the store are left out."""
        found: dict[int, dict[str, Any]] = {}
        for part in chunked(row_ids, LOOKUP):
            for row in _full_rows(self.db.conn, part):
                found[row["id"]] = row
        return found
