"""Deciding a run before it starts: the rules' routes, then `--strict` and the budget.

Owns `decide` (for a held list of requests) and `decide_lines` (for a run too large to
hold: its sums and a way to stream its lines again), and the refusals they raise. The
budget is checked against the worst case; where it does not fit but batch-only does and
can still finish before the deadline (or there is none), it forces batch-only and the
reason says so; otherwise `PlanRefused` gives the numbers and what would fit. Mid-run,
`costs.budget_stop_reason` guards each dispatch instead.
Pure: no I/O, no clock; the caller passes `now` and everything it knows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace

from batchyard.errors import PlanRefused
from batchyard.models import RouteOverride
from batchyard.router.costs import Estimate, estimate
from batchyard.router.decision import Decision
from batchyard.router.features import ModelCapacity, RequestFeatures, RunPolicy
from batchyard.router.lines import LineSource, Memo, streamed
from batchyard.router.parse import format_duration, format_time, format_usd
from batchyard.router.policy import is_small_run, route_and_contexts, route_work
from batchyard.router.rules import BATCH_ONLY_RULES, DEFAULT_RULES, ModelContext, Rule
from batchyard.router.turnaround import Turnaround
from batchyard.router.work import Tally

__all__ = ["decide", "decide_lines"]

_EPS = 1e-9


def _refuse_strict(decision: Decision, policy: RunPolicy, total: int) -> None:
    late = decision.cannot_meet
    count = decision.late
    if not policy.strict or not count or policy.deadline is None:
        return
    needs = max(m.realtime_s for m in decision.models if m.late)
    sample = ", ".join(late[:5]) + (", ..." if count > 5 else "")
    earliest = decision.now + needs * (1 + policy.realtime_spread) + policy.margin_s
    raise PlanRefused(
        f"--strict: {count} of {total} requests cannot finish by the deadline "
        f"{format_time(policy.deadline)} even in real time from now ({sample}); real time needs "
        f"{format_duration(needs)}. Loosen --deadline to {format_time(earliest)} or later, "
        "or drop --strict to start anyway."
    )


def _batch_only_allowed(
    policy: RunPolicy, now: float, turnarounds: Mapping[str, Turnaround], models: Sequence[str]
) -> bool:
    """A budget may force batch-only only where batch can still finish before the deadline."""
    if policy.route not in (RouteOverride.AUTO, RouteOverride.BATCH):
        return False
    if policy.deadline is None:
        return True
    window = max((turnarounds.get(m) or Turnaround.prior()).max_s for m in models)
    return policy.deadline >= now + window + policy.margin_s


def _refuse_budget(
    budget: float, policy: RunPolicy, est: Estimate, batch_only: Estimate, now: float, window: float
) -> PlanRefused:
    head = (
        f"Worst case {format_usd(est.worst)} exceeds the budget {format_usd(budget)} "
        f"(expected {format_usd(est.expected)}, best {format_usd(est.best)}, all-standard "
        f"{format_usd(est.all_standard)})."
    )
    if batch_only.worst <= budget + _EPS:
        loosen = format_time(now + window + policy.margin_s)
        return PlanRefused(
            f"{head} A batch-only plan costs at most {format_usd(batch_only.worst)}: loosen "
            f"--deadline to {loosen} or later (or drop it) to get it, or raise --budget to "
            f"{format_usd(est.worst)}."
        )
    return PlanRefused(
        f"{head} Even batch only costs up to {format_usd(batch_only.worst)}: raise --budget to at "
        f"least {format_usd(batch_only.worst)}, or split the file."
    )


def decide(
    requests: Sequence[RequestFeatures],
    policy: RunPolicy,
    capacities: Mapping[str, ModelCapacity],
    now: float,
    turnarounds: Mapping[str, Turnaround] | None = None,
    rules: Rule = DEFAULT_RULES,
    *,
    cancel: Turnaround | None = None,
) -> tuple[Decision, Estimate]:
    """Route a run before it starts, and cost it; raise `PlanRefused` when `--strict` or the
    budget says no.

    The budget is checked against the worst case. If it does not fit but batch-only does
    and can still finish before the deadline (or there is none), the budget forces
    batch-only and the reason says so.
    """
    turnarounds = turnarounds or {}

    def routed(chosen: Rule) -> tuple[Decision, dict[str, ModelContext]]:
        args = (policy, capacities, now, turnarounds)
        return route_and_contexts(requests, *args, chosen, (), (), cancel, None)

    return _decide(routed, rules, policy, now, turnarounds, len(requests))


def decide_lines(
    tally: Tally,
    lines: LineSource,
    policy: RunPolicy,
    capacities: Mapping[str, ModelCapacity],
    now: float,
    turnarounds: Mapping[str, Turnaround] | None = None,
    rules: Rule = DEFAULT_RULES,
    *,
    cancel: Turnaround | None = None,
    memo: tuple[Callable[[], Memo], Callable[[], Iterable[str]]] | None = None,
    stream: Callable[[Decision, Mapping[str, ModelCapacity]], Decision | None] | None = None,
) -> tuple[Decision, Estimate]:
    """`decide` for a run too large to hold: the rules see `tally`'s sums, and `lines()`
    (the same requests, in input order, given again on each call) streams past the
    decision to give each line its route, never all of them at once. The decision's
    `assignments` replays them (from `memo`, as `streamed` says, where given). `stream`,
    where given, assigns the lines itself instead (the caller may assign parts of them at
    once, each from where the earlier parts end, `route_lines`); None from it: stream them
    here. Holds O(models x routes) state whatever the run's size.
    """
    turnarounds = turnarounds or {}
    work = tally.result()
    small = is_small_run(tally.routable.work(), policy)

    def routed(chosen: Rule) -> tuple[Decision, dict[str, ModelContext]]:
        decision, contexts = route_work(
            work, policy, capacities, now, turnarounds, chosen, cancel=cancel, small_run=small
        )
        done = stream(decision, capacities) if stream is not None else None
        return done or streamed(decision, lines, capacities, memo), contexts

    return _decide(routed, rules, policy, now, turnarounds, tally.routable.count)


def _decide(
    routed: Callable[[Rule], tuple[Decision, dict[str, ModelContext]]],
    rules: Rule,
    policy: RunPolicy,
    now: float,
    turnarounds: Mapping[str, Turnaround],
    total: int,
) -> tuple[Decision, Estimate]:
    decision, contexts = routed(rules)
    _refuse_strict(decision, policy, total)
    est = estimate(decision, contexts)
    budget = policy.budget_usd
    if budget is None or est.worst <= budget + _EPS:
        return decision, est
    cheap, cheap_ctx = routed(BATCH_ONLY_RULES)
    cheap_est = estimate(cheap, cheap_ctx)
    models = [m.model for m in decision.models]
    if cheap_est.worst <= budget + _EPS and _batch_only_allowed(policy, now, turnarounds, models):
        note = (
            f"budget {format_usd(budget)} forces batch-only: the worst case with escalation "
            f"{format_usd(est.worst)} would exceed it, batch-only costs at most "
            f"{format_usd(cheap_est.worst)}"
        )
        if policy.deadline is not None:
            note += "; lines of a batch that expires would miss the deadline"
        return replace(cheap, reason=f"{note}; {cheap.reason}"), cheap_est
    window = max((turnarounds.get(m) or Turnaround.prior()).max_s for m in models)
    raise _refuse_budget(budget, policy, est, cheap_est, now, window)
