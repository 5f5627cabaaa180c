"""Real processes on one database: concurrent claims, and crashes mid-transaction."""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from test_store_support import ENDPOINT, make_run, route_all

from batchyard.models import BatchStatus, RequestStatus, Route
from batchyard.store import FileKind, Result, Store

R, B = RequestStatus, BatchStatus
CTX = multiprocessing.get_context("fork")


def _run_children(target: Callable[..., None], args: list[tuple[Any, ...]]) -> list[int]:
    procs = [CTX.Process(target=target, args=a) for a in args]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    return [p.exitcode if p.exitcode is not None else -999 for p in procs]


def _claim_worker(path: str, run_id: str, owner: str, out: str, barrier: Any) -> None:
    store = Store.open(path)
    barrier.wait()
    mine: list[str] = []
    while claims := store.claim_realtime(run_id, owner=owner, limit=7):
        mine.extend(c.custom_id for c in claims)
        time.sleep(0.003)  # "the call": lets the other process in between claims
        store.finish_realtime(
            run_id, owner, [Result(c.custom_id, R.SUCCEEDED, 200, {"by": owner}) for c in claims]
        )
    Path(out).write_text(json.dumps(mine))
    store.close()


def test_two_processes_claim_every_request_exactly_once(tmp_path: Path) -> None:
    path = tmp_path / "claims.db"
    n = 600
    with Store.open(path) as store:
        run_id = make_run(store, n)
        route_all(store, run_id, n, Route.STANDARD)
    barrier = CTX.Barrier(2)
    outs = [tmp_path / "a.json", tmp_path / "b.json"]
    codes = _run_children(
        _claim_worker,
        [
            (str(path), run_id, "proc-a", str(outs[0]), barrier),
            (str(path), run_id, "proc-b", str(outs[1]), barrier),
        ],
    )
    assert codes == [0, 0]
    a, b = (json.loads(o.read_text()) for o in outs)
    assert a and b, "both processes should have won some claims"
    assert not set(a) & set(b)
    assert sorted(a + b) == sorted(f"req-{i}" for i in range(n))
    with Store.open(path) as store:
        rows = list(store.iter_requests(run_id, with_response=True))
        assert {(r.status, r.attempts) for r in rows} == {(R.SUCCEEDED, 1)}
        by = {r.custom_id: r.response_body["by"] for r in rows if r.response_body}
        assert sorted(k for k, v in by.items() if v == "proc-a") == sorted(a)
        assert len(store.list_attempts(run_id)) == n


def _apply_worker(
    path: str, run_id: str, shards: list[int], owner: str, out: str, barrier: Any
) -> None:
    store = Store.open(path)
    barrier.wait()
    applied = []
    for _ in range(3):  # keep trying: the other may hold a lease for a moment
        for shard in shards:
            if store.claim_batch_for_apply(shard, owner, lease_seconds=300):
                ids = [r.custom_id for r in store.iter_requests(run_id, shard=shard)]
                store.apply_results(
                    run_id, [Result(i, R.SUCCEEDED, 200, {}, shard=shard, cost=1.0) for i in ids]
                )
                store.mark_applied(shard, owner)
                applied.append(shard)
    Path(out).write_text(json.dumps(applied))
    store.close()


def test_two_processes_never_apply_the_same_batch(tmp_path: Path) -> None:
    path = tmp_path / "apply.db"
    with Store.open(path) as store:
        run_id = make_run(store, 200)
        route_all(store, run_id, 200, Route.BATCH)
        shards = []
        for k in range(20):
            ids = [f"req-{i}" for i in range(k * 10, k * 10 + 10)]
            shard = store.create_shard(
                run_id, endpoint=ENDPOINT, model="gpt-4o-mini", custom_ids=ids
            )
            store.set_file_remote_id(
                store.record_file_intent(
                    run_id, FileKind.INPUT, local_path="x", bytes=1, sha256="0", shard=shard
                ),
                f"file-{k}",
            )
            store.set_batch_status(shard, B.CREATING)
            store.record_batch_remote(shard, f"batch_{k}", {"status": "completed"})
            shards.append(shard)
    barrier = CTX.Barrier(2)
    outs = [tmp_path / "a.json", tmp_path / "b.json"]
    codes = _run_children(
        _apply_worker,
        [
            (str(path), run_id, shards, "proc-a", str(outs[0]), barrier),
            (str(path), run_id, shards, "proc-b", str(outs[1]), barrier),
        ],
    )
    assert codes == [0, 0]
    a, b = (json.loads(o.read_text()) for o in outs)
    assert sorted(a + b) == sorted(shards)  # each shard applied exactly once
    with Store.open(path) as store:
        assert store.get_run(run_id).actual_cost == 200.0  # no result counted twice
        assert len(store.list_events(run_id, kinds=["batch.applied"])) == 20
        assert {b.status for b in store.list_batches(run_id)} == {B.APPLIED}


