"""The requests of a run as batch lines: what shard planning reads, and a shard's file text.

Owns `batch_candidates` (the routed batch lines not in any shard, with what planning needs
and no body), `batch_candidate_groups` (their counts per endpoint and model) and
`shard_lines` (a shard's lines as they go into its batch input file, each body pasted in as
the compact JSON text the store keeps, never decoded and encoded again). Lines are read in
line order, a page at a time, so planning holds none of them. Reads only.
"""

from __future__ import annotations

from collections.abc import Iterator

from .base import StoreBase, by_name, record
from .codec import body_text
from .rows import BatchCandidate

__all__ = ["BatchLinesMixin"]

_PAGE = 2000


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
        self._require_run(run_id)
        where = ["run_id = ?", "line > ?", "status = 'routed'", "route = 'batch'", "shard IS NULL"]
        params: list[object] = [run_id]
        for column, value in (("endpoint", endpoint), ("model", model)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if sent_before:
            where.append("attempts > 0")
        sql = (
            "SELECT line, custom_id, endpoint, model, body_bytes, est_input_tokens, attempts, "
            "route_reason, est_cost_standard, est_cost_flex, est_cost_batch FROM requests "
            f"INDEXED BY requests_run_line WHERE {' AND '.join(where)} ORDER BY line LIMIT ?"
        )
        after = -1
        while True:
            page = list(by_name(self.db.conn.execute(sql, (params[0], after, *params[1:], _PAGE))))
            if not page:
                return
            for row in page:
                yield record(BatchCandidate, row)
            after = page[-1]["line"]

    def batch_candidate_groups(self, run_id: str) -> dict[tuple[str, str], tuple[int, int]]:
        """Per (endpoint, model): how many routed batch lines no shard holds yet, and their
        input tokens."""
        self._require_run(run_id)
        rows = self.db.conn.execute(
            "SELECT endpoint, model, count(*), coalesce(sum(est_input_tokens), 0) "
            "FROM requests INDEXED BY requests_run_route_status WHERE run_id = ? "
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
