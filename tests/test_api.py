"""The public Python API: exact exports, a light import, and the sync facade end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from simfixtures import billed_ids

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
    "Request",
    "Result",
    "RunInfo",
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


def test_every_module_imports_on_its_own() -> None:
    # A module that imports only after another one was imported first breaks a user's
    # `from batchyard.orchestrator.batch.submit import ...` (and a test run of one file).
    code = """
import importlib, pkgutil, sys
import batchyard
names = [m.name for m in pkgutil.walk_packages(batchyard.__path__, "batchyard.")]
for name in names:
    if name.endswith("__main__"):  # runs the CLI
        continue
    for loaded in [m for m in sys.modules if m.split(".")[0] == "batchyard"]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except ImportError as exc:
        print(f"{name}: {exc}")
print(len(names), "modules")
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert out[:-1] == [] and int(out[-1].split()[0]) > 100


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
        billed = billed_ids(server.state)
    assert status.done and status.succeeded == 30
    assert report.succeeded == 30
    lines = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [x["custom_id"] for x in lines] == [f"req-{i:06d}" for i in range(30)]
    assert sorted(billed) == sorted(x["custom_id"] for x in lines)


def test_requests_in_memory_and_typed_results_in_input_order(tmp_path: Path) -> None:
    config = SimConfig.model_validate({"batch": {"validation_seconds": 1, "turnaround_seconds": 5}})
    chat = {"model": "gpt-4o-mini", "max_tokens": 256}  # room for the whole answer
    asked = [
        batchyard.Request(f"q-{i}", {**chat, "messages": [{"role": "user", "content": f"Q{i}"}]})
        for i in range(3)
    ]
    as_dicts = [
        {"custom_id": f"d-{i}", "method": "POST", "url": "/v1/chat/completions", "body": r.body}
        for i, r in enumerate(asked)
    ]
    with running_server(config) as server:
        settings = batchyard.load_settings(
            api_key="sk-test",
            base_url=server.base_url,
            db=tmp_path / "by.db",
            poll_min_seconds=0.05,
            poll_max_seconds=0.2,
        )
        with batchyard.Batchyard(settings) as by:
            typed = by.submit(iter(asked), route="batch", vary=["temperature=0,1"])
            plain = by.submit(as_dicts, route="realtime")
            by.wait(typed.run_id)
            by.wait(plain.run_id)
            first = list(by.results(typed.run_id))
            second = list(by.results(plain.run_id))
    assert [r.custom_id for r in first] == [
        f"q-{i}#temperature={t}" for i in range(3) for t in (0, 1)
    ]
    assert [(r.original_id, r.variant) for r in first[:2]] == [
        ("q-0", "temperature=0"),
        ("q-0", "temperature=1"),
    ]
    assert all(r.ok and r.route == "batch" and r.batch_id for r in first)
    assert [r.custom_id for r in second] == ["d-0", "d-1", "d-2"]
    assert all(isinstance(r, batchyard.Result) and r.text for r in second)
    assert second[0].response is not None and second[0].status_code == 200
    assert not list(tmp_path.glob("*.jsonl"))  # no results file was written


def test_an_invalid_request_in_memory_is_named_by_its_position(tmp_path: Path) -> None:
    settings = batchyard.load_settings(api_key="sk-test", db=tmp_path / "by.db")
    good = batchyard.Request(
        "a", {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]}
    )
    bad = batchyard.Request("b", {"model": "gpt-4o-mini"})
    with batchyard.Batchyard(settings) as by:
        try:
            by.plan([good, bad])
        except batchyard.BatchyardError as exc:
            message = str(exc)
        else:
            raise AssertionError("an invalid request was accepted")
    assert ".jsonl:2 (body.messages)" in message
