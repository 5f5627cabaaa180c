"""Releasing a slow-cancel shard's lines to real time, and settling the batch's late answers:
taken where the line was not yet sent again, recorded as paid twice where it was."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_store_support import ENDPOINT, force_batch_status, make_run, open_store, route_all

from batchyard.errors import IllegalTransition
from batchyard.models import BatchStatus, RequestStatus, Route
from batchyard.store import Result, Store

R = RequestStatus


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return open_store(tmp_path / "r.db")


def _submitted_shard(store: Store, n: int) -> tuple[str, int]:
    run_id = make_run(store, n)
    route_all(store, run_id, n, Route.BATCH)
    ids = [f"req-{i}" for i in range(n)]
    shard = store.create_shard(run_id, endpoint=ENDPOINT, model="gpt-4o-mini", custom_ids=ids)
    force_batch_status(store, shard, BatchStatus.CREATING)
    store.record_batch_remote(shard, "batch_slow", {"id": "batch_slow", "status": "in_progress"})
    return run_id, shard


def _answer(i: int, shard: int, cost: float = 0.001) -> Result:
    return Result(
        f"req-{i}", R.SUCCEEDED, 200, {"id": f"b{i}"}, output_tokens=5, cost=cost, shard=shard
    )


def test_only_a_cancelling_shard_can_be_released(store: Store) -> None:
    run_id, shard = _submitted_shard(store, 2)
    with pytest.raises(IllegalTransition, match="still cancelling"):
        store.release_shard(run_id, shard, Route.STANDARD, "too slow")
    assert {r.status for r in store.iter_requests(run_id)} == {R.SUBMITTED}


def test_released_lines_go_to_real_time_and_late_answers_are_settled(store: Store) -> None:
    run_id, shard = _submitted_shard(store, 3)
    store.update_batch_from_provider(shard, {"id": "batch_slow", "status": "cancelling"})
    why = "cancel not finished at the last moment real time can start"
    assert store.release_shard(run_id, shard, Route.STANDARD, why) == 3
    rows = {r.custom_id: r for r in store.iter_requests(run_id)}
    assert {(r.status, r.route, r.shard) for r in rows.values()} == {
        (R.ROUTED, Route.STANDARD, None)
    }
    assert "req-0" in {c.custom_id for c in store.claim_realtime(run_id, owner="w", limit=2)}
    # req-0 and req-1 are sent again in real time; req-0 is answered there first
    store.finish_realtime(
        run_id, "w", [Result("req-0", R.SUCCEEDED, 200, {"id": "rt"}, cost=0.002)]
    )
    # the cancelled batch had finished all three: req-0 answered twice, req-1 on the wire
    # (billed twice either way), req-2 still waiting: the batch's answer is taken
    report = store.apply_results(run_id, [_answer(i, shard) for i in range(3)])
    assert (report.applied, report.paid_twice, report.stale) == (1, 2, 0)
    assert report.paid_twice_cost == pytest.approx(0.002)
    assert report.cost == pytest.approx(0.003)
    after = {r.custom_id: r for r in store.iter_requests(run_id, with_response=True)}
    assert after["req-0"].response_body == {"id": "rt"}  # never overwritten
    assert after["req-1"].status == R.IN_FLIGHT
    assert (after["req-2"].status, after["req-2"].response_body) == (R.SUCCEEDED, {"id": "b2"})
    assert store.paid_twice(run_id) == pytest.approx((2, 0.002))
    assert store.get_run(run_id).actual_cost == pytest.approx(0.002 + 0.003)
    # re-applying the same file (after a crash) settles nothing again
    again = store.apply_results(run_id, [_answer(i, shard) for i in range(3)])
    assert (again.applied, again.paid_twice, again.cost) == (0, 0, 0)
    assert store.paid_twice(run_id) == pytest.approx((2, 0.002))
    outcomes = [a.outcome for a in store.list_attempts(run_id, "req-0")]
    assert outcomes == ["paid_twice", "succeeded"]
