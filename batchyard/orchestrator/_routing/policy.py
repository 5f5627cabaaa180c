"""A run's routing policy: what the user asks at submit, and what the recorded run says.

Owns `user_policy` (deadline, budget, route and the safety settings, a deadline string
relative to now), `run_policy` (the recorded run's policy, for re-deciding its open work
mid-run) and `priors` (the configured turnaround and cancel latency before this store has
seen any batch). It decides nothing itself.
"""

from __future__ import annotations

import math
import sys
from typing import Any

from batchyard.config import Settings
from batchyard.models import RouteOverride
from batchyard.router import RunPolicy, Turnaround, parse_deadline
from batchyard.store.rows import RunRow

__all__ = ["priors", "run_policy", "user_policy"]

# The priors count as this many observed batches (or cancels): the first few of this
# store's own move the estimate most of the way.
_PRIOR_WEIGHT = 2.0


def priors(settings: Settings) -> tuple[Turnaround, Turnaround]:
    """The configured batch turnaround and cancel latency, before this store's own."""
    turnaround = Turnaround.from_median_p95(
        settings.batch_turnaround_median_seconds,
        settings.batch_turnaround_p95_seconds,
        weight=_PRIOR_WEIGHT,
    )
    cancel = Turnaround.from_median_p95(
        settings.cancel_latency_median_seconds,
        settings.cancel_latency_p95_seconds,
        max_s=3600.0,
        weight=_PRIOR_WEIGHT,
    )
    return turnaround, cancel


def user_policy(
    settings: Settings,
    now: float,
    *,
    deadline: str | float | None,
    budget: float | None,
    route: RouteOverride | str,
    strict: bool,
) -> RunPolicy:
    """The policy a user asks for at submit (a deadline string is relative to `now`)."""
    when = deadline if deadline is not None else settings.deadline
    at = when if isinstance(when, float | int) or when is None else parse_deadline(when, now)
    return RunPolicy(
        deadline=float(at) if at is not None else None,
        budget_usd=budget,
        route=RouteOverride(route),
        strict=strict,
        small_run_requests=settings.small_run_requests,
        small_run_usd=settings.small_run_usd,
        **_safety(settings),
    )


def _safety(settings: Settings) -> dict[str, Any]:
    """The deadline's safety settings, as `RunPolicy` fields."""
    return {
        "margin_s": settings.margin_seconds,
        "realtime_spread": settings.realtime_spread,
        "cancel_quantile": settings.cancel_quantile,
        "batch_setup_s": settings.batch_setup_seconds,
        # a cancelling shard is polled every 2 x poll_min; then its output is applied
        "cancel_notice_s": 2 * settings.poll_min_seconds + 5.0,
    }


def run_policy(run: RunRow, settings: Settings) -> RunPolicy:
    """The recorded run's policy, for re-deciding its open work mid-run.

    Whether the run is small was decided once, at submit, on the whole run: the handful of
    requests left over late in a big run (lines to retry, say) must not count as a small
    run and jump to real time, nor may a small run's leftovers start waiting for a batch.
    """
    small = run.options.get("small_run")
    if small is None:  # recorded before this was kept
        small = run.request_count <= settings.small_run_requests
    safety = _safety(settings)
    for key in safety:
        if key in run.options:
            safety[key] = float(run.options[key])
    return RunPolicy(
        deadline=run.deadline_at,
        budget_usd=run.budget,
        route=run.route_override,
        strict=False,
        small_run_requests=sys.maxsize if small else -1,
        small_run_usd=math.inf if small else -1.0,
        **safety,
    )
