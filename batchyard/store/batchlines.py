"""The requests of a run as batch lines: what shard planning reads, and a shard's file text.

Owns `batch_candidates` (the routed batch lines not in any shard, with what planning needs
and no body) and `shard_lines` (a shard's lines as they go into its batch input file, each
body pasted in as the compact JSON text the store keeps, never decoded and encoded again).
Both read a run's lines in line order, a page at a time. Reads only.
"""

from __future__ import annotations

from collections.abc import Iterator

from .base import StoreBase, by_name, record
from .codec import body_text
from .rows import BatchCandidate

__all__ = ["BatchLinesMixin"]

_PAGE = 2000


class BatchLinesMixin(StoreBase):
    def batch_candidates(self, run_id: str) -> Iterator[BatchCandidate]:
        """Routed batch lines of the run that no shard holds yet, in line order: their
        size and tokens for planning (`body_bytes` None where the line was recorded before
        sizes were kept, or the endpoint counts embedding inputs: read its body then)."""
        self._require_run(run_id)
        after = -1
        while True:
            page = list(
                by_name(
                    self.db.conn.execute(
                        "SELECT line, custom_id, endpoint, model, body_bytes, est_input_tokens, "
                        "attempts, route_reason, est_cost_standard, est_cost_flex, "
                        "est_cost_batch FROM requests INDEXED BY requests_run_line "
                        "WHERE run_id = ? AND line > ? AND status = 'routed' "
                        "AND route = 'batch' AND shard IS NULL ORDER BY line LIMIT ?",
                        (run_id, after, _PAGE),
                    )
                )
            )
            if not page:
                return
            for row in page:
                yield record(BatchCandidate, row)
            after = page[-1]["line"]

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
