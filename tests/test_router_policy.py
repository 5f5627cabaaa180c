"""Table-driven tests of the routing policy: decide, budget, --strict and redecide.

Timings used below: BIG requests of 1,500 TPM tokens at 500 RPM / 200k TPM need 900 s of
pacing plus 30 s latency in real time; the policy keeps free a 60 s floor, a 5% spread on
the pacing, and the cancel latency (prior: median 1 min, p95 10 min; mean ~160 s, p90
~361 s).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import pytest

from batchyard.errors import ConfigError, InputError, PlanRefused
from batchyard.models import Endpoint, Route, RouteOverride
from batchyard.router import (
    DEFAULT_RULES,
    ModelCapacity,
    ModelContext,
    ModelDecision,
    PathCosts,
    RequestFeatures,
    Rule,
    RunPolicy,
    ShardState,
    Turnaround,
    Work,
    decide,
    redecide,
)
from batchyard.router.decision import Decision

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


def decided(*args: Any, **kw: Any) -> Decision:
    return decide(*args, **kw)[0]


# 2000 gpt-4o-mini requests of 1,500 TPM tokens at 500 RPM / 200k TPM: 15 min + 30 s latency.
BIG = 2000
PACE = BIG * 1500 / 200_000 * 60  # 900 s of pacing
FLOOR, SPREAD = 60.0, 0.05
CANCEL = Turnaround.cancel_prior()
C_MEAN, C_HIGH = CANCEL.mean_s, CANCEL.quantile(0.9)


def rt(n: int = BIG, spread: float = SPREAD) -> float:
    """Real time for n BIG-sized requests, with the spread."""
    return n * 1500 / 200_000 * 60 * (1 + spread) + 30


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
    Case(
        "near-deadline-slack-batch",
        many(BIG),
        3 * HOUR,
        {Route.BATCH},
        "deadline",
        "chance a batch is back before it",
    ),
    # Shorter than the fresh store's turnaround prior (1 h): batch is still tried, the prior
    # only says how likely it is back in time.
    Case(
        "short-deadline-batch-tried",
        many(BIG),
        30 * 60,
        {Route.BATCH},
        "deadline",
        "finished lines are kept either way",
    ),
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
        "real time (standard)",
        {"flex_latency_s": 900.0},
    ),
    # 20 min: the escalation point is seconds away, less than a new shard needs.
    Case("no-room-realtime-now", many(BIG), 20.5 * 60, {Route.STANDARD}, "deadline", "no room"),
    Case("no-slack-realtime-now", many(BIG), 17 * 60, {Route.STANDARD}, "deadline", "no slack"),
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
        "refused-key-batch",
        many(BIG),
        20 * 60,
        {Route.BATCH},
        "quota",
        "refused the key",
        {"key_refused": True},
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
    decision = decided(case.requests, policy, caps(*models, **case.capacity), NOW)
    assert routes(decision) == case.expect_routes
    assert [m.rule for m in decision.models] == [case.expect_rule] * len(models)
    assert case.reason_has in decision.reason
    assert sorted(a.custom_id for a in decision.assignments) == sorted(
        r.custom_id for r in case.requests
    )
    assert all(a.reason for a in decision.assignments)
    assert " (in " not in decision.reason  # reasons are read later: no relative times


@pytest.mark.parametrize(
    ("deadline_in", "margin", "spread", "cancel", "breaker"),
    [
        (3 * HOUR, 60.0, 0.05, (60.0, 600.0), False),
        (24 * HOUR, 60.0, 0.05, (60.0, 600.0), False),
        (3 * HOUR, 600.0, 0.05, (60.0, 600.0), False),
        (3 * HOUR, 60.0, 0.25, (60.0, 600.0), False),
        (3 * HOUR, 60.0, 0.05, (300.0, 900.0), False),
        (3 * HOUR, 60.0, 0.05, (60.0, 600.0), True),
    ],
    ids=["3h", "24h", "3h-floor-10m", "3h-spread-25%", "3h-slow-cancels", "3h-breaker-open"],
)
def test_escalation_point_keeps_the_floor_the_spread_and_the_mean_cancel_free(
    deadline_in: float,
    margin: float,
    spread: float,
    cancel: tuple[float, float],
    breaker: bool,
) -> None:
    latency = Turnaround.from_median_p95(*cancel, max_s=3600.0)
    policy = RunPolicy(
        deadline=NOW + deadline_in, margin_s=margin, realtime_spread=spread, breaker_margin_s=300.0
    )
    decision = decided(
        many(BIG), policy, caps("gpt-4o-mini", breaker_open=breaker), NOW, cancel=latency
    )
    expected = (
        NOW + deadline_in - rt(BIG, spread) - margin - latency.mean_s - (300.0 if breaker else 0.0)
    )
    assert decision.escalation_at["gpt-4o-mini"] == pytest.approx(expected)


def test_short_deadlines_keep_an_escalation_point_where_a_fixed_10_minute_margin_left_none() -> (
    None
):
    # A 15-minute deadline with 200 requests: real time needs ~2 min, so the point sits
    # about 10 minutes out and batch is tried.
    work = many(200)
    decision = decided(work, RunPolicy(deadline=NOW + 15 * 60), caps("gpt-4o-mini"), NOW)
    esc = decision.escalation_at["gpt-4o-mini"]
    assert esc is not None and esc - NOW > 9 * 60
    assert routes(decision) == {Route.BATCH}


def test_impossible_deadline_names_exactly_the_requests_real_time_cannot_finish() -> None:
    work = many(BIG)
    decision = decided(work, RunPolicy(deadline=NOW + 600), caps("gpt-4o-mini"), NOW)
    # 1,500 TPM tokens each at 200k TPM: request k is answered at k*0.45 s + 30 s latency.
    fits = int((600 - 30) / 0.45)
    assert decision.cannot_meet == tuple(f"r{i}" for i in range(fits, BIG))
    assert decision.late == BIG - fits
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
    decision = decided(
        many(BIG), RunPolicy(deadline=NOW + 20 * 60, strict=True), caps("gpt-4o-mini"), NOW
    )
    assert decision.cannot_meet == ()


def test_no_slack_sends_priority_first_then_file_order() -> None:
    plain = [req(f"in{i}", inp=1500, out=0) for i in range(300)]
    more = [req(f"out{i}", inp=500, out=1000) for i in range(300)]
    urgent = [req(f"urgent{i}", inp=1500, out=0, priority=5) for i in range(300)]
    work = plain + more + urgent
    decision = decided(work, RunPolicy(deadline=NOW + 5 * 60), caps("gpt-4o-mini"), NOW)
    # 300 s - 30 s latency at 0.45 s each: 600 make it, the urgent ones first, then the
    # file's order; the last 300 in that order do not.
    assert set(decision.cannot_meet) == {f"out{i}" for i in range(300)}
    assert not any(c.startswith("urgent") for c in decision.cannot_meet)


def test_queue_full_admits_within_headroom_and_defers_the_rest() -> None:
    work = [*many(30), req("huge", inp=60_000, out=10)]
    capacity = cap(enqueued_token_limit=50_000, enqueued_tokens_in_flight=40_000)
    policy = RunPolicy(deadline=NOW + 24 * HOUR, small_run_requests=0, small_run_usd=0.0)
    decision = decided(work, policy, {"gpt-4o-mini": capacity}, NOW)
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
    decision = decided(
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
    decision, est = decide(work, policy, capacities, NOW)
    assert est.worst <= budget + 1e-9
    if outcome == "forced-batch":
        assert routes(decision) == {Route.BATCH}
        assert decision.escalation_at["gpt-4o"] is None
        assert "forces batch-only" in decision.reason


def test_budget_is_checked_against_the_worst_case_output() -> None:
    # Expected output 100 tokens, worst case 500: the budget must hold the worst case.
    work = [
        RequestFeatures(
            f"w{i}",
            Endpoint.CHAT,
            "gpt-4o",
            1000,
            100,
            PathCosts(0.0035, 0.00175),
            output_worst=500,
            cost_worst=PathCosts(0.0075, 0.00375),
        )
        for i in range(200)
    ]
    policy = RunPolicy(route=RouteOverride.REALTIME, budget_usd=1.0)  # expected $0.70
    with pytest.raises(PlanRefused, match=r"Worst case \$1.50 exceeds the budget \$1.00"):
        decide(work, policy, caps("gpt-4o"), NOW)


def test_budget_is_not_forced_onto_an_explicit_realtime_route() -> None:
    policy = RunPolicy(budget_usd=1.0, route=RouteOverride.REALTIME)
    with pytest.raises(PlanRefused, match=r"Worst case \$1.50 exceeds the budget \$1.00"):
        decide(GPT4O, policy, caps("gpt-4o"), NOW)


# Mid-run: shards, escalation at the right moment, slow cancels, failures.
def _shard(work: list[RequestFeatures], completed: int = 0, **kw: Any) -> ShardState:
    total = sum((Work.of(r) for r in work), Work())
    return ShardState("1", "gpt-4o-mini", total, NOW, completed=completed, started_at=NOW, **kw)


def _in_shard(work: list[RequestFeatures], shard: str = "1") -> list[RequestFeatures]:
    return [dataclasses.replace(r, shard=shard) for r in work]


def _running(n: int = BIG) -> tuple[list[RequestFeatures], RunPolicy, float]:
    work = many(n)
    policy = RunPolicy(deadline=NOW + 3 * HOUR)
    esc = decided(work, policy, caps("gpt-4o-mini"), NOW).escalation_at["gpt-4o-mini"]
    assert esc is not None
    return work, policy, esc


@pytest.mark.parametrize("offset", [-3600.0, -11.0], ids=["1h-before", "11s-before"])
def test_before_the_escalation_point_shards_stay(offset: float) -> None:
    work, policy, esc = _running()
    lines = _in_shard(work)
    re = redecide(lines, policy, caps("gpt-4o-mini"), esc + offset, shards=[_shard(work)])
    assert re.cancel_shards == ()
    assert routes(re.decision) == {Route.BATCH}
    assert re.changes == ()
    assert "stays in batch shard 1" in re.decision.assignment("r0").reason


@pytest.mark.parametrize("offset", [-5.0, 0.0, 60.0], ids=["within-a-step", "at-point", "1m-after"])
def test_at_the_escalation_point_the_shards_are_cancelled(offset: float) -> None:
    work, policy, esc = _running()
    re = redecide(_in_shard(work), policy, caps("gpt-4o-mini"), esc + offset, shards=[_shard(work)])
    assert re.cancel_shards == ("1",)
    assert [(c.action, c.subject) for c in re.changes] == [("cancel_shard", "1")]
    # Its lines stay with the batch until the cancel reports which ones it finished.
    assert routes(re.decision) == {Route.BATCH}
    assert "cancelled at the escalation point" in re.decision.assignment("r1999").reason


def test_progress_moves_the_escalation_point_later_and_lower_limits_move_it_earlier() -> None:
    work, policy, esc = _running()
    lines = _in_shard(work)
    half = redecide(lines, policy, caps("gpt-4o-mini"), NOW + HOUR, shards=[_shard(work, 1000)])
    slower = redecide(
        lines, policy, caps("gpt-4o-mini", tpm=100_000), NOW + HOUR, shards=[_shard(work)]
    )
    deadline = NOW + 3 * HOUR
    # Counting on the provider's progress, only the 1,000 unfinished lines need real time,
    # but the point then allows for the cancel's 90th percentile.
    counted = deadline - FLOOR - rt(1000) - C_HIGH
    assert counted > esc
    assert half.decision.escalation_at["gpt-4o-mini"] == pytest.approx(counted)
    assert slower.decision.escalation_at["gpt-4o-mini"] == pytest.approx(esc - PACE * (1 + SPREAD))


def test_a_batch_faster_than_real_time_is_never_escalated_early() -> None:
    # Real time at 30 RPM needs 50 minutes for 1,500 requests; the batch finishes 75 a
    # minute. As it progresses, the point moves out faster than time passes.
    work = many(1500, inp=100, out=100)
    capacity = caps("gpt-4o-mini", rpm=30, tpm=1_000_000)
    policy = RunPolicy(deadline=NOW + HOUR)
    first = decided(work, policy, capacity, NOW)
    assert routes(first) == {Route.BATCH}
    points = []
    for minute in (3, 6, 10, 15):
        done = int(1500 * (minute - 0.5) / 20)
        total = sum((Work.of(r) for r in work), Work())
        shard = ShardState("1", "gpt-4o-mini", total, NOW, completed=done, started_at=NOW + 30)
        re = redecide(_in_shard(work), policy, capacity, NOW + minute * 60, shards=[shard])
        assert re.cancel_shards == ()
        points.append(re.decision.escalation_at["gpt-4o-mini"])
    assert points == sorted(points) and all(p is not None for p in points)


def _cancelling(work: list[RequestFeatures], at: float, completed: int = 0) -> ShardState:
    return _shard(work, completed, cancelling_at=at)


def test_a_slow_cancel_releases_the_lines_to_real_time_at_the_last_moment() -> None:
    # Cancelled at the point (nothing known finished): once real time's latest start for
    # every line has come, the lines go anyway; before it they wait for the cancel.
    work, policy, esc = _running()
    deadline = NOW + 3 * HOUR
    latest = deadline - FLOOR - rt(BIG)
    assert latest == pytest.approx(esc + C_MEAN)
    shard = _cancelling(work, at=esc)
    wait = redecide(_in_shard(work), policy, caps("gpt-4o-mini"), latest - 1, shards=[shard])
    assert wait.release_shards == () and wait.cancel_shards == ()
    assert routes(wait.decision) == {Route.BATCH}
    go = redecide(_in_shard(work), policy, caps("gpt-4o-mini"), latest, shards=[shard])
    assert go.release_shards == ("1",)
    assert routes(go.decision) == {Route.STANDARD}
    assert "paid twice" in go.decision.assignment("r0").reason
    assert [c.action for c in go.changes if c.action != "reroute"] == ["release_shard"]


def test_a_cancel_asked_on_progress_releases_at_the_latest_start_for_the_unfinished() -> None:
    # Cancelled late, counting on 1,000 finished lines: there is no time left for all 2,000
    # in real time, so the lines go only when the 1,000 unfinished ones must start.
    work, policy, _ = _running()
    deadline = NOW + 3 * HOUR
    asked = deadline - FLOOR - rt(1000) - C_HIGH
    shard = _cancelling(work, at=asked, completed=1000)
    release = deadline - FLOOR - rt(1000)
    lines = _in_shard(work)
    early = redecide(lines, policy, caps("gpt-4o-mini"), release - 1, shards=[shard])
    assert early.release_shards == ()
    on_time = redecide(lines, policy, caps("gpt-4o-mini"), release, shards=[shard])
    assert on_time.release_shards == ("1",)


def test_trying_batch_is_never_dearer_than_real_time_now_for_ordinary_cancels() -> None:
    work = many(BIG)
    _, est = decide(work, RunPolicy(deadline=NOW + 40 * 60), caps("gpt-4o-mini"), NOW)
    (row,) = est.rows
    assert row.route is Route.BATCH
    assert row.best < row.expected <= row.worst == pytest.approx(row.all_standard)


def test_breaker_open_moves_waiting_realtime_work_back_to_batch() -> None:
    work = many(BIG, "gpt-5-mini")
    policy = RunPolicy(deadline=NOW + 6 * HOUR)
    first = decided(work, policy, caps("gpt-5-mini"), NOW)
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
    assert md.escalation_at == pytest.approx(NOW + 6 * HOUR - rt(BIG) - FLOOR - C_MEAN)


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
        return ModelDecision(
            ctx.model, Route.STANDARD, None, Route.STANDARD, ctx.realtime_s, "pinned", "pin"
        )

    rules = Rule("pin", pin_gpt4o) | DEFAULT_RULES
    work = many(BIG) + many(BIG, "gpt-4o", prefix="o")
    decision = decided(work, RunPolicy(), caps("gpt-4o-mini", "gpt-4o"), NOW, rules=rules)
    assert decision.model("gpt-4o").rule == "pin"
    assert set(decision.model("gpt-4o").ids(Route.STANDARD)) == {f"o{i}" for i in range(BIG)}
    assert decision.model("gpt-4o-mini").rule == "no_deadline"


def test_duplicate_custom_ids_are_refused() -> None:
    with pytest.raises(InputError, match="'r1' appears more than once"):
        decide([*many(30), req("r1")], RunPolicy(), caps("gpt-4o-mini"), NOW)


# The cancel allowance: what a slow cancel would cost against the batch lines given up.
def _allowance(
    completed: int, elapsed: float, n: int = 600, capacity: ModelCapacity | None = None
) -> float:
    from batchyard.router.escalation import cancel_allowance
    from batchyard.router.pace import Safety

    work = many(n)
    shard = _shard(work, completed)
    safety = Safety.of(RunPolicy(), Turnaround.cancel_prior())
    return cancel_allowance(
        [shard], shard.remaining, Route.STANDARD, safety, NOW + elapsed, capacity
    )


def test_nothing_counted_finished_allows_for_the_mean_cancel() -> None:
    mean = Turnaround.cancel_prior().mean_s + RunPolicy().cancel_notice_s
    assert _allowance(0, 600) == pytest.approx(mean)


def test_many_lines_at_stake_allow_for_a_slow_cancel() -> None:
    # 240 of 600 finished over 48 minutes (a 2 h batch): paying them twice on a cancel
    # slower than planned costs more than the few lines the batch gives up by cancelling
    # earlier, so the allowance is the prior's p95 (10 min), OpenAI's documented bound.
    p95 = Turnaround.cancel_prior().quantile(0.95) + RunPolicy().cancel_notice_s
    assert _allowance(240, 48 * 60) == pytest.approx(p95)


def test_a_fast_batch_with_few_lines_done_keeps_the_short_allowance() -> None:
    # A batch finishing 5 lines a second gives up many lines for every second it is
    # cancelled earlier; the 50 it finished are worth less: the mean cancel, no more.
    mean = Turnaround.cancel_prior().mean_s + RunPolicy().cancel_notice_s
    assert _allowance(50, 10) == pytest.approx(mean)


def test_a_model_escalated_once_stays_in_real_time() -> None:
    work, policy, _ = _running(200)
    after = dataclasses.replace(policy, escalated=frozenset({"gpt-4o-mini"}))
    # well before its deadline, with room to try batch again
    re = redecide(work, after, caps("gpt-4o-mini"), NOW + 60, shards=[])
    assert routes(re.decision) == {Route.STANDARD}
    assert "escalated earlier in this run" in re.decision.reason
    fresh = redecide(work, policy, caps("gpt-4o-mini"), NOW + 60, shards=[])
    assert routes(fresh.decision) == {Route.BATCH}


def test_slow_real_time_pays_few_lines_twice_so_the_allowance_stays_short() -> None:
    # The same 240 of 600 lines at stake, but real time sends 50 a minute: over a slow
    # cancel it re-sends few of them before the batch's answers arrive (the rest take the
    # batch's answer), so cancelling early would cost more than it saves.
    mean = Turnaround.cancel_prior().mean_s + RunPolicy().cancel_notice_s
    slow = cap(rpm=50, tpm=40_000)
    assert _allowance(240, 48 * 60, capacity=slow) == pytest.approx(mean)
    assert _allowance(240, 48 * 60, capacity=cap(rpm=5000, tpm=10_000_000)) > mean
