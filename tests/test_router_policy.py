"""Table-driven tests of the routing policy: decide, budget, --strict and redecide."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from batchyard.errors import ConfigError, InputError, PlanRefused
from batchyard.models import Endpoint, Route, RouteOverride
from batchyard.router import (
    DEFAULT_RULES,
    Assignment,
    ModelCapacity,
    ModelContext,
    ModelDecision,
    PathCosts,
    RequestFeatures,
    Rule,
    RunPolicy,
    ShardState,
    decide,
    estimate,
    realtime_seconds,
    redecide,
)

NOW = 1_750_000_000.0
HOUR = 3600.0
# $/1M tokens (input, output): standard, batch, flex.
PRICES: dict[str, tuple[tuple[float, float], tuple[float, float], tuple[float, float] | None]] = {
    "gpt-4o-mini": ((0.15, 0.60), (0.075, 0.30), None),
    "gpt-5-mini": ((0.25, 2.00), (0.125, 1.00), (0.125, 1.00)),
    "gpt-4o": ((2.50, 10.00), (1.25, 5.00), None),
}


def req(
    cid: str, model: str = "gpt-4o-mini", inp: int = 1000, out: int = 500, priority: int = 0
) -> RequestFeatures:
    standard, batch, flex = PRICES[model]

    def usd(p: tuple[float, float]) -> float:
        return (inp * p[0] + out * p[1]) / 1e6

    costs = PathCosts(standard=usd(standard), batch=usd(batch), flex=usd(flex) if flex else None)
    return RequestFeatures(cid, Endpoint.CHAT, model, inp, out, costs, priority)


def many(n: int, model: str = "gpt-4o-mini", prefix: str = "r", **kw: Any) -> list[RequestFeatures]:
    return [req(f"{prefix}{i}", model, **kw) for i in range(n)]


def cap(model: str = "gpt-4o-mini", **kw: Any) -> ModelCapacity:
    kw.setdefault("flex_allowed", PRICES[model][2] is not None)
    return ModelCapacity(model=model, **kw)


def caps(*models: str, **kw: Any) -> dict[str, ModelCapacity]:
    return {m: cap(m, **kw) for m in models}


def routes(decision: Any) -> set[Route]:
    return {a.route for a in decision.assignments}


# 2000 gpt-4o-mini requests of 1,500 TPM tokens at 500 RPM / 200k TPM: 15 min + 30 s latency.
BIG = 2000
BIG_RT = BIG * 1500 / 200_000 * 60 + 30


@dataclass
class Case:
    id: str
    requests: list[RequestFeatures]
    deadline_in: float | None
    expect_routes: set[Route]
    expect_rule: str
    reason_has: str
    capacity: dict[str, Any] = field(default_factory=dict)
    policy: dict[str, Any] = field(default_factory=dict)


DECIDE_CASES = [
    Case("no-deadline-batch", many(BIG), None, {Route.BATCH}, "no_deadline", "half price"),
    Case("far-deadline-batch", many(BIG), 24 * HOUR, {Route.BATCH}, "deadline", "batch until"),
    Case("near-deadline-slack-batch", many(BIG), 3 * HOUR, {Route.BATCH}, "deadline", "73% chance"),
    Case(
        "far-deadline-gpt5-flex",
        many(BIG, "gpt-5-mini"),
        24 * HOUR,
        {Route.FLEX},
        "flex_bargain",
        "flex costs what batch costs",
    ),
    Case(
        "no-deadline-gpt5-flex",
        many(BIG, "gpt-5-mini"),
        None,
        {Route.FLEX},
        "flex_bargain",
        "no turnaround risk",
    ),
    Case(
        "flex-unavailable-falls-back-to-batch",
        many(BIG, "gpt-5-mini"),
        24 * HOUR,
        {Route.BATCH},
        "deadline",
        "real time (standard)",
        {"flex_unavailable": True},
    ),
    Case(
        "flex-too-slow-for-deadline",
        many(BIG, "gpt-5-mini"),
        20 * 60,
        {Route.STANDARD},
        "deadline",
        "no slack",
        {"flex_latency_s": 900.0},
    ),
    Case(
        "batch-unlikely-in-time-realtime-now",
        many(BIG),
        30 * 60,
        {Route.STANDARD},
        "deadline",
        "only 4% chance",
    ),
    Case("no-slack-realtime-now", many(BIG), 20 * 60, {Route.STANDARD}, "deadline", "no slack"),
    Case(
        "impossible-lists-late",
        many(BIG),
        10 * 60,
        {Route.STANDARD},
        "deadline",
        "cannot make the deadline",
    ),
    Case(
        "tiny-by-count-realtime",
        many(5),
        None,
        {Route.STANDARD},
        "small_run",
        "small-run threshold",
    ),
    Case(
        "tiny-by-dollars-realtime",
        many(100, inp=100, out=10),
        24 * HOUR,
        {Route.STANDARD},
        "small_run",
        "batching does not pay",
    ),
    Case("tiny-gpt5-flex", many(5, "gpt-5-mini"), None, {Route.FLEX}, "small_run", "real time now"),
    Case(
        "tiny-with-breaker-open-waits-in-batch",
        many(5),
        None,
        {Route.BATCH},
        "no_deadline",
        "batch",
        {"breaker_open": True},
    ),
    Case(
        "breaker-open-slack-batch",
        many(BIG),
        3 * HOUR,
        {Route.BATCH},
        "deadline",
        "breaker open",
        {"breaker_open": True},
    ),
    Case(
        "quota-exhausted-batch",
        many(BIG),
        20 * 60,
        {Route.BATCH},
        "quota",
        "insufficient_quota",
        {"quota_exhausted": True},
    ),
    Case(
        "override-realtime",
        many(BIG),
        24 * HOUR,
        {Route.STANDARD},
        "override",
        "--route realtime",
        policy={"route": RouteOverride.REALTIME},
    ),
    Case(
        "override-batch-near-deadline",
        many(BIG),
        20 * 60,
        {Route.BATCH},
        "override",
        "no escalation",
        policy={"route": RouteOverride.BATCH},
    ),
    Case(
        "override-flex",
        many(BIG, "gpt-5-mini"),
        None,
        {Route.FLEX},
        "override",
        "--route flex",
        policy={"route": RouteOverride.FLEX},
    ),
]


@pytest.mark.parametrize("case", DECIDE_CASES, ids=lambda c: c.id)
def test_decide_routes(case: Case) -> None:
    models = sorted({r.model for r in case.requests})
    policy = RunPolicy(
        deadline=None if case.deadline_in is None else NOW + case.deadline_in, **case.policy
    )
    decision = decide(case.requests, policy, caps(*models, **case.capacity), NOW)
    assert routes(decision) == case.expect_routes
    assert [m.rule for m in decision.models] == [case.expect_rule] * len(models)
    assert case.reason_has in decision.reason
    assert sorted(a.custom_id for a in decision.assignments) == sorted(
        r.custom_id for r in case.requests
    )
    assert all(a.reason for a in decision.assignments)


@pytest.mark.parametrize(
    ("deadline_in", "margin", "breaker"),
    [
        (3 * HOUR, 600.0, False),
        (24 * HOUR, 600.0, False),
        (3 * HOUR, 1800.0, False),
        (3 * HOUR, 600.0, True),
    ],
    ids=["3h", "24h", "3h-margin-30m", "3h-breaker-open"],
)
def test_escalation_point_is_deadline_minus_realtime_minus_margin(
    deadline_in: float, margin: float, breaker: bool
) -> None:
    policy = RunPolicy(deadline=NOW + deadline_in, margin_s=margin, breaker_margin_s=300.0)
    decision = decide(many(BIG), policy, caps("gpt-4o-mini", breaker_open=breaker), NOW)
    expected = NOW + deadline_in - BIG_RT - margin - (300.0 if breaker else 0.0)
    assert decision.escalation_at["gpt-4o-mini"] == pytest.approx(expected)


def test_impossible_deadline_names_exactly_the_requests_real_time_cannot_finish() -> None:
    work = many(BIG)
    decision = decide(work, RunPolicy(deadline=NOW + 600), caps("gpt-4o-mini"), NOW)
    # 1,500 TPM tokens each at 200k TPM: request k is answered at k*0.45 s + 30 s latency.
    fits = int((600 - 30) / 0.45)
    assert decision.cannot_meet == tuple(f"r{i}" for i in range(fits, BIG))
    assert "late" in decision.assignment(f"r{BIG - 1}").reason
    assert "late" not in decision.assignment("r0").reason


def test_strict_refuses_an_impossible_deadline_with_the_numbers() -> None:
    policy = RunPolicy(deadline=NOW + 600, strict=True)
    with pytest.raises(PlanRefused) as exc:
        decide(many(BIG), policy, caps("gpt-4o-mini"), NOW)
    message = str(exc.value)
    assert f"734 of {BIG} requests cannot finish" in message
    assert "15m" in message and "--deadline" in message and "--strict" in message


def test_strict_accepts_a_deadline_that_real_time_meets() -> None:
    decision = decide(
        many(BIG), RunPolicy(deadline=NOW + 20 * 60, strict=True), caps("gpt-4o-mini"), NOW
    )
    assert decision.cannot_meet == ()


def test_no_slack_sends_priority_first_then_saving_per_token() -> None:
    cheap_per_token = [
        req(f"in{i}", inp=1500, out=0) for i in range(300)
    ]  # input-only: low $/token
    dear_per_token = [req(f"out{i}", inp=500, out=1000) for i in range(300)]
    urgent = [req(f"urgent{i}", inp=1500, out=0, priority=5) for i in range(300)]
    work = cheap_per_token + dear_per_token + urgent
    decision = decide(work, RunPolicy(deadline=NOW + 5 * 60), caps("gpt-4o-mini"), NOW)
    order = [a.custom_id for a in decision.assignments]
    assert order[:300] == [f"urgent{i}" for i in range(300)]
    assert order[300:600] == [f"out{i}" for i in range(300)]
    # 300 s - 30 s latency at 0.45 s each: the first 600 make it, the input-only lines do not.
    assert set(decision.cannot_meet) == {f"in{i}" for i in range(300)}


def test_queue_full_admits_within_headroom_and_defers_the_rest() -> None:
    work = [*many(30), req("huge", inp=60_000, out=10)]
    capacity = cap(enqueued_token_limit=50_000, enqueued_tokens_in_flight=40_000)
    policy = RunPolicy(deadline=NOW + 24 * HOUR, small_run_requests=0, small_run_usd=0.0)
    decision = decide(work, policy, {"gpt-4o-mini": capacity}, NOW)
    batch_now = [
        a.custom_id for a in decision.assignments if a.route is Route.BATCH and not a.deferred
    ]
    deferred = [a for a in decision.assignments if a.deferred]
    assert batch_now == [f"r{i}" for i in range(10)]  # 10 x 1,000 input tokens fill 10,000 of room
    assert {a.custom_id for a in deferred} == {f"r{i}" for i in range(10, 30)}
    assert all(a.route is Route.BATCH and "headroom" in a.reason for a in deferred)
    assert decision.route_of("huge") is Route.STANDARD
    assert "exceed the enqueued-token limit" in decision.assignment("huge").reason


def test_override_flex_on_a_model_without_flex_says_what_to_use() -> None:
    with pytest.raises(ConfigError, match=r"gpt-4o does not offer flex.*--route auto"):
        decide(many(50, "gpt-4o"), RunPolicy(route=RouteOverride.FLEX), caps("gpt-4o"), NOW)


def test_models_are_decided_separately() -> None:
    work = many(BIG) + many(BIG, "gpt-5-mini", prefix="g")
    decision = decide(
        work, RunPolicy(deadline=NOW + 24 * HOUR), caps("gpt-4o-mini", "gpt-5-mini"), NOW
    )
    assert set(decision.model("gpt-4o-mini").ids(Route.BATCH)) == {f"r{i}" for i in range(BIG)}
    assert set(decision.model("gpt-5-mini").ids(Route.FLEX)) == {f"g{i}" for i in range(BIG)}


# Budgets. 200 gpt-4o requests: standard $1.50, batch $0.75.
GPT4O = many(200, "gpt-4o", inp=1000, out=500)


@pytest.mark.parametrize(
    ("deadline_in", "budget", "work", "outcome"),
    [
        (3 * HOUR, 1.50, GPT4O, "fits"),
        (None, 0.75, GPT4O, "fits"),
        (30 * HOUR, 1.00, GPT4O, "forced-batch"),
        (None, 0.02, many(5, "gpt-4o"), "forced-batch"),  # standard $0.0375, batch $0.0188
        (3 * HOUR, 1.00, GPT4O, "refused-loosen"),
        (3 * HOUR, 0.50, GPT4O, "refused-even-batch"),
        (None, 0.50, GPT4O, "refused-even-batch"),
    ],
    ids=[
        "3h-budget-standard",
        "no-deadline-budget-batch",
        "30h-budget-between",
        "tiny-budget-between",
        "3h-budget-between",
        "3h-budget-below-batch",
        "no-deadline-budget-below-batch",
    ],
)
def test_budget(
    deadline_in: float | None, budget: float, work: list[RequestFeatures], outcome: str
) -> None:
    policy = RunPolicy(
        deadline=None if deadline_in is None else NOW + deadline_in, budget_usd=budget
    )
    capacities = caps("gpt-4o")
    if outcome.startswith("refused"):
        with pytest.raises(PlanRefused) as exc:
            decide(work, policy, capacities, NOW)
        message = str(exc.value)
        assert f"budget ${budget:.2f}" in message or f"budget ${budget:.4f}" in message
        if outcome == "refused-loosen":
            assert (
                "Worst case $1.50" in message and "batch-only plan costs at most $0.7500" in message
            )
            assert "loosen --deadline" in message
        else:
            assert "Even batch only costs up to $0.7500" in message and "raise --budget" in message
        return
    decision = decide(work, policy, capacities, NOW)
    est = estimate(decision, work, capacities, {})
    assert est.worst <= budget + 1e-9
    if outcome == "forced-batch":
        assert routes(decision) == {Route.BATCH}
        assert decision.escalation_at["gpt-4o"] is None
        assert "forces batch-only" in decision.reason


def test_budget_is_not_forced_onto_an_explicit_realtime_route() -> None:
    policy = RunPolicy(budget_usd=1.0, route=RouteOverride.REALTIME)
    with pytest.raises(PlanRefused, match=r"Worst case \$1.50 exceeds the budget \$1.00"):
        decide(GPT4O, policy, caps("gpt-4o"), NOW)


# Mid-run: shards, escalation at the right moment, failures.
def _running(n: int = BIG) -> tuple[list[RequestFeatures], RunPolicy, ShardState, float]:
    work = many(n)
    policy = RunPolicy(deadline=NOW + 3 * HOUR)
    shard = ShardState("batch_1", "gpt-4o-mini", frozenset(r.custom_id for r in work), NOW)
    esc = decide(work, policy, caps("gpt-4o-mini"), NOW).escalation_at["gpt-4o-mini"]
    assert esc is not None
    return work, policy, shard, esc


@pytest.mark.parametrize("offset", [-3600.0, -1.0], ids=["1h-before", "1s-before"])
def test_before_the_escalation_point_shards_stay(offset: float) -> None:
    work, policy, shard, esc = _running()
    re = redecide(work, policy, caps("gpt-4o-mini"), esc + offset, shards=[shard])
    assert re.cancel_shards == ()
    assert routes(re.decision) == {Route.BATCH}
    assert re.changes == ()
    assert "stays in batch shard batch_1" in re.decision.assignment("r0").reason


@pytest.mark.parametrize("offset", [0.0, 60.0], ids=["at-point", "1m-after"])
def test_at_the_escalation_point_cancel_and_finish_rest_in_realtime_keeping_finished(
    offset: float,
) -> None:
    work, policy, shard, _ = _running()
    done = frozenset(f"r{i}" for i in range(1200))
    shard = ShardState(shard.shard_id, shard.model, shard.custom_ids, shard.submitted_at, done)
    # 800 lines still open: real time needs 800 x 0.45 s + 30 s, so the point is that far back.
    esc = NOW + 3 * HOUR - (800 * 0.45 + 30) - 600
    before = redecide(work, policy, caps("gpt-4o-mini"), esc - 1, shards=[shard])
    assert before.cancel_shards == ()
    re = redecide(work, policy, caps("gpt-4o-mini"), esc + offset, shards=[shard])
    assert re.cancel_shards == ("batch_1",)
    assert set(re.kept) == done
    open_ids = {a.custom_id for a in re.decision.assignments}
    assert open_ids == {f"r{i}" for i in range(1200, BIG)}  # finished lines are never re-sent
    assert routes(re.decision) == {Route.STANDARD}
    assert "cancelled at the escalation point" in re.decision.assignment("r1999").reason
    actions = [(c.action, c.subject) for c in re.changes]
    assert ("cancel_shard", "batch_1") in actions
    assert sum(a == "reroute" for a, _ in actions) == BIG - 1200


def test_progress_moves_the_escalation_point_later_and_lower_limits_move_it_earlier() -> None:
    work, policy, shard, esc = _running()
    half_done = ShardState(
        shard.shard_id, shard.model, shard.custom_ids, NOW, frozenset(f"r{i}" for i in range(1000))
    )
    later = redecide(work, policy, caps("gpt-4o-mini"), NOW + HOUR, shards=[half_done])
    slower = redecide(work, policy, caps("gpt-4o-mini", tpm=100_000), NOW + HOUR, shards=[shard])
    assert later.decision.escalation_at["gpt-4o-mini"] == pytest.approx(esc + 1000 * 0.45)
    assert slower.decision.escalation_at["gpt-4o-mini"] == pytest.approx(esc - BIG * 0.45)


def test_breaker_open_moves_waiting_realtime_work_back_to_batch() -> None:
    work = many(BIG, "gpt-5-mini")
    policy = RunPolicy(deadline=NOW + 6 * HOUR)
    first = decide(work, policy, caps("gpt-5-mini"), NOW)
    assert routes(first) == {Route.FLEX}
    current = {a.custom_id: a.route for a in first.assignments}
    re = redecide(
        work, policy, caps("gpt-5-mini", breaker_open=True), NOW + 60, current_routes=current
    )
    assert routes(re.decision) == {Route.BATCH}
    assert len(re.changes) == BIG
    assert all(c.from_route is Route.FLEX and c.to_route is Route.BATCH for c in re.changes)
    assert all("breaker open" in c.reason for c in re.changes)


def test_flex_unavailable_mid_run_falls_back_to_batch_escalating_to_standard() -> None:
    work = many(BIG, "gpt-5-mini")
    policy = RunPolicy(deadline=NOW + 6 * HOUR)
    current = {r.custom_id: Route.FLEX for r in work}
    re = redecide(
        work, policy, caps("gpt-5-mini", flex_unavailable=True), NOW + 60, current_routes=current
    )
    md = re.decision.model("gpt-5-mini")
    assert routes(re.decision) == {Route.BATCH}
    assert md.escalation_route is Route.STANDARD
    assert md.escalation_at == pytest.approx(
        NOW + 6 * HOUR - realtime_seconds(work, cap("gpt-5-mini")) - 600
    )


def test_breaker_open_without_slack_keeps_realtime_and_says_why() -> None:
    re = redecide(
        many(BIG), RunPolicy(deadline=NOW + 20 * 60), caps("gpt-4o-mini", breaker_open=True), NOW
    )
    assert routes(re.decision) == {Route.STANDARD}
    assert "breaker open" in re.decision.reason


def test_rules_compose_with_or_and_the_first_to_decide_wins() -> None:
    def pin_gpt4o(ctx: ModelContext) -> ModelDecision | None:
        if ctx.model != "gpt-4o":
            return None
        lines = tuple(Assignment(r.custom_id, Route.STANDARD, "pinned") for r in ctx.requests)
        return ModelDecision(
            ctx.model, lines, None, Route.STANDARD, ctx.realtime_s, "pinned", "pin"
        )

    rules = Rule("pin", pin_gpt4o) | DEFAULT_RULES
    work = many(BIG) + many(BIG, "gpt-4o", prefix="o")
    decision = decide(work, RunPolicy(), caps("gpt-4o-mini", "gpt-4o"), NOW, rules=rules)
    assert decision.model("gpt-4o").rule == "pin"
    assert set(decision.model("gpt-4o").ids(Route.STANDARD)) == {f"o{i}" for i in range(BIG)}
    assert decision.model("gpt-4o-mini").rule == "no_deadline"


def test_duplicate_custom_ids_are_refused() -> None:
    with pytest.raises(InputError, match="'r1' appears more than once"):
        decide([*many(30), req("r1")], RunPolicy(), caps("gpt-4o-mini"), NOW)
