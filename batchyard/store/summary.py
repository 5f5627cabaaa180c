"""Totals over the requests table: per-run summaries and counts, open load, paid twice, and
the output-token evidence the router learns from.

Owns the aggregate reads of `requests` (`totals`, and `summary`, `open_load` and
`open_cost` added up from it; `count_requests`, `paid_twice`, `output_evidence`),
`RunTotals` and `output_quantile`. Reads only; the rows themselves are written and read in
`requests.py`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from batchyard.models import RequestStatus, Route

from .base import StoreBase, by_name, record
from .rows import OutputEvidence, StatusTotals, SummaryRow
from .transitions import REQUEST_TERMINAL

__all__ = ["EST_COST_SQL", "RunTotals", "SummaryMixin", "output_quantile"]

# Estimated cost of a request on the route it was given (standard until routed).
EST_COST_SQL = (
    "CASE route WHEN 'flex' THEN coalesce(est_cost_flex, est_cost_standard) "
    "WHEN 'batch' THEN coalesce(est_cost_batch, est_cost_standard) "
    "ELSE est_cost_standard END"
)
# The same, for the budget's reserve: a cost of 0 on a route counts as unpriced.
_RESERVED_SQL = (
    "CASE route WHEN 'batch' THEN coalesce(nullif(est_cost_batch, 0), est_cost_standard) "
    "WHEN 'flex' THEN coalesce(nullif(est_cost_flex, 0), est_cost_standard) "
    "ELSE est_cost_standard END"
)
_FAILED = (RequestStatus.FAILED, RequestStatus.INVALID)
_NO_LOAD = REQUEST_TERMINAL | {RequestStatus.TWIN}  # twins wait on another line's answer


@dataclass(frozen=True, slots=True)
class RunTotals:
    """A run's requests summed per (model, route, status), in (model, route, status)
    order: the few rows every report of a run's totals is added up from in Python."""

    rows: list[StatusTotals]

    def summary(self) -> list[SummaryRow]:
        """Per (model, route), in that order: requests, outcomes, costs, tokens."""
        found: dict[tuple[str, Route | None], list[StatusTotals]] = {}
        for t in self.rows:
            found.setdefault((t.model, t.route), []).append(t)
        return [_summary_row(model, route, parts) for (model, route), parts in found.items()]

    def open_load(self) -> dict[str, tuple[int, int]]:
        """Per model, the unfinished requests: (count, tokens charged against TPM)."""
        load: dict[str, tuple[int, int]] = {}
        for t in self.rows:
            if t.status not in _NO_LOAD:
                count, tokens = load.get(t.model, (0, 0))
                load[t.model] = (count + t.requests, tokens + int(t.load_tokens))
        return load

    def open_cost(self, statuses: Sequence[RequestStatus]) -> float:
        """What the requests in `statuses` are expected to cost on the routes they have."""
        wanted = {RequestStatus(s) for s in statuses}
        return sum((t.reserved_cost for t in self.rows if t.status in wanted), 0.0)


def _summary_row(model: str, route: Route | None, parts: list[StatusTotals]) -> SummaryRow:
    def count(statuses: Collection[RequestStatus], inside: bool = True) -> int:
        return sum(t.requests for t in parts if (t.status in statuses) == inside)

    return SummaryRow(
        model=model,
        route=route,
        requests=sum(t.requests for t in parts),
        succeeded=count((RequestStatus.SUCCEEDED,)),
        failed=count(_FAILED),
        open=count(REQUEST_TERMINAL, inside=False),
        estimated_cost=sum(t.estimated_cost for t in parts),
        actual_cost=sum(t.actual_cost for t in parts),
        est_input_tokens=int(sum(t.est_input_tokens for t in parts)),
        est_output_tokens=int(sum(t.est_output_tokens for t in parts)),
        input_tokens=int(sum(t.input_tokens for t in parts)),
        output_tokens=int(sum(t.output_tokens for t in parts)),
        invalid=count((RequestStatus.INVALID,)),
        reused=sum(t.reused for t in parts),
        saved=sum(t.saved for t in parts),
        requeues=sum(t.requeues for t in parts),
        requeue_cost=sum(t.requeue_cost for t in parts),
    )


def output_quantile(
    conn: sqlite3.Connection,
    model: str,
    endpoint: str,
    n: int,
    quantile: float,
    run_id: str | None = None,
) -> int:
    """The `quantile` of the output tokens of `n` succeeded requests (of one run)."""
    where = " AND run_id = ?" if run_id is not None else ""
    params: list[object] = [model, endpoint, *([run_id] if run_id is not None else [])]
    (high,) = conn.execute(
        "SELECT output_tokens FROM requests WHERE status = 'succeeded' "
        f"AND output_tokens IS NOT NULL AND model = ? AND endpoint = ?{where} "
        "ORDER BY output_tokens LIMIT 1 OFFSET ?",
        (*params, min(n - 1, int(quantile * n))),
    ).fetchone()
    return int(high)


