"""Deciding routes for a run, and re-deciding them while it runs.

Owns `route_work` (rules on per-model sums: the decision names no request), `route`
(the same for callers holding the requests: it also assigns each line, see `assign.py`),
`decide` (rules, then `--strict` and the budget, which may force a batch-only plan or
refuse with the numbers) and `redecide` (the mid-run view: at the escalation point, cancel
the model's batch shards, keep their finished lines, finish the rest in real time; a shard
whose cancel has not finished by its release point goes to real time anyway).
Pure: no I/O, no clock; the caller passes `now` and everything it knows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import replace

from batchyard.errors import InputError, PlanRefused
from batchyard.models import Route, RouteOverride
from batchyard.router.assign import Assigner
from batchyard.router.costs import Estimate, estimate
from batchyard.router.decision import Assignment, Change, Decision, ModelDecision, Redecision
from batchyard.router.escalation import release_point
from batchyard.router.features import ModelCapacity, RequestFeatures, RunPolicy
from batchyard.router.parse import format_duration, format_time, format_usd
from batchyard.router.rules import (
    BATCH_ONLY_RULES,
    DEFAULT_RULES,
    ModelContext,
    Rule,
    make_context,
)
from batchyard.router.turnaround import Turnaround
from batchyard.router.work import NO_WORK, ModelWork, ShardState, Tally, Work, WorkSum

__all__ = [
    "KEEP_LATE",
    "LineSource",
    "ShardState",
    "decide",
    "decide_lines",
    "is_small_run",
    "redecide",
    "route",
    "route_work",
]

_EPS = 1e-9
KEEP_LATE = 10_000  # late lines named by a decision made on streamed lines (all are counted)
# Gives the lines of a run again, in input order, each time it is called.
LineSource = Callable[[], Iterable[RequestFeatures]]


def is_small_run(
    work: Mapping[str, ModelWork] | Sequence[RequestFeatures] | Work, policy: RunPolicy
) -> bool:
    """Too small for batching to matter: few requests, or little money at standard price."""
    if isinstance(work, Work):
        total = work
    elif isinstance(work, Mapping):
        total = sum((w.total for w in work.values()), NO_WORK)
    else:
        total = sum((Work.of(r) for r in work), NO_WORK)
    return total.count <= policy.small_run_requests or total.cost.standard <= policy.small_run_usd


def _shard_actions(
    ctx: ModelContext, md: ModelDecision
) -> tuple[tuple[str, ...], tuple[str, ...], float | None]:
    """(shards to cancel now, cancelling shards to release to real time now, the next
    release point still ahead: when the caller must look again)."""
    esc = md.escalation_at
    if esc is None:
        return (), (), None
    now = ctx.now
    reached = now >= esc - ctx.policy.escalation_step_s
    cancel = tuple(s.shard_id for s in ctx.shards if not s.cancelling and reached)
    deadline = ctx.policy.deadline
    release: list[str] = []
    ahead: list[float] = []
    if deadline is not None:
        for s in ctx.shards:
            if not s.cancelling:
                continue
            point = release_point(
                deadline, ctx.work, ctx.shards, s, ctx.capacity, ctx.escalation_route, ctx.safety
            )
            if now >= point:
                release.append(s.shard_id)
            else:
                ahead.append(point)
    return cancel, tuple(release), min(ahead, default=None)


def route_work(
    work: Mapping[str, ModelWork],
    policy: RunPolicy,
    capacities: Mapping[str, ModelCapacity],
    now: float,
    turnarounds: Mapping[str, Turnaround] | None = None,
    rules: Rule = DEFAULT_RULES,
    *,
    shards: Sequence[ShardState] = (),
    cancel: Turnaround | None = None,
    small_run: bool | None = None,
) -> tuple[Decision, dict[str, ModelContext]]:
    """Apply `rules` to each model's sums. No budget or `--strict` check.

    `shards`: the run's live batch shards (their lines are not in `work`); `cancel`: the
    learned cancel latency; `small_run`: decided by the caller when the run's size is
    fixed (mid-run), else from `work`. Returns the decision and each model's context.
    """
    turnarounds = turnarounds or {}
    latency = cancel or Turnaround.cancel_prior()
    small = is_small_run(work, policy) if small_run is None else small_run
    names = sorted(set(work) | {s.model for s in shards})
    models: list[ModelDecision] = []
    contexts: dict[str, ModelContext] = {}
    for model in names:
        ctx = make_context(
            model,
            work.get(model) or ModelWork(model),
            [s for s in shards if s.model == model],
            capacities.get(model) or ModelCapacity(model=model),
            policy,
            now,
            turnarounds.get(model) or Turnaround.prior(),
            latency,
            small,
        )
        decided = rules(ctx)
        if decided is None:
            raise ValueError(
                f"rules {rules!r} decided nothing for {model}; end them with a catch-all"
            )
        cancel_ids, release_ids, release_at = _shard_actions(ctx, decided)
        decided = replace(
            decided, cancel_shards=cancel_ids, release_shards=release_ids, release_at=release_at
        )
        fast = ctx.work.fast
        if fast:
            decided = replace(
                decided,
                routed={**decided.routed, Route.FAST: fast},
                reason=f"{decided.reason}; {fast.count:,} in fast mode as their bodies ask",
            )
        models.append(decided)
        contexts[model] = ctx
    reason = "; ".join(f"{m.model}: {m.reason}" for m in models) or "nothing to route"
    return Decision(now=now, models=tuple(models), reason=reason), contexts


def _assigned(
    decision: Decision,
    requests: Iterable[RequestFeatures],
    capacities: Mapping[str, ModelCapacity],
) -> Decision:
    """The decision with every request assigned, and exact sums per route."""
    caps = {
        m.model: capacities.get(m.model) or ModelCapacity(model=m.model) for m in decision.models
    }
    assigner = Assigner(decision, caps, keep_late=10**9)
    lines: dict[str, list[Assignment]] = {m.model: [] for m in decision.models}
    routed: dict[str, dict[Route, Work]] = {m.model: {} for m in decision.models}
    deferred: dict[str, Work] = {m.model: NO_WORK for m in decision.models}
    late: dict[str, list[str]] = {m.model: [] for m in decision.models}
    for r in requests:
        before = assigner.late_count
        a = assigner.assign(r)
        lines[r.model].append(a)
        if assigner.late_count > before:
            late[r.model].append(r.custom_id)
        if r.shard is not None:
            continue
        per = routed[r.model]
        per[a.route] = per.get(a.route, NO_WORK) + Work.of(r)
        if a.deferred:
            deferred[r.model] = deferred[r.model] + Work.of(r)
    models = tuple(
        replace(
            m,
            assignments=tuple(lines[m.model]),
            cannot_meet=tuple(late[m.model]),
            late=len(late[m.model]),
            routed=routed[m.model],
            deferred=deferred[m.model],
        )
        for m in decision.models
    )
    return Decision(now=decision.now, models=models, reason=decision.reason)


def _streamed(
    decision: Decision, lines: LineSource, capacities: Mapping[str, ModelCapacity]
) -> Decision:
    """`_assigned` for lines that stream past: the same sums per route, the late lines
    counted (the first `KEEP_LATE` named), and no assignment kept: the decision replays
    them from `lines` when asked."""
    caps = {
        m.model: capacities.get(m.model) or ModelCapacity(model=m.model) for m in decision.models
    }
    assigner = Assigner(decision, caps, keep_late=0)
    routed: dict[str, dict[Route, WorkSum]] = {m.model: {} for m in decision.models}
    deferred = {m.model: WorkSum() for m in decision.models}
    late: dict[str, list[str]] = {m.model: [] for m in decision.models}
    counts = dict.fromkeys(routed, 0)
    named = 0
    for r in lines():
        before = assigner.late_count
        a = assigner.assign(r)
        if assigner.late_count > before:
            counts[r.model] += 1
            if named < KEEP_LATE:
                late[r.model].append(r.custom_id)
                named += 1
        if r.shard is not None:
            continue
        per = routed[r.model]
        acc = per.get(a.route)
        if acc is None:
            acc = per[a.route] = WorkSum()
        acc.add(r)
        if a.deferred:
            deferred[r.model].add(r)
    models = tuple(
        replace(
            m,
            cannot_meet=tuple(late[m.model]),
            late=counts[m.model],
            routed={route: acc.work() for route, acc in routed[m.model].items()},
            deferred=deferred[m.model].work(),
        )
        for m in decision.models
    )
    done = Decision(now=decision.now, models=models, reason=decision.reason)

    def replay() -> Iterator[Assignment]:
        again = Assigner(done, caps, keep_late=0)
        return (again.assign(r) for r in lines())

    return replace(done, replay=replay)


def _check_unique(requests: Sequence[RequestFeatures]) -> None:
    seen: set[str] = set()
    for r in requests:
        if r.custom_id in seen:
            raise InputError(f"custom_id {r.custom_id!r} appears more than once; make each unique.")
        seen.add(r.custom_id)


def route(
    requests: Sequence[RequestFeatures],
    policy: RunPolicy,
    capacities: Mapping[str, ModelCapacity],
    now: float,
    turnarounds: Mapping[str, Turnaround] | None = None,
    rules: Rule = DEFAULT_RULES,
    *,
    shards: Sequence[ShardState] = (),
    in_flight: Sequence[RequestFeatures] = (),
    cancel: Turnaround | None = None,
    small_run: bool | None = None,
) -> Decision:
    """`route_work` for a list of requests, each of them assigned (in the order given).

    Requests with `shard` set are inside a live shard; `in_flight` are real-time calls on
    the wire (counted as real-time work, not routed).
    """
    return _route(
        requests, policy, capacities, now, turnarounds, rules, shards, in_flight, cancel, small_run
    )[0]


def _route(
    requests: Sequence[RequestFeatures],
    policy: RunPolicy,
    capacities: Mapping[str, ModelCapacity],
    now: float,
    turnarounds: Mapping[str, Turnaround] | None,
    rules: Rule,
    shards: Sequence[ShardState],
    in_flight: Sequence[RequestFeatures],
    cancel: Turnaround | None,
    small_run: bool | None,
) -> tuple[Decision, dict[str, ModelContext]]:
    _check_unique(requests)
    tally = Tally().extend(requests)
    for r in in_flight:
        tally.add(r, in_flight=True)
    if small_run is None:
        small_run = is_small_run([r for r in requests if r.shard is None], policy)
    decision, contexts = route_work(
        tally.result(),
        policy,
        capacities,
        now,
        turnarounds,
        rules,
        shards=shards,
        cancel=cancel,
        small_run=small_run,
    )
    return _assigned(decision, requests, capacities), contexts


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
        return _route(requests, *args, chosen, (), (), cancel, None)

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
) -> tuple[Decision, Estimate]:
    """`decide` for a run too large to hold: the rules see `tally`'s sums, and `lines()`
    (the same requests, in input order, given again on each call) streams past the
    decision to give each line its route, never all of them at once. The decision's
    `assignments` replays them. Holds O(models x routes) state whatever the run's size.
    """
    turnarounds = turnarounds or {}
    work = tally.result()
    small = is_small_run(tally.routable.work(), policy)

    def routed(chosen: Rule) -> tuple[Decision, dict[str, ModelContext]]:
        decision, contexts = route_work(
            work, policy, capacities, now, turnarounds, chosen, cancel=cancel, small_run=small
        )
        return _streamed(decision, lines, capacities), contexts

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


def redecide(
    requests: Sequence[RequestFeatures],
    policy: RunPolicy,
    capacities: Mapping[str, ModelCapacity],
    now: float,
    turnarounds: Mapping[str, Turnaround] | None = None,
    shards: Sequence[ShardState] = (),
    current_routes: Mapping[str, Route] | None = None,
    rules: Rule = DEFAULT_RULES,
    *,
    in_flight: Sequence[RequestFeatures] = (),
    cancel: Turnaround | None = None,
    small_run: bool | None = None,
) -> Redecision:
    """Re-decide the run's open work at `now` with current limits, failures and shards.

    `requests`: the run's open requests not on the wire (those inside a live shard have
    `shard` set); `in_flight`: real-time calls on the wire. `current_routes`: each open
    request's route so far, used to report changes of course. No budget refusal here:
    mid-run, `costs.budget_stop_reason` guards each dispatch instead.
    """
    decision = route(
        requests,
        policy,
        capacities,
        now,
        turnarounds,
        rules,
        shards=shards,
        in_flight=in_flight,
        cancel=cancel,
        small_run=small_run,
    )
    current = dict(current_routes or {})
    changes: list[Change] = []
    for md in decision.models:
        when = format_time(md.escalation_at or now)
        for shard in md.cancel_shards:
            why = f"escalation point {when} reached; finished lines are kept"
            changes.append(Change("cancel_shard", shard, Route.BATCH, md.escalation_route, why))
        for shard in md.release_shards:
            why = (
                f"cancel of shard {shard} not finished at the last moment real time can start; "
                "its lines go to real time (those the batch finished are paid twice)"
            )
            changes.append(Change("release_shard", shard, Route.BATCH, md.escalation_route, why))
        for a in md.assignments:
            before = current.get(a.custom_id)
            if before is not None and before is not a.route:
                changes.append(Change("reroute", a.custom_id, before, a.route, a.reason))
    return Redecision(
        decision=decision,
        cancel_shards=decision.cancel_shards,
        release_shards=decision.release_shards,
        changes=tuple(changes),
    )
