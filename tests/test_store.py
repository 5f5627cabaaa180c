"""The store's request-level behaviour: recording, routing, claims, results, summaries."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import pytest
from test_store_support import Clock, body, make_run, new_request, open_store, route_all

from batchyard.errors import IllegalTransition, NotFound, StoreError
from batchyard.models import RequestStatus, Route
from batchyard.store import NewRequest, Result, Store

R = RequestStatus


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return open_store(tmp_path / "s.db")


def test_requests_come_back_in_line_order_with_their_bodies(store: Store) -> None:
    run_id = make_run(store)
    # recorded out of line order, in several chunks, with small and large bodies
    reqs = [new_request(i, size=10 if i % 2 else 5000) for i in range(250)]
    store.add_requests(run_id, reversed(reqs), chunk_size=60)
    rows = list(store.iter_requests(run_id, with_body=True, page_size=17))
    assert [r.line for r in rows] == list(range(1, 251))
    assert [r.body for r in rows] == [r.body for r in reqs]
    assert store.get_run(run_id).request_count == 250
    # large bodies are stored compressed (BLOB), small ones as readable JSON text
    types = dict(store.db.execute("SELECT custom_id, typeof(body) FROM requests").fetchall())
    assert types["req-0"] == "blob" and types["req-1"] == "text"
    assert store.get_bodies(run_id, ["req-0", "req-3"]) == {
        "req-0": body(0, 5000),
        "req-3": body(3, 10),
    }


def test_bodies_an_earlier_batchyard_compressed_with_zlib_still_read(store: Store) -> None:
    run_id = make_run(store)
    store.add_requests(run_id, [new_request(0, size=5000), new_request(1, size=5000)])
    (stored,) = store.db.execute("SELECT body FROM requests WHERE custom_id = 'req-0'").fetchone()
    assert len(stored) < len(json.dumps(body(0, 5000)).encode()) * 0.8  # compressed
    old = zlib.compress(json.dumps(body(1, 5000), separators=(",", ":")).encode())
    store.db.execute("UPDATE requests SET body = ? WHERE custom_id = 'req-1'", (old,))
    assert store.get_bodies(run_id, ["req-0", "req-1"]) == {
        "req-0": body(0, 5000),
        "req-1": body(1, 5000),
    }
    assert [r.body for r in store.iter_requests(run_id, with_body=True)] == [
        body(0, 5000),
        body(1, 5000),
    ]


def test_duplicate_custom_id_names_both_lines_and_writes_nothing_of_its_chunk(store: Store) -> None:
    run_id = make_run(store, 3)
    dup = NewRequest("req-1", 9, "/v1/chat/completions", "m", {}, 1, 1, 0.1, None, None)
    with pytest.raises(StoreError, match=r"req-1.*line 9|line 2.*req-1"):
        store.add_requests(run_id, [new_request(3), dup])
    assert store.get_run(run_id).request_count == 3
    with pytest.raises(NotFound):
        store.get_request(run_id, "req-3")


def test_unknown_run_and_request_raise_not_found(store: Store) -> None:
    with pytest.raises(NotFound, match="run_nope"):
        store.get_run("run_nope")
    with pytest.raises(NotFound):
        store.add_requests("run_nope", [new_request(0)])
    run_id = make_run(store, 1)
    with pytest.raises(NotFound, match="ghost"):
        store.set_routes(run_id, [("ghost", Route.BATCH, "x")])


def test_routes_and_filters(store: Store) -> None:
    run_id = make_run(store, 10)
    store.set_routes(
        run_id, [(f"req-{i}", Route.BATCH if i < 6 else Route.FLEX, f"why {i}") for i in range(10)]
    )
    batch = list(store.iter_requests(run_id, routes=[Route.BATCH]))
    assert [r.custom_id for r in batch] == [f"req-{i}" for i in range(6)]
    assert batch[2].route_reason == "why 2" and batch[2].status == R.ROUTED
    assert store.count_requests(run_id) == {(Route.BATCH, R.ROUTED): 6, (Route.FLEX, R.ROUTED): 4}


def test_list_runs_is_newest_first(tmp_path: Path) -> None:
    clock = Clock()
    store = open_store(tmp_path / "l.db", clock)
    first = make_run(store)
    clock.advance(10)
    second = make_run(store)
    assert [r.id for r in store.list_runs()] == [second, first]
    assert first.startswith("run_2027") and first != second


def test_claims_take_priority_then_line_order_and_count_attempts(tmp_path: Path) -> None:
    clock = Clock()
    store = open_store(tmp_path / "c.db", clock)
    run_id = make_run(store)
    store.add_requests(run_id, [new_request(i, priority=5 if i == 7 else 0) for i in range(10)])
    route_all(store, run_id, 10, Route.STANDARD)
    claims = store.claim_realtime(run_id, owner="w1", limit=3)
    assert [c.custom_id for c in claims] == ["req-7", "req-0", "req-1"]
    assert all(c.attempt == 1 and c.body == body(int(c.custom_id[4:])) for c in claims)
    assert store.get_request(run_id, "req-7").status == R.IN_FLIGHT
    report = store.finish_realtime(
        run_id,
        "w1",
        [
            Result(
                "req-7", R.SUCCEEDED, 200, {"id": "x"}, input_tokens=9, output_tokens=3, cost=0.5
            ),
            Result("req-0", R.RETRYABLE, 429, error_code="rate_limit", not_before=clock.t + 30),
            Result("req-1", R.FAILED, 400, error_code="invalid", error_message="bad"),
        ],
    )
    assert (report.applied, report.cost) == (3, 0.5)
    assert store.get_run(run_id).actual_cost == pytest.approx(0.5)
    done = store.get_request(run_id, "req-7")
    assert (done.status, done.response_body, done.input_tokens) == (R.SUCCEEDED, {"id": "x"}, 9)
    # req-0 must wait for its not_before; then it is claimed again as attempt 2
    assert "req-0" not in [c.custom_id for c in store.claim_realtime(run_id, owner="w", limit=9)]
    clock.advance(31)
    again = store.claim_realtime(run_id, owner="w", limit=9)
    assert [c.attempt for c in again if c.custom_id == "req-0"] == [2]
    attempts = store.list_attempts(run_id, "req-0")
    assert [(a.attempt, a.outcome) for a in attempts] == [(1, "retryable"), (2, None)]


def test_claims_only_take_realtime_routes(store: Store) -> None:
    run_id = make_run(store, 4)
    store.set_routes(
        run_id,
        [("req-0", Route.BATCH, ""), ("req-1", Route.FLEX, ""), ("req-2", Route.STANDARD, "")],
    )
    assert [
        c.custom_id for c in store.claim_realtime(run_id, owner="a", limit=10, routes=[Route.FLEX])
    ] == ["req-1"]
    assert [c.custom_id for c in store.claim_realtime(run_id, owner="a", limit=10)] == ["req-2"]


def test_a_result_from_a_lost_claim_is_stale(store: Store) -> None:
    run_id = make_run(store, 1)
    route_all(store, run_id, 1, Route.STANDARD)
    store.claim_realtime(run_id, owner="old", limit=1)
    assert store.recover_in_flight(run_id) == 1
    assert store.get_request(run_id, "req-0").status == R.RETRYABLE
    store.claim_realtime(run_id, owner="new", limit=1)
    late = store.finish_realtime(run_id, "old", [Result("req-0", R.SUCCEEDED, 200, {})])
    assert (late.applied, late.stale) == (0, 1)
    assert store.get_request(run_id, "req-0").owner == "new"
    events = store.list_events(run_id, kinds=["requests.recovered"])
    assert "billed twice" in events[0].message
    assert [a.outcome for a in store.list_attempts(run_id, "req-0")] == ["abandoned", None]


def test_release_gives_a_claim_back(store: Store) -> None:
    run_id = make_run(store, 2)
    route_all(store, run_id, 2, Route.FLEX)
    store.claim_realtime(run_id, owner="a", limit=2)
    assert store.release_realtime(run_id, "b", ["req-0"]) == 0  # not b's claim
    assert store.release_realtime(run_id, "a", ["req-0"]) == 1
    assert store.get_request(run_id, "req-0").status == R.ROUTED
    assert store.get_request(run_id, "req-1").status == R.IN_FLIGHT


def test_applying_the_same_results_twice_changes_nothing(store: Store) -> None:
    run_id = make_run(store, 30)
    route_all(store, run_id, 30, Route.STANDARD)
    store.claim_realtime(run_id, owner="a", limit=30)
    results = [Result(f"req-{i}", R.SUCCEEDED, 200, {"n": i}, cost=0.01) for i in range(30)]
    results.append(Result("stranger", R.SUCCEEDED, 200, {}))
    first = store.apply_results(run_id, results, chunk_size=7)
    assert (first.applied, first.duplicates, first.unknown) == (30, 0, 1)
    assert first.unknown_ids == ("stranger",)
    before = store.db.execute("SELECT * FROM requests ORDER BY id").fetchall()
    cost = store.get_run(run_id).actual_cost
    second = store.apply_results(run_id, results, chunk_size=7)
    assert (second.applied, second.duplicates) == (0, 30)
    assert store.db.execute("SELECT * FROM requests ORDER BY id").fetchall() == before
    assert store.get_run(run_id).actual_cost == cost == pytest.approx(0.3)


def test_a_result_for_a_request_never_sent_is_refused(store: Store) -> None:
    run_id = make_run(store, 2)
    with pytest.raises(IllegalTransition, match="req-1"):
        store.apply_results(run_id, [Result("req-1", R.SUCCEEDED, 200, {})])
    assert store.get_request(run_id, "req-1").status == R.PENDING


def test_summary_per_model_and_route(store: Store) -> None:
    run_id = make_run(store)
    store.add_requests(run_id, [new_request(i, model="a" if i < 3 else "b") for i in range(5)])
    store.set_routes(
        run_id,
        [
            ("req-0", Route.STANDARD, ""),
            ("req-1", Route.STANDARD, ""),
            ("req-2", Route.FLEX, ""),
            ("req-3", Route.FLEX, ""),
        ],
    )
    store.claim_realtime(run_id, owner="a", limit=5)
    store.finish_realtime(
        run_id,
        "a",
        [
            Result("req-0", R.SUCCEEDED, 200, {}, input_tokens=10, output_tokens=4, cost=0.25),
            Result("req-2", R.FAILED, 400, error_code="bad"),
        ],
    )
    rows = {(s.model, s.route): s for s in store.summary(run_id)}
    assert set(rows) == {("a", Route.STANDARD), ("a", Route.FLEX), ("b", Route.FLEX), ("b", None)}
    a_std = rows[("a", Route.STANDARD)]
    assert (a_std.requests, a_std.succeeded, a_std.open) == (2, 1, 1)
    assert a_std.estimated_cost == pytest.approx(0.004)  # standard estimate of 2 requests
    assert (a_std.actual_cost, a_std.input_tokens, a_std.output_tokens) == (0.25, 10, 4)
    assert rows[("a", Route.FLEX)].estimated_cost == pytest.approx(0.001)  # flex estimate
    assert rows[("a", Route.FLEX)].failed == 1
    assert rows[("b", None)].requests == 1
    # The open load and reserve (what `status` shows) count only the unfinished lines:
    # req-1 in flight (standard), req-3 in flight (flex), req-4 not routed yet (standard).
    assert store.open_load(run_id) == {"a": (1, 101 + 50), "b": (2, 103 + 50 + 104 + 50)}
    unfinished = [R.PENDING, R.ROUTED, R.SUBMITTED, R.IN_FLIGHT, R.RETRYABLE]
    assert store.open_cost(run_id, unfinished) == pytest.approx(0.002 + 0.001 + 0.002)
    assert store.open_cost(run_id, [R.SUCCEEDED]) == pytest.approx(0.002)


def test_events_are_listed_in_order_and_filtered(store: Store) -> None:
    run_id = make_run(store, 1)
    store.add_event(run_id, "plan", "planned", {"batch": 1}, custom_id="req-0")
    store.add_event(run_id, "note", "second")
    events = store.list_events(run_id)
    assert [e.kind for e in events] == ["run.created", "requests.added", "plan", "note"]
    only = store.list_events(run_id, custom_id="req-0")
    assert [(e.kind, e.data) for e in only] == [("plan", {"batch": 1})]


def test_records_are_read_by_column_name_whatever_the_select_order(store: Store) -> None:
    from batchyard.store.base import by_name

    rows = list(by_name(store.db.conn.execute("SELECT 2 AS b, 1 AS a, NULL AS c")))
    assert rows == [{"a": 1, "b": 2, "c": None}]
    assert list(rows[0]) == ["b", "a", "c"]
