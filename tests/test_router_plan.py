"""Tests of the router's plan, cost model, turnaround model, parsing and purity."""

from __future__ import annotations

import ast
import json
import math
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

import batchyard.router
from batchyard.errors import ConfigError
from batchyard.models import Endpoint, Route, RouteOverride
from batchyard.router import (
    ModelCapacity,
    PathCosts,
    RequestFeatures,
    RunPolicy,
    Turnaround,
    budget_stop_reason,
    decide,
    make_plan,
    parse_budget,
    parse_deadline,
)

NOW = 1_750_000_000.0
HOUR = 3600.0
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


def caps(*models: str, **kw: Any) -> dict[str, ModelCapacity]:
    return {m: ModelCapacity(model=m, flex_allowed=PRICES[m][2] is not None, **kw) for m in models}


MIXED = many(2000) + many(500, "gpt-5-mini", prefix="g") + many(300, "gpt-4o", prefix="o")
ALL = ("gpt-4o", "gpt-4o-mini", "gpt-5-mini")


def test_plan_rows_per_model_and_route() -> None:
    plan = make_plan(MIXED, RunPolicy(deadline=NOW + 24 * HOUR), caps(*ALL), NOW)
    rows = {(r.model, r.route): r for r in plan.rows}
    assert set(rows) == {
        ("gpt-4o", Route.BATCH),
        ("gpt-4o-mini", Route.BATCH),
        ("gpt-5-mini", Route.FLEX),
    }
    mini = rows["gpt-4o-mini", Route.BATCH]
    assert (mini.requests, mini.input_tokens, mini.output_tokens) == (2000, 2_000_000, 1_000_000)
    assert mini.best == pytest.approx(2000 * 0.000225)
    assert mini.worst == pytest.approx(2000 * 0.00045)
    assert mini.escalation_at == plan.escalation_at["gpt-4o-mini"]
    flex = rows["gpt-5-mini", Route.FLEX]
    assert flex.best == flex.expected == flex.worst == pytest.approx(500 * 0.000625)
    assert flex.expected_finish < mini.expected_finish  # flex answers in minutes
    assert plan.all_standard == pytest.approx(2000 * 0.00045 + 500 * 0.00125 + 300 * 0.0075)
    assert plan.saving == pytest.approx(plan.all_standard - plan.expected)
    assert plan.saving > 0.4 * plan.all_standard
    assert plan.requests == len(MIXED)


def test_plan_to_dict_is_json_and_complete() -> None:
    plan = make_plan(MIXED, RunPolicy(deadline=NOW + 3 * HOUR, budget_usd=10.0), caps(*ALL), NOW)
    data = json.loads(json.dumps(plan.to_dict()))
    assert data["requests"] == len(MIXED)
    assert {a["custom_id"] for a in data["assignments"]} == {r.custom_id for r in MIXED}
    assert data["cost"]["best"] <= data["cost"]["expected"] <= data["cost"]["worst"]
    assert data["route"] == "auto" and data["budget_usd"] == 10.0
    assert set(data["escalation_at"]) == set(ALL)
    assert all(r["route"] in {"batch", "flex", "standard"} for r in data["rows"])
    assert "batch until the escalation point" in data["reasons"]["gpt-4o-mini"]
    text = "\n".join(plan.summary_lines())
    assert "escalate at" in text and "saving" in text


@pytest.mark.parametrize(
    ("earlier", "later"),
    [(3 * HOUR, 6 * HOUR), (6 * HOUR, 12 * HOUR), (12 * HOUR, 24 * HOUR)],
    ids=["3h-vs-6h", "6h-vs-12h", "12h-vs-24h"],
)
def test_tighter_deadline_means_likelier_escalation_and_higher_expected_cost(
    earlier: float, later: float
) -> None:
    tight = make_plan(many(2000), RunPolicy(deadline=NOW + earlier), caps("gpt-4o-mini"), NOW)
    loose = make_plan(many(2000), RunPolicy(deadline=NOW + later), caps("gpt-4o-mini"), NOW)
    assert tight.p_escalation > loose.p_escalation
    assert tight.expected > loose.expected
    assert tight.best == pytest.approx(loose.best)


def test_escalation_probability_follows_the_turnaround_model() -> None:
    policy = RunPolicy(deadline=NOW + 3 * HOUR)
    plan = make_plan(many(2000), policy, caps("gpt-4o-mini"), NOW)
    fast = Turnaround.prior().updated_with([600.0] * 50)
    quick = make_plan(many(2000), policy, caps("gpt-4o-mini"), NOW, {"gpt-4o-mini": fast})
    slow = Turnaround.prior().updated_with([20 * HOUR] * 50)
    late = make_plan(many(2000), policy, caps("gpt-4o-mini"), NOW, {"gpt-4o-mini": slow})
    assert quick.p_escalation < 0.01 < plan.p_escalation < late.p_escalation
    assert quick.expected < plan.expected < late.expected
    # Only the outlook changes: all three try batch first.
    assert {r.route for p in (plan, quick, late) for r in p.rows} == {Route.BATCH}


