"""`fetch` writes each line as json writes its record (`output_line`), byte for byte,
whichever way the line is made: from the row's fields (the common succeeded line), or from
the record (every other kind of line)."""

from __future__ import annotations

import json
from pathlib import Path

from batchyard.models import RequestStatus, Route
from batchyard.orchestrator._reporting.fetch import fetch, output_line
from batchyard.store import Store
from batchyard.store.rows import NewRequest, Result

S = RequestStatus
ANSWER = {"choices": [{"message": {"content": "plain"}}], "usage": {"x": 1.0}}


def test_every_kind_of_line_has_the_bytes_json_writes_of_its_record(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "jobs.db")
    run_id = store.create_run(
        source_path="in.jsonl", source_sha256="0" * 64, endpoint="/v1/chat/completions",
        models=["gpt-4o-mini"],
    )  # fmt: skip
    # custom_id -> its result; None: the line is left routed (not finished).
    results: dict[str, Result | None] = {
        "plain": Result("plain", S.SUCCEEDED, 200, ANSWER, None, None, 12, 3, 7.3725e-05),
        "same-cost": Result("same-cost", S.SUCCEEDED, 200, ANSWER, None, None, 9, 3, 7.3725e-05),
        "zero-cost": Result("zero-cost", S.SUCCEEDED, 200, ANSWER, cost=0.0, request_id="r_1"),
        "tiny-cost": Result("tiny-cost", S.SUCCEEDED, 200, ANSWER, cost=1e-07),
        'quote " caf\u00e9': Result('quote " caf\u00e9', S.SUCCEEDED, 200, ANSWER, cost=0.5),
        "no-usage": Result("no-usage", S.SUCCEEDED, 200, {"data": []}),
        "non-ascii": Result("non-ascii", S.SUCCEEDED, 200, {"text": "caf\u00e9"}),
        "fallback": Result("fallback", S.SUCCEEDED, 200, ANSWER, cost=0.25),
        "reused": Result("reused", S.SUCCEEDED, 200, ANSWER, cost=0.0),
        "failed": Result("failed", S.FAILED, 400, None, "bad", "Bad request."),
        # Failed its check and may not be sent again: invalid, its answer kept.
        "invalid": Result("invalid", S.RETRYABLE, 200, ANSWER, "check:x", "No.", requeue=True),
        # Failed its check once, then answered (its first answer's cost is a requeue cost).
        "requeued": Result(
            "requeued",
            S.RETRYABLE,
            200,
            ANSWER,
            "check:x",
            "No.",
            cost=0.125,
            requeue=True,
            requeue_limit=1,
        ),
        "cancelled": None,
        "unfinished": None,
    }
    ids = list(results)
    store.add_requests(
        run_id,
        (
            NewRequest(
                cid, i + 1, "/v1/chat/completions", "gpt-4o-mini", {}, 10, 10, 0.1, None, 0.05
            )
            for i, cid in enumerate(ids)
        ),
    )
    store.set_routes(run_id, [(cid, Route.STANDARD, "test") for cid in ids])
    # Made by hand before the lines finish: a finished line never changes again.
    store.db.execute(
        "UPDATE requests SET model = 'gpt-4.1-mini', fallback = ? WHERE custom_id = 'fallback'",
        [json.dumps({"from": "gpt-4o-mini", "to": "gpt-4.1-mini", "reason": "refused"})],
    )
    store.db.execute(
        "UPDATE requests SET reused_from = ? WHERE custom_id = 'reused'",
        [json.dumps({"run": "run_earlier", "custom_id": "plain", "at": 1.5})],
    )
    answered = [cid for cid, r in results.items() if r is not None]
    store.transition_requests(run_id, answered, S.IN_FLIGHT)
    store.apply_results(run_id, [r for r in results.values() if r is not None])
    store.transition_requests(run_id, ["requeued"], S.IN_FLIGHT)
    store.apply_results(run_id, [Result("requeued", S.SUCCEEDED, 200, ANSWER, cost=0.25)])
    store.transition_requests(run_id, ["cancelled"], S.CANCELLED)

    out, errors = tmp_path / "out.jsonl", tmp_path / "errors.jsonl"
    report = fetch(store, run_id, out, errors)

    expected = {
        r.custom_id: json.dumps(output_line(run_id, r, {}), separators=(",", ":")) + "\n"
        for r in store.iter_requests(run_id, with_response=True)
    }
    assert out.read_bytes() == "".join(expected[cid] for cid in ids).encode()
    unsuccessful = ["failed", "invalid", "cancelled", "unfinished"]
    assert errors.read_bytes() == "".join(expected[cid] for cid in unsuccessful).encode()
    statuses = [json.loads(expected[cid])["batchyard"]["status"] for cid in unsuccessful]
    assert statuses == ["failed", "invalid", "cancelled", "routed"]
    assert json.loads(expected["requeued"])["batchyard"]["requeue_cost"] == 0.125
    assert (report.lines, report.succeeded, report.failed, report.invalid) == (14, 10, 2, 1)
    assert (report.cancelled, report.unfinished, report.fallback) == (1, 1, 1)
    assert not list(tmp_path.glob("*.partial"))

    # Every line finished: fetch reads the lines the store kept when each one finished.
    store.transition_requests(run_id, ["unfinished"], S.CANCELLED)
    assert store.count_answer_lines(run_id) == (0, 14)  # due, not made yet: made from rows
    report = fetch(store, run_id, out, errors)
    assert out.read_bytes()[: len(expected["plain"])] == expected["plain"].encode()
    assert report.cancelled == 2
    assert store.store_answer_lines(run_id) == 14  # as the run's driver does each round
    assert store.count_answer_lines(run_id) == (14, 14)
    expected["unfinished"] = (
        json.dumps(
            output_line(run_id, store.get_request(run_id, "unfinished"), {}), separators=(",", ":")
        )
        + "\n"
    )
    all_lines = "".join(expected[cid] for cid in ids).encode()
    report = fetch(store, run_id, out, errors)
    assert out.read_bytes() == all_lines
    assert errors.read_bytes() == "".join(expected[cid] for cid in unsuccessful).encode()
    assert (report.lines, report.succeeded, report.failed, report.invalid) == (14, 10, 2, 1)
    assert (report.cancelled, report.unfinished, report.fallback) == (2, 0, 1)

    # Lines that finished before the store kept them (an older database) are made again.
    store.db.execute("DELETE FROM answers WHERE id % 2 = 0")
    fetch(store, run_id, out)
    assert out.read_bytes() == all_lines
