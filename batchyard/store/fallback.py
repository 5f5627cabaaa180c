"""Fallback models: moving lines whose model was refused to the model configured for it.

Owns `fall_back` (one transaction per call: each line gets the fallback model, the body
naming it, its cost estimates at the fallback's prices and the `fallback` record, and goes
back to `routed`; a line still in flight under the caller's claim has its attempt closed as
`fallback`) and `fallback_summary` (per moved-from/moved-to pair: lines, answered, cost).
The line's fingerprint is cleared: an answer from another model than the one asked for is
never reused. It must not decide whether a line falls back, nor where to: the orchestrator
does (`orchestrator/_routing/fallback.py`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from batchyard.models import RequestStatus, Route

from .base import StoreBase, by_name, record
from .codec import encode_body
from .rows import JSONDict
from .transitions import check_request

__all__ = ["FallbackMixin", "FallbackMove", "FallbackTotals"]

_EVENTS = 50  # per-line events kept per call (the rest are counted in the summary event)


@dataclass(frozen=True, slots=True)
class FallbackMove:
    """One line moved to its fallback model."""

    custom_id: str
    model: str  # the fallback model, now the line's model
    body: JSONDict  # the request body naming it
    route: Route
    reason: str  # the route reason recorded with the move
    record: JSONDict  # {from, to, reason, error}: kept in `requests.fallback`
    est_cost_standard: float
    est_cost_flex: float | None
    est_cost_batch: float | None


@dataclass(frozen=True, slots=True)
class FallbackTotals:
    """Lines of one run moved from `source` to `target`, and how they ended."""

    source: str
    target: str
    reason: str
    lines: int
    succeeded: int
    failed: int
    cost: float  # what the fallback model's answers cost


class FallbackMixin(StoreBase):
    def fall_back(
        self, run_id: str, moves: Sequence[FallbackMove], *, owner: str | None = None
    ) -> list[str]:
        """Move lines to their fallback model (-> routed, checked); returns the custom_ids
        moved.

        A line must be routed or retryable, or in flight under `owner` (the claim that got
        the refusal; its attempt closes as `fallback`). Lines in any other status (finished,
        claimed by someone else) are left alone: the move is skipped, not an error.
        """
        self._require_run(run_id)
        if not moves:
            return []
        by_id = {m.custom_id: m for m in moves}
        moved: list[FallbackMove] = []
        with self._write() as conn:
            now = self.now()
            for m in moves:
                row = conn.execute(
                    "SELECT id, status, owner, attempts FROM requests "
                    "WHERE run_id = ? AND custom_id = ?",
                    (run_id, m.custom_id),
                ).fetchone()
                if row is None:
                    continue
                row_id, status, holder, attempts = row
                old = RequestStatus(status)
                claimed = old is RequestStatus.IN_FLIGHT and owner is not None and holder == owner
                if old not in (RequestStatus.ROUTED, RequestStatus.RETRYABLE) and not claimed:
                    continue
                check_request(run_id, m.custom_id, old, RequestStatus.ROUTED)
                record = {**by_id[m.custom_id].record, "at": now}
                conn.execute(
                    "UPDATE requests SET model = ?, body = ?, est_cost_standard = ?, "
                    "est_cost_flex = ?, est_cost_batch = ?, route = ?, route_reason = ?, "
                    "status = 'routed', shard = NULL, owner = NULL, not_before = NULL, "
                    "fingerprint = NULL, fallback = ?, updated_at = ? WHERE id = ?",
                    (
                        m.model,
                        encode_body(m.body, self.compress_min_bytes),
                        m.est_cost_standard,
                        m.est_cost_flex,
                        m.est_cost_batch,
                        Route(m.route).value,
                        m.reason,
                        json.dumps(record),
                        now,
                        row_id,
                    ),
                )
                if claimed:
                    conn.execute(
                        "UPDATE attempts SET finished_at = ?, outcome = 'fallback', "
                        "error_code = ? WHERE run_id = ? AND custom_id = ? AND attempt = ? "
                        "AND finished_at IS NULL",
                        (now, str(m.record.get("reason")), run_id, m.custom_id, attempts),
                    )
                moved.append(m)
            for m in moved[:_EVENTS]:
                self._event(
                    conn,
                    run_id,
                    "request.fallback",
                    f"{m.custom_id}: {m.record.get('from')} -> {m.model}: {m.reason}",
                    dict(m.record),
                    custom_id=m.custom_id,
                )
            pairs: dict[tuple[str, str, str], int] = {}
            for m in moved:
                key = (str(m.record.get("from")), m.model, str(m.record.get("reason")))
                pairs[key] = pairs.get(key, 0) + 1
            for (source, target, reason), n in pairs.items():
                self._event(
                    conn,
                    run_id,
                    "route.fallback",
                    f"{n} line(s) of {source} moved to the fallback model {target} ({reason})",
                    {"from": source, "to": target, "reason": reason, "lines": n},
                )
        return [m.custom_id for m in moved]

    def fallback_summary(self, run_id: str) -> list[FallbackTotals]:
        """Per (from, to, reason): the run's lines moved to a fallback model."""
        self._require_run(run_id)
        rows = self.db.conn.execute(
            "SELECT json_extract(fallback, '$.from') AS source, "
            "json_extract(fallback, '$.to') AS target, "
            "json_extract(fallback, '$.reason') AS reason, count(*) AS lines, "
            "sum(status = 'succeeded') AS succeeded, "
            "sum(status IN ('failed', 'invalid')) AS failed, total(cost) AS cost "
            "FROM requests WHERE run_id = ? AND fallback IS NOT NULL "
            "GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
            (run_id,),
        )
        return [
            record(
                FallbackTotals,
                r,
                source=str(r["source"]),
                target=str(r["target"]),
                reason=str(r["reason"]),
                cost=float(r["cost"]),
            )
            for r in by_name(rows)
        ]
