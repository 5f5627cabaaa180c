"""Deciding routes for a run, and re-deciding them while it runs.

Owns `route` (rules only), `decide` (rules, then `--strict` and the budget, which may force
a batch-only plan or refuse with the numbers) and `redecide` (the mid-run view: at the
escalation point, cancel the model's batch shards, keep their finished lines, finish the
rest in real time; before it, shards stay and real time that can wait goes back to batch).
Pure: no I/O, no clock; the caller passes `now` and everything it knows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from batchyard.errors import InputError, PlanRefused
from batchyard.models import Route, RouteOverride
from batchyard.router.costs import Estimate, estimate
from batchyard.router.decision import Assignment, Change, Decision, ModelDecision, Redecision
from batchyard.router.features import ModelCapacity, RequestFeatures, RunPolicy
from batchyard.router.parse import format_duration, format_time, format_usd
from batchyard.router.rules import (
    BATCH_ONLY_RULES,
    DEFAULT_RULES,
    ModelContext,
    Rule,
    make_context,
    pin_fast,
)
from batchyard.router.turnaround import Turnaround

__all__ = ["ShardState", "decide", "is_small_run", "redecide", "route"]

_EPS = 1e-9


@dataclass(frozen=True)
class ShardState:
    """A batch shard that is still live remotely (not yet terminal and applied).

    `completed_ids`: its lines already known finished (from partial output); they are kept.
    """

    shard_id: str
    model: str
    custom_ids: frozenset[str]
    submitted_at: float
    completed_ids: frozenset[str] = field(default_factory=frozenset)


def is_small_run(requests: Sequence[RequestFeatures], policy: RunPolicy) -> bool:
    """Too small for batching to matter: few requests, or little money at standard price."""
    standard = sum(r.cost.standard for r in requests)
    return len(requests) <= policy.small_run_requests or standard <= policy.small_run_usd


def _by_model(requests: Sequence[RequestFeatures]) -> dict[str, list[RequestFeatures]]:
    groups: dict[str, list[RequestFeatures]] = {}
    seen: set[str] = set()
    for r in requests:
        if r.custom_id in seen:
            raise InputError(f"custom_id {r.custom_id!r} appears more than once; make each unique.")
        seen.add(r.custom_id)
        groups.setdefault(r.model, []).append(r)
    return dict(sorted(groups.items()))


def route(
    requests: Sequence[RequestFeatures],
    policy: RunPolicy,
    capacities: Mapping[str, ModelCapacity],
    now: float,
    turnarounds: Mapping[str, Turnaround] | None = None,
    rules: Rule = DEFAULT_RULES,
    in_shard: frozenset[str] = frozenset(),
) -> Decision:
    """Apply `rules` to each model's open work. No budget or `--strict` check.

    `in_shard`: lines already inside live batch shards (their tokens are already counted in
    `enqueued_tokens_in_flight`, so they take no new queue room).
    """
    turnarounds = turnarounds or {}
    small = is_small_run(requests, policy)
    models: list[ModelDecision] = []
    for model, reqs in _by_model(requests).items():
        pinned = [r for r in reqs if r.fast]
        rest = [r for r in reqs if not r.fast] if pinned else reqs

        def context(work: Sequence[RequestFeatures], m: str = model) -> ModelContext:
            return make_context(
                m, work, capacities.get(m) or ModelCapacity(model=m), policy, now,
                turnarounds.get(m) or Turnaround.prior(), small, in_shard,
            )  # fmt: skip

        decided = rules(context(rest)) if rest else None
        if pinned:
            decided = pin_fast(decided, context(pinned))
        if decided is None:
            raise ValueError(
                f"rules {rules!r} decided nothing for {model}; end them with a catch-all"
            )
        models.append(decided)
    reason = "; ".join(f"{m.model}: {m.reason}" for m in models) or "nothing to route"
    return Decision(now=now, models=tuple(models), reason=reason)


def _refuse_strict(decision: Decision, policy: RunPolicy, total: int) -> None:
    late = decision.cannot_meet
    if not policy.strict or not late or policy.deadline is None:
        return
    needs = max(m.realtime_s for m in decision.models if m.cannot_meet)
    sample = ", ".join(late[:5]) + (", ..." if len(late) > 5 else "")
    earliest = decision.now + needs + policy.margin_s
    raise PlanRefused(
        f"--strict: {len(late)} of {total} requests cannot finish by the deadline "
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
) -> Decision:
    """Route a run before it starts; raise `PlanRefused` when `--strict` or the budget says no.

    If the worst case exceeds the budget but batch-only fits and can still finish before the
    deadline (or there is none), the budget forces batch-only and the reason says so.
    """
    turnarounds = turnarounds or {}
    decision = route(requests, policy, capacities, now, turnarounds, rules)
    _refuse_strict(decision, policy, len(requests))
    budget = policy.budget_usd
    if budget is None:
        return decision
    est = estimate(decision, requests, capacities, turnarounds)
    if est.worst <= budget + _EPS:
        return decision
    cheap = route(requests, policy, capacities, now, turnarounds, BATCH_ONLY_RULES)
    cheap_est = estimate(cheap, requests, capacities, turnarounds)
    models = [m.model for m in decision.models]
    if cheap_est.worst <= budget + _EPS and _batch_only_allowed(policy, now, turnarounds, models):
        note = (
            f"budget {format_usd(budget)} forces batch-only: the worst case with escalation "
            f"{format_usd(est.worst)} would exceed it, batch-only costs at most "
            f"{format_usd(cheap_est.worst)}"
        )
        if policy.deadline is not None:
            note += "; lines of a batch that expires would miss the deadline"
        return replace(cheap, reason=f"{note}; {cheap.reason}")
    window = max((turnarounds.get(m) or Turnaround.prior()).max_s for m in models)
    raise _refuse_budget(budget, policy, est, cheap_est, now, window)


def _shard_line(md: ModelDecision, a: Assignment, shard: ShardState, now: float) -> Assignment:
    """The route of a line inside a live shard: it stays, unless the shard is cancelled."""
    esc = md.escalation_at
    if esc is not None and now >= esc:
        reason = (
            f"batch shard {shard.shard_id} cancelled at the escalation point "
            f"{format_time(esc)}; {a.reason}"
        )
        route_ = a.route if a.route is not Route.BATCH else md.escalation_route
        return Assignment(a.custom_id, route_, reason)
    until = (
        f"until the escalation point {format_time(esc)}" if esc is not None else "(no escalation)"
    )
    return Assignment(a.custom_id, Route.BATCH, f"stays in batch shard {shard.shard_id} {until}")


def _to_cancel(md: ModelDecision, now: float) -> bool:
    return md.escalation_at is not None and now >= md.escalation_at


def redecide(
    requests: Sequence[RequestFeatures],
    policy: RunPolicy,
    capacities: Mapping[str, ModelCapacity],
    now: float,
    turnarounds: Mapping[str, Turnaround] | None = None,
    shards: Sequence[ShardState] = (),
    current_routes: Mapping[str, Route] | None = None,
    rules: Rule = DEFAULT_RULES,
) -> Redecision:
    """Re-decide the run's open work at `now` with current limits, failures and shards.

    `requests`: the run's non-terminal requests; lines a shard reports finished are kept and
    dropped from the open work. `current_routes`: each open request's route so far (lines in
    a live shard count as batch), used to report changes of course. No budget refusal here:
    mid-run, `costs.budget_stop_reason` guards each dispatch instead.
    """
    kept = {c for s in shards for c in s.completed_ids}
    open_work = [r for r in requests if r.custom_id not in kept]
    shard_of = {c: s for s in shards for c in s.custom_ids if c not in kept}
    base = route(open_work, policy, capacities, now, turnarounds, rules, frozenset(shard_of))
    current = dict(current_routes or {})
    current.update({c: Route.BATCH for c in shard_of})
    models: list[ModelDecision] = []
    cancel: list[str] = []
    changes: list[Change] = []
    for md in base.models:
        if _to_cancel(md, now):
            for s in shards:
                if s.model == md.model and s.shard_id not in cancel:
                    cancel.append(s.shard_id)
                    when = format_time(md.escalation_at or now)
                    why = f"escalation point {when} reached; finished lines are kept"
                    changes.append(
                        Change("cancel_shard", s.shard_id, Route.BATCH, md.escalation_route, why)
                    )
        lines = tuple(
            _shard_line(md, a, shard_of[a.custom_id], now) if a.custom_id in shard_of else a
            for a in md.assignments
        )
        models.append(replace(md, assignments=lines))
        for a in lines:
            before = current.get(a.custom_id)
            if before is not None and before is not a.route:
                changes.append(Change("reroute", a.custom_id, before, a.route, a.reason))
    decision = Decision(now=now, models=tuple(models), reason=base.reason)
    kept_ids = tuple(sorted(c for c in kept if any(c in s.custom_ids for s in shards)))
    return Redecision(
        decision=decision, cancel_shards=tuple(cancel), kept=kept_ids, changes=tuple(changes)
    )
