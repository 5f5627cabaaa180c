"""Helpers shared by the store tests (no tests here): a fake clock and small builders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from batchyard.models import BatchStatus, RequestStatus, Route
from batchyard.store import NewRequest, Store

ENDPOINT = "/v1/chat/completions"


class Clock:
    """A settable clock for `Store.open(now=...)`."""

    def __init__(self, t: float = 1_800_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


def body(i: int, size: int = 60) -> dict[str, Any]:
    return {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": f"question {i} " + "word " * (size // 5)}],
    }


def new_request(
    i: int, *, model: str = "gpt-4o-mini", size: int = 60, priority: int = 0
) -> NewRequest:
    return NewRequest(
        custom_id=f"req-{i}",
        line=i + 1,
        endpoint=ENDPOINT,
        model=model,
        body=body(i, size),
        input_tokens=100 + i,
        output_tokens=50,
        cost_standard=0.002,
        cost_flex=0.001,
        cost_batch=0.001,
        priority=priority,
    )


def make_run(store: Store, n: int = 0, **kw: Any) -> str:
    run_id = store.create_run(
        source_path="requests.jsonl",
        source_sha256="0" * 64,
        endpoint=ENDPOINT,
        models=["gpt-4o-mini"],
        **kw,
    )
    if n:
        store.add_requests(run_id, (new_request(i) for i in range(n)))
    return run_id


def route_all(store: Store, run_id: str, n: int, route: Route) -> None:
    store.set_routes(run_id, [(f"req-{i}", route, "test") for i in range(n)])


def force_request_status(store: Store, run_id: str, custom_id: str, status: RequestStatus) -> None:
    """Put a request in a status directly (test set-up only; bypasses the table)."""
    with store.db.atomic():
        store.db.execute(
            "UPDATE requests SET status = ?, route = coalesce(route, 'standard') "
            "WHERE run_id = ? AND custom_id = ?",
            [status.value, run_id, custom_id],
        )


def force_batch_status(store: Store, shard: int, status: BatchStatus) -> None:
    with store.db.atomic():
        store.db.execute("UPDATE batches SET status = ? WHERE id = ?", [status.value, shard])


def open_store(path: Path, clock: Clock | None = None) -> Store:
    return Store.open(path, now=clock or Clock())


def assert_stored_lines_current(store: Store, run_id: str) -> None:
    """Every finished request of the run has its output line stored, the bytes `fetch`
    writes for its row now; no other request has one."""
    import json

    from batchyard.orchestrator._reporting.fetch import output_line
    from batchyard.store.transitions import REQUEST_TERMINAL

    batch_ids = {b.id: b.provider_batch_id for b in store.list_batches(run_id)}
    stored = dict(
        store.db.execute(
            "SELECT r.custom_id, a.text FROM answers AS a JOIN requests AS r ON r.id = a.id "
            "WHERE a.run_id = ?",
            [run_id],
        ).fetchall()
    )
    finished = [
        r for r in store.iter_requests(run_id, with_response=True) if r.status in REQUEST_TERMINAL
    ]
    assert sorted(stored) == sorted(r.custom_id for r in finished)
    for r in finished:
        line = json.dumps(output_line(run_id, r, batch_ids), separators=(",", ":")) + "\n"
        assert stored[r.custom_id] == line.encode(), r.custom_id
