"""Fan-out runs seen whole: results grouped by original request, costs by variant.

Owns `Grouper` (consecutive result lines of one original request, as `fetch --group`
writes them: one line per original with its variants side by side) and `variant_costs`
(the `costs` breakdown by variant, samples added together). Variants are recognised by
their custom_id alone (`batchyard.build` documents the form), so a run submitted from a
file built earlier groups the same way. Reads only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from batchyard.build import split_variant
from batchyard.models import RequestStatus, Route
from batchyard.store import Store
from batchyard.store.rows import RequestRow

__all__ = ["Grouper", "variant_costs"]

PLAIN = "-"  # the variant key of a line whose custom_id names no variant


class Grouper:
    """Collects output lines into one line per original request. A line's variants are
    adjacent in input order (build and --vary write them so); an original that comes back
    later, apart from its first lines, starts a new group line."""

    def __init__(self) -> None:
        self._original: str | None = None
        self._variants: dict[str, dict[str, Any]] = {}

    def add(self, line: dict[str, Any]) -> list[dict[str, Any]]:
        """Take one output line; returns the group line it completed, if any."""
        original, label = split_variant(line["custom_id"])
        done = self.flush() if original != self._original else []
        self._original = original
        self._variants[label or PLAIN] = line
        return done

    def flush(self) -> list[dict[str, Any]]:
        """The group line being collected (at the end of the results)."""
        if self._original is None:
            return []
        variants, self._variants = self._variants, {}
        original, self._original = self._original, None
        costs = [v["batchyard"]["cost"] for v in variants.values()]
        return [
            {
                "custom_id": original,
                "variants": variants,
                "batchyard": {
                    "variants": len(variants),
                    "succeeded": sum(1 for v in variants.values() if v["error"] is None),
                    "cost": round(sum(c for c in costs if c is not None), 8),
                },
            }
        ]


@dataclass(frozen=True)
class VariantCost:
    """Cost of one fan-out variant (samples added together), e.g. `model=gpt-4.1-nano`."""

    variant: str
    requests: int
    succeeded: int
    input_tokens: int
    output_tokens: int
    estimated: float
    actual: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _without_sample(label: str) -> str:
    parts = [p for p in label.split(",") if not p.startswith("sample=")]
    return ",".join(parts) or "all samples"


def _estimate(r: RequestRow) -> float:
    if r.route is Route.FLEX and r.est_cost_flex is not None:
        return r.est_cost_flex
    if r.route is Route.BATCH and r.est_cost_batch is not None:
        return r.est_cost_batch
    return r.est_cost_standard


def variant_costs(store: Store, run_id: str) -> list[VariantCost]:
    """Per variant (in first-seen order): requests, outcomes, tokens, estimated and actual
    cost. Empty when no custom_id of the run names a variant."""
    totals: dict[str, dict[str, float]] = {}
    sums = ("requests", "succeeded", "input_tokens", "output_tokens", "estimated", "actual")
    for r in store.iter_requests(run_id):
        label = split_variant(r.custom_id)[1]
        key = PLAIN if label is None else _without_sample(label)
        t = totals.setdefault(key, dict.fromkeys(sums, 0.0))
        t["requests"] += 1
        t["succeeded"] += r.status is RequestStatus.SUCCEEDED
        t["input_tokens"] += r.input_tokens or 0
        t["output_tokens"] += r.output_tokens or 0
        t["estimated"] += _estimate(r)
        t["actual"] += r.cost or 0.0
    if set(totals) <= {PLAIN}:
        return []
    return [
        VariantCost(
            variant=key,
            requests=int(t["requests"]),
            succeeded=int(t["succeeded"]),
            input_tokens=int(t["input_tokens"]),
            output_tokens=int(t["output_tokens"]),
            estimated=round(t["estimated"], 6),
            actual=round(t["actual"], 6),
        )
        for key, t in totals.items()
    ]
