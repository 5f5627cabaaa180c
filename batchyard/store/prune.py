"""`prune`: removing finished runs' bulk from the job database, then reclaiming the space.

Owns choosing what may go (completed or cancelled runs, finished before a cutoff or named),
deleting their requests (bodies and answers), attempts and events in short write units so
drivers of other runs are never held up for long, and the VACUUM after. What the router
learned stays unless `forget` is asked: the run row (state, totals), its batch rows
(turnaround, cancel latency) and, per model, the output tokens of its succeeded requests
(`learned_output`). An open run is never touched: the schema itself refuses to delete
events or attempts of a run that is not finished.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field

from batchyard.errors import NotFound

from .base import CHUNK, StoreBase, placeholders
from .summary import output_quantile

__all__ = ["PruneMixin", "PruneReport", "PrunedRun"]

_FINISHED = ("completed", "cancelled")
_BULK = ("answers", "answers_due", "attempts", "events", "requests")


@dataclass(frozen=True)
class PrunedRun:
    run_id: str
    state: str
    finished_at: float | None
    requests: int
    events: int
    attempts: int


@dataclass
class PruneReport:
    runs: list[PrunedRun] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # run id -> why it stays
    dry_run: bool = False
    forgot_learned: bool = False
    bytes_before: int = 0
    bytes_after: int = 0
    vacuumed: bool = False
    note: str | None = None  # why the space was not reclaimed (another process busy)


class PruneMixin(StoreBase):
    def prune(
        self,
        run_ids: Sequence[str] = (),
        *,
        finished_before: float | None = None,
        dry_run: bool = False,
        forget: bool = False,
    ) -> PruneReport:
        """Remove finished runs' requests, attempts and events (and with `forget`, the run
        rows, batches and files too), then VACUUM. Named runs that are open are skipped with
        the reason; without names, every finished run that finished before `finished_before`."""
        report = PruneReport(dry_run=dry_run, forgot_learned=forget)
        report.bytes_before = self._size()
        for run_id, state, finished_at, why in self._candidates(run_ids, finished_before):
            if why is not None:
                report.skipped[run_id] = why
                continue
            counts = {t: self._count(t, run_id) for t in _BULK}
            report.runs.append(
                PrunedRun(
                    run_id,
                    state,
                    finished_at,
                    counts["requests"],
                    counts["events"],
                    counts["attempts"],
                )
            )
            if not dry_run:
                self._prune_run(run_id, forget=forget)
        if report.runs and not dry_run:
            report.vacuumed, report.note = self._vacuum()
        report.bytes_after = self._size()
        return report

    def _candidates(
        self, run_ids: Sequence[str], finished_before: float | None
    ) -> list[tuple[str, str, float | None, str | None]]:
        if run_ids:
            rows = []
            for run_id in dict.fromkeys(run_ids):
                r = self._one(
                    "SELECT id, state, finished_at, pruned_at FROM runs WHERE id = ?", (run_id,)
                )
                if r is None:
                    raise NotFound(
                        f"No run '{run_id}' in {self.path}. `batchyard runs` lists the runs "
                        "it holds."
                    )
                rows.append(r)
        else:
            rows = list(
                self.db.conn.execute(
                    "SELECT id, state, finished_at, pruned_at FROM runs "
                    f"WHERE state IN ({placeholders(len(_FINISHED))}) ORDER BY created_at",
                    _FINISHED,
                )
            )
        out: list[tuple[str, str, float | None, str | None]] = []
        for run_id, state, finished_at, pruned_at in rows:
            why = None
            if state not in _FINISHED:
                why = f"it is {state}: only completed or cancelled runs are pruned"
            elif finished_before is not None and (finished_at or 0) >= finished_before:
                why = "it finished too recently"
            elif pruned_at is not None and not any(self._count(t, run_id) for t in _BULK):
                why = "it was pruned already"
            if why is None or run_ids:
                out.append((run_id, state, finished_at, why))
        return out

    def _count(self, table: str, run_id: str) -> int:
        (count,) = self.db.conn.execute(
            f"SELECT count(*) FROM {table} WHERE run_id = ?", (run_id,)
        ).fetchone()
        return int(count)

    def _prune_run(self, run_id: str, *, forget: bool) -> None:
        with self._write() as conn:
            (state, pruned_at) = conn.execute(
                "SELECT state, pruned_at FROM runs WHERE id = ?", (run_id,)
            ).fetchone()
            if state not in _FINISHED:  # re-checked under the write lock
                return
            if pruned_at is None and not forget:
                self._fold_output(conn, run_id)
            conn.execute("UPDATE runs SET pruned_at = ? WHERE id = ?", (self.now(), run_id))
        for table in _BULK:  # short units: other processes' writes interleave
            while self._delete_some(table, run_id):
                pass
        if forget:
            with self._write() as conn:
                conn.execute("UPDATE batches SET input_file_row = NULL WHERE run_id = ?", (run_id,))
                conn.execute("DELETE FROM files WHERE run_id = ?", (run_id,))
                conn.execute("DELETE FROM batches WHERE run_id = ?", (run_id,))
                conn.execute("DELETE FROM drivers WHERE run_id = ?", (run_id,))
                conn.execute("DELETE FROM runs WHERE id = ?", (run_id,))

    def _fold_output(self, conn: sqlite3.Connection, run_id: str) -> None:
        """Keep what the run's succeeded requests say about output lengths."""
        groups = conn.execute(
            "SELECT model, endpoint, count(*), sum(output_tokens) FROM requests "
            "WHERE run_id = ? AND status = 'succeeded' AND output_tokens IS NOT NULL "
            "GROUP BY 1, 2",
            (run_id,),
        ).fetchall()
        for model, endpoint, n, tokens in groups:
            high = output_quantile(conn, model, endpoint, n, 0.95, run_id)
            conn.execute(
                "INSERT INTO learned_output (model, endpoint, requests, output_tokens, high) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (model, endpoint) DO UPDATE SET "
                "requests = requests + excluded.requests, "
                "output_tokens = output_tokens + excluded.output_tokens, "
                "high = max(high, excluded.high)",
                (model, endpoint, n, tokens, high),
            )

    def _delete_some(self, table: str, run_id: str) -> int:
        # attempts is WITHOUT ROWID, keyed by (run_id, custom_id, attempt)
        key = "custom_id" if table == "attempts" else "id"
        with self._write() as conn:
            cur = conn.execute(
                f"DELETE FROM {table} WHERE run_id = ? AND {key} IN "
                f"(SELECT {key} FROM {table} WHERE run_id = ? LIMIT {CHUNK})",
                (run_id, run_id),
            )
            return cur.rowcount

    def _vacuum(self) -> tuple[bool, str | None]:
        try:
            self.db.conn.execute("VACUUM")
            self.db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.OperationalError as exc:
            return False, (
                f"the space is not reclaimed yet ({exc}): another process is using the "
                "database; the rows are gone and a later prune reclaims it"
            )
        return True, None

    def _size(self) -> int:
        total = 0
        for suffix in ("", "-wal"):
            path = self.path.with_name(self.path.name + suffix)
            if path.exists():
                total += path.stat().st_size
        return total
