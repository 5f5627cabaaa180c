"""The requests of a run as batch lines: what shard planning reads, and a shard's file text.

Owns `batch_candidates` (the routed batch lines not in any shard, with what planning needs
and no body), `batch_candidates_over` (those of them after a line that may be too large for
any batch, found in SQL without reading the others), `batch_candidate_groups` (their
counts per endpoint and model) and `shard_lines` (a shard's lines as they go into its batch
input file, each body pasted in as the compact JSON text the store keeps, never decoded and
encoded again). Lines are read in line order, a page at a time, so planning holds none of
them. Reads only.
"""

from __future__ import annotations

from collections.abc import Iterator

from .base import StoreBase, by_name, record
from .codec import body_text
from .rows import BatchCandidate

__all__ = ["BatchLinesMixin"]

_PAGE = 2000
# m019: (run_id, route, status, shard, endpoint, model, line, est_input_tokens, body_bytes,
# length(custom_id)): a group's waiting lines in line order, and all a round checks of them
_GROUPS = "requests_run_route_status"
_SENT_AGAIN = "requests_sent_again"  # m019: routed lines with attempts > 0, by (run_id, line)


class BatchLinesMixin(StoreBase):
    def batch_candidates(
        self,
        run_id: str,
        *,
        endpoint: str | None = None,
        model: str | None = None,
        sent_before: bool = False,
    ) -> Iterator[BatchCandidate]:
        """Routed batch lines of the run that no shard holds yet (of one endpoint and model
        where given; only lines sent before with `sent_before`), in line order: their size
        and tokens for planning (`body_bytes` None where the line was recorded before sizes
        were kept, or the endpoint counts embedding inputs: read its body then)."""
        if sent_before:  # few or none: their own index, in line order
            return self._batch_lines(run_id, -1, ["attempts > 0"], [], _SENT_AGAIN)
        where: list[str] = []
        params: list[object] = []
        for column, value in (("endpoint", endpoint), ("model", model)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        index = _GROUPS if len(where) == 2 else "requests_run_line"
        return self._batch_lines(run_id, -1, where, params, index)

    def batch_candidates_over(
        self,
        run_id: str,
        *,
        endpoint: str,
        model: str,
        after_line: int,
        body_bytes: int,
        id_chars: int,
        input_tokens: int | None,
    ) -> Iterator[BatchCandidate]:
        """Like `batch_candidates` for one endpoint and model, after `after_line`, but only
        the lines that may be too large for any batch: a body over `body_bytes` (or of a size
        not kept), a custom_id over `id_chars` characters, or over `input_tokens` input
        tokens. Where the queue is full, planning stops reading lines one by one and finds
        with this, in SQL, the lines that must still go to real time this round."""
        over = "body_bytes IS NULL OR body_bytes > ? OR length(custom_id) > ?"
        params: list[object] = [endpoint, model, body_bytes, id_chars]
        if input_tokens is not None:
            over += " OR est_input_tokens > ?"
            params.append(input_tokens)
        where = ["endpoint = ?", "model = ?", f"({over})"]
        return self._batch_lines(run_id, after_line, where, params, _GROUPS)

    def _batch_lines(
        self,
        run_id: str,
        after: int,
        where: list[str],
        params: list[object],
        index: str,
    ) -> Iterator[BatchCandidate]:
        """The unsharded routed batch lines of the run after line `after` that also meet
        every condition in `where`, in line order, read a page at a time through `index`.
        One group's lines are walked in `_GROUPS`, which checks the other conditions from
        the index entry and reads only the rows it yields."""
        self._require_run(run_id)
        base = ["run_id = ?", "line > ?", "status = 'routed'", "route = 'batch'", "shard IS NULL"]
        sql = (
            "SELECT line, custom_id, endpoint, model, body_bytes, est_input_tokens, attempts, "
            "route_reason, est_cost_standard, est_cost_flex, est_cost_batch FROM requests "
            f"INDEXED BY {index} WHERE {' AND '.join(base + where)} "
            "ORDER BY line LIMIT ?"
        )
        while True:
            page = list(by_name(self.db.conn.execute(sql, (run_id, after, *params, _PAGE))))
            if not page:
                return
            for row in page:
                yield record(BatchCandidate, row)
            after = page[-1]["line"]

    def batch_candidate_groups(self, run_id: str) -> dict[tuple[str, str], tuple[int, int]]:
        """Per (endpoint, model): how many routed batch lines no shard holds yet, and their
        input tokens, counted in the index alone (`m019`)."""
        self._require_run(run_id)
        rows = self.db.conn.execute(
            "SELECT endpoint, model, count(*), coalesce(sum(est_input_tokens), 0) "
            f"FROM requests INDEXED BY {_GROUPS} WHERE run_id = ? "
            "AND route = 'batch' AND status = 'routed' AND shard IS NULL "
            "GROUP BY endpoint, model ORDER BY min(line)",
            (run_id,),
        )
        return {(e, m): (int(n), int(tokens)) for e, m, n, tokens in rows}

    def shard_lines(self, run_id: str, shard: int) -> Iterator[tuple[str, str, bytes]]:
        """(custom_id, endpoint, body's compact JSON) of every line of a shard, in line
        order."""
        cursor = self.db.conn.execute(
            "SELECT custom_id, endpoint, body FROM requests WHERE run_id = ? AND shard = ? "
            "ORDER BY line",
            (run_id, shard),
        )
        for custom_id, endpoint, body in cursor:
            yield custom_id, endpoint, body_text(body).encode()
