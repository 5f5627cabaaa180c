"""The output lines the store keeps for `fetch`: marked due by every write that finishes a
request, in the same transaction, made by `store_answer_lines`, and gone with their run when
it is pruned."""

from __future__ import annotations

import json
import subprocess
import sys
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

    assert store.store_answer_lines(run_id) == 3
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
    assert store.store_answer_lines(run_id) == 0  # nothing was marked due
    # The next write marks only what it finished itself.
    store.apply_results(run_id, [Result("req-1", R.SUCCEEDED, 200, {"a": 1})])
    assert store.store_answer_lines(run_id) == 1
    assert store.count_answer_lines(run_id) == (1, 3)
    assert_stored_lines_current(store, run_id)


def test_pruning_a_run_removes_its_lines(tmp_path: Path) -> None:
    store = open_store(tmp_path / "prune.db")
    run_id, kept = make_run(store, 2), make_run(store, 2)
    for run in (run_id, kept):
        store.transition_requests(run, ["req-0", "req-1"], R.CANCELLED)
    store.set_run_state(run_id, RunState.CANCELLED)
    assert store.store_answer_lines(run_id) == 2  # the other run's lines stay due
    assert (_stored(store, run_id), _stored(store, kept)) == (2, 0)

    store.prune([run_id])

    assert _stored(store, run_id) == 0
    assert store.store_answer_lines(run_id) == 0
    assert store.store_answer_lines(kept) == 2
    assert _stored(store, kept) == 2


def test_fetch_from_the_command_line_does_not_load_the_openai_sdk(tmp_path: Path) -> None:
    # Loading the SDK took 0.8 s of every `batchyard fetch`, which makes no API call.
    store = open_store(tmp_path / "cli.db")
    run_id = make_run(store, 2)
    store.transition_requests(run_id, ["req-0", "req-1"], R.CANCELLED)
    store.store_answer_lines(run_id)
    store.close()
    out = tmp_path / "out.jsonl"
    argv = ["batchyard", "--db", str(tmp_path / "cli.db"), "fetch", run_id, "-o", str(out)]
    code = (
        f"import sys\nsys.argv = {argv!r}\nfrom batchyard.cli import main\n"
        "try:\n    main()\nexcept SystemExit as done:\n    assert done.code == 0, done.code\n"
        "print('openai' in sys.modules, file=sys.stderr)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip().splitlines()[-1] == "False"
    assert [json.loads(x)["custom_id"] for x in out.read_text().splitlines()] == ["req-0", "req-1"]
