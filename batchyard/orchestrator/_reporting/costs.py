"""Reading the store into a `CostReport`: estimated versus actual per (model, route).

Owns `costs`, for one run or every run in the store, with the saving against sending
everything at standard prices, re-sends, reuse and fan-out variants. Reads only.
"""

from __future__ import annotations

from collections.abc import Mapping

from batchyard.catalog import ModelInfo, as_catalog
from batchyard.models import Route
from batchyard.orchestrator._answers.variants import variant_costs
from batchyard.orchestrator._reporting.reports import CostReport, CostRow
from batchyard.orchestrator._reporting.status import fallback_totals
from batchyard.store import Store

__all__ = ["costs"]


def costs(store: Store, models: Mapping[str, ModelInfo], run_id: str | None = None) -> CostReport:
    """Estimated versus actual per (model, route), and the saving against all-standard."""
    runs = [store.get_run(run_id)] if run_id else store.list_runs()
    catalog = as_catalog(models)
    merged: dict[tuple[str, str], list[float]] = {}
    extra = [0.0] * 5  # reused, saved, requeues, requeue cost, invalid
    for run in runs:
        for s in store.summary(run.id):
            for i, value in enumerate((s.reused, s.saved, s.requeues, s.requeue_cost, s.invalid)):
                extra[i] += value
            key = (s.model, s.route.value if s.route else "-")
            info = catalog.find(s.model)
            standard = (
                info.estimate(Route.STANDARD, s.input_tokens, s.output_tokens) if info else 0.0
            )
            row = merged.setdefault(key, [0.0] * 7)
            for i, value in enumerate(
                (
                    s.requests,
                    s.succeeded,
                    s.input_tokens,
                    s.output_tokens,
                    s.estimated_cost,
                    s.actual_cost,
                    standard,
                )
            ):
                row[i] += value
    rows = [
        CostRow(
            model=model,
            route=route,
            requests=int(v[0]),
            succeeded=int(v[1]),
            input_tokens=int(v[2]),
            output_tokens=int(v[3]),
            estimated=round(v[4], 6),
            actual=round(v[5], 6),
            all_standard=round(v[6], 6),
        )
        for (model, route), v in sorted(merged.items())
    ]
    reasons = []
    if run_id:
        reasons = [e.message for e in store.list_events(run_id) if e.kind.startswith("route.")][
            -10:
        ]
    actual = sum(r.actual for r in rows)
    standard = sum(r.all_standard for r in rows)
    twice = [store.paid_twice(run.id) for run in runs]
    worsts = [run.options.get("estimate_worst") for run in runs]
    worst = (
        round(sum(float(w) for w in worsts if isinstance(w, int | float)), 6)
        if all(isinstance(w, int | float) for w in worsts)
        else None
    )
    return CostReport(
        run_id=run_id,
        rows=rows,
        # The plan's expected figure, as `status` shows it (the rows split the same lines
        # by the route they took, each at that route's estimated price).
        estimated=round(sum(run.estimated_cost for run in runs), 6),
        estimated_worst=worst,
        paid_twice=sum(n for n, _ in twice),
        paid_twice_cost=round(sum(c for _, c in twice), 6),
        actual=round(actual, 6),
        all_standard=round(standard, 6),
        saving=round(standard - actual, 6),
        reasons=reasons,
        variants=variant_costs(store, run_id) if run_id else [],
        reused=int(extra[0]),
        reuse_saving=round(extra[1], 6),
        requeues=int(extra[2]),
        requeue_cost=round(extra[3], 6),
        invalid=int(extra[4]),
        fallbacks=fallback_totals(store, [run.id for run in runs]),
    )
