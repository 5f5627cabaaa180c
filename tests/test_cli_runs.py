"""Every command that touches a run, in human and `--json` form, with its exit code, against
the simulator on a real loopback port (the CLI reads OPENAI_BASE_URL like a user's shell)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, cast

import pytest
from cli_support import API_KEY, fast_config, invoke, json_out, point_at, sample
from simfixtures import RunningServer, running_server

from batchyard import Plan, SubmitResult
from batchyard.samples import sample_lines


@pytest.fixture(scope="module")
def sim() -> Iterator[RunningServer]:
    with running_server(fast_config()) as server:
        yield server


@pytest.fixture(scope="module")
def slow_sim() -> Iterator[RunningServer]:
    """Real-time clock: a batch takes half an hour, so it is still running during a test."""
    with running_server(fast_config(clock={"time_scale": 1.0})) as server:
        yield server


@pytest.fixture
def env(sim: RunningServer, monkeypatch: pytest.MonkeyPatch) -> RunningServer:
    point_at(monkeypatch, sim.base_url)
    return sim


def _ids(path: Path) -> list[str]:
    return [json.loads(line)["custom_id"] for line in path.read_text().splitlines()]


def _submit_detached(file: Path, *extra: str) -> str:
    result = invoke("submit", str(file), "--detach", "--json", *extra)
    assert result.exit_code == 0, result.stderr
    run_id: str = json_out(result)["submit"]["run_id"]
    return run_id


def test_plan_prints_routes_and_costs_and_records_nothing(
    env: RunningServer, tmp_path: Path
) -> None:
    file = sample(tmp_path, 24)
    sent_before = (len(env.state.files), len(env.state.ledger))
    human = invoke("plan", str(file), "--deadline", "6h")
    assert human.exit_code == 0, human.stderr
    assert "Plan for 24 request(s)" in human.stdout
    assert "gpt-4o-mini" in human.stdout and "gpt-5-mini" in human.stdout
    assert "saving" in human.stdout
    data = json_out(invoke("plan", str(file), "--deadline", "6h", "--json"))
    assert data["requests"] == 24
    assert {row["model"] for row in data["rows"]} == {"gpt-4o-mini", "gpt-5-mini"}
    assert data["cost"]["expected"] <= data["cost"]["all_standard"]
    assert len(data["assignments"]) == 24
    assert json_out(invoke("runs", "--json")) == []
    assert (len(env.state.files), len(env.state.ledger)) == sent_before  # no API call


def test_submit_detach_then_status_poll_fetch_costs_runs(
    env: RunningServer, tmp_path: Path
) -> None:
    file = sample(tmp_path, 24)
    submitted = invoke("submit", str(file), "--route", "batch", "--detach", "--json")
    assert submitted.exit_code == 0, submitted.stderr
    doc = json_out(submitted)
    run_id = doc["submit"]["run_id"]
    assert doc["submit"]["accepted"] == 24 and doc["submit"]["shards_submitted"] >= 1
    assert doc["status"]["done"] is False

    status = json_out(invoke("status", run_id, "--json"))
    assert status["run_id"] == run_id and status["requests"] == 24
    assert sum(n for key, n in status["counts"].items() if key.startswith("batch/")) == 24
    assert status["batches"] and status["batches"][0]["provider_batch_id"].startswith("batch_")
    human = invoke("status", run_id)
    assert human.exit_code == 0
    assert run_id in human.stdout and "batches" in human.stdout
    assert status["batches"][0]["provider_batch_id"] in human.stdout

    one = invoke("poll", run_id)
    assert one.exit_code == 0 and one.stdout.startswith(run_id)
    waited = invoke("poll", run_id, "--wait", "--json")
    assert waited.exit_code == 0, waited.stderr
    assert json_out(waited)["done"] is True
    # Plain progress lines: at least the last one, even when the run finished before the
    # first round (the view prints the status it ends on when no round line was printed).
    assert "finished" in waited.stderr

    out, errors = tmp_path / "out.jsonl", tmp_path / "errors.jsonl"
    fetched = json_out(invoke("fetch", run_id, "-o", str(out), "--errors", str(errors), "--json"))
    assert fetched["lines"] == 24 and fetched["succeeded"] == 24 and fetched["unfinished"] == 0
    assert _ids(out) == [line["custom_id"] for line in sample_lines(24)]
    assert errors.read_text() == ""
    human_fetch = invoke("fetch", run_id, "-o", str(out))
    assert human_fetch.exit_code == 0 and "wrote 24 line(s)" in human_fetch.stdout

    costs = json_out(invoke("costs", run_id, "--json"))
    assert {row["route"] for row in costs["rows"]} == {"batch"}
    assert costs["actual"] > 0 and costs["saving"] > 0
    assert costs["all_standard"] == pytest.approx(costs["actual"] + costs["saving"], abs=1e-6)
    human_costs = invoke("costs", run_id)
    assert "saving" in human_costs.stdout and "gpt-4o-mini" in human_costs.stdout
    assert json_out(invoke("costs", "--json"))["run_id"] is None

    runs = json_out(invoke("runs", "--json"))
    assert [r["id"] for r in runs] == [run_id] and runs[0]["state"] == "completed"
    assert run_id in invoke("runs").stdout


def test_submit_runs_the_realtime_share_in_the_foreground(
    env: RunningServer, tmp_path: Path
) -> None:
    file = sample(tmp_path, 12)
    result = invoke("submit", str(file), "--route", "realtime")
    assert result.exit_code == 0, result.stderr
    assert "Plan for 12 request(s)" in result.stdout
    assert "Done" in result.stderr
    run_id = result.stdout.split("run ", 1)[1].split(":", 1)[0]
    status = json_out(invoke("status", run_id, "--json"))
    assert status["done"] is True and status["counts"] == {"standard/succeeded": 12}


def test_submit_wait_finishes_and_fetches(env: RunningServer, tmp_path: Path) -> None:
    file = sample(tmp_path, 16)
    out = tmp_path / "results.jsonl"
    result = invoke("submit", str(file), "--wait", "-o", str(out), "--json")
    assert result.exit_code == 0, result.stderr
    doc = json_out(result)
    assert doc["status"]["done"] is True and doc["fetch"]["succeeded"] == 16
    assert _ids(out) == [line["custom_id"] for line in sample_lines(16)]


def test_watch_drives_a_run_to_the_end(env: RunningServer, tmp_path: Path) -> None:
    run_id = _submit_detached(sample(tmp_path, 10), "--route", "batch")
    result = invoke("watch", run_id)
    assert result.exit_code == 0, result.stderr
    assert "(done)" in result.stdout and "10/10 finished" in result.stdout
    again = invoke("watch", run_id, "--json")
    assert again.exit_code == 0 and json_out(again)["state"] == "completed"


def test_failed_requests_exit_5(
    env: RunningServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A model batchyard.toml-style settings add to the table but the simulator does not
    # serve: every call is a 404.
    prices = {"input": 1.0, "output": 2.0, "batch_input": 0.5, "batch_output": 1.0}
    monkeypatch.setenv("BATCHYARD_MODELS", json.dumps({"gpt-private": prices}))
    file = tmp_path / "r.jsonl"
    body = {"model": "gpt-private", "messages": [{"role": "user", "content": "hi"}]}
    file.write_text(
        json.dumps(
            {"custom_id": "x", "method": "POST", "url": "/v1/chat/completions", "body": body}
        )
        + "\n"
    )
    result = invoke(
        "submit", str(file), "--route", "realtime", "--wait", "-o", str(tmp_path / "o.jsonl")
    )
    assert result.exit_code == 5, result.stderr
    assert "0 succeeded, 1 failed" in result.stdout


def test_skip_invalid_submits_the_rest(env: RunningServer, tmp_path: Path) -> None:
    file = sample(tmp_path, 6)
    with file.open("a") as f:
        f.write('{"custom_id": "broken"}\n')
    refused = invoke("submit", str(file), "--detach")
    assert refused.exit_code == 3 and f"{file}:7" in refused.stderr
    assert json_out(invoke("runs", "--json")) == []
    rejects = tmp_path / "rejects.jsonl"
    doc = json_out(
        invoke(
            "submit",
            str(file),
            "--skip-invalid",
            "--rejects",
            str(rejects),
            "--detach",
            "--json",
            "--route",
            "batch",
        )
    )
    assert doc["submit"]["accepted"] == 6 and doc["submit"]["rejected"] == 1
    assert "broken" in rejects.read_text()


def test_budget_that_cannot_be_met_exits_4(env: RunningServer, tmp_path: Path) -> None:
    result = invoke("submit", str(sample(tmp_path, 24)), "--budget", "0.000001", "--detach")
    assert result.exit_code == 4, result.stderr
    assert "budget" in result.stderr.lower()
    assert json_out(invoke("runs", "--json")) == []


def test_missing_key_is_one_sentence(
    sim: RunningServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    point_at(monkeypatch, sim.base_url)
    monkeypatch.delenv("OPENAI_API_KEY")
    result = invoke("submit", str(sample(tmp_path, 3)), "--detach")
    assert result.exit_code == 1
    assert "OPENAI_API_KEY" in result.stderr and "Traceback" not in result.stderr


def test_verify_never_prints_the_key(env: RunningServer) -> None:
    human = invoke("verify")
    assert human.exit_code == 0, human.stderr
    assert "ok:" in human.stdout and env.base_url in human.stdout
    assert API_KEY not in human.stdout + human.stderr and "sk-...cdef" in human.stdout
    data = json_out(invoke("verify", "--json"))
    assert data["ok"] is True and "gpt-4o-mini" in data["models"]
    assert API_KEY not in json.dumps(data)


def test_verify_against_nothing_fails_with_exit_1(env: RunningServer) -> None:
    result = invoke("--base-url", "http://127.0.0.1:9/v1", "verify")
    assert result.exit_code == 1
    assert "FAILED" in result.stdout and "127.0.0.1:9" in result.stdout


def test_cancel_and_resume_a_running_run(
    slow_sim: RunningServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    point_at(monkeypatch, slow_sim.base_url)
    first = _submit_detached(sample(tmp_path, 8), "--route", "batch")
    resumed = invoke("resume", first, "--detach", "--json")
    assert resumed.exit_code == 0, resumed.stderr
    assert json_out(resumed)["state"] == "running"
    ours = [
        b
        for b in slow_sim.state.batches.values()
        if (b.metadata or {}).get("batchyard_run") == first
    ]
    shards = {(b.metadata or {}).get("batchyard_shard") for b in ours}
    assert len(ours) == len(shards) == 2  # one per model, none created twice by resume
    again = invoke("resume", first, "--detach")
    assert again.exit_code == 0 and f"run {first}: running" in again.stdout
    human = invoke("cancel", first)
    assert human.exit_code == 0, human.stderr
    assert first in human.stdout
    status = json_out(invoke("status", first, "--json"))
    assert status["state"] in ("cancelling", "cancelled")
    assert json_out(invoke("cancel", first, "--json"))["state"] in ("cancelling", "cancelled")


def test_db_after_the_command_and_run_id_at_the_top_of_submit_json(
    env: RunningServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BATCHYARD_DB", raising=False)
    db = tmp_path / "elsewhere.db"
    file = sample(tmp_path, 6)
    result = invoke("submit", str(file), "--route", "batch", "--detach", "--json", "--db", str(db))
    assert result.exit_code == 0, result.stderr
    doc = json_out(result)
    run_id = doc["run_id"]
    assert doc["submit"]["run_id"] == run_id
    assert db.exists()
    listed = json_out(invoke("runs", "--json", f"--db={db}"))
    assert [r["id"] for r in listed] == [run_id]


def test_route_flex_sends_flex_requests_at_flex_prices(env: RunningServer, tmp_path: Path) -> None:
    lines = [
        {**line, "custom_id": f"f{i}"}
        for i, line in enumerate(sample_lines(4, models=("gpt-5-mini",)))
    ]
    file = tmp_path / "flex.jsonl"
    file.write_text("".join(json.dumps(x) + "\n" for x in lines))
    billed_before = len(env.state.ledger)
    result = invoke("submit", str(file), "--route", "flex", "--wait", "--json")
    assert result.exit_code == 0, result.stderr
    doc = json_out(result)
    assert doc["status"]["counts"] == {"flex/succeeded": 4}
    new = env.state.ledger[billed_before:]
    assert sorted(e.custom_id or "" for e in new) == ["f0", "f1", "f2", "f3"]
    assert {e.path for e in new} == {"flex"}


def test_quota_exhausted_realtime_run_stops_with_a_reason_instead_of_looping(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with running_server(fast_config(faults={"quota_exhausted": True})) as server:
        point_at(monkeypatch, server.base_url)
        file = sample(tmp_path, 5)
        result = invoke("submit", str(file), "--route", "realtime")
        assert result.exit_code == 1, result.stderr
        assert "Stalled:" in result.stderr and "resume" in result.stderr
        assert "quota" in result.stderr.lower()
        assert not server.state.ledger


def test_resume_detach_does_not_run_the_real_time_share(env: RunningServer, tmp_path: Path) -> None:
    file = sample(tmp_path, 6)
    submitted = invoke("submit", str(file), "--route", "realtime", "--detach", "--json")
    assert submitted.exit_code == 0, submitted.stderr
    assert "Real-time work is waiting" not in submitted.stdout  # --json: data only
    run_id = json_out(submitted)["run_id"]
    billed = len(env.state.ledger)
    resumed = invoke("resume", run_id, "--detach", "--json")
    assert resumed.exit_code == 0, resumed.stderr
    assert len(env.state.ledger) == billed  # nothing sent
    assert json_out(resumed)["counts"] == {"standard/routed": 6}
    human = invoke("submit", str(file), "--route", "realtime", "--detach")
    assert "Real-time work is waiting" in human.stderr


class _PlanHoldingAFile:
    """A plan of a large file replays its routes from a file (`CodeSpill`)."""

    def __init__(self, file: BinaryIO) -> None:
        self.file = file

    def to_dict(self, *, assignments: bool = True) -> dict[str, Any]:
        return {"requests": 3}


def test_submit_json_does_not_copy_the_plan(tmp_path: Path) -> None:
    with (tmp_path / "routes.codes").open("wb") as file:
        plan = cast(Plan, _PlanHoldingAFile(file))
        result = SubmitResult("run_x", plan, 3, 0, None, 1, 2)
        data = result.to_dict()
    assert data["plan"] == {"requests": 3}
    assert (data["accepted"], data["shards_submitted"], data["waiting_requests"]) == (3, 1, 2)
