"""What `status` and `costs` say about a run's estimate and its deadline: one labelled
estimate, a verdict from the plan (real time from now), lines paid twice shown apart."""

from __future__ import annotations

from pathlib import Path

from test_store_support import Clock, make_run, new_request, open_store, route_all

from batchyard.config import model_table
from batchyard.models import Route
from batchyard.orchestrator._reporting import costs as _costs
from batchyard.orchestrator._reporting import status as _status
from batchyard.store import NewRequest, Store

MODELS = model_table()


def _run(store: Store, n: int, deadline_in: float, clock: Clock) -> str:
    run_id = make_run(
        store,
        deadline_at=clock.t + deadline_in,
        estimated_cost=1.25,
        options={"estimate_worst": 2.5, "realtime_spread": 0.05},
    )
    store.add_requests(run_id, (new_request(i) for i in range(n)))
    route_all(store, run_id, n, Route.BATCH)
    return run_id


def test_batch_work_is_on_plan_while_real_time_could_still_finish_it(tmp_path: Path) -> None:
    clock = Clock()
    store = open_store(tmp_path / "s.db", clock)
    info = MODELS["gpt-4o-mini"]
    # 1,000 requests need this long in real time at the table's limits (RPM or TPM binds)
    tokens = sum(new_request(i).input_tokens + new_request(i).output_tokens for i in range(1000))
    needed = max(1000 / info.rpm, tokens / info.tpm) * 60
    run_id = _run(store, 1000, deadline_in=needed * 3, clock=clock)
    status = _status.status(store, store.get_run(run_id), clock.t, models=MODELS)
    assert status.deadline_ok is True  # batch is expected later, but the plan escalates first
    assert status.realtime_needed_s is not None
    assert needed <= status.realtime_needed_s <= needed * 1.05 + 60  # spread, call latency
    clock.advance(needed * 2.5)  # now real time from here could no longer finish in time
    late = _status.status(store, store.get_run(run_id), clock.t, models=MODELS)
    assert late.deadline_ok is False


def test_status_and_costs_report_the_same_labelled_estimate(tmp_path: Path) -> None:
    clock = Clock()
    store = open_store(tmp_path / "s.db", clock)
    run_id = _run(store, 10, deadline_in=3600, clock=clock)
    status = _status.status(store, store.get_run(run_id), clock.t, models=MODELS)
    costs = _costs.costs(store, MODELS, run_id)
    assert status.estimated_cost == costs.estimated == 1.25
    assert status.estimated_worst == costs.estimated_worst == 2.5
    # the rows still split the lines by route at that route's estimated price
    cost_batch = new_request(0).cost_batch
    assert cost_batch is not None
    assert sum(r.estimated for r in costs.rows) == 10 * cost_batch


def test_request_caps_count_against_tpm_in_the_verdict(tmp_path: Path) -> None:
    """OpenAI charges the cap, not the expected output, against TPM."""
    clock = Clock()
    store = open_store(tmp_path / "s.db", clock)
    run_id = make_run(store)
    capped = [
        NewRequest(
            f"c{i}", i + 1, "/v1/chat/completions", "gpt-4o-mini", {}, 100, 50, 0.1, None, 0.05,
            max_output_tokens=4000,
        )
        for i in range(10)
    ]  # fmt: skip
    store.add_requests(run_id, capped)
    assert store.open_load(run_id) == {"gpt-4o-mini": (10, 10 * 4100)}