class SummaryMixin(StoreBase):
    def totals(self, run_id: str) -> RunTotals:
        """The run's requests summed per (model, route, status) in one pass over its rows:
        what `summary`, `open_load` and `open_cost` report, for a caller (`status`) that
        needs all three of a run of any size."""
        self._require_run(run_id)
        rows = self.db.conn.execute(
            "SELECT model, route, status, count(*) AS requests, "
            f"total({EST_COST_SQL}) AS estimated_cost, total({_RESERVED_SQL}) AS reserved_cost, "
            "total(cost) AS actual_cost, total(est_input_tokens) AS est_input_tokens, "
            "total(est_output_tokens) AS est_output_tokens, "
            "total(CASE WHEN reused_from IS NULL THEN input_tokens END) AS input_tokens, "
            "total(CASE WHEN reused_from IS NULL THEN output_tokens END) AS output_tokens, "
            "sum(reused_from IS NOT NULL) AS reused, total(saved) AS saved, "
            "sum(requeues) AS requeues, total(requeue_cost) AS requeue_cost, "
            "total(est_input_tokens + coalesce(max_output_tokens, est_output_tokens)) "
            "AS load_tokens "
            "FROM requests WHERE run_id = ? GROUP BY model, route, status "
            "ORDER BY model, route, status",
            (run_id,),
        )
        return RunTotals(
            [
                record(
                    StatusTotals,
                    r,
                    route=Route(r["route"]) if r["route"] else None,
                    status=RequestStatus(r["status"]),
                )
                for r in by_name(rows)
            ]
        )

    def open_load(self, run_id: str) -> dict[str, tuple[int, int]]:
        """Per model, the run's unfinished requests: (count, tokens charged against TPM:
        input plus the output cap, or the estimated output where there is no cap)."""
        return self.totals(run_id).open_load()

    def open_cost(self, run_id: str, statuses: Sequence[RequestStatus]) -> float:
        """What the run's requests in `statuses` are expected to cost on the routes they
        have now (a cost of 0 on a route counts as unpriced: the standard price is used)."""
        return self.totals(run_id).open_cost(statuses)

    def paid_twice(self, run_id: str) -> tuple[int, float]:
        """(lines, USD) a released shard answered after they were sent again: billed twice,
        the price of holding the deadline."""
        self._require_run(run_id)
        count, cost = self.db.conn.execute(
            "SELECT count(*), coalesce(sum(cost), 0) FROM attempts "
            "WHERE run_id = ? AND outcome = 'paid_twice'",
            (run_id,),
        ).fetchone()
        return int(count), float(cost)

    def count_requests(self, run_id: str) -> dict[tuple[Route | None, RequestStatus], int]:
        """How many of the run's requests are in each (route, status)."""
        self._require_run(run_id)
        rows = self.db.conn.execute(
            "SELECT route, status, count(*) FROM requests WHERE run_id = ? GROUP BY 1, 2",
            (run_id,),
        )
        return {
            (Route(route) if route else None, RequestStatus(status)): count
            for route, status, count in rows
        }

    def has_requests(self, run_id: str, route: Route, status: RequestStatus) -> bool:
        """Whether any of the run's requests is on `route` in `status`: one index seek, where
        reading them (in line order) would walk the whole run to find none."""
        self._require_run(run_id)
        row = self.db.conn.execute(
            "SELECT 1 FROM requests INDEXED BY requests_run_route_status "
            "WHERE run_id = ? AND route = ? AND status = ? LIMIT 1",
            (run_id, route.value, status.value),
        ).fetchone()
        return row is not None

    def output_evidence(
        self, *, min_samples: int = 20, quantile: float = 0.95
    ) -> dict[tuple[str, str], OutputEvidence]:
        """Per (model, endpoint), the output tokens billed for succeeded requests across
        runs: mean and `quantile`, where at least `min_samples` have finished. The router's
        expected and worst-case output estimates come from these. Pruned runs count through
        `learned_output` (their count and sum, and the highest of their quantiles)."""
        conn = self.db.conn
        live = {
            (model, endpoint): (int(tokens), int(n))
            for model, endpoint, tokens, n in conn.execute(
                "SELECT model, endpoint, sum(output_tokens), count(*) FROM requests "
                "WHERE status = 'succeeded' AND output_tokens IS NOT NULL GROUP BY 1, 2"
            )
        }
        learned = {
            (model, endpoint): (int(tokens), int(n), int(high))
            for model, endpoint, tokens, n, high in conn.execute(
                "SELECT model, endpoint, output_tokens, requests, high FROM learned_output"
            )
        }
        found: dict[tuple[str, str], OutputEvidence] = {}
        for key in sorted(live.keys() | learned.keys()):
            tokens, n = live.get(key, (0, 0))
            old_tokens, old_n, high = learned.get(key, (0, 0, 0))
            total = n + old_n
            if total < min_samples or total == 0:
                continue
            if n:
                high = max(high, output_quantile(conn, key[0], key[1], n, quantile))
            found[key] = OutputEvidence((tokens + old_tokens) / total, int(high), int(total))
        return found

    def summary(self, run_id: str) -> list[SummaryRow]:
        """Per (model, route): requests, outcomes, estimated and actual cost, tokens."""
        return self.totals(run_id).summary()
