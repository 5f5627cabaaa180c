"""How long a batch takes: its turnaround, its cancel, and when each of its lines finishes.

Owns the timing of one batch on the simulated clock, drawn from the seeded rng where a
spread is configured. What decides it, first match wins:

- turnaround: an admin override (`POST /_sim/batches/{id}`: `turnaround_seconds`, then
  `realtime_speed: true`), the batch's metadata `sim_turnaround_seconds`, real-time speed
  (metadata `sim_speed: "realtime"` or `batch.realtime_speed`, unless the admin set
  `realtime_speed: false`), `batch.model_turnaround_seconds` for the model as sent or its
  entry, `batch.turnaround_seconds`; lognormal with `batch.turnaround_sigma` except for
  admin overrides and real-time speed;
- cancel: an admin override, metadata `sim_cancelling_seconds`, `batch.cancelling_seconds`;
  lognormal with `batch.cancelling_sigma` except for admin overrides.

Lines finish one by one, evenly over the turnaround, in the batch's completion order.
It changes no status and writes no files (batch_engine does).
"""

from __future__ import annotations

import contextlib
import math
from typing import TYPE_CHECKING, Any

from batchyard.simulator import tokens
from batchyard.simulator.names import resolve
from batchyard.simulator.state import SimState

if TYPE_CHECKING:
    from batchyard.simulator.batches import BatchRecord

__all__ = [
    "CANCELLING_KEY",
    "OVERRIDES",
    "SPEED_KEY",
    "TURNAROUND_KEY",
    "draw_cancelling",
    "draw_turnaround",
    "finish_times",
    "override",
    "realtime_seconds",
]

TURNAROUND_KEY = "sim_turnaround_seconds"  # metadata: one batch's median turnaround
CANCELLING_KEY = "sim_cancelling_seconds"  # metadata: one batch's median cancel time
SPEED_KEY = "sim_speed"  # metadata: "realtime" runs the batch at real-time speed
OVERRIDES = ("turnaround_seconds", "cancelling_seconds", "realtime_speed")  # admin keys


def _number(metadata: dict[str, str] | None, key: str) -> float | None:
    raw = (metadata or {}).get(key)
    if raw is not None:
        with contextlib.suppress(ValueError):
            value = float(raw)
            if math.isfinite(value) and value >= 0:
                return value
    return None


def _lognormal(state: SimState, median: float, sigma: float) -> float:
    if sigma > 0 and median > 0:
        return state.rng.lognormvariate(math.log(median), sigma)
    return max(median, 0.0)


def realtime_seconds(state: SimState, rec: BatchRecord) -> float:
    """How long the real-time path needs for these lines under the model's RPM and TPM."""
    resolved = resolve(state, rec.model or "")
    if resolved is None or not rec.lines:
        return 0.0
    spec = resolved.spec
    charged = sum(
        tokens.rate_limit_charge(prompt, body)
        for prompt, (_, body) in zip(rec.prompts, rec.lines, strict=True)
    )
    by_requests = len(rec.lines) * 60 / spec.rpm if spec.rpm else 0.0
    by_tokens = charged * 60 / spec.tpm if spec.tpm else 0.0
    return max(by_requests, by_tokens)


def _realtime_speed(state: SimState, rec: BatchRecord) -> bool:
    if (rec.metadata or {}).get(SPEED_KEY) == "realtime":
        return True
    return state.config.batch.realtime_speed


def draw_turnaround(state: SimState, rec: BatchRecord) -> float:
    """The batch's time from in_progress to finalizing (call once its lines are known)."""
    settings = state.config.batch
    fixed = rec.overrides.get("turnaround_seconds")
    if fixed is not None:
        return float(fixed)
    speed = rec.overrides.get("realtime_speed")
    if speed:
        return realtime_seconds(state, rec)
    median = _number(rec.metadata, TURNAROUND_KEY)
    if median is None and speed is None and _realtime_speed(state, rec):
        return realtime_seconds(state, rec)
    if median is None:
        per_model = settings.model_turnaround_seconds
        resolved = resolve(state, rec.model or "")
        base = resolved.base if resolved else ""
        median = per_model.get(rec.model or "", per_model.get(base, settings.turnaround_seconds))
    return _lognormal(state, median, settings.turnaround_sigma)


def override(state: SimState, rec: BatchRecord, patch: dict[str, Any]) -> None:
    """Apply `POST /_sim/batches/{id}`: fix this batch's turnaround, speed or cancel time.

    A running batch takes a new turnaround at once (still counted from in_progress_at; lines
    already finished stay finished), a cancelling one a new cancel time.
    """
    for key, value in patch.items():
        if key not in OVERRIDES:
            allowed = ", ".join(OVERRIDES)
            raise ValueError(f"Unknown batch setting '{key}'; use {allowed}.")
        if key == "realtime_speed":
            if not isinstance(value, bool):
                raise ValueError("'realtime_speed' must be true or false.")
        elif isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ValueError(f"'{key}' must be a number of seconds >= 0.")
    rec.overrides.update(patch)
    if rec.status == "in_progress" and patch.keys() & {"turnaround_seconds", "realtime_speed"}:
        rec.turnaround = draw_turnaround(state, rec)
    if rec.status == "cancelling" and "cancelling_seconds" in patch:
        rec.cancelling_for = float(patch["cancelling_seconds"])


def draw_cancelling(state: SimState, rec: BatchRecord) -> float:
    """The batch's time from cancelling to cancelled (drawn when the cancel starts)."""
    settings = state.config.batch
    fixed = rec.overrides.get("cancelling_seconds")
    if fixed is not None:
        return float(fixed)
    median = _number(rec.metadata, CANCELLING_KEY)
    if median is None:
        median = settings.cancelling_seconds
    return _lognormal(state, median, settings.cancelling_sigma)


def finish_times(rec: BatchRecord) -> list[dict[str, Any]]:
    """Each line's custom_id and when it finishes (or finished), in completion order.

    Empty until the batch is in_progress. The k-th line of n finishes at
    `in_progress_at + turnaround * k / n`; a cancel or expiry stops the rest.
    """
    start = rec.times.get("in_progress_at")
    total = len(rec.lines)
    if start is None or not total:
        return []
    return [
        {"custom_id": rec.lines[index][0], "finishes_at": start + rec.turnaround * k / total}
        for k, index in enumerate(rec.order, 1)
    ]
