"""The Orchestrator's glue under stress: mixed routes, escalation, quota, failures, cancel,
resume, budget, the wait loop and a large run, end to end against the in-process simulator.

The simulator's clock only moves when the orchestrator sleeps (time_scale 0), so hours of
batch turnaround pass in milliseconds. Assertions read what a user would notice: the
simulator's billing ledger (each custom_id billed once), its batches, the store and `fetch`.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest

from batchyard.config import load_settings
from batchyard.errors import PlanRefused
from batchyard.models import RequestStatus, Route
from batchyard.orchestrator import Orchestrator
from batchyard.orchestrator import _routing as routing
from batchyard.orchestrator.batch.runner import BatchRunner
from batchyard.samples import sample_lines, write_sample
from batchyard.simulator import create_app, load_config
from batchyard.simulator.state import SimState
from batchyard.store import Store

H = 3600.0
MINI, FIVE = "gpt-4o-mini", "gpt-5-mini"


class Sim:
    """One in-process simulator and the orchestrators wired to it (all on its clock)."""

    def __init__(self, tmp_path: Path, **config: Any) -> None:
        config.setdefault("clock", {"time_scale": 0.0, "start": 1_767_225_600.0})
        config.setdefault("rate_limits", False)
        self.app = create_app(load_config(None, **config))
        self.state: SimState = self.app.state.sim
        self.tmp = tmp_path
        self.sleeps: list[float] = []
        self.opened: list[Orchestrator] = []

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.state.clock.advance(seconds)

    def orchestrator(self, **settings: Any) -> Orchestrator:
        client = openai.AsyncOpenAI(
            api_key="sk-test",
            base_url="http://sim/v1",
            max_retries=0,
            http_client=httpx2.AsyncClient(transport=httpx2.ASGITransport(app=self.app)),
        )
        settings.setdefault("small_run_requests", 0)
        settings.setdefault("small_run_usd", 0)
        loaded = load_settings(api_key="sk-test", db=self.tmp / "by.db", **settings)
        orch = Orchestrator(
            loaded,
            client=client,
            clock=self.state.clock.now,
            sleep=self.sleep,
            workdir=self.tmp / "work",
        )
        self.opened.append(orch)
        return orch

    async def close(self) -> None:
        for orch in self.opened:
            await orch.aclose()

    def billed(self) -> Counter[str]:
        return Counter(e.custom_id or "" for e in self.state.ledger)


def _write(path: Path, lines: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    return path


def _fetch(orch: Orchestrator, run_id: str, tmp: Path) -> list[dict[str, Any]]:
    orch.fetch(run_id, tmp / "out.jsonl", tmp / "err.jsonl")
    return [json.loads(x) for x in (tmp / "out.jsonl").read_text().splitlines()]


def _kinds(orch: Orchestrator, run_id: str) -> list[str]:
    return [e.kind for e in orch.store.list_events(run_id)]


# ---- 1. mixed routes ---------------------------------------------------------------------
async def test_mixed_run_bills_each_request_once_and_costs_match_the_ledger(
    tmp_path: Path,
) -> None:
    sim = Sim(tmp_path, batch={"turnaround_seconds": 1200.0})
    orch = sim.orchestrator()
    source = write_sample(tmp_path / "in.jsonl", 40, models=(MINI, FIVE))
    result = await orch.submit(source, deadline="12h")
    routes = Counter(a.route for a in result.plan.decision.assignments)
    assert routes == {Route.BATCH: 20, Route.FLEX: 20}, routes  # gpt-5-mini: flex bargain
    status = await orch.wait(result.run_id, max_rounds=200)
    assert status.done and status.state == "completed" and status.succeeded == 40
    billed = sim.billed()
    assert set(billed.values()) == {1} and len(billed) == 40
    assert {e.path for e in sim.state.ledger} == {"batch", "flex"}
    lines = _fetch(orch, result.run_id, tmp_path)
    assert [x["custom_id"] for x in lines] == [f"req-{i:06d}" for i in range(40)]
    costs = orch.costs(result.run_id)
    ledger = sum(e.cost for e in sim.state.ledger)
    assert costs.actual == pytest.approx(ledger, rel=1e-6, abs=1e-6)
    assert status.actual_cost == pytest.approx(ledger, rel=1e-6, abs=1e-6)
    assert status.deadline_ok is True
    await sim.close()


# ---- 2. escalation -----------------------------------------------------------------------
async def test_slow_batch_escalates_keeps_finished_lines_and_meets_the_deadline(
    tmp_path: Path,
) -> None:
    sim = Sim(tmp_path, batch={"turnaround_seconds": 5 * H})
    orch = sim.orchestrator()
    source = write_sample(tmp_path / "in.jsonl", 60, models=(MINI,))
    start = sim.state.now()
    result = await orch.submit(source, deadline="4h")
    esc = result.plan.escalation_at[MINI]
    assert esc is not None and start < esc < start + 4 * H
    status = await orch.wait(result.run_id, max_rounds=500)
    assert status.done and status.succeeded == 60
    (batch,) = sim.state.batches.values()
    assert batch.status == "cancelled"
    # Once lines are counted finished the point may move earlier than planned, by at most
    # the longest cancel allowed for (the prior's p95, 10 min) and the poll that sees it.
    allowance = 600.0 + 2 * orch.settings.poll_min_seconds + 5.0
    assert esc - allowance <= batch.times["cancelling_at"] <= esc + orch.settings.poll_max_seconds
    billed = sim.billed()
    assert len(billed) == 60 and set(billed.values()) == {1}, "each request billed once"
    kept = {e.custom_id for e in sim.state.ledger if e.path == "batch"}
    assert len(kept) == batch.cancel_done and 0 < len(kept) < 60
    assert {e.path for e in sim.state.ledger if e.custom_id not in kept} == {"standard"}
    # The cancelled lines reach real time within a short poll of the provider's cancel.
    first_standard = min(e.at for e in sim.state.ledger if e.path == "standard")
    assert first_standard <= batch.times["cancelled_at"] + 2 * orch.settings.poll_min_seconds + 1
    assert max(e.at for e in sim.state.ledger) <= start + 4 * H
    kinds = _kinds(orch, result.run_id)
    assert kinds.count("route.escalate") == 1 and "route.change" in kinds
    assert status.deadline_ok is True
    await sim.close()


# ---- 3. quota ----------------------------------------------------------------------------
async def test_quota_exhausted_moves_real_time_work_to_batch(tmp_path: Path) -> None:
    sim = Sim(tmp_path, batch={"turnaround_seconds": 600.0}, faults={"quota_exhausted": True})
    orch = sim.orchestrator(small_run_requests=100)  # small run: real time at submit
    source = write_sample(tmp_path / "in.jsonl", 10, models=(MINI,))
    result = await orch.submit(source, deadline="24h")
    assert {a.route for a in result.plan.decision.assignments} == {Route.STANDARD}
    status = await orch.wait(result.run_id, max_rounds=200)
    assert status.done and status.succeeded == 10
    assert {e.path for e in sim.state.ledger} == {"batch"} and len(sim.billed()) == 10
    kinds = _kinds(orch, result.run_id)
    assert "realtime.quota" in kinds and "route.change" in kinds
    assert "realtime.quota" in status.last_errors
    await sim.close()


async def test_quota_exhausted_with_real_time_forced_stops_and_says_why(tmp_path: Path) -> None:
    sim = Sim(tmp_path, faults={"quota_exhausted": True})
    orch = sim.orchestrator()
    source = write_sample(tmp_path / "in.jsonl", 10, models=(MINI,))
    result = await orch.submit(source, deadline="24h", route="realtime")
    status = await orch.wait(result.run_id, max_rounds=200)
    rounds = len(sim.sleeps)
    assert rounds < 20, f"wait kept polling a run that cannot progress ({rounds} rounds)"
    assert not status.done and status.state == "running"
    assert "quota" in " ".join(status.last_errors.values()).lower()
    assert sim.state.ledger == []
    # A new process (the quota topped up) finishes the run.
    sim.state.faults.quota_exhausted = False
    again = sim.orchestrator()
    status = await again.wait(result.run_id, max_rounds=200)
    assert status.done and status.succeeded == 10 and len(sim.billed()) == 10
    await sim.close()


# ---- 4. provider 400s --------------------------------------------------------------------
async def test_real_time_400s_are_failed_with_the_provider_error(tmp_path: Path) -> None:
    sim = Sim(tmp_path)
    orch = sim.orchestrator()
    lines = list(sample_lines(6, (MINI,)))
    for i in (1, 4):
        lines[i]["body"]["messages"] = [{"content": "no role"}]
    source = _write(tmp_path / "in.jsonl", lines)
    result = await orch.submit(source, route="realtime")
    status = await orch.wait(result.run_id, max_rounds=50)
    assert status.done and status.succeeded == 4 and status.failed == 2
    out = _fetch(orch, result.run_id, tmp_path)
    assert [x["custom_id"] for x in out] == [x["custom_id"] for x in lines]
    bad = [out[1], out[4]]
    for x in bad:
        assert x["response"]["status_code"] == 400
        assert "messages[0].role" in json.dumps(x["response"]["body"])
        assert x["batchyard"]["status"] == "failed"
    errors = [json.loads(x) for x in (tmp_path / "err.jsonl").read_text().splitlines()]
    assert [x["custom_id"] for x in errors] == [lines[1]["custom_id"], lines[4]["custom_id"]]
    assert len(sim.billed()) == 4  # a 400 is not billed
    await sim.close()


# ---- 5. cancel ---------------------------------------------------------------------------
async def test_cancel_mid_run_keeps_partial_results_and_bills_nothing_after(
    tmp_path: Path,
) -> None:
    sim = Sim(tmp_path, batch={"turnaround_seconds": 2 * H})
    orch = sim.orchestrator()
    source = write_sample(tmp_path / "in.jsonl", 40, models=(MINI, FIVE))
    result = await orch.submit(source, deadline="12h")
    # Half the batch's turnaround: some lines are done, real-time (flex) work not started.
    await sim.sleep(H)
    status = await orch.cancel(result.run_id)
    assert status.state in ("cancelling", "cancelled")
    status = await orch.wait(result.run_id, max_rounds=200)
    assert status.state == "cancelled" and status.done
    (batch,) = sim.state.batches.values()
    assert batch.status == "cancelled"
    paths = Counter(e.path for e in sim.state.ledger)
    assert paths == {"batch": batch.cancel_done}, "no real-time call after cancel"
    assert status.succeeded == batch.cancel_done > 0
    assert status.finished == 40
    out = _fetch(orch, result.run_id, tmp_path)
    done = [x for x in out if x["batchyard"]["status"] == "succeeded"]
    assert len(done) == batch.cancel_done
    await orch.step(result.run_id)
    assert len(sim.state.ledger) == batch.cancel_done
    await sim.close()


# ---- 6. resume after a crash -------------------------------------------------------------
async def test_resume_after_crash_before_the_first_batch_submit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim = Sim(tmp_path, batch={"turnaround_seconds": 600.0})
    orch = sim.orchestrator()
    source = write_sample(tmp_path / "in.jsonl", 30, models=(MINI,))

    async def die(self: BatchRunner, run_id: str, **kw: Any) -> Any:
        raise KeyboardInterrupt  # the process dies between create_run and the submit

    monkeypatch.setattr(BatchRunner, "submit", die)
    with pytest.raises(KeyboardInterrupt):
        await orch.submit(source, route="batch")
    monkeypatch.undo()
    (run,) = orch.runs()
    assert sim.state.batches == {} and sim.state.files == {}

    again = sim.orchestrator()
    status = await again.resume(run.id)
    assert len(status.batches) == 1
    assert status.counts == {(Route.BATCH, RequestStatus.SUBMITTED): 30}
    status = await again.wait(run.id, max_rounds=100)
    assert status.done and status.succeeded == 30
    assert len(sim.state.batches) == 1
    billed = sim.billed()
    assert len(billed) == 30 and set(billed.values()) == {1}
    await sim.close()


async def test_resume_after_crash_right_after_the_batch_was_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim = Sim(tmp_path, batch={"turnaround_seconds": 600.0})
    orch = sim.orchestrator()
    source = write_sample(tmp_path / "in.jsonl", 30, models=(MINI,))

    def die(self: Store, shard: int, *a: Any, **kw: Any) -> Any:
        raise KeyboardInterrupt  # created remotely, the process dies before recording it

    monkeypatch.setattr(Store, "record_batch_remote", die)
    with pytest.raises(KeyboardInterrupt):
        await orch.submit(source, route="batch")
    monkeypatch.undo()
    (run,) = orch.runs()
    assert len(sim.state.batches) == 1
    await sim.sleep(700)  # restarted later: the dead process's claim has lapsed

    again = sim.orchestrator()
    await again.resume(run.id)
    status = await again.wait(run.id, max_rounds=100)
    assert status.done and status.succeeded == 30
    assert len(sim.state.batches) == 1, "the batch was submitted twice"
    billed = sim.billed()
    assert len(billed) == 30 and set(billed.values()) == {1}
    await sim.close()


# ---- 7. status at each phase -------------------------------------------------------------
async def test_status_fields_through_a_run(tmp_path: Path) -> None:
    sim = Sim(tmp_path, batch={"turnaround_seconds": 1200.0})
    orch = sim.orchestrator()
    source = write_sample(tmp_path / "in.jsonl", 20, models=(MINI,))
    start = sim.state.now()
    result = await orch.submit(source, deadline="12h")
    status = orch.status(result.run_id)
    assert status.state == "running" and not status.done
    assert status.counts == {(Route.BATCH, RequestStatus.SUBMITTED): 20} and status.requests == 20
    (info,) = status.batches
    assert info.status == "validating" and info.total == 20
    # With no finished batch yet, the configured turnaround prior gives the estimate.
    assert info.expected_finish is not None and info.expected_finish > start
    assert status.expected_finish == info.expected_finish
    assert status.deadline_ok is True and status.deadline_at == pytest.approx(start + 12 * H)
    assert status.escalation_at == {
        k: v for k, v in result.plan.escalation_at.items() if v is not None
    }
    assert MINI in status.escalation_at and status.last_errors == {}
    assert status.reasons and status.estimated_cost > 0 and status.actual_cost == 0

    status = await orch.wait(result.run_id, max_rounds=100)
    assert status.done and status.counts == {(Route.BATCH, RequestStatus.SUCCEEDED): 20}
    (info,) = status.batches
    assert info.status == "applied" and info.completed == 20
    assert status.expected_finish == orch.store.get_run(result.run_id).finished_at
    assert status.deadline_ok is True and 0 < status.actual_cost < status.estimated_cost
    await sim.close()


# ---- 8. budget ---------------------------------------------------------------------------
async def test_budget_below_the_worst_case_refuses_and_records_nothing(tmp_path: Path) -> None:
    sim = Sim(tmp_path)
    orch = sim.orchestrator()
    source = write_sample(tmp_path / "in.jsonl", 30, models=(MINI,))
    plan = orch.plan(source, deadline="1h")
    with pytest.raises(PlanRefused, match=r"\$"):
        await orch.submit(source, deadline="1h", budget=plan.worst / 10)
    assert orch.runs() == [] and sim.state.files == {} and sim.state.ledger == []
    await sim.close()


async def test_budget_overrun_mid_run_stops_real_time_and_says_why(tmp_path: Path) -> None:
    sim = Sim(tmp_path)
    orch = sim.orchestrator(small_run_requests=100)  # a small run: real time at once
    source = write_sample(tmp_path / "in.jsonl", 30, models=(MINI,))
    plan = orch.plan(source, deadline="6h")
    result = await orch.submit(source, deadline="6h", budget=plan.worst * 1.2)
    assert {a.route for a in result.plan.decision.assignments} == {Route.STANDARD}
    # Something outside the plan was paid (e.g. calls billed twice around a crash).
    orch.store.add_run_cost(result.run_id, plan.worst * 0.9, reason="billed twice")
    status = await orch.wait(result.run_id, max_rounds=200)
    assert len(sim.sleeps) < 5, "wait kept looping on a run the budget has stopped"
    assert not status.done and sim.state.ledger == []
    assert "budget" in status.last_errors.get("budget.stop", "")
    assert "run.stalled" in status.last_errors
    assert _kinds(orch, result.run_id).count("budget.stop") == 1
    await sim.close()


# ---- 9. the wait loop sleeps between rounds ----------------------------------------------
async def test_wait_sleeps_the_poll_interval_with_only_batch_work(tmp_path: Path) -> None:
    sim = Sim(tmp_path, batch={"turnaround_seconds": 1800.0})
    orch = sim.orchestrator()
    source = write_sample(tmp_path / "in.jsonl", 20, models=(MINI,))
    result = await orch.submit(source, route="batch")
    rounds: list[float] = []
    status = await orch.wait(result.run_id, on_round=lambda s: rounds.append(sim.state.now()))
    assert status.done
    low, high = orch.settings.poll_min_seconds, orch.settings.poll_max_seconds
    assert len(sim.sleeps) == len(rounds) - 1
    assert all(low <= s <= high for s in sim.sleeps), sim.sleeps
    # validating + in progress (growing to poll_max) + finalizing: tens of rounds, not more.
    assert len(rounds) < 40, len(rounds)
    assert [b - a for a, b in itertools.pairwise(rounds)] == pytest.approx(sim.sleeps)
    await sim.close()


# ---- 10. a large-ish run -----------------------------------------------------------------
async def test_a_round_over_two_thousand_requests_stays_cheap(tmp_path: Path) -> None:
    sim = Sim(tmp_path, batch={"turnaround_seconds": 5 * H})
    orch = sim.orchestrator()
    source = write_sample(tmp_path / "in.jsonl", 2_000, models=(MINI, "gpt-4.1-mini"))
    result = await orch.submit(source, deadline="24h")
    assert len(sim.state.batches) == 2
    run = orch.store.get_run(result.run_id)
    open_rows = list(orch.store.iter_requests(run.id, statuses=routing.OPEN_STATUSES))
    assert routing.shard_states(orch.store, run.id, open_rows) == routing.shard_states(
        orch.store, run.id
    )
    # Cheap means a round's work does not grow with the run: count the store's statements
    # (a per-request query would add 2,000; a clock would measure the machine, not the code).
    statements: list[str] = []
    orch.store.db.conn.set_trace_callback(statements.append)
    await orch.driver.reroute(run)
    reroute_statements = len(statements)
    statements.clear()
    status = await orch.step(result.run_id)
    step_statements = len(statements)
    orch.store.db.conn.set_trace_callback(None)
    assert reroute_statements < 50 and step_statements < 150, (  # 7 and 64 today
        reroute_statements,
        step_statements,
    )
    assert status.counts == {(Route.BATCH, RequestStatus.SUBMITTED): 2_000}
    assert len(sim.state.batches) == 2 and sim.state.ledger == []
    await sim.close()


async def test_step_says_when_real_time_has_stopped_for_the_quota(tmp_path: Path) -> None:
    sim = Sim(tmp_path, faults={"quota_exhausted": True})
    orch = sim.orchestrator()
    source = write_sample(tmp_path / "in.jsonl", 5, models=(MINI,))
    result = await orch.submit(source, route="realtime")
    status = await orch.step(result.run_id)
    message = status.last_errors["run.stalled"]
    assert "5 request(s) wait for real time" in message and "quota" in message.lower()
    assert f"batchyard resume {result.run_id}" in message
    await orch.step(result.run_id)
    assert _kinds(orch, result.run_id).count("run.stalled") == 1
    assert sim.state.ledger == []
    await sim.close()
