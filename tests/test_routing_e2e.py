"""Routing end to end: the Orchestrator against the in-process simulator, on virtual time.

What a user would notice, read from the simulator's ledger (what OpenAI bills) and the job
store: a slow batch is cancelled at the escalation point and its finished lines are kept
(billed once, at batch price, never sent again), the rest finishes in real time before the
deadline; a far deadline with fast batches costs half of all-standard; without slack real
time starts at once; a budget that cannot be met refuses with the numbers and records
nothing; real time failing moves its waiting work to batch. Also: escalated lines reach
real time as soon as the cancel completes, batch lines to retry go back to batch while
there is time, and the Files/Batches API pacing runs on the injected clock.

Virtual time (`bench/_eval_support.VirtualTime`): the simulator and the orchestrator share
one clock that jumps to the next wake-up whenever every task waits, so hours pass in
milliseconds and real-time throughput is set by the simulated limits.
"""

from __future__ import annotations

import asyncio
import sys
from collections import Counter, defaultdict
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from batchyard.errors import PlanRefused
from batchyard.models import RequestStatus, Route
from batchyard.simulator.execute import price
from bench._eval_support import START, Harness, RunOutcome, Scenario

H = 3600.0
MINI, FIVE = "gpt-4o-mini", "gpt-5-mini"


def _paths(out: RunOutcome) -> dict[str, list[str]]:
    """custom_id -> the billing paths the simulator charged it on, in order."""
    paths: dict[str, list[str]] = defaultdict(list)
    for e in out.ledger:
        assert e.custom_id is not None, e
        paths[e.custom_id].append(e.path)
    return paths


def _standard_price(h: Harness, out: RunOutcome) -> float:
    """What the same billed tokens cost at standard prices (the all-standard cost)."""
    return sum(
        price(h.state, e.model, e.input_tokens, e.output_tokens, "standard") for e in out.ledger
    )


def test_slow_batch_escalates_at_the_point_and_keeps_its_finished_lines(tmp_path: Path) -> None:
    deadline = START + 4 * H
    sc = Scenario("escalate", 300, (MINI,), deadline_s=4 * H, turnaround_s=5 * H, rpm=500)
    h = Harness(sc, tmp_path)
    out = h.run()
    store, run_id = h.orch.store, out.run_id
    esc = out.submit.plan.escalation_at[MINI]
    assert esc is not None and START < esc < deadline

    # One batch, cancelled promptly at the escalation point (the orchestrator wakes up at
    # the point instead of waiting out a poll interval). Once the provider counts finished
    # lines, a slow cancel would make us pay for them twice, so the point may move earlier
    # than planned by at most the longest cancel allowed for (the prior's p95, 10 min).
    (batch,) = h.state.batches.values()
    cancelled_at = batch.times["cancelling_at"]
    allowance = 600.0 + 2 * h.settings.poll_min_seconds + 5.0
    assert esc - allowance <= cancelled_at <= esc + h.settings.poll_min_seconds + 1.0
    assert batch.status == "cancelled"
    assert [e.kind for e in store.list_events(run_id, kinds=["route.escalate"])] == [
        "route.escalate"
    ]

    # The lines it finished before the cancel are kept: billed once, as batch, and only.
    paths = _paths(out)
    kept = {cid for cid, p in paths.items() if p == ["batch"]}
    assert len(kept) == batch.cancel_done  # every line the provider finished
    assert 0 < len(kept) < 300
    assert all(p in (["batch"], ["standard"]) for p in paths.values()), Counter(
        tuple(p) for p in paths.values()
    )
    assert len(paths) == 300
    for cid in kept:
        attempts = store.list_attempts(run_id, cid)
        assert {a.route for a in attempts} == {Route.BATCH}, attempts

    # The rest finished in real time, after the cancel and before the deadline.
    rows = list(store.iter_requests(run_id))
    assert all(r.status is RequestStatus.SUCCEEDED for r in rows)
    assert {r.route for r in rows if r.custom_id in kept} == {Route.BATCH}
    late = [r for r in rows if r.custom_id not in kept]
    assert {r.route for r in late} == {Route.STANDARD}
    assert all(cancelled_at <= (r.finished_at or 0) <= deadline for r in late)
    standard_at = [e.at for e in out.ledger if e.path == "standard"]
    assert min(standard_at) >= cancelled_at
    assert out.deadline_met is True
    assert out.cost < _standard_price(h, out)


def test_escalated_lines_go_to_real_time_as_soon_as_the_cancel_completes(tmp_path: Path) -> None:
    # After the cancel call the shard is "cancelling" (short, polled every 2 x poll_min),
    # so its unfinished lines should reach real time within a couple of short polls of the
    # provider finishing the cancel, not a whole in-progress poll interval later: that
    # wait eats the safety margin kept for real time before the deadline.
    sc = Scenario("escalate", 300, (MINI,), deadline_s=4 * H, turnaround_s=5 * H, rpm=500)
    h = Harness(sc, tmp_path)
    out = h.run()
    (batch,) = h.state.batches.values()
    first_standard = min(e.at for e in out.ledger if e.path == "standard")
    slack = 2 * h.settings.poll_min_seconds + 1.0
    assert first_standard <= batch.times["cancelled_at"] + slack, (
        f"real time started {first_standard - batch.times['cancelled_at']:.0f} s after the "
        "provider had cancelled the batch"
    )


