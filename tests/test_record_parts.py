"""A run recorded from a file checked in parts has the rows one process records.

Where workers checked and routed a large file in parts, each part's rows are made by a
worker of its own and only inserted by the recording process (`recording.part_values`).
Here the threshold is lowered so that a small file is cut too, and the recorded rows,
every column of every line (route, reason, twin link, body, costs), are compared with
those of the same file recorded in one process.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from batchyard.config import load_settings
from batchyard.orchestrator import Orchestrator
from batchyard.orchestrator._planning import intake as _intake
from batchyard.orchestrator._planning import planner, recording, spill
from batchyard.store import recording as store_recording
from batchyard.store.rows import RequestRow

MODELS = ("gpt-4o-mini", "gpt-4.1-mini", "gpt-5-mini")


def line(i: int) -> dict[str, Any]:
    body = {
        "model": MODELS[i % 3],
        "messages": [{"role": "user", "content": f"question number {i} " * (1 + i % 5)}],
        "max_completion_tokens": 50 + i % 7,
    }
    envelope = {"custom_id": f"req-{i}", "method": "POST", "url": "/v1/chat/completions"}
    return {**envelope, "body": body, "priority": i % 3}


def recorded(orch: Orchestrator, path: Path, deadline: float | None) -> list[RequestRow]:
    """The rows `submit` records for `path` (without sending anything), run id and times
    left out."""
    steps = orch.planner
    intake = steps.intake(path, reuse=True, bodies=True)
    routable, preview = steps.preview(intake)
    policy = orch.policy(deadline=None if deadline is None else orch.clock() + deadline)
    plan = steps.decide(routable, preview, policy)
    run_id = steps.record(intake, routable, policy, plan, {})
    return [
        dataclasses.replace(r, run_id="", updated_at=0.0)
        for r in orch.store.iter_requests(run_id, with_body=True)
    ]


@pytest.mark.parametrize(
    ("deadline", "limits"),
    [(None, {}), (300.0, {"rpm": 10, "tpm": 5_000})],
    ids=["no deadline", "some late"],
)
def test_rows_made_in_parts_are_the_rows_of_one_process(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    deadline: float | None,
    limits: dict[str, int],
) -> None:
    monkeypatch.setattr(_intake, "PARALLEL_BYTES", 0)
    made: list[bool] = []
    part_values = recording.part_values

    def spy(*args: Any, **kwargs: Any) -> Any:
        rows = part_values(*args, **kwargs)
        made.append(rows is not None)
        return rows

    monkeypatch.setattr(planner, "part_values", spy)
    lines = [line(i) for i in range(600)]
    lines[22]["body"] = lines[19]["body"]  # a twin of line 20, in the same part
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps(obj) + "\n" for obj in lines), encoding="utf-8")
    runs = []
    for workers in ("1", "3"):
        monkeypatch.setenv("BATCHYARD_WORKERS", workers)
        settings = load_settings(
            db=str(tmp_path / f"{workers}.db"), models=dict.fromkeys(MODELS, limits)
        )
        runs.append(recorded(Orchestrator(settings), path, deadline))
    one, parts = runs
    assert made == [False, True]  # rows made here, then by the workers
    assert len(parts) == 600
    assert parts == one
    twin = next(r for r in parts if r.custom_id == "req-22")
    assert twin.status == "twin"
    if deadline is not None:
        assert any("late" in (r.route_reason or "") for r in parts)  # each says how late


def test_rows_inserted_while_the_workers_still_make_them_are_the_rows_of_one_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Blocks of 16 rows: each part's rows are read block by block as its worker writes them.
    monkeypatch.setattr(_intake, "PARALLEL_BYTES", 0)
    monkeypatch.setattr(spill, "CHUNK", 16)
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps(line(i)) + "\n" for i in range(500)), encoding="utf-8")
    runs = []
    for workers in ("1", "2"):
        monkeypatch.setenv("BATCHYARD_WORKERS", workers)
        settings = load_settings(db=str(tmp_path / f"{workers}.db"), models={m: {} for m in MODELS})
        runs.append(recorded(Orchestrator(settings), path, None))
    one, parts = runs
    assert len(parts) == 500
    assert parts == one


def test_a_worker_that_fails_while_making_rows_fails_the_recording(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_intake, "PARALLEL_BYTES", 0)
    monkeypatch.setattr(spill, "CHUNK", 16)
    monkeypatch.setenv("BATCHYARD_WORKERS", "2")
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps(line(i)) + "\n" for i in range(300)), encoding="utf-8")
    made = store_recording.request_values

    def fails_late(run_id: str, now: float, request: Any) -> Any:
        if request.custom_id == "req-250":  # in the second part, after blocks were written
            raise OSError("disk full")
        return made(run_id, now, request)

    monkeypatch.setattr(recording, "request_values", fails_late)
    orch = Orchestrator(load_settings(db=str(tmp_path / "j.db"), models={m: {} for m in MODELS}))
    with pytest.raises(OSError, match="disk full"):
        recorded(orch, path, None)
    (run,) = orch.runs()
    assert run.state == "pending"  # never half-submitted: resume closes it
