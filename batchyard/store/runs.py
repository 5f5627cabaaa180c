"""Runs (one per submitted request file) and the append-only history: events and attempts.

Owns the `runs`, `events` and `attempts` reads and writes of the `Store`. Run state changes
go through `set_run_state`, checked against `transitions.RUN_TRANSITIONS`. It must not
change requests or batches.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from batchyard.errors import NotFound
from batchyard.models import Route, RouteOverride, RunState

from .base import StoreBase, by_name, one_by_name, record
from .codec import dumps, loads_dict, loads_list
from .rows import AttemptRow, EventRow, RunRow
from .transitions import check_run

__all__ = ["RunsMixin"]

_RUN_COLS = (
    "id, source_path, source_sha256, endpoint, models, route_override, deadline_at, budget, "
    "state, created_at, updated_at, finished_at, estimated_cost, actual_cost, request_count, "
    "options, pruned_at"
)
_TERMINAL_RUN = {RunState.COMPLETED, RunState.CANCELLED}


def _run(r: dict[str, Any]) -> RunRow:
    return record(
        RunRow,
        r,
        models=tuple(loads_list(r["models"])),
        route_override=RouteOverride(r["route_override"]),
        state=RunState(r["state"]),
        options=loads_dict(r["options"]),
    )


def _event_row(r: dict[str, Any]) -> EventRow:
    return record(EventRow, r, data=loads_dict(r["data"]))


def _attempt_row(r: dict[str, Any]) -> AttemptRow:
    return record(AttemptRow, r, route=Route(r["route"]))


class RunsMixin(StoreBase):
    # ---- runs -------------------------------------------------------------------------
    def create_run(
        self,
        *,
        source_path: str,
        source_sha256: str,
        endpoint: str,
        models: Sequence[str],
        route_override: RouteOverride = RouteOverride.AUTO,
        deadline_at: float | None = None,
        budget: float | None = None,
        estimated_cost: float = 0.0,
        options: dict[str, Any] | None = None,
    ) -> str:
        """Record a new run in state `pending`; returns its id, e.g. `run_20261121_ab12cd`."""
        now = self.now()
        day = datetime.fromtimestamp(now, UTC).strftime("%Y%m%d")
        with self._write() as conn:
            while True:
                run_id = f"run_{day}_{secrets.token_hex(3)}"
                if conn.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone() is None:
                    break
            conn.execute(
                f"INSERT INTO runs ({_RUN_COLS}) VALUES "
                "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, 0, 0, ?, NULL)",
                (
                    run_id,
                    source_path,
                    source_sha256,
                    endpoint,
                    dumps(sorted(set(models))),
                    RouteOverride(route_override).value,
                    deadline_at,
                    budget,
                    RunState.PENDING.value,
                    now,
                    now,
                    estimated_cost,
                    dumps(options or {}),
                ),
            )
            self._event(conn, run_id, "run.created", f"Run created from {source_path}")
        return run_id

    def get_run(self, run_id: str) -> RunRow:
        """The run, or `NotFound`."""
        row = one_by_name(
            self.db.conn.execute(f"SELECT {_RUN_COLS} FROM runs WHERE id = ?", (run_id,))
        )
        if row is None:
            self._require_run(run_id)
        assert row is not None
        return _run(row)

    def list_runs(
        self, *, limit: int | None = None, source_sha256: str | None = None
    ) -> list[RunRow]:
        """Runs, newest first; optionally only those of one input file's sha256."""
        where, params = ("WHERE source_sha256 = ?", [source_sha256]) if source_sha256 else ("", [])
        sql = f"SELECT {_RUN_COLS} FROM runs {where} ORDER BY created_at DESC, rowid DESC"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [_run(r) for r in by_name(self.db.conn.execute(sql, params))]

    def set_run_state(self, run_id: str, state: RunState) -> RunRow:
        """Move the run to `state` (checked); sets finished_at on completed/cancelled."""
        with self._write() as conn:
            row = one_by_name(conn.execute("SELECT state FROM runs WHERE id = ?", (run_id,)))
            if row is None:
                raise NotFound(f"No run '{run_id}' in {self.path}.")
            old = RunState(row["state"])
            check_run(run_id, old, state)
            now = self.now()
            finished = now if state in _TERMINAL_RUN else None
            conn.execute(
                "UPDATE runs SET state = ?, updated_at = ?, finished_at = ? WHERE id = ?",
                (state.value, now, finished, run_id),
            )
            self._event(
                conn,
                run_id,
                "run.state",
                f"Run {old} -> {state}",
                {"from": old.value, "to": state.value},
            )
        return self.get_run(run_id)

    def set_run_estimate(self, run_id: str, estimated_cost: float) -> None:
        """Record the planner's estimated total cost for the run."""
        self._require_run(run_id)
        with self._write() as conn:
            conn.execute(
                "UPDATE runs SET estimated_cost = ?, updated_at = ? WHERE id = ?",
                (estimated_cost, self.now(), run_id),
            )

    def add_run_cost(self, run_id: str, amount: float, *, reason: str) -> None:
        """Add a cost not tied to one request's result (results add their own cost)."""
        self._require_run(run_id)
        with self._write() as conn:
            conn.execute(
                "UPDATE runs SET actual_cost = actual_cost + ?, updated_at = ? WHERE id = ?",
                (amount, self.now(), run_id),
            )
            self._event(conn, run_id, "run.cost", reason, {"amount": amount})

    # ---- events -----------------------------------------------------------------------
    def add_event(
        self,
        run_id: str,
        kind: str,
        message: str,
        data: dict[str, Any] | None = None,
        *,
        custom_id: str | None = None,
        shard: int | None = None,
    ) -> int:
        """Append one event to the run's history; returns its id."""
        self._require_run(run_id)
        with self._write() as conn:
            return self._event(conn, run_id, kind, message, data, custom_id=custom_id, shard=shard)

    def list_events(
        self,
        run_id: str,
        *,
        kinds: Sequence[str] | None = None,
        custom_id: str | None = None,
        shard: int | None = None,
        limit: int | None = None,
    ) -> list[EventRow]:
        """The run's events, oldest first, optionally filtered."""
        self._require_run(run_id)
        where: list[str] = ["run_id = ?"]
        params: list[Any] = [run_id]
        if kinds:
            where.append(f"kind IN ({','.join('?' * len(kinds))})")
            params.extend(kinds)
        if custom_id is not None:
            where.append("custom_id = ?")
            params.append(custom_id)
        if shard is not None:
            where.append("shard = ?")
            params.append(shard)
        sql = (
            "SELECT id, run_id, at, kind, message, data, custom_id, shard FROM events "
            f"WHERE {' AND '.join(where)} ORDER BY id"
        )
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [_event_row(r) for r in by_name(self.db.conn.execute(sql, params))]

    # ---- attempts ---------------------------------------------------------------------
    def list_attempts(self, run_id: str, custom_id: str | None = None) -> list[AttemptRow]:
        """Every attempt of the run (or of one request), in order."""
        where, params = "run_id = ?", [run_id]
        if custom_id is not None:
            where += " AND custom_id = ?"
            params.append(custom_id)
        rows = self.db.conn.execute(
            "SELECT run_id, custom_id, attempt, route, shard, owner, started_at, finished_at, "
            "outcome, status_code, error_code, cost, error_kind, request_id, not_before "
            f"FROM attempts WHERE {where} "
            "ORDER BY started_at, custom_id, attempt",
            params,
        )
        return [_attempt_row(r) for r in by_name(rows)]
