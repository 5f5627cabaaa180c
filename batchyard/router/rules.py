"""The routing rules for one model's open work, and the escalation arithmetic they share.

Owns `ModelContext` (one model's work, shards, capacity and derived timings),
`make_context` and the rules (the escalation and release points they use are
`escalation.py`). A rule looks at a
`ModelContext` and either decides (returns a `ModelDecision`) or passes (returns None).
Rules compose like tenacity's stop/wait objects: `a | b` tries `a`, then `b`.
`DEFAULT_RULES` is the policy: batch first whenever there is room to try, escalate at the
last safe moment. Rules see only per-model sums (`batchyard.router.work`), never single
requests. Pure: no I/O, no clock; `now` comes in through the context.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from batchyard.errors import ConfigError
from batchyard.models import Route, RouteOverride
from batchyard.router.costs import try_batch_cost
from batchyard.router.decision import ModelDecision
from batchyard.router.escalation import escalation_point
from batchyard.router.features import ModelCapacity, RunPolicy
from batchyard.router.pace import Safety, realtime_seconds
from batchyard.router.parse import format_duration, format_time
from batchyard.router.turnaround import Turnaround
from batchyard.router.work import NO_WORK, ModelWork, ShardState, Work

__all__ = [
    "BATCH_ONLY_RULES",
    "DEFAULT_RULES",
    "ModelContext",
    "Rule",
    "batch_only_rule",
    "deadline_rule",
    "flex_bargain_rule",
    "late_count",
    "make_context",
    "no_deadline_rule",
    "override_rule",
    "quota_rule",
    "small_run_rule",
]


@dataclass(frozen=True)
class ModelContext:
    """Everything a rule may look at for one model, with the derived timings.

    `open` is the routable open work (not in a shard); `unanswered` everything real time
    would have to do if the model escalated now: calls in flight, the open work, and each
    live shard's lines the provider has not finished (by its own count).
    """

    model: str
    work: ModelWork
    shards: tuple[ShardState, ...]
    capacity: ModelCapacity
    policy: RunPolicy
    now: float
    turnaround: Turnaround
    safety: Safety
    small_run: bool
    escalation_route: Route
    realtime_s: float
    escalation_at: float | None

    @property
    def open(self) -> Work:
        return self.work.total

    @property
    def unanswered(self) -> Work:
        return sum((s.remaining for s in self.shards), self.work.fixed + self.open)


def _flex_fits(work: Work, capacity: ModelCapacity, policy: RunPolicy, now: float) -> bool:
    if policy.deadline is None:
        return True
    needs = realtime_seconds(work, capacity, Route.FLEX, policy.realtime_spread)
    return now + needs + policy.margin_s <= policy.deadline


def make_context(
    model: str,
    work: ModelWork,
    shards: Sequence[ShardState],
    capacity: ModelCapacity,
    policy: RunPolicy,
    now: float,
    turnaround: Turnaround,
    cancel: Turnaround,
    small_run: bool,
) -> ModelContext:
    """Work out the real-time route, how long it needs and the escalation point.

    Real time means flex where the model allows it, flex is no dearer than standard and its
    latency fits the deadline; else standard. An open breaker pulls the point earlier.
    """
    safety = Safety.of(policy, cancel)
    total = work.total
    unanswered = sum((s.remaining for s in shards), work.fixed + total)
    flex_price = unanswered.cost.flex
    flex_cheaper = flex_price is not None and flex_price <= unanswered.cost.standard + 1e-12
    use_flex = (
        capacity.flex_usable and flex_cheaper and _flex_fits(unanswered, capacity, policy, now)
    )
    route = Route.FLEX if use_flex else Route.STANDARD
    esc = escalation_point(policy.deadline, work, shards, capacity, route, safety, now)
    if esc is not None and capacity.breaker_open:
        esc -= policy.breaker_margin_s
    return ModelContext(
        model=model,
        work=work,
        shards=tuple(shards),
        capacity=capacity,
        policy=policy,
        now=now,
        turnaround=turnaround,
        safety=safety,
        small_run=small_run,
        escalation_route=route,
        realtime_s=realtime_seconds(unanswered, capacity, route),
        escalation_at=esc,
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


def late_count(ctx: ModelContext, route: Route) -> int:
    """How many open requests finish past the deadline on `route`, sent in dispatch order
    after the calls in flight (requests of one priority taken as equal in size)."""
    deadline = ctx.policy.deadline
    if deadline is None:
        return 0
    rpm, tpm, latency = ctx.capacity.limits(route)
    budget = (deadline - ctx.now - latency) / 60.0  # minutes of pacing that still fit
    count, tokens = ctx.work.fixed.count, ctx.work.fixed.rate_tokens
    late = 0
    for _, w in ctx.work.ordered():
        if w.count == 0:
            continue
        per = w.rate_tokens / w.count
        by_rpm = budget * rpm - count
        by_tpm = (budget * tpm - tokens) / per if per > 0 else float(w.count)
        fits = int(max(0.0, min(float(w.count), by_rpm, by_tpm)) + 1e-9)
        late += w.count - fits
        count, tokens = count + w.count, tokens + w.rate_tokens
    return late


def _decided(
    ctx: ModelContext,
    rule: str,
    route: Route,
    reason: str,
    *,
    escalation_at: float | None,
    late: int = 0,
    deferred: Work = NO_WORK,
) -> ModelDecision:
    deadline = ctx.policy.deadline
    open_ = ctx.open
    return ModelDecision(
        model=ctx.model,
        route=route,
        escalation_at=escalation_at,
        escalation_route=ctx.escalation_route,
        realtime_s=ctx.realtime_s,
        reason=reason,
        rule=rule,
        late=late,
        queue_room=ctx.capacity.enqueued_headroom if route is Route.BATCH else None,
        queue_limit=ctx.capacity.enqueued_token_limit if route is Route.BATCH else None,
        slack_s=None if deadline is None else deadline - ctx.now,
        in_flight=ctx.work.fixed,
        classes=dict(ctx.work.classes),
        routed={route: open_} if open_ else {},
        deferred=deferred,
    )


def _realtime_now(ctx: ModelContext, rule: str, route: Route, reason: str) -> ModelDecision:
    """Everything to `route` now, in dispatch order; counts the requests that finish late."""
    late = late_count(ctx, route)
    if late:
        reason = f"{reason}; about {late:,} of {ctx.open.count:,} cannot make the deadline"
    return _decided(ctx, rule, route, reason, escalation_at=ctx.escalation_at, late=late)


def _batch_all(
    ctx: ModelContext, rule: str, reason: str, *, escalation_at: float | None
) -> ModelDecision:
    """Everything to batch within the enqueued-token headroom; the rest waits for room."""
    cap = ctx.capacity
    room = cap.enqueued_headroom
    open_ = ctx.open
    deferred = NO_WORK
    if room is not None and open_.input_tokens > room:
        deferred = open_.share((open_.input_tokens - room) / max(open_.input_tokens, 1))
        reason = (
            f"{reason}; about {deferred.count:,} wait for enqueued-token headroom (limit "
            f"{cap.enqueued_token_limit:,}, {cap.enqueued_tokens_in_flight:,} in flight)"
        )
    return _decided(ctx, rule, Route.BATCH, reason, escalation_at=escalation_at, deferred=deferred)


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
    if ctx.capacity.quota_exhausted:
        why = "real-time quota exhausted (insufficient_quota)"
    elif ctx.capacity.key_refused:
        why = "the API refused the key or base URL for real-time calls"
    else:
        return None
    reason = f"{why}: work waits in batch, no escalation"
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
    costs = ctx.open.cost
    if costs.flex is None or costs.flex > costs.batch + 1e-12:
        return None
    if not _flex_fits(ctx.open + ctx.work.fixed, cap, ctx.policy, ctx.now):
        return None
    needs = realtime_seconds(ctx.open, cap, Route.FLEX)
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
    needs = (
        f"real time ({route}) needs {format_duration(ctx.realtime_s)} for {ctx.unanswered.count:,}"
    )
    breaker = (
        "; real-time breaker open, escalation pulled earlier" if ctx.capacity.breaker_open else ""
    )
    point = f"escalation point {format_time(esc)}"
    if ctx.model in ctx.policy.escalated and ctx.open:
        reason = (
            f"escalated earlier in this run (its batch was not back by the point): {needs}; "
            f"the rest in real time{breaker}"
        )
        return _realtime_now(ctx, "deadline", route, reason)
    setup = ctx.policy.batch_setup_s
    if not ctx.open or esc - ctx.now >= setup:
        tried = try_batch_cost(ctx)
        now_cost = ctx.open.cost.on(route)
        if ctx.open and tried > now_cost + 1e-12:
            reason = (
                f"trying batch until the {point} is expected to cost more than real time now "
                f"(lines paid twice on a slow cancel): real time now{breaker}"
            )
            return _realtime_now(ctx, "deadline", route, reason)
        chance = ctx.turnaround.cdf(esc - ctx.now - setup)
        reason = (
            f"batch until the {point}: {needs}; {chance:.0%} chance a batch is back before it, "
            f"finished lines are kept either way{breaker}"
        )
        return _batch_all(ctx, "deadline", reason, escalation_at=esc)
    if esc > ctx.now:
        reason = (
            f"no room to try batch: the {point} comes before a new batch could start "
            f"(~{format_duration(setup)}); {needs}; real time now{breaker}"
        )
    else:
        reason = (
            f"no slack: {needs} before the deadline {format_time(ctx.policy.deadline or esc)}; "
            f"real time now, highest priority first{breaker}"
        )
    return _realtime_now(ctx, "deadline", route, reason)


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
