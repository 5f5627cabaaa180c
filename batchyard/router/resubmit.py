"""Where batch lines that must be sent again go: a shard of their own, a wait, or real time.

Owns `Leftovers` (one model's lines to re-submit after a failed, expired or partly failed
batch, as counts and costs), `ResubmitRule` (the documented thresholds), `resubmission`,
the pure rule the batch path applies before planning their shard, and `waits_until`, when
the deadline rule (4) sends lines that wait at the latest. A shard of five lines
pays a whole turnaround for five answers; the rule avoids that:

1. Lines that can join a shard going out anyway (fresh lines of the same model and
   endpoint) join it.
2. At least `min_lines` (setting `resubmit_min_lines`): a worthwhile shard of their own.
3. Real time when it is cheaper in time and money: it costs no more than batch (flex at the
   batch price) and answers without a turnaround.
4. The deadline rules: when waiting for more lines would leave no room for a batch to come
   back before the model's escalation point (a new shard's setup plus its median
   turnaround), they go now: batch while the point leaves room for a shard's setup, else
   real time.
5. Lines still running in the model's batches may come back too: wait for them (the lines
   stay routed to batch, unsharded; the next round looks again), so the leftovers of
   several batches go out as one.
6. Nothing else can come and the deadline leaves time: a batch of their own (half the
   price; the small-run rule is about runs, not about the lines a run has left over).

With real time not allowed (`--route batch`), lines never go to real time.
No I/O, no clock: `now` and every time are parameters, on our clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from batchyard.errors import ConfigError

__all__ = ["Leftovers", "ResubmitAction", "ResubmitRule", "resubmission", "waits_until"]


class ResubmitAction(StrEnum):
    BATCH = "batch"  # plan them into a shard this round
    WAIT = "wait"  # leave them routed to batch, unsharded, for a later round
    REALTIME = "realtime"  # move them to real time (flex where allowed, else standard)


@dataclass(frozen=True)
class Leftovers:
    """One model's (and endpoint's) lines to send again, in sums."""

    lines: int
    cost_batch: float  # expected, at batch price
    cost_realtime: float  # expected, on the real-time route they would take
    cost_standard: float  # expected, at standard price
    joinable: int = 0  # fresh lines of the same model and endpoint going out in a shard now
    running: int = 0  # lines of the model still in the run's live batches (may come back)


@dataclass(frozen=True)
class ResubmitRule:
    min_lines: int = 100
    realtime_allowed: bool = True

    def __post_init__(self) -> None:
        if self.min_lines < 1:
            raise ConfigError(f"resubmit_min_lines must be at least 1, got {self.min_lines}.")


def waits_until(escalation_at: float | None, setup_s: float, turnaround_s: float) -> float | None:
    """From when waiting lines no longer wait (rule 4): the escalation point then leaves no
    time for a new shard's setup and turnaround. None without an escalation point."""
    return None if escalation_at is None else escalation_at - (setup_s + turnaround_s)


def resubmission(
    left: Leftovers,
    rule: ResubmitRule,
    now: float,
    *,
    escalation_at: float | None = None,
    setup_s: float = 60.0,
    turnaround_s: float = 3600.0,
) -> tuple[ResubmitAction, str]:
    """What to do with `left` now, and why (a sentence for the run's events)."""
    n = left.lines
    if left.joinable > 0:
        return ResubmitAction.BATCH, f"{n} line(s) sent again join {left.joinable} new one(s)"
    if n >= rule.min_lines:
        return ResubmitAction.BATCH, f"{n} line(s) sent again: a shard of their own"
    if rule.realtime_allowed and left.cost_realtime <= left.cost_batch:
        return (
            ResubmitAction.REALTIME,
            f"{n} line(s) sent again in real time: it costs what batch costs and answers "
            "without a turnaround",
        )
    latest = waits_until(escalation_at, setup_s, turnaround_s)
    if escalation_at is not None and latest is not None and now > latest:
        if escalation_at - now >= setup_s or not rule.realtime_allowed:
            return (
                ResubmitAction.BATCH,
                f"{n} line(s) sent again now: the escalation point leaves no time to wait for more",
            )
        return (
            ResubmitAction.REALTIME,
            f"{n} line(s) sent again in real time: the escalation point leaves no room "
            "for a new batch",
        )
    if left.running > 0:
        return (
            ResubmitAction.WAIT,
            f"{n} line(s) to send again wait for a worthwhile shard ({rule.min_lines}; "
            f"{left.running:,} line(s) still in running batches)",
        )
    return (
        ResubmitAction.BATCH,
        f"{n} line(s) sent again: nothing else will join them and the deadline leaves time",
    )
