"""Observations of a provider's clock: (provider time, our time at receipt) per base URL.

Owns the `clock_observations` table. Keeps only the newest few pairs per base URL (the
caller says how many); fitting them (offset and rate) is the orchestrator's. Nothing here
belongs to a run, so `prune` leaves it alone.
"""

from __future__ import annotations

from collections.abc import Iterable

from .base import StoreBase

__all__ = ["ClocksMixin"]


class ClocksMixin(StoreBase):
    def add_clock_observations(
        self, base_url: str, pairs: Iterable[tuple[float, float]], *, keep: int = 48
    ) -> None:
        """Record (provider_at, local_at) pairs for `base_url`; keep its newest `keep`."""
        rows = [(base_url, float(p), float(t)) for p, t in pairs]
        if not rows:
            return
        with self._write() as conn:
            conn.executemany(
                "INSERT INTO clock_observations (base_url, provider_at, local_at) VALUES (?, ?, ?)",
                rows,
            )
            conn.execute(
                "DELETE FROM clock_observations WHERE base_url = ? AND id NOT IN "
                "(SELECT id FROM clock_observations WHERE base_url = ? ORDER BY id DESC "
                "LIMIT ?)",
                (base_url, base_url, keep),
            )

    def clock_observations(self, base_url: str, limit: int = 48) -> list[tuple[float, float]]:
        """The newest `limit` pairs for `base_url`, oldest first."""
        rows = self.db.conn.execute(
            "SELECT provider_at, local_at FROM clock_observations WHERE base_url = ? "
            "ORDER BY id DESC LIMIT ?",
            (base_url, limit),
        ).fetchall()
        return [(float(p), float(t)) for p, t in reversed(rows)]