def test_far_deadline_and_fast_batches_cost_half_of_all_standard(tmp_path: Path) -> None:
    sc = Scenario("far", 200, (MINI, FIVE), deadline_s=24 * H, turnaround_s=600)
    h = Harness(sc, tmp_path)
    out = h.run()
    by_model: dict[str, set[str]] = defaultdict(set)
    for e in out.ledger:
        by_model[e.model].add(e.path)
    assert by_model == {MINI: {"batch"}, FIVE: {"flex"}}  # flex is batch-priced
    assert out.billed_twice == 0 and out.succeeded == 200
    assert out.cost == pytest.approx(_standard_price(h, out) / 2, rel=1e-9)
    assert out.deadline_met is True
    assert out.finished_at < START + 2 * H  # a 10-minute batch is not waited on for hours


def test_short_deadline_with_fast_batches_ends_in_batch(tmp_path: Path) -> None:
    # A 10-minute deadline is far shorter than the fresh store's turnaround prior (1 h),
    # but there is room to try: the batch comes back in a minute, so everything is billed
    # at batch price and the deadline holds.
    sc = Scenario("short-fast", 300, (MINI,), deadline_s=600, turnaround_s=60)
    h = Harness(sc, tmp_path)
    out = h.run()
    assert {e.path for e in out.ledger} == {"batch"}
    assert out.succeeded == 300 and out.deadline_met is True and out.billed_twice == 0
    assert "batch until the escalation point" in out.submit.plan.reason
    assert out.cost == pytest.approx(_standard_price(h, out) / 2, rel=1e-9)


def test_no_slack_starts_real_time_at_once(tmp_path: Path) -> None:
    # The deadline leaves real time no room for a batch to be tried first.
    sc = Scenario("no-slack", 300, (MINI,), deadline_s=150, turnaround_s=60)
    h = Harness(sc, tmp_path)
    out = h.run()
    assert not h.state.batches
    assert {e.path for e in out.ledger} == {"standard"}
    assert min(e.at for e in out.ledger) < START + 5
    assert out.succeeded == 300 and out.deadline_met is True
    assert "no slack" in out.submit.plan.reason


def test_unreachable_budget_refuses_with_numbers_and_records_nothing(tmp_path: Path) -> None:
    sc = Scenario("budget", 200, (MINI,), deadline_s=2 * H)
    h = Harness(sc, tmp_path)
    with pytest.raises(PlanRefused) as refused:
        h.run(budget=0.0001)
    message = str(refused.value)
    assert "budget $0.0001" in message
    assert "Worst case $" in message and "--budget" in message
    assert h.orch.store.list_runs() == []
    assert h.state.ledger == [] and not h.state.files and not h.state.batches


def test_failing_real_time_moves_waiting_work_to_batch(tmp_path: Path) -> None:
    # A small run goes to real time; every real-time call fails with a 500, so the breaker
    # opens and the router moves the waiting work to batch, which still works.
    sc = Scenario("breaker", 15, (MINI,), turnaround_s=600, faults={"error_5xx_rate": 1.0})
    h = Harness(sc, tmp_path)
    out = h.run()
    assert {a.route for a in out.submit.plan.decision.assignments} == {Route.STANDARD}
    assert out.succeeded == 15 and out.failed == 0
    assert {e.path for e in out.ledger} == {"batch"} and out.billed_twice == 0
    rows = list(h.orch.store.iter_requests(out.run_id))
    assert {r.route for r in rows} == {Route.BATCH}
    assert h.orch.store.list_events(out.run_id, kinds=["route.change"])
    assert h.state.stats["billed_standard"] == 0


def test_batch_lines_to_retry_go_back_to_batch_when_there_is_time(tmp_path: Path) -> None:
    # 5% of batch lines fail with a 500 and must go again. With six hours of slack left a
    # second batch is the cheap way; the small-run rule is about the run (600 requests),
    # not about the handful of lines left over.
    sc = Scenario(
        "line-errors",
        600,
        (MINI,),
        deadline_s=8 * H,
        turnaround_s=1 * H,
        faults={"batch_line_error_rate": 0.05},
    )
    h = Harness(sc, tmp_path)
    out = h.run()
    assert out.succeeded == 600 and out.deadline_met is True
    changes = {
        e.message.partition(": ")[2]
        for e in h.orch.store.list_events(out.run_id, kinds=["route.change"])
    }
    assert Counter(e.path for e in out.ledger) == {"batch": 600}, changes


def test_batch_api_pacing_runs_on_the_injected_clock(tmp_path: Path) -> None:
    # One Files/Batches call per simulated minute: a whole batch run (upload, create, a few
    # polls, download, delete) takes simulated minutes, and on the injected clock no real
    # time at all. A limiter on the event loop's own clock would wait a real minute per call.
    sc = Scenario("pacing", 100, (MINI,), turnaround_s=600)
    h = Harness(sc, tmp_path, settings={"batch_api_rpm": 1})

    async def bounded() -> RunOutcome:
        return await asyncio.wait_for(h.vt.run(h.arun()), timeout=10)

    out = asyncio.run(bounded())
    assert out.succeeded == 100 and {e.path for e in out.ledger} == {"batch"}