def _crash_in_atomic(path: str, run_id: str) -> None:
    store = Store.open(path)
    with store.db.atomic():
        store.db.execute("UPDATE requests SET status = 'routed', route = 'batch'")
        store.db.execute("UPDATE runs SET estimated_cost = 99")
        os._exit(3)  # killed mid-transaction: no commit, no rollback, no cleanup


def test_process_killed_inside_atomic_leaves_nothing_half_written(tmp_path: Path) -> None:
    path = tmp_path / "crash.db"
    with Store.open(path) as store:
        run_id = make_run(store, 50)
    assert _run_children(_crash_in_atomic, [(str(path), run_id)]) == [3]
    with Store.open(path) as store:
        assert {r.status for r in store.iter_requests(run_id)} == {R.PENDING}
        assert store.get_run(run_id).estimated_cost == 0
        assert store.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


class _DyingClock:
    """A clock that kills the process on its n-th call, after noting what the dying
    transaction had already written (seen through its own connection)."""

    def __init__(self, calls: int, probe: Callable[[], Any], out: str) -> None:
        self.calls, self.probe, self.out = calls, probe, out

    def __call__(self) -> float:
        self.calls -= 1
        if self.calls == 0:
            Path(self.out).write_text(json.dumps(self.probe()))
            os._exit(4)
        return time.time()


def _crash_in_record_remote(path: str, shard: int, out: str) -> None:
    store = Store.open(path)
    probe = lambda: store.db.execute(  # noqa: E731
        "SELECT count(*) FROM requests WHERE status = 'submitted'"
    ).fetchone()[0]
    store.now = _DyingClock(2, probe, out)  # 1: start of the unit, 2: its event
    store.record_batch_remote(shard, "batch_x")


def test_crash_while_recording_a_created_batch_is_all_or_nothing(tmp_path: Path) -> None:
    path = tmp_path / "remote.db"
    with Store.open(path) as store:
        run_id = make_run(store, 30)
        route_all(store, run_id, 30, Route.BATCH)
        ids = [f"req-{i}" for i in range(30)]
        shard = store.create_shard(run_id, endpoint=ENDPOINT, model="gpt-4o-mini", custom_ids=ids)
        row = store.record_file_intent(
            run_id, FileKind.INPUT, local_path="x", bytes=1, sha256="0", shard=shard
        )
        store.set_file_remote_id(row, "file-1")
        store.set_batch_status(shard, B.CREATING)
    out = tmp_path / "seen.json"
    assert _run_children(_crash_in_record_remote, [(str(path), shard, str(out))]) == [4]
    assert json.loads(out.read_text()) == 30  # the dying unit had written the requests
    with Store.open(path) as store:
        batch = store.get_batch(shard)
        assert (batch.status, batch.provider_batch_id) == (B.CREATING, None)
        assert {(r.status, r.attempts) for r in store.iter_requests(run_id)} == {(R.ROUTED, 0)}
        assert store.list_attempts(run_id) == []
        # ... so reconcile can finish the job exactly once
        store.record_batch_remote(shard, "batch_x")
        assert {r.status for r in store.iter_requests(run_id)} == {R.SUBMITTED}


def _crash_in_apply(path: str, run_id: str) -> None:
    store = Store.open(path)
    store.now = _DyingClock(3, lambda: None, os.devnull)  # dies in the third chunk
    store.apply_results(
        run_id,
        [Result(f"req-{i}", R.SUCCEEDED, 200, {}, cost=1.0) for i in range(250)],
        chunk_size=100,
    )


def test_crash_while_applying_keeps_whole_chunks_and_reapplies_cleanly(tmp_path: Path) -> None:
    path = tmp_path / "apply-crash.db"
    with Store.open(path) as store:
        run_id = make_run(store, 250)
        route_all(store, run_id, 250, Route.STANDARD)
        store.claim_realtime(run_id, owner="x", limit=250)
    assert _run_children(_crash_in_apply, [(str(path), run_id)]) == [4]
    with Store.open(path) as store:
        counts = store.count_requests(run_id)
        assert counts == {(Route.STANDARD, R.SUCCEEDED): 200, (Route.STANDARD, R.IN_FLIGHT): 50}
        assert store.get_run(run_id).actual_cost == 200.0
        again = store.apply_results(
            run_id, [Result(f"req-{i}", R.SUCCEEDED, 200, {}, cost=1.0) for i in range(250)]
        )
        assert (again.applied, again.duplicates) == (50, 200)
        assert store.get_run(run_id).actual_cost == 250.0
