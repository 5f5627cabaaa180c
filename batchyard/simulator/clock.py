"""Simulated time for the simulator: scaled real time plus manual advances.

Owns nothing but the mapping from real time to simulated unix seconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["SimClock"]


class SimClock:
    def __init__(
        self,
        start: float | None = None,
        time_scale: float = 1.0,
        real: Callable[[], float] = time.monotonic,
    ) -> None:
        self._real = real
        self._real0 = real()
        self.start = time.time() if start is None else start
        self.time_scale = time_scale
        self.advanced = 0.0

    def now(self) -> float:
        return self.start + (self._real() - self._real0) * self.time_scale + self.advanced

    def advance(self, seconds: float) -> float:
        """Jump simulated time forward; returns the new now."""
        if seconds < 0:
            raise ValueError("The simulated clock only moves forward.")
        self.advanced += seconds
        return self.now()
