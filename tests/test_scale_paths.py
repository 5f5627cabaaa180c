"""The pieces that keep a large file's plan out of memory: the streamed `plan --json`,
the spill of per-line records, the on-disk key set and the shared price functions."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

from batchyard.cli.render import emit_plan_json, jsonable
from batchyard.config import model_table
from batchyard.models import Endpoint, Route
from batchyard.orchestrator._spill import CHUNK, Spill
from batchyard.router import ModelCapacity, PathCosts, RequestFeatures, RunPolicy, make_plan
from batchyard.store.scratch import DiskSet

NOW = 1_750_000_000.0


def _plan(n: int, deadline: float | None) -> object:
    cost = PathCosts(0.002, 0.001)
    reqs = [
        RequestFeatures(f'id-{i}\u00e9"', Endpoint.CHAT, "gpt-4o-mini", 5_000, 800, cost, i % 2)
        for i in range(n)
    ]
    caps = {"gpt-4o-mini": ModelCapacity(model="gpt-4o-mini", tpm=200_000, rpm=500)}
    return make_plan(reqs, RunPolicy(deadline=deadline), caps, NOW)


def test_plan_json_is_streamed_as_the_same_document() -> None:
    for plan in (_plan(40, None), _plan(300, NOW + 300.0), _plan(0, None)):
        out = io.StringIO()
        emit_plan_json(plan, out)  # type: ignore[arg-type]
        whole = json.dumps(jsonable(plan.to_dict()), indent=2) + "\n"  # type: ignore[attr-defined]
        assert out.getvalue() == whole
    assert json.loads(out.getvalue())["assignments"] == []  # the last plan has no line


def test_late_lines_stream_with_their_own_reasons() -> None:
    plan = _plan(300, NOW + 300.0)
    out = io.StringIO()
    emit_plan_json(plan, out)  # type: ignore[arg-type]
    data = json.loads(out.getvalue())
    assert data["late"] > 0 and len(data["assignments"]) == 300
    assert any("cannot make the deadline" in a["reason"] for a in data["assignments"])


def test_a_spill_gives_its_records_back_in_order_and_removes_its_file() -> None:
    spill = Spill()
    records = [(i, f"id-{i}", None if i % 3 else 1.5, (0.1, None)) for i in range(2 * CHUNK + 5)]
    for r in records:
        spill.add(r)
    assert list(spill) == records and list(spill) == records  # read again
    assert [len(b) for b in spill.chunks()] == [CHUNK, CHUNK, 5]
    path = spill.path
    spill.close()
    assert not os.path.exists(path)


def test_the_disk_set_knows_keys_across_calls_and_within_one() -> None:
    seen = DiskSet()
    keys = [f"k{i % 700}" for i in range(1_500)]  # repeats inside one call, past one query
    fresh = seen.add(keys)
    assert fresh == [i < 700 for i in range(1_500)]
    assert seen.add(["k1", "new", "new"]) == [False, True, False]
    assert seen.first_lines([b"x", b"y", b"x"], [10, 11, 12]) == [10, 11, 10]
    assert seen.first_lines([b"y"], [99]) == [11]
    seen.close()


def test_the_price_functions_match_estimate_to_the_last_bit() -> None:
    routes = (Route.STANDARD, Route.BATCH, Route.FLEX, Route.FAST)
    checked = 0
    for info in model_table({}).values():
        for route in routes:
            price = info.estimator(route)
            limit = info.long_context_threshold or 100_000
            for tokens_in in (0, 1, 999, limit, limit + 1, 3 * limit + 7):
                for tokens_out in (0, 1, 257, 32_001):
                    assert price(tokens_in, tokens_out) == info.estimate(
                        route, tokens_in, tokens_out
                    )
                    checked += 1
    assert checked > 1_000


def test_nothing_is_left_in_the_temp_folder_by_a_closed_spill(tmp_path: Path) -> None:
    folder = tmp_path / "spills"
    folder.mkdir()
    spill = Spill(folder)
    spill.add((1,))
    assert len(list(folder.iterdir())) == 1
    spill.close()
    assert list(folder.iterdir()) == []


def test_fetch_splices_stored_answers_into_the_same_bytes(tmp_path: Path) -> None:
    """Answers written out as their stored text give the bytes that decoding and encoding
    them again gives: floats, escapes, non-ASCII text, compressed large bodies, errors."""
    from batchyard.models import RequestStatus
    from batchyard.orchestrator._reporting.fetch import fetch, output_line
    from batchyard.store import Store
    from batchyard.store.rows import NewRequest, Result

    store = Store.open(tmp_path / "jobs.db")
    run_id = store.create_run(
        source_path="in.jsonl", source_sha256="0" * 64, endpoint="/v1/chat/completions",
        models=["gpt-4o-mini"],
    )  # fmt: skip
    bodies: list[dict[str, object] | None] = [
        {"choices": [{"message": {"content": "plain"}}], "usage": {"x": 1.0, "y": 1e-07}},
        {"text": 'quote " backslash \\ tab \t newline \n ctrl \u0001', "n": 12345678901234567890},
        {"text": "caf\u00e9 \u2603 \U0001f600"},  # not ASCII: decoded and encoded again
        {"big": "answer " * 2_000, "f": 0.1 + 0.2},  # compressed in the store
        None,  # failed: no answer
    ]
    store.add_requests(
        run_id,
        (
            NewRequest(
                f"r{i}",
                i + 1,
                "/v1/chat/completions",
                "gpt-4o-mini",
                {"i": i},
                10,
                10,
                0.1,
                None,
                0.05,
            )
            for i in range(len(bodies))
        ),
    )
    ids = [f"r{i}" for i in range(len(bodies))]
    store.set_routes(run_id, [(cid, Route.STANDARD, "test") for cid in ids])
    store.transition_requests(run_id, ids, RequestStatus.IN_FLIGHT)
    store.apply_results(
        run_id,
        [
            Result(f"r{i}", RequestStatus.SUCCEEDED, 200, body)
            if body is not None
            else Result(f"r{i}", RequestStatus.FAILED, 400, None, "bad", "Bad request.")
            for i, body in enumerate(bodies)
        ],
    )
    out = tmp_path / "out.jsonl"
    fetch(store, run_id, out)
    expected = [
        json.dumps(output_line(run_id, r, {}), separators=(",", ":")) + "\n"
        for r in store.iter_requests(run_id, with_response=True)
    ]
    assert out.read_text(encoding="utf-8").splitlines(keepends=True) == expected
    assert json.loads(expected[0])["response"]["body"] == bodies[0]
