"""A run's answers as `fetch` reads them: few columns, in line order, a page at a time.

Owns `answer_rows` (each request's row with only what an output line shows, its response
as stored) and `request_row_by_id` (one request's full row, for the lines `fetch` writes
from a record). Reading fewer columns and building no record per row is what keeps
writing a large run's results near the speed of copying a file. Reads only.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .base import StoreBase, by_name, one_by_name
from .requests import _COLS as REQUEST_COLUMNS

__all__ = ["ANSWER_COLUMNS", "AnswersMixin"]

# What an output line shows of a request (`fetch.output_line`), and `id` to page by.
ANSWER_COLUMNS = (
    "id, line, custom_id, status, status_code, request_id, response_body, route, shard, "
    "attempts, cost, input_tokens, output_tokens, requeues, requeue_cost, reused_from, "
    "model, fallback"
)
_PAGE = 2000


class AnswersMixin(StoreBase):
    def answer_rows(self, run_id: str) -> Iterator[dict[str, Any]]:
        """Every request of the run in line order, by column name, with `ANSWER_COLUMNS`
        only (`response_body` as stored: text, or compressed bytes)."""
        self._require_run(run_id)
        sql = (
            f"SELECT {ANSWER_COLUMNS} FROM requests INDEXED BY requests_run_line "
            "WHERE run_id = ? AND (line, id) > (?, ?) ORDER BY line, id LIMIT ?"
        )
        after: tuple[int, int] = (-(2**62), 0)
        while True:
            page = list(by_name(self.db.conn.execute(sql, (run_id, *after, _PAGE))))
            yield from page
            if len(page) < _PAGE:
                return
            after = (page[-1]["line"], page[-1]["id"])

    def request_row_by_id(self, row_id: int) -> dict[str, Any]:
        """One request's full row by its row id, its response as stored (for
        `request_row(row, raw_response=True)`)."""
        row = one_by_name(
            self.db.conn.execute(
                f"SELECT {REQUEST_COLUMNS}, id, response_body FROM requests WHERE id = ?",
                (row_id,),
            )
        )
        assert row is not None  # the id came from this store a moment ago
        return row