def test_expected_cost_keeps_the_lines_a_batch_finished_before_the_point() -> None:
    # Every batch takes 2 h in progress; the deadline is 1 h away and real time is quick,
    # so the batch runs until the last safe moment and keeps what it finished by then:
    # lines finish evenly, so that share is (point - start) / 2 h.
    turnaround = Turnaround(mu=math.log(2 * HOUR), sigma=0.05)
    policy = RunPolicy(deadline=NOW + HOUR, small_run_requests=0, small_run_usd=0.0)
    work = many(300)
    plan = make_plan(work, policy, caps("gpt-4o-mini"), NOW, {"gpt-4o-mini": turnaround})
    (row,) = plan.rows
    esc = row.escalation_at
    assert esc is not None
    kept = (esc - (NOW + policy.batch_setup_s)) / (2 * HOUR)
    standard, batch = 300 * 0.00045, 300 * 0.000225
    assert row.expected == pytest.approx(kept * batch + (1 - kept) * standard, rel=0.03)
    assert row.p_escalation == pytest.approx(1.0)
    assert row.worst == pytest.approx(standard) and row.best == pytest.approx(batch)


def test_deferred_lines_wait_and_are_likelier_to_escalate() -> None:
    policy = RunPolicy(deadline=NOW + 4 * HOUR)
    roomy = make_plan(many(2000), policy, caps("gpt-4o-mini"), NOW)
    full = make_plan(
        many(2000),
        policy,
        caps("gpt-4o-mini", enqueued_token_limit=1_000_000, enqueued_tokens_in_flight=500_000),
        NOW,
    )
    assert full.rows[0].deferred == 1500
    assert full.p_escalation > roomy.p_escalation
    assert full.expected > roomy.expected


POLICIES = {
    "none": RunPolicy(),
    "24h": RunPolicy(deadline=NOW + 24 * HOUR),
    "3h": RunPolicy(deadline=NOW + 3 * HOUR),
    "30m": RunPolicy(deadline=NOW + 30 * 60),
    "10m": RunPolicy(deadline=NOW + 10 * 60),
    "realtime": RunPolicy(route=RouteOverride.REALTIME),
    "batch-3h": RunPolicy(deadline=NOW + 3 * HOUR, route=RouteOverride.BATCH),
    "breaker": RunPolicy(deadline=NOW + 3 * HOUR),
}


@pytest.mark.parametrize("name", list(POLICIES))
def test_best_le_expected_le_worst_le_all_standard(name: str) -> None:
    capacities = caps(*ALL, breaker_open=name == "breaker")
    _, est = decide(MIXED, POLICIES[name], capacities, NOW)
    assert est.best <= est.expected + 1e-12 <= est.worst + 2e-12
    assert est.worst <= est.all_standard + 1e-9
    for row in est.rows:
        assert row.best <= row.expected + 1e-12 <= row.worst + 2e-12
        assert 0.0 <= row.p_escalation <= 1.0


def test_budget_stop_reason_stops_before_the_budget_is_exceeded() -> None:
    assert budget_stop_reason(None, 100.0, 5.0) is None
    assert budget_stop_reason(10.0, 9.0, 1.0) is None
    why = budget_stop_reason(10.0, 9.5, 0.75)
    assert why is not None and "$10.00" in why and "$9.50" in why and "raise --budget" in why


# Turnaround model.
def test_prior_turnaround_is_median_1h_p95_12h_nothing_past_24h() -> None:
    t = Turnaround.prior()
    assert t.median_s == pytest.approx(HOUR)
    assert t.quantile(0.95) == pytest.approx(12 * HOUR)
    assert t.cdf(24 * HOUR) == t.cdf(48 * HOUR) < 1.0
    assert 0.0 < t.expiry_probability < 0.05
    assert t.quantile(0.999) == math.inf
    assert t.cdf(0) == 0.0


def test_turnaround_learns_from_finished_batches() -> None:
    prior = Turnaround.prior()
    assert prior.updated_with([]) == prior
    fast = prior.updated_with([300.0] * 5)
    assert fast.median_s < prior.median_s
    lots = prior.updated_with([7200.0] * 500)
    assert lots.median_s == pytest.approx(7200.0, rel=0.02)
    assert lots.weight == prior.weight + 500


