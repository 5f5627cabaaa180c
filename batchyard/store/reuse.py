"""Reuse of earlier answers and lines identical within a run (twins).

Owns the lookup of answers that passed their checks by `fingerprint` (across runs and
processes: it is only the database), copying one into a new line (pending -> succeeded,
`reused_from` saying run, custom_id and time), marking later identical lines of a run as
twins of the first, and settling twins with their first line's outcome. A line whose
`fingerprint` is NULL (a deliberate sample, a run with reuse off) takes part in none of it.
It must not decide what is identical: the key is computed outside the store.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .base import LOOKUP, StoreBase, by_name, chunked, placeholders, record
from .rows import ReuseReport

__all__ = ["AnswerSource", "ReuseMixin"]

_TERMINAL = "('succeeded', 'failed', 'invalid', 'cancelled')"
_SETTLE = (
    "UPDATE requests AS t SET status = l.status, status_code = l.status_code, "
    "response_body = l.response_body, error_code = l.error_code, "
    "error_message = l.error_message, input_tokens = l.input_tokens, "
    "output_tokens = l.output_tokens, request_id = l.request_id, cost = 0, "
    "saved = CASE WHEN l.status = 'succeeded' THEN l.cost END, "
    "reused_from = json_object('run', l.run_id, 'custom_id', l.custom_id, 'at', l.finished_at), "
    "fallback = l.fallback, updated_at = ?, finished_at = ? "
    "FROM requests AS l WHERE t.run_id = ? AND t.status = 'twin' AND l.run_id = t.run_id "
    f"AND l.custom_id = t.reuse_of AND l.status IN {_TERMINAL}"
)
_SETTLED = " RETURNING id"


@dataclass(frozen=True, slots=True)
class AnswerSource:
    """An earlier answer that passed its checks: where it is and what it cost."""

    run_id: str
    custom_id: str
    at: float
    cost: float


class ReuseMixin(StoreBase):
    def has_answer_sources(self) -> bool:
        """Whether any run of this database bought an answer that could be reused (so
        that checking a file's lines against them can be skipped when none was)."""
        row = self.db.conn.execute(
            "SELECT 1 FROM requests INDEXED BY requests_reuse WHERE status = 'succeeded' "
            "AND fingerprint IS NOT NULL AND reused_from IS NULL LIMIT 1"
        ).fetchone()
        return row is not None

    def answer_sources(self, keys: Iterable[str]) -> dict[str, AnswerSource]:
        """For each key, the newest answer bought for it (not itself reused) that passed
        its checks, in any run of this database."""
        found: dict[str, AnswerSource] = {}
        for part in chunked(sorted(set(keys)), LOOKUP):
            rows = self.db.conn.execute(
                "SELECT fingerprint, run_id, custom_id, finished_at, cost FROM requests "
                f"INDEXED BY requests_reuse WHERE fingerprint IN ({placeholders(len(part))}) "
                "AND status = 'succeeded' AND fingerprint IS NOT NULL AND reused_from IS NULL "
                "ORDER BY finished_at DESC",
                part,
            )
            for r in by_name(rows):
                source = record(
                    AnswerSource, r, at=float(r["finished_at"] or 0), cost=r["cost"] or 0.0
                )
                found.setdefault(r["fingerprint"], source)
        return found

    def reuse_answers(self, run_id: str) -> ReuseReport:
        """Answer the run's pending lines from the store where an identical request was
        answered and passed its checks; then mark later identical lines of the run as twins
        of the first (sent once, settled with its outcome), unless recorded as twins
        already. Call before routing."""
        self._require_run(run_id)
        reused, saved = 0, 0.0
        keys = [
            key
            for (key,) in self.db.conn.execute(
                "SELECT DISTINCT fingerprint FROM requests WHERE run_id = ? AND status = 'pending' "
                "AND fingerprint IS NOT NULL",
                (run_id,),
            )
        ]
        sources = self.answer_sources(keys)
        for part in chunked(list(sources.items()), LOOKUP):
            with self._write() as conn:
                now = self.now()
                for key, src in part:
                    cur = conn.execute(
                        "UPDATE requests SET status = 'succeeded', status_code = s.status_code, "
                        "response_body = s.response_body, input_tokens = s.input_tokens, "
                        "output_tokens = s.output_tokens, request_id = s.request_id, cost = 0, "
                        "saved = s.cost, updated_at = ?, finished_at = ?, "
                        "reused_from = json_object('run', s.run_id, 'custom_id', s.custom_id, "
                        "'at', s.finished_at) "
                        "FROM (SELECT * FROM requests WHERE run_id = ? AND custom_id = ?) AS s "
                        "WHERE requests.run_id = ? AND requests.status = 'pending' "
                        "AND requests.fingerprint = ? RETURNING id",
                        (now, now, src.run_id, src.custom_id, run_id, key),
                    )
                    ids = [i for (i,) in cur]
                    self._finished(run_id, ids)
                    reused += len(ids)
                    saved += len(ids) * src.cost
        with self._write() as conn:
            twins = conn.execute(
                "UPDATE requests SET status = 'twin', updated_at = ?, reuse_of = ("
                "SELECT l.custom_id FROM requests AS l WHERE l.run_id = requests.run_id "
                "AND l.fingerprint = requests.fingerprint AND l.line < requests.line "
                "ORDER BY l.line LIMIT 1) "
                "WHERE run_id = ? AND status = 'pending' AND fingerprint IS NOT NULL AND EXISTS ("
                "SELECT 1 FROM requests AS l WHERE l.run_id = requests.run_id "
                "AND l.fingerprint = requests.fingerprint AND l.line < requests.line)",
                (self.now(), run_id),
            ).rowcount
            # twins recorded as such (a plan that found them) count too
            (twins,) = conn.execute(
                "SELECT count(*) FROM requests INDEXED BY requests_twins "
                "WHERE run_id = ? AND status = 'twin'",
                (run_id,),
            ).fetchone()
            report = ReuseReport(reused, twins, saved)
            if reused or twins:
                self._event(
                    conn,
                    run_id,
                    "requests.reused",
                    f"{reused} request(s) answered from earlier runs (saving ${saved:.4f}); "
                    f"{twins} identical to an earlier line of this run, sent once",
                    {"reused": reused, "twins": twins, "saved": saved},
                )
        return report

    def settle_twins(self, run_id: str) -> int:
        """Give every twin whose first line has finished that line's outcome."""
        with self._write() as conn:
            return self._settle_twins(conn, run_id, None, self.now())

    def _settle_twins(
        self, conn: sqlite3.Connection, run_id: str, leaders: Sequence[str] | None, now: float
    ) -> int:
        if leaders is None:
            ids = [i for (i,) in conn.execute(_SETTLE + _SETTLED, (now, now, run_id))]
            self._finished(run_id, ids)
            return len(ids)
        done = 0
        for part in chunked(list(leaders), LOOKUP):
            sql = f"{_SETTLE} AND t.reuse_of IN ({placeholders(len(part))}){_SETTLED}"
            ids = [i for (i,) in conn.execute(sql, (now, now, run_id, *part))]
            self._finished(run_id, ids)
            done += len(ids)
        return done
