"""The public Python API: exact exports, a light import, and the sync facade end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import batchyard
from batchyard.samples import write_sample
from batchyard.simulator.config import SimConfig
from batchyard.simulator.server import running_server

EXPECTED = [
    "Batchyard",
    "BatchyardError",
    "CostReport",
    "FetchReport",
    "Orchestrator",
    "Plan",
    "RunStatus",
    "Settings",
    "SubmitResult",
    "__version__",
    "load_settings",
]


def test_all_is_exact_and_sorted() -> None:
    assert batchyard.__all__ == EXPECTED
    for name in batchyard.__all__:
        assert hasattr(batchyard, name), name


def test_import_does_not_load_cli_libraries() -> None:
    code = (
        "import sys, batchyard; "
        "[getattr(batchyard, name) for name in batchyard.__all__]; "
        "print([m for m in ('typer', 'rich') if m in sys.modules])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_sync_facade_runs_a_file_to_completion(tmp_path: Path) -> None:
    requests = write_sample(tmp_path / "requests.jsonl", 30)
    config = SimConfig.model_validate({"batch": {"validation_seconds": 1, "turnaround_seconds": 5}})
    with running_server(config) as server:
        settings = batchyard.load_settings(
            api_key="sk-test", base_url=server.base_url, db=tmp_path / "by.db"
        )
        with batchyard.Batchyard(settings) as by:
            submitted = by.submit(requests, route="realtime")
            status = by.wait(submitted.run_id)
            report = by.fetch(submitted.run_id, tmp_path / "out.jsonl")
        billed = [e.custom_id for e in server.state.ledger]
    assert status.done and status.succeeded == 30
    assert report.succeeded == 30
    lines = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [x["custom_id"] for x in lines] == [f"req-{i:06d}" for i in range(30)]
    assert sorted(billed) == sorted(x["custom_id"] for x in lines)
