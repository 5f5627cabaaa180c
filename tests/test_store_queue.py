"""Shard planning as a claim, the enqueued-token books across runs, drivers, and one set of
words for where a shard's lines ended (succeeded, failed, cancelled, re-routed)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from rich.console import Console
from test_store_support import ENDPOINT, Clock, force_batch_status, make_run, open_store, route_all

from batchyard.cli.render import status_view
from batchyard.cli.render_runs import fetch_lines
from batchyard.errors import StoreError
from batchyard.models import BatchStatus, RequestStatus, Route
from batchyard.orchestrator._reporting import status as reporting
from batchyard.orchestrator._reporting.fetch import fetch
from batchyard.store import Result, Store

R = RequestStatus
MODEL = "gpt-4o-mini"


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path: Path, clock: Clock) -> Store:
    return open_store(tmp_path / "q.db", clock)


def _claim(store: Store, run_id: str, ids: list[str], tokens: int, limit: int | None) -> int | None:
    return store.claim_shard(
        run_id,
        endpoint=ENDPOINT,
        model=MODEL,
        custom_ids=ids,
        input_tokens=tokens,
        queue_limit=limit,
    )


def test_the_second_claim_on_the_same_lines_loses_and_writes_nothing(store: Store) -> None:
    run_id = make_run(store, 4)
    route_all(store, run_id, 4, Route.BATCH)
    ids = [f"req-{i}" for i in range(4)]
    first = _claim(store, run_id, ids, 400, 10_000)
    assert first is not None
    # A second driver planned from the same read: it loses, and the shard is not duplicated.
    assert _claim(store, run_id, ids, 400, 10_000) is None
    assert _claim(store, run_id, ids[2:], 200, 10_000) is None
    assert [b.id for b in store.list_batches(run_id)] == [first]
    assert {r.shard for r in store.iter_requests(run_id)} == {first}
    assert store.get_batch(first).metadata["batchyard_tokens"] == "400"
    # The strict form still refuses loudly (a caller's mistake, not a race).
    with pytest.raises(StoreError, match="cannot join"):
        store.create_shard(run_id, endpoint=ENDPOINT, model=MODEL, custom_ids=ids)


def test_a_claim_that_would_overfill_the_models_queue_loses(store: Store) -> None:
    a, b = make_run(store, 2), make_run(store, 2)
    route_all(store, a, 2, Route.BATCH)
    route_all(store, b, 2, Route.BATCH)
    held = _claim(store, a, ["req-0", "req-1"], 6_000, 8_000)
    assert held is not None
    assert store.enqueued_tokens(MODEL) == 6_000
    # Another run's driver read the queue before that shard existed: its claim loses.
    assert _claim(store, b, ["req-0", "req-1"], 3_000, 8_000) is None
    assert store.queue_holders(MODEL) == {a: 6_000}
    assert store.queue_demand(MODEL) == {b: 100 + 101}
    # Once the holder's batch is finished, the room is there again.
    force_batch_status(store, held, BatchStatus.COMPLETED)
    assert store.enqueued_tokens(MODEL) == 0
    assert _claim(store, b, ["req-0", "req-1"], 3_000, 8_000) is not None
    assert store.queue_demand(MODEL) == {}


def test_drivers_are_seen_and_forgotten(store: Store, clock: Clock) -> None:
    run_id = make_run(store)
    store.mark_driving(run_id, "host:1:a")
    clock.advance(100)
    store.mark_driving(run_id, "host:2:b")
    assert set(store.drivers(run_id, since=clock.t - 50)) == {"host:2:b"}
    store.stop_driving(run_id, "host:2:b")
    assert store.drivers(run_id, since=clock.t - 50) == {}
    assert set(store.drivers(run_id, since=0)) == {"host:1:a"}


def test_a_shards_lines_are_counted_where_they_ended(store: Store, clock: Clock) -> None:
    # Shard of four, cancelled at an escalation point: one line answered in the batch, one
    # failed for good there, one sent again in real time and answered, one cancelled by
    # the user. The batch row says so, not "1 done, 3 failed".
    run_id = make_run(store, 4)
    route_all(store, run_id, 4, Route.BATCH)
    ids = [f"req-{i}" for i in range(4)]
    shard = store.create_shard(run_id, endpoint=ENDPOINT, model=MODEL, custom_ids=ids)
    force_batch_status(store, shard, BatchStatus.CREATING)
    store.record_batch_remote(shard, "batch_x", {"id": "batch_x", "status": "in_progress"})
    store.update_batch_from_provider(
        shard,
        {"id": "batch_x", "status": "cancelled", "request_counts": {"completed": 1, "failed": 3}},
    )
    store.apply_results(
        run_id,
        [
            Result("req-0", R.SUCCEEDED, 200, {"id": "a"}, cost=0.001, shard=shard),
            Result("req-1", R.FAILED, 400, None, error_code="invalid_request", shard=shard),
        ],
    )
    assert store.claim_batch_for_apply(shard, "me")
    assert store.mark_applied(shard, "me", error_code="batch_cancelled") == 2
    store.set_routes(run_id, [("req-2", Route.STANDARD, "escalated")])
    (claim,) = store.claim_realtime(run_id, owner="rt", limit=5)
    assert claim.custom_id == "req-2"
    store.finish_realtime(run_id, "rt", [Result("req-2", R.SUCCEEDED, 200, {"id": "rt"})])
    store.transition_requests(run_id, ["req-3"], R.CANCELLED, error_code="run_cancelled")

    outcome = store.shard_outcomes([shard])[shard]
    assert outcome == {"succeeded": 1, "failed": 1, "re-routed": 1, "cancelled": 1}
    # `status` and its batch table say the same (not the provider's "1 done, 3 failed").
    status = reporting.status(store, store.get_run(run_id), clock.t)
    (row,) = status.batches
    assert (row.completed, row.failed, row.cancelled, row.rerouted) == (1, 1, 1, 1)
    text = Console(width=200, record=True)
    text.print(status_view(status, clock.t))
    table = text.export_text()
    assert "re-routed" in table and re.search(r"applied\W+1\W+1\W+1\W+1\W+4\b", table), table


def test_fetch_counts_cancelled_lines_as_cancelled_not_failed(store: Store, tmp_path: Path) -> None:
    run_id = make_run(store, 3)
    route_all(store, run_id, 3, Route.STANDARD)
    store.transition_requests(run_id, ["req-1", "req-2"], R.CANCELLED, error_code="run_cancelled")
    (claim,) = store.claim_realtime(run_id, owner="rt", limit=1)
    store.finish_realtime(run_id, "rt", [Result(claim.custom_id, R.SUCCEEDED, 200, {"id": "x"})])
    report = fetch(store, run_id, tmp_path / "out.jsonl", tmp_path / "err.jsonl")
    assert (report.succeeded, report.failed, report.cancelled) == (1, 0, 2)
    text = "\n".join(fetch_lines(report))
    assert "1 succeeded, 0 failed, 2 cancelled, 0 not finished yet" in text
    assert len((tmp_path / "err.jsonl").read_text().splitlines()) == 2
