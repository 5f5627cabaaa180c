"""The plan `batchyard plan` and `submit` print: what goes where, when, for how much.

Owns `Plan` (rows per model and route, escalation points, best/expected/worst cost,
expected finish, saving against all-standard, probability of escalation, the reasons) and
`make_plan`, which decides (raising `PlanRefused` on `--strict` or budget) and summarises.
No API calls, no I/O, no clock; `to_dict()` is the `--json` form.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from batchyard.models import RouteOverride
from batchyard.router.budget import decide
from batchyard.router.costs import Estimate, PlanRow
from batchyard.router.decision import Decision
from batchyard.router.features import ModelCapacity, RequestFeatures, RunPolicy
from batchyard.router.parse import format_duration, format_time, format_usd
from batchyard.router.rules import DEFAULT_RULES, Rule
from batchyard.router.turnaround import Turnaround

__all__ = ["Plan", "make_plan", "plan_from_decision"]


@dataclass(frozen=True)
class Plan:
    """A decided run, costed. Money in USD, times in unix seconds."""

    now: float
    deadline: float | None
    budget_usd: float | None
    route: RouteOverride
    rows: tuple[PlanRow, ...]
    best: float
    expected: float
    worst: float
    all_standard: float
    p_escalation: float
    expected_finish: float | None
    escalation_at: Mapping[str, float | None]
    cannot_meet: tuple[str, ...]
    reason: str
    reasons: Mapping[str, str]  # per model
    decision: Decision
    reused: int = 0  # lines earlier answers will answer (not sent, not in `rows`)
    twins: int = 0  # lines identical to an earlier line of the file: sent once
    reuse_saving: float = 0.0  # what those answers cost when bought, or would cost now

    @property
    def saving(self) -> float:
        """Expected saving against sending everything at standard price."""
        return self.all_standard - self.expected

    @property
    def requests(self) -> int:
        return sum(r.requests for r in self.rows)

    @property
    def late(self) -> int:
        """Requests that cannot make the deadline even in real time from now."""
        return self.decision.late

    def to_dict(self, *, assignments: bool = True) -> dict[str, Any]:
        """A JSON-ready view (`plan --json`); `assignments=False` leaves out the per-request
        routes (one entry per request: large for big files, and kept in the store anyway)."""
        data = {
            "now": self.now,
            "deadline": self.deadline,
            "budget_usd": self.budget_usd,
            "route": self.route.value,
            "requests": self.requests,
            "rows": [_row_dict(r) for r in self.rows],
            "cost": {
                "best": self.best,
                "expected": self.expected,
                "worst": self.worst,
                "all_standard": self.all_standard,
                "saving": self.saving,
            },
            "reuse": {
                "reused": self.reused,
                "twins": self.twins,
                "saving": self.reuse_saving,
            },
            "p_escalation": self.p_escalation,
            "expected_finish": self.expected_finish,
            "escalation_at": dict(self.escalation_at),
            "cannot_meet": list(self.cannot_meet),
            "late": self.late,
            "reason": self.reason,
            "reasons": dict(self.reasons),
        }
        if assignments:
            data["assignments"] = [
                {
                    "custom_id": a.custom_id,
                    "route": a.route.value,
                    "reason": a.reason,
                    "deferred": a.deferred,
                }
                for a in self.decision.assignments
            ]
        return data

    def summary_lines(self) -> list[str]:
        """Plain-text lines for a terminal; the CLI may render a richer table from `rows`."""
        lines = [
            f"{r.model:<20} {r.route.value:<8} {r.requests:>7} req {r.input_tokens:>11,} in "
            f"{r.output_tokens:>11,} out  {format_usd(r.expected)} expected"
            + (
                f"  escalate at {format_time(r.escalation_at)}"
                if r.escalation_at is not None
                else ""
            )
            for r in self.rows
        ]
        lines.append(
            f"cost: expected {format_usd(self.expected)}, worst case {format_usd(self.worst)}, "
            f"best {format_usd(self.best)}; all-standard {format_usd(self.all_standard)}, "
            f"expected saving {format_usd(self.saving)}; escalation {self.p_escalation:.0%} likely"
        )
        if self.reused or self.twins:
            lines.append(
                f"reuse: {self.reused} line(s) answered from earlier runs, {self.twins} "
                f"identical to an earlier line (sent once); saving {format_usd(self.reuse_saving)}"
            )
        if self.expected_finish is not None:
            lines.append(
                f"expected finish {format_time(self.expected_finish)} "
                f"(in {format_duration(self.expected_finish - self.now)})"
            )
        if self.late:
            lines.append(
                f"{self.late} request(s) cannot make the deadline: "
                + ", ".join(self.cannot_meet[:10])
                + (", ..." if self.late > 10 else "")
            )
        lines.extend(f"{m}: {why}" for m, why in self.reasons.items())
        return lines


def _row_dict(r: PlanRow) -> dict[str, Any]:
    return {
        "model": r.model,
        "route": r.route.value,
        "requests": r.requests,
        "input_tokens": r.input_tokens,
        "output_tokens": r.output_tokens,
        "cost": r.cost,
        "best": r.best,
        "expected": r.expected,
        "worst": r.worst,
        "p_escalation": r.p_escalation,
        "escalation_at": r.escalation_at,
        "expected_finish": r.expected_finish,
        "all_standard": r.all_standard,
        "saving": r.saving,
        "deferred": r.deferred,
        "output_tokens_worst": r.output_worst,
    }


def plan_from_decision(decision: Decision, est: Estimate, policy: RunPolicy) -> Plan:
    """A decision and its estimate as a plan."""
    return Plan(
        now=decision.now,
        deadline=policy.deadline,
        budget_usd=policy.budget_usd,
        route=policy.route,
        rows=est.rows,
        best=est.best,
        expected=est.expected,
        worst=est.worst,
        all_standard=est.all_standard,
        p_escalation=est.p_escalation,
        expected_finish=est.expected_finish,
        escalation_at=decision.escalation_at,
        cannot_meet=decision.cannot_meet,
        reason=decision.reason,
        reasons={m.model: m.reason for m in decision.models},
        decision=decision,
    )


def make_plan(
    requests: Sequence[RequestFeatures],
    policy: RunPolicy,
    capacities: Mapping[str, ModelCapacity],
    now: float,
    turnarounds: Mapping[str, Turnaround] | None = None,
    rules: Rule = DEFAULT_RULES,
    *,
    cancel: Turnaround | None = None,
) -> Plan:
    """Decide and cost a run; raises `PlanRefused` (with the numbers) like `decide`."""
    decision, est = decide(requests, policy, capacities, now, turnarounds, rules, cancel=cancel)
    return plan_from_decision(decision, est, policy)
