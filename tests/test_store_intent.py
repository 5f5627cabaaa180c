"""Intent before I/O: every remote-creating step can be reconciled after a crash, and
leases keep two processes from submitting or applying one shard."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_store_support import ENDPOINT, Clock, make_run, open_store, route_all

from batchyard.errors import IllegalTransition, StoreError
from batchyard.models import BatchStatus, RequestStatus, Route
from batchyard.store import FileKind, Result, Store

B, R = BatchStatus, RequestStatus


def _planned(store: Store, n: int = 4) -> tuple[str, int]:
    run_id = make_run(store, n)
    route_all(store, run_id, n, Route.BATCH)
    ids = [f"req-{i}" for i in range(n)]
    shard = store.create_shard(
        run_id, endpoint=ENDPOINT, model="gpt-4o-mini", custom_ids=ids, metadata={"purpose": "test"}
    )
    return run_id, shard


def _intent(store: Store, run_id: str, shard: int) -> int:
    return store.record_file_intent(
        run_id,
        FileKind.INPUT,
        local_path="/tmp/shard.jsonl",
        bytes=1234,
        sha256="ab" * 32,
        shard=shard,
    )


def test_upload_intent_survives_a_crash_and_reconciles_to_the_found_file(tmp_path: Path) -> None:
    path = tmp_path / "u.db"
    store = open_store(path)
    run_id, shard = _planned(store)
    row = _intent(store, run_id, shard)
    store.close()  # "crash" between the intent and the upload's answer

    store = open_store(path)
    assert store.get_batch(shard).status == B.UPLOADING
    pending = store.pending_uploads(run_id)
    assert [(f.id, f.sha256, f.bytes) for f in pending] == [(row, "ab" * 32, 1234)]
    # reconcile found the file on the provider: record it, exactly once
    store.set_file_remote_id(row, "file-abc")
    store.set_file_remote_id(row, "file-abc")
    with pytest.raises(StoreError, match="file-abc"):
        store.set_file_remote_id(row, "file-other")
    batch = store.get_batch(shard)
    assert (batch.status, batch.input_file_id, batch.input_file_row) == (
        B.UPLOADED,
        "file-abc",
        row,
    )
    assert store.pending_uploads(run_id) == []


def test_upload_that_never_happened_is_abandoned_and_retried(tmp_path: Path) -> None:
    store = open_store(tmp_path / "a.db")
    run_id, shard = _planned(store)
    first = _intent(store, run_id, shard)
    store.abandon_upload(first)
    assert store.get_batch(shard).status == B.PLANNED
    second = _intent(store, run_id, shard)
    store.set_file_remote_id(second, "file-2")
    assert store.pending_uploads() == []
    files = store.list_files(run_id)
    assert [(f.id, f.remote_id, f.deleted_at is not None) for f in files] == [
        (first, None, True),
        (second, "file-2", False),
    ]


def test_batch_create_intent_reconciles_by_its_tag(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    store = open_store(path)
    run_id, shard = _planned(store)
    store.set_file_remote_id(_intent(store, run_id, shard), "file-in")
    assert store.set_batch_status(shard, B.CREATING, expect=B.UPLOADED)
    assert not store.set_batch_status(shard, B.CREATING, expect=B.UPLOADED)  # already moved
    store.close()  # crash: batches.create may or may not have happened

    store = open_store(path)
    [creating] = store.list_batches(run_id, statuses=[B.CREATING])
    assert creating.provider_batch_id is None
    # the tag the orchestrator sends as metadata and searches for when reconciling
    assert creating.metadata == {
        "purpose": "test",
        "batchyard_run": run_id,
        "batchyard_shard": str(shard),
    }
    # the requests are not submitted until the provider id is known
    assert {r.status for r in store.iter_requests(run_id)} == {R.ROUTED}
    provider = {
        "id": "batch_1",
        "status": "in_progress",
        "request_counts": {"total": 4, "completed": 1, "failed": 0},
        "created_at": 100,
        "in_progress_at": 101,
    }
    batch = store.record_batch_remote(shard, "batch_1", provider)
    assert store.record_batch_remote(shard, "batch_1") == batch  # idempotent
    with pytest.raises(StoreError, match="batch_1"):
        store.record_batch_remote(shard, "batch_2")
    assert (batch.status, batch.counts_completed) == (B.IN_PROGRESS, 1)
    assert batch.provider_times == {"created_at": 100, "in_progress_at": 101}
    assert store.find_batch("batch_1") == batch
    rows = list(store.iter_requests(run_id))
    assert {(r.status, r.attempts, r.shard) for r in rows} == {(R.SUBMITTED, 1, shard)}
    assert {a.route for a in store.list_attempts(run_id)} == {Route.BATCH}


def test_create_that_never_happened_goes_back_to_uploaded(tmp_path: Path) -> None:
    store = open_store(tmp_path / "n.db")
    run_id, shard = _planned(store)
    store.set_file_remote_id(_intent(store, run_id, shard), "file-in")
    store.set_batch_status(shard, B.CREATING)
    assert store.set_batch_status(shard, B.UPLOADED, expect=B.CREATING)
    assert store.get_batch(shard).input_file_id == "file-in"  # upload is not repeated


def test_shard_membership_rules(tmp_path: Path) -> None:
    store = open_store(tmp_path / "m.db")
    run_id, shard = _planned(store, 3)
    with pytest.raises(StoreError, match="req-0"):  # already in a shard
        store.create_shard(run_id, endpoint=ENDPOINT, model="gpt-4o-mini", custom_ids=["req-0"])
    with pytest.raises(IllegalTransition, match="shard"):  # cannot leave a live shard
        store.set_routes(run_id, [("req-0", Route.FLEX, "changed my mind")])
    store.set_batch_status(shard, B.CANCELLED)
    store.set_routes(run_id, [("req-0", Route.FLEX, "shard cancelled")])
    assert store.get_request(run_id, "req-0").shard is None


def test_a_route_decided_before_another_process_took_the_line_is_left_out(
    tmp_path: Path,
) -> None:
    # Two drivers of one run: one re-routes from what it read, the other has meanwhile put
    # a line in a shard (or sent it). The line stays where it went; the rest move.
    store = open_store(tmp_path / "t.db")
    run_id = make_run(store, 3)
    route_all(store, run_id, 3, Route.BATCH)
    shard = store.create_shard(run_id, endpoint=ENDPOINT, model="gpt-4o-mini", custom_ids=["req-0"])
    store.transition_requests(run_id, ["req-1"], RequestStatus.IN_FLIGHT)
    moves = [(f"req-{i}", Route.FLEX, "read before") for i in range(3)]
    assert store.set_routes(run_id, moves, unless_taken=True) == 1
    rows = {r.custom_id: r for r in store.iter_requests(run_id)}
    assert (rows["req-0"].route, rows["req-0"].shard) == (Route.BATCH, shard)
    assert rows["req-1"].status is RequestStatus.IN_FLIGHT
    assert (rows["req-2"].route, rows["req-2"].status) == (Route.FLEX, RequestStatus.ROUTED)


def test_submit_lease_excludes_a_second_owner_until_it_expires(tmp_path: Path) -> None:
    clock = Clock()
    store = open_store(tmp_path / "l.db", clock)
    _, shard = _planned(store)
    assert store.claim_batch_for_submit(shard, "A", lease_seconds=60)
    assert not store.claim_batch_for_submit(shard, "B", lease_seconds=60)
    assert store.claim_batch_for_submit(shard, "A", lease_seconds=60)  # renew
    clock.advance(61)
    assert store.claim_batch_for_submit(shard, "B", lease_seconds=60)
    with pytest.raises(StoreError, match="not claimed by A"):
        store.set_batch_status(shard, B.UPLOADING, owner="A")


def test_a_lease_that_ran_out_is_still_the_holders_until_taken_over(tmp_path: Path) -> None:
    # A step that outlives its lease (a slow machine, a fast simulated clock) finishes, as
    # long as no other process has taken the shard over.
    clock = Clock()
    store = open_store(tmp_path / "l.db", clock)
    _, shard = _planned(store)
    assert store.claim_batch_for_submit(shard, "A", lease_seconds=60)
    clock.advance(600)
    assert store.set_batch_status(shard, B.UPLOADING, owner="A")


def test_apply_lease_and_leftovers(tmp_path: Path) -> None:
    store = open_store(tmp_path / "ap.db")
    run_id, shard = _planned(store, 4)
    store.set_file_remote_id(_intent(store, run_id, shard), "file-in")
    store.set_batch_status(shard, B.CREATING)
    store.record_batch_remote(shard, "batch_9")
    assert not store.claim_batch_for_apply(shard, "A")  # not finished remotely yet
    store.update_batch_from_provider(
        shard,
        {"id": "batch_9", "status": "expired", "expired_at": 500, "output_file_id": "file-out"},
    )
    assert store.list_active_batches(run_id)[0].id == shard
    assert store.claim_batch_for_apply(shard, "A")
    assert not store.claim_batch_for_apply(shard, "B")
    with pytest.raises(StoreError):
        store.mark_applied(shard, "B")
    store.record_downloaded_file(
        run_id,
        shard,
        FileKind.OUTPUT,
        remote_id="file-out",
        local_path="/tmp/out.jsonl",
        bytes=10,
        sha256="cd" * 32,
    )
    report = store.apply_results(
        run_id,
        [
            Result("req-0", R.SUCCEEDED, 200, {"ok": True}, shard=shard, cost=0.1),
            Result("req-1", R.RETRYABLE, None, error_code="batch_expired", shard=shard),
            Result("req-2", R.SUCCEEDED, 200, {}, shard=shard + 1),  # another shard's line
        ],
    )
    assert (report.applied, report.stale) == (2, 1)
    assert store.mark_applied(shard, "A") == 2  # req-2 and req-3 had no line
    assert not store.claim_batch_for_apply(shard, "B")  # applied: never again
    assert store.list_active_batches(run_id) == []
    statuses = {r.custom_id: r.status for r in store.iter_requests(run_id)}
    assert statuses == {
        "req-0": R.SUCCEEDED,
        "req-1": R.RETRYABLE,
        "req-2": R.RETRYABLE,
        "req-3": R.RETRYABLE,
    }
    outcomes = {a.custom_id: (a.outcome, a.cost) for a in store.list_attempts(run_id)}
    assert outcomes == {
        "req-0": ("succeeded", 0.1),
        "req-1": ("retryable", 0.0),
        "req-2": ("retryable", None),
        "req-3": ("retryable", None),
    }
    # a late poll of an applied shard changes nothing
    late = store.update_batch_from_provider(shard, {"id": "batch_9", "status": "expired"})
    assert late.status == B.APPLIED
