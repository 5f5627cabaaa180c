"""The output lines the store keeps for `fetch`: stored when a request finishes, by every
write that finishes one, in the same transaction, and gone with their run when it is pruned."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_store_intent import _intent, _planned
from test_store_support import assert_stored_lines_current, make_run, open_store, route_all

from batchyard.errors import IllegalTransition
from batchyard.models import BatchStatus, RequestStatus, Route, RunState
from batchyard.store import Result, Store

R = RequestStatus


def _stored(store: Store, run_id: str) -> int:
    """How many output lines the store keeps for the run."""
    row = store.db.execute("SELECT count(*) FROM answers WHERE run_id = ?", [run_id]).fetchone()
    return int(row[0])


def test_a_batch_without_lines_for_some_requests_stores_their_failed_lines(tmp_path: Path) -> None:
    store = open_store(tmp_path / "left.db")
    run_id, shard = _planned(store, 3)
    store.set_file_remote_id(_intent(store, run_id, shard), "file-in")
    store.set_batch_status(shard, BatchStatus.CREATING)
    store.record_batch_remote(shard, "batch_7")
    store.update_batch_from_provider(shard, {"id": "batch_7", "status": "completed"})
    assert store.claim_batch_for_apply(shard, "A")
    store.apply_results(run_id, [Result("req-0", R.SUCCEEDED, 200, {"ok": 1}, shard=shard)])
    assert store.mark_applied(shard, "A", leftover=R.FAILED, error_code="no_line") == 2

    assert store.count_answer_lines(run_id) == (3, 3)
    assert_stored_lines_current(store, run_id)  # the batch id, the error, for each line


def test_a_write_that_is_rolled_back_stores_no_line(tmp_path: Path) -> None:
    store = open_store(tmp_path / "undo.db")
    run_id = make_run(store, 3)
    route_all(store, run_id, 2, Route.STANDARD)
    store.transition_requests(run_id, ["req-0", "req-1"], R.IN_FLIGHT)
    with pytest.raises(IllegalTransition):  # req-2 was never sent: the chunk is refused
        store.apply_results(
            run_id,
            [Result("req-0", R.SUCCEEDED, 200, {"a": 0}), Result("req-2", R.SUCCEEDED, 200, {})],
        )
    assert _stored(store, run_id) == 0
    # The next write stores only what it finished itself.
    store.apply_results(run_id, [Result("req-1", R.SUCCEEDED, 200, {"a": 1})])
    assert store.count_answer_lines(run_id) == (1, 3)
    assert_stored_lines_current(store, run_id)


def test_pruning_a_run_removes_its_lines(tmp_path: Path) -> None:
    store = open_store(tmp_path / "prune.db")
    run_id, kept = make_run(store, 2), make_run(store, 1)
    for run in (run_id, kept):
        store.transition_requests(run, ["req-0"], R.CANCELLED)
    store.transition_requests(run_id, ["req-1"], R.CANCELLED)
    store.set_run_state(run_id, RunState.CANCELLED)
    assert (_stored(store, run_id), _stored(store, kept)) == (2, 1)

    store.prune([run_id])

    assert (_stored(store, run_id), _stored(store, kept)) == (0, 1)
