"""The routing rules for one model's open work, and the timing arithmetic they share.

Owns `realtime_seconds`, `escalation_point` and the rules. A rule looks at a
`ModelContext` and either decides (returns a `ModelDecision`) or passes (returns None).
Rules compose like tenacity's stop/wait objects: `a | b` tries `a`, then `b`.
`DEFAULT_RULES` is the policy of the issue: batch first, escalate at the last safe moment.
Pure: no I/O, no clock; `now` comes in through the context.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from batchyard.errors import ConfigError
from batchyard.models import Route, RouteOverride
from batchyard.router.decision import Assignment, ModelDecision
from batchyard.router.features import ModelCapacity, RequestFeatures, RunPolicy
from batchyard.router.parse import format_duration, format_time
from batchyard.router.turnaround import Turnaround

__all__ = [
    "BATCH_ONLY_RULES",
    "DEFAULT_RULES",
    "ModelContext",
    "Rule",
    "batch_only_rule",
    "deadline_rule",
    "dispatch_order",
    "escalation_point",
    "finish_offsets",
    "flex_bargain_rule",
    "make_context",
    "no_deadline_rule",
    "override_rule",
    "pin_fast",
    "quota_rule",
    "realtime_seconds",
    "small_run_rule",
]


def dispatch_order(requests: Sequence[RequestFeatures]) -> tuple[RequestFeatures, ...]:
    """Priority first (higher first), then saving per token (higher first), then file order."""
    indexed = sorted(
        enumerate(requests), key=lambda p: (-p[1].priority, -p[1].saving_per_token, p[0])
    )
    return tuple(r for _, r in indexed)


def finish_offsets(
    work: Sequence[RequestFeatures], capacity: ModelCapacity, route: Route = Route.STANDARD
) -> list[float]:
    """Seconds from now until each request, sent in order, has its answer.

    Requests are paced by RPM and by TPM counted as OpenAI counts it (input plus maximum
    output), whichever binds; each answer then takes the route's latency.
    """
    rpm, tpm, latency = capacity.limits(route)
    offsets: list[float] = []
    tokens = 0
    for count, r in enumerate(work, start=1):
        tokens += r.rate_limit_tokens
        offsets.append(max(count / rpm, tokens / tpm) * 60.0 + latency)
    return offsets


def realtime_seconds(
    work: Sequence[RequestFeatures], capacity: ModelCapacity, route: Route = Route.STANDARD
) -> float:
    """Seconds real time needs to finish all of `work` on `route` at the current limits."""
    offsets = finish_offsets(work, capacity, route)
    return offsets[-1] if offsets else 0.0


def escalation_point(deadline: float | None, realtime_s: float, margin_s: float) -> float | None:
    """The last safe moment to move unfinished batch work to real time (None: no deadline)."""
    if deadline is None:
        return None
    return deadline - realtime_s - margin_s


@dataclass(frozen=True)
class ModelContext:
    """Everything a rule may look at for one model, with the derived timings."""

    model: str
    requests: tuple[RequestFeatures, ...]  # dispatch order
    capacity: ModelCapacity
    policy: RunPolicy
    now: float
    turnaround: Turnaround
    small_run: bool
    escalation_route: Route
    realtime_s: float
    escalation_at: float | None
    in_shard: frozenset[str] = frozenset()  # already in a live batch shard, already enqueued


def _flex_fits(
    work: Sequence[RequestFeatures], capacity: ModelCapacity, policy: RunPolicy, now: float
) -> bool:
    if policy.deadline is None:
        return True
    return now + realtime_seconds(work, capacity, Route.FLEX) + policy.margin_s <= policy.deadline


def make_context(
    model: str,
    requests: Sequence[RequestFeatures],
    capacity: ModelCapacity,
    policy: RunPolicy,
    now: float,
    turnaround: Turnaround,
    small_run: bool,
    in_shard: frozenset[str] = frozenset(),
) -> ModelContext:
    """Order the work and compute the real-time route, its duration and the escalation point.

    Real time means flex where the model allows it, flex is no dearer than standard and its
    latency fits the deadline; else standard. An open breaker pulls the point earlier.
    """
    ordered = dispatch_order(requests)
    flex_cheaper = all(r.cost.flex is not None and r.cost.flex <= r.cost.standard for r in ordered)
    use_flex = capacity.flex_usable and flex_cheaper and _flex_fits(ordered, capacity, policy, now)
    route = Route.FLEX if use_flex else Route.STANDARD
    rt_s = realtime_seconds(ordered, capacity, route)
    margin = policy.margin_s + (policy.breaker_margin_s if capacity.breaker_open else 0.0)
    return ModelContext(
        model=model,
        requests=ordered,
        capacity=capacity,
        policy=policy,
        now=now,
        turnaround=turnaround,
        small_run=small_run,
        escalation_route=route,
        realtime_s=rt_s,
        escalation_at=escalation_point(policy.deadline, rt_s, margin),
        in_shard=in_shard,
    )


RuleFn = Callable[[ModelContext], ModelDecision | None]


class Rule:
    """A named routing rule; `a | b` is a rule that asks `a` and, if it passes, `b`."""

    def __init__(self, name: str, fn: RuleFn) -> None:
        self.name = name
        self._fn = fn

    def __call__(self, ctx: ModelContext) -> ModelDecision | None:
        return self._fn(ctx)

    def __or__(self, other: Rule) -> Rule:
        def first(ctx: ModelContext) -> ModelDecision | None:
            decided = self(ctx)
            return decided if decided is not None else other(ctx)

        return Rule(f"{self.name} | {other.name}", first)

    def __repr__(self) -> str:
        return f"Rule({self.name})"


def _decided(
    ctx: ModelContext,
    rule: str,
    assignments: Sequence[Assignment],
    reason: str,
    *,
    escalation_at: float | None,
    cannot_meet: Sequence[str] = (),
) -> ModelDecision:
    return ModelDecision(
        model=ctx.model,
        assignments=tuple(assignments),
        escalation_at=escalation_at,
        escalation_route=ctx.escalation_route,
        realtime_s=ctx.realtime_s,
        reason=reason,
        rule=rule,
        cannot_meet=tuple(cannot_meet),
    )


def _realtime_now(ctx: ModelContext, rule: str, route: Route, reason: str) -> ModelDecision:
    """Everything to `route` in dispatch order; names the requests that finish too late."""
    offsets = finish_offsets(ctx.requests, ctx.capacity, route)
    deadline = ctx.policy.deadline
    assignments: list[Assignment] = []
    late: list[str] = []
    for r, offset in zip(ctx.requests, offsets, strict=True):
        why = reason
        if deadline is not None and ctx.now + offset > deadline:
            late.append(r.custom_id)
            late_by = format_duration(ctx.now + offset - deadline)
            why = f"{reason}; cannot make the deadline: ~{late_by} late"
        assignments.append(Assignment(r.custom_id, route, why))
    if late:
        reason = f"{reason}; {len(late)} of {len(ctx.requests)} cannot make the deadline"
    escalation_at = (
        ctx.escalation_at if ctx.escalation_at is not None and route is not Route.BATCH else None
    )
    return _decided(ctx, rule, assignments, reason, escalation_at=escalation_at, cannot_meet=late)


def _batch_all(
    ctx: ModelContext, rule: str, reason: str, *, escalation_at: float | None
) -> ModelDecision:
    """Everything to batch within the enqueued-token headroom; the rest waits for room."""
    cap = ctx.capacity
    room = cap.enqueued_headroom
    waiting = False
    assignments: list[Assignment] = []
    for r in ctx.requests:
        if r.custom_id in ctx.in_shard:
            assignments.append(Assignment(r.custom_id, Route.BATCH, reason))
            continue
        if cap.enqueued_token_limit is not None and r.input_tokens > cap.enqueued_token_limit:
            why = (
                f"{r.input_tokens:,} input tokens exceed the enqueued-token limit "
                f"({cap.enqueued_token_limit:,}) on their own: real time"
            )
            assignments.append(Assignment(r.custom_id, ctx.escalation_route, why))
            continue
        if not waiting and (room is None or r.input_tokens <= room):
            if room is not None:
                room -= r.input_tokens
            assignments.append(Assignment(r.custom_id, Route.BATCH, reason))
            continue
        waiting = True
        why = (
            f"{reason}; waits for enqueued-token headroom (limit {cap.enqueued_token_limit:,}, "
            f"{cap.enqueued_tokens_in_flight:,} in flight)"
        )
        assignments.append(Assignment(r.custom_id, Route.BATCH, why, deferred=True))
    if waiting:
        n = sum(a.deferred for a in assignments)
        reason = f"{reason}; {n} wait for enqueued-token headroom"
    return _decided(ctx, rule, assignments, reason, escalation_at=escalation_at)


def _override(ctx: ModelContext) -> ModelDecision | None:
    route = ctx.policy.route
    if route is RouteOverride.AUTO:
        return None
    if route is RouteOverride.BATCH:
        return _batch_all(
            ctx, "override", "--route batch: batch, no escalation", escalation_at=None
        )
    if route is RouteOverride.FLEX:
        if not ctx.capacity.flex_allowed:
            raise ConfigError(
                f"--route flex: {ctx.model} does not offer flex processing; "
                "use --route auto, realtime or batch."
            )
        return _realtime_now(ctx, "override", Route.FLEX, "--route flex")
    if route is RouteOverride.FAST:
        if not ctx.capacity.fast_allowed:
            raise ConfigError(
                f"--route fast: {ctx.model} does not offer fast mode; "
                "use --route auto, realtime or batch."
            )
        return _realtime_now(ctx, "override", Route.FAST, "--route fast")
    return _realtime_now(ctx, "override", Route.STANDARD, "--route realtime")


def _quota(ctx: ModelContext) -> ModelDecision | None:
    if not ctx.capacity.quota_exhausted:
        return None
    reason = "real-time quota exhausted (insufficient_quota): work waits in batch, no escalation"
    return _batch_all(ctx, "quota", reason, escalation_at=None)


def _small_run(ctx: ModelContext) -> ModelDecision | None:
    if not ctx.small_run or ctx.capacity.breaker_open:
        return None
    p = ctx.policy
    reason = (
        f"run at or below the small-run threshold ({p.small_run_requests} requests or "
        f"${p.small_run_usd:.2f} all-standard): batching does not pay, real time now"
    )
    return _realtime_now(ctx, "small_run", ctx.escalation_route, reason)


def _flex_bargain(ctx: ModelContext) -> ModelDecision | None:
    cap = ctx.capacity
    if not cap.flex_usable:
        return None
    if not all(r.cost.flex is not None and r.cost.flex <= r.cost.batch for r in ctx.requests):
        return None
    if not _flex_fits(ctx.requests, cap, ctx.policy, ctx.now):
        return None
    needs = realtime_seconds(ctx.requests, cap, Route.FLEX)
    reason = (
        f"flex costs what batch costs and answers in ~{format_duration(needs)}, no turnaround risk"
    )
    return _realtime_now(ctx, "flex_bargain", Route.FLEX, reason)


def _no_deadline(ctx: ModelContext) -> ModelDecision | None:
    if ctx.policy.deadline is not None:
        return None
    return _batch_all(ctx, "no_deadline", "no deadline: batch at half price", escalation_at=None)


def _deadline(ctx: ModelContext) -> ModelDecision | None:
    esc = ctx.escalation_at
    if esc is None:  # no deadline: no_deadline_rule's case
        return None
    route = ctx.escalation_route
    needs = f"real time ({route}) needs {format_duration(ctx.realtime_s)} for {len(ctx.requests)}"
    breaker = (
        "; real-time breaker open, escalation pulled earlier" if ctx.capacity.breaker_open else ""
    )
    if esc > ctx.now:
        chance = ctx.turnaround.cdf(esc - ctx.now)
        ahead = f"escalation point {format_time(esc)} (in {format_duration(esc - ctx.now)})"
        if chance < ctx.policy.min_batch_chance:
            reason = f"only {chance:.0%} chance a batch returns before the {ahead}: real time now"
            return _realtime_now(ctx, "deadline", route, reason + breaker)
        reason = f"batch until the {ahead}: {needs}; {chance:.0%} chance it returns first{breaker}"
        return _batch_all(ctx, "deadline", reason, escalation_at=esc)
    left = ctx.policy.deadline - ctx.now if ctx.policy.deadline is not None else 0.0
    reason = (
        f"no slack: {needs} with {format_duration(max(left, 0.0))} to the deadline; "
        f"real time now, highest priority first{breaker}"
    )
    return _realtime_now(ctx, "deadline", route, reason)


def pin_fast(decided: ModelDecision | None, ctx: ModelContext) -> ModelDecision:
    """Add the requests of `ctx` (their bodies ask for fast mode) to `decided` as fast,
    real time now: fast mode is a real-time tier, so such a line is never batched."""
    reason = "the body asks for service_tier fast: sent in fast mode now, never batched"
    fast = _realtime_now(ctx, "fast", Route.FAST, reason)
    if decided is None:
        return fast
    n = len(fast.assignments)
    return replace(
        decided,
        assignments=fast.assignments + decided.assignments,
        reason=f"{decided.reason}; {n} in fast mode as their bodies ask",
        cannot_meet=fast.cannot_meet + decided.cannot_meet,
    )


override_rule = Rule("override", _override)
quota_rule = Rule("quota", _quota)
small_run_rule = Rule("small_run", _small_run)
flex_bargain_rule = Rule("flex_bargain", _flex_bargain)
no_deadline_rule = Rule("no_deadline", _no_deadline)
deadline_rule = Rule("deadline", _deadline)
batch_only_rule = Rule(
    "batch_only",
    lambda ctx: _batch_all(
        ctx, "batch_only", "budget allows only batch: no escalation", escalation_at=None
    ),
)

DEFAULT_RULES = (
    override_rule
    | quota_rule
    | small_run_rule
    | flex_bargain_rule
    | no_deadline_rule
    | deadline_rule
)
# What a budget too small for escalation leaves: flex where it costs batch price, else batch.
BATCH_ONLY_RULES = override_rule | quota_rule | flex_bargain_rule | batch_only_rule
