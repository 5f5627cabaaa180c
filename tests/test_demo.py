"""`batchyard demo`: the whole job on the embedded simulator, no key, split between real time
and batch, results fetched in order, a saving reported; and the default size under a minute."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from cli_support import invoke, json_out, run_cli

from batchyard.samples import sample_lines


def test_demo_splits_the_run_and_reports_the_saving(tmp_path: Path) -> None:
    out = tmp_path / "demo.jsonl"
    result = invoke("demo", "-n", "300", "-o", str(out), "--json")
    assert result.exit_code == 0, result.stderr
    doc = json_out(result)
    routes = {key.partition("/")[0] for key in doc["status"]["counts"]}
    assert "batch" in routes and routes & {"standard", "flex"}, doc["status"]["counts"]
    assert doc["status"]["done"] is True and doc["fetch"]["succeeded"] == 300
    ids = [json.loads(line)["custom_id"] for line in out.read_text().splitlines()]
    assert ids == [line["custom_id"] for line in sample_lines(300)]
    assert doc["costs"]["saving"] > 0
    assert doc["costs"]["actual"] < doc["costs"]["all_standard"]


def test_demo_human_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = invoke("demo", "-n", "120")
    assert result.exit_code == 0, result.stderr
    assert "Plan for 120 request(s)" in result.stdout
    assert "wrote 120 line(s) to batchyard-demo-results.jsonl" in result.stdout
    assert "saving" in result.stdout and "all-standard would have cost" in result.stdout
    assert "120/120 finished" in result.stderr
    assert (tmp_path / "batchyard-demo-results.jsonl").exists()


def test_demo_default_size_runs_in_under_a_minute(tmp_path: Path) -> None:
    started = time.monotonic()
    done = run_cli(["demo", "-o", str(tmp_path / "out.jsonl")], {}, cwd=tmp_path, timeout=120)
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    assert "wrote 2,500 line(s)" in done.stdout
    assert elapsed < 60, f"the demo took {elapsed:.0f} s"