def test_turnaround_learns_from_batches_cancelled_before_they_finished() -> None:
    # A batch cancelled after 3 h with nothing finished took longer than 3 h: the
    # estimate moves up, and further the longer it was seen running.
    prior = Turnaround.prior()
    after_3h = prior.updated_with([], longer_than=[3 * HOUR])
    after_9h = prior.updated_with([], longer_than=[9 * HOUR])
    assert prior.median_s < after_3h.median_s < after_9h.median_s
    # Short censored runs say little: nearly every batch takes longer than 10 s.
    assert prior.updated_with([], longer_than=[10.0]).median_s == pytest.approx(
        prior.median_s, rel=0.25
    )


def test_cancel_latency_prior_is_median_1m_p95_10m() -> None:
    c = Turnaround.cancel_prior()
    assert c.median_s == pytest.approx(60.0)
    assert c.quantile(0.95) == pytest.approx(600.0)
    assert c.median_s < c.mean_s < c.quantile(0.9) < 600.0


def test_turnaround_rejects_nonsense() -> None:
    with pytest.raises(ConfigError, match="median < p95"):
        Turnaround.from_median_p95(3600, 1800)


# Parsing.
@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("2h", 7200),
        ("90m", 5400),
        ("1d", 86400),
        ("1h30m", 5400),
        ("45s", 45),
        ("1.5h", 5400),
        (" 2H ", 7200),
    ],
)
def test_parse_deadline_durations(text: str, seconds: float) -> None:
    assert parse_deadline(text, NOW) == NOW + seconds


def test_parse_deadline_iso_times() -> None:
    when = datetime.fromtimestamp(NOW, UTC) + timedelta(hours=5)
    assert parse_deadline(when.isoformat(), NOW) == pytest.approx(NOW + 5 * HOUR)
    naive = when.replace(tzinfo=None).isoformat()
    assert parse_deadline(naive, NOW) == pytest.approx(NOW + 5 * HOUR)  # naive is read as UTC
    plus2 = timezone(timedelta(hours=2))
    assert parse_deadline(naive, NOW, tz=plus2) == pytest.approx(NOW + 3 * HOUR)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("tomorrow", "not understood.*90m"),
        ("0h", "is zero"),
        ("2020-01-01T00:00:00Z", "already past"),
        ("2x", "2h"),
    ],
)
def test_parse_deadline_errors_say_what_to_write(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_deadline(text, NOW)


@pytest.mark.parametrize(
    ("text", "usd"), [("5", 5.0), ("$7.50", 7.5), ("1,000", 1000.0), ("0", 0.0)]
)
def test_parse_budget(text: str, usd: float) -> None:
    assert parse_budget(text) == usd


@pytest.mark.parametrize("text", ["five", "-3", "nan"])
def test_parse_budget_errors(text: str) -> None:
    with pytest.raises(ConfigError, match="--budget"):
        parse_budget(text)


# Purity.
ROUTER_DIR = Path(batchyard.router.__file__).parent
ALLOWED = {"batchyard.models", "batchyard.errors"}


@pytest.mark.parametrize("path", sorted(ROUTER_DIR.glob("*.py")), ids=lambda p: p.name)
def test_router_module_imports_nothing_impure(path: Path) -> None:
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        for name in names:
            top = name.split(".")[0]
            assert top not in {
                "openai",
                "sqlite_utils",
                "httpx",
                "httpx2",
                "time",
                "os",
                "random",
                "io",
            }, name
            if top == "batchyard":
                assert name in ALLOWED or name.startswith("batchyard.router"), name
        if isinstance(node, ast.Call):  # no clock reads, no file opens
            fn = node.func
            called = fn.attr if isinstance(fn, ast.Attribute) else getattr(fn, "id", "")
            assert called not in {"now", "today", "utcnow", "time", "monotonic", "open"}, (
                path.name,
                called,
            )


def test_importing_the_router_loads_no_io_libraries() -> None:
    code = (
        "import sys, batchyard.router; "
        "io = ('openai', 'sqlite_utils', 'httpx2', 'httpx'); ok = ('router', 'models', 'errors'); "
        "bad = [m for m in sys.modules if m.split('.')[0] in io "
        "or (m.startswith('batchyard.') and m.split('.')[1] not in ok)]; "
        "print(bad)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROUTER_DIR.parent.parent,
    )
    assert out.stdout.strip() == "[]"


def test_all_is_sorted_and_exported() -> None:
    names = batchyard.router.__all__
    assert all(hasattr(batchyard.router, n) for n in names)
    assert len(names) == len(set(names))


def test_plan_dict_without_assignments_keeps_the_totals() -> None:
    plan = make_plan(MIXED, RunPolicy(deadline=NOW + 6 * HOUR), caps(*ALL), NOW)
    slim = plan.to_dict(assignments=False)
    assert "assignments" not in slim
    assert slim == {k: v for k, v in plan.to_dict().items() if k != "assignments"}
