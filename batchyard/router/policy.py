"""Deciding routes for a run, and re-deciding them while it runs.

Owns `route_work` (rules on per-model sums: the decision names no request), `route`
(the same for callers holding the requests: it also assigns each line, see `lines.py`)
and `redecide` (the mid-run view: at the escalation point, cancel the model's batch shards,
keep their finished lines, finish the rest in real time; a shard whose cancel has not
finished by its release point goes to real time anyway). Deciding a run before it starts,
with `--strict` and the budget, is `budget.py`.
Pure: no I/O, no clock; the caller passes `now` and everything it knows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from batchyard.errors import InputError
from batchyard.models import Route
from batchyard.router.decision import Change, Decision, ModelDecision, Redecision
from batchyard.router.escalation import release_point
from batchyard.router.features import ModelCapacity, RequestFeatures, RunPolicy
from batchyard.router.lines import assigned
from batchyard.router.parse import format_time
from batchyard.router.rules import DEFAULT_RULES, ModelContext, Rule, make_context
from batchyard.router.turnaround import Turnaround
from batchyard.router.work import NO_WORK, ModelWork, ShardState, Tally, Work

__all__ = [
    "ShardState",
    "is_small_run",
    "redecide",
    "route",
    "route_and_contexts",
    "route_work",
]


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
    return route_and_contexts(
        requests, policy, capacities, now, turnarounds, rules, shards, in_flight, cancel, small_run
    )[0]


def route_and_contexts(
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
    """`route`, with each model's context as well (what `budget.decide` costs)."""
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
    return assigned(decision, requests, capacities), contexts


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
