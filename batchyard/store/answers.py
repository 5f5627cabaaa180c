"""A run's answers as `fetch` reads them: each finished line's output text, made when its
outcome is written, read back in line order.

Owns the `answers` table: one row per finished request (succeeded, failed, invalid or
cancelled) holding the line `fetch` writes for it (`outlines`), keyed by the request's row
id and read by `(run_id, line, id)`. Every write that finishes a request notes its row id
(`StoreBase._finished`: applying results, settling twins, reuse, leftovers of a batch,
`set_status`); `_before_commit` makes their lines and stores them before that unit commits,
so a crash loses both or neither. A finished request never changes again (the transition
table has no way out of a finished status), so a stored line never goes stale. A trigger
would have noted them without help from the writers, but made applying results 20% slower.

Why store the text and not make it when fetching: making a line reads 18 columns and a
compressed answer per request, which took 6x the time of copying the output at a million
lines; reading one narrow table in key order takes about as long as reading the file.
The cost is paid once, a line at a time, when its outcome is written.

Also owns the reads `fetch` needs for lines with no stored text (still running, or
finished before batchyard stored texts): `request_keys`, `request_rows`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Mapping
from typing import Any

from .base import LOOKUP, StoreBase, by_name, chunked, placeholders
from .outlines import PlainLines, Splice
from .requests import _COLS as REQUEST_COLUMNS
from .requests import request_row

__all__ = ["AnswerLine", "AnswersMixin", "answer_text"]

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
_STORE = (
    "INSERT OR REPLACE INTO answers (id, run_id, line, status, fallback, text) "
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


def answer_text(
    run_id: str,
    row: dict[str, Any],
    plain: PlainLines,
    splice: Splice,
    batch_ids: Mapping[int, str | None],
) -> str:
    """The output line of a request's full row (`REQUEST_COLUMNS`, `id`, `response_body`
    as stored), newline included: `plain`'s text for the common line, else `splice`'s."""
    text = plain(row)
    if text is None:
        _, text = splice.line(run_id, request_row(row, raw_response=True), batch_ids)
        text += "\n"
    return text


class AnswersMixin(StoreBase):
    def _before_commit(self, conn: sqlite3.Connection) -> None:
        """Store the output lines of the requests this write unit finished (`_finished`).

        The common line is made from its row's `_LINE_COLUMNS` (`PlainLines`); only the
        others read their full row (35 columns, which cost as much again a line)."""
        super()._before_commit(conn)
        due = list(dict.fromkeys(self._finished_ids))
        self._finished_ids.clear()
        if not due:
            return
        rows: list[dict[str, Any]] = []
        for part in chunked(due, LOOKUP):
            rows += by_name(
                conn.execute(
                    f"SELECT {_LINE_COLUMNS} FROM requests WHERE id IN ({placeholders(len(part))})",
                    part,
                )
            )
        shards = list({r["shard"] for r in rows if r["shard"] is not None})
        batch_ids: dict[int, str | None] = {}
        for part in chunked(shards, LOOKUP):
            batch_ids.update(
                conn.execute(
                    "SELECT id, provider_batch_id FROM batches "
                    f"WHERE id IN ({placeholders(len(part))})",
                    part,
                )
            )
        plains: dict[str, PlainLines] = {}
        values: list[tuple[Any, ...]] = []
        others: list[int] = []
        for row in rows:
            run_id = row["run_id"]
            plain = plains.get(run_id) or plains.setdefault(run_id, PlainLines(run_id, batch_ids))
            text = plain(row)
            if text is None:
                others.append(row["id"])
                continue
            values.append((row["id"], run_id, row["line"], row["status"], 0, text.encode()))
        splice = Splice()
        for part in chunked(others, LOOKUP):
            for row in _full_rows(conn, part):
                run_id = row["run_id"]
                text = answer_text(run_id, row, plains[run_id], splice, batch_ids)
                fallback = int(row["fallback"] is not None)
                values.append(
                    (row["id"], run_id, row["line"], row["status"], fallback, text.encode())
                )
        conn.executemany(_STORE, values)

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
        for `answer_text`); ids not in the store are left out."""
        found: dict[int, dict[str, Any]] = {}
        for part in chunked(row_ids, LOOKUP):
            for row in _full_rows(self.db.conn, part):
                found[row["id"]] = row
        return found
