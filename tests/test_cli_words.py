"""What the CLI says when things go wrong or are left out, in human and `--json` form:
one error document on stdout, exit codes as the README documents them, `--version`, flags
without placeholders, the newest run when RUN is left out, and the small words."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_support import counts as route_counts
from cli_support import fast_config, invoke, json_out, point_at, sample
from simfixtures import RunningServer, running_server

from batchyard import __version__
from batchyard.cli.render import open_work_hint
from batchyard.orchestrator._reporting.reports import RunStatus
from batchyard.orchestrator.batch.reconcile import ReconcileReport

_GOOD = {
    "custom_id": "a",
    "method": "POST",
    "url": "/v1/chat/completions",
    "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
}


@pytest.fixture(scope="module")
def sim() -> Iterator[RunningServer]:
    with running_server(fast_config()) as server:
        yield server


@pytest.fixture
def env(sim: RunningServer, monkeypatch: pytest.MonkeyPatch) -> RunningServer:
    point_at(monkeypatch, sim.base_url)
    return sim


def _error(result_stdout: str) -> dict[str, object]:
    doc = json.loads(result_stdout)  # exactly one document: json.loads refuses two
    assert set(doc) == {"error"}
    error = doc["error"]
    assert set(error) == {"type", "message", "exit_code", "details"}
    return dict(error)


# ---- one JSON document for every failure -----------------------------------------------------
def test_unknown_run_with_json_is_one_error_document_and_a_message() -> None:
    result = invoke("status", "nope", "--json")
    assert result.exit_code == 1
    error = _error(result.stdout)
    assert error["type"] == "NotFound" and error["exit_code"] == 1
    assert "nope" in str(error["message"])
    assert result.stderr.startswith("Error: ") and "nope" in result.stderr


def test_invalid_file_with_json_lists_every_bad_line(tmp_path: Path) -> None:
    file = tmp_path / "bad.jsonl"
    bad = '{"custom_id": "b", "method": "POST"}'
    file.write_text("\n".join([json.dumps(_GOOD), bad, bad.replace('"b"', '"c"')]) + "\n")
    human = invoke("plan", str(file))
    assert human.exit_code == 3 and human.stdout == "" and f"{file}:2" in human.stderr
    result = invoke("plan", str(file), "--json")
    assert result.exit_code == 3
    error = _error(result.stdout)
    assert error["type"] == "ValidationFailed" and error["exit_code"] == 3
    details = error["details"]
    assert isinstance(details, dict) and details["invalid_lines"] == 2
    assert {p["line"] for p in details["problems"]} == {2, 3}
    assert all(p["path"] == str(file) and p["message"] for p in details["problems"])
    assert f"{file}:2" in result.stderr


@pytest.mark.parametrize(
    ("args", "param"),
    [
        (("plan", "{file}", "--deadline", "tomorrow"), "--deadline"),
        (("plan", "{file}", "--budget", "lots"), "--budget"),
        (("submit", "{file}", "--deadline", "tomorrow"), "--deadline"),
        (("plan", "{file}", "--route", "sideways"), "--route"),
    ],
)
def test_a_bad_option_value_exits_2_in_both_forms(
    args: tuple[str, ...], param: str, tmp_path: Path
) -> None:
    file = sample(tmp_path, 3)
    argv = [a.replace("{file}", str(file)) for a in args]
    human = invoke(*argv)
    assert human.exit_code == 2, human.stderr
    assert human.stdout == ""
    assert f"Error: Invalid value for '{param}'" in human.stderr
    assert "Traceback" not in human.stderr
    result = invoke(*argv, "--json")
    assert result.exit_code == 2
    error = _error(result.stdout)
    assert error["type"] == "UsageError" and error["exit_code"] == 2
    assert error["details"] == {"param": param}
    assert "Invalid value" in result.stderr


def test_unknown_option_and_missing_file_with_json(tmp_path: Path) -> None:
    result = invoke("runs", "--bogus", "--json")
    assert result.exit_code == 2
    assert _error(result.stdout)["details"] == {"option": "--bogus"}
    missing = invoke("plan", str(tmp_path / "nope.jsonl"), "--json")
    assert missing.exit_code == 2
    assert "nope.jsonl" in str(_error(missing.stdout)["message"])


# ---- version, help ----------------------------------------------------------------------------
def test_version() -> None:
    result = invoke("--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"batchyard {__version__}"


@pytest.mark.parametrize(
    "args", [("--help",), ("submit", "--help"), ("poll", "--help"), ("sim", "serve", "--help")]
)
def test_help_shows_no_placeholder_on_flags(args: tuple[str, ...]) -> None:
    result = invoke(*args)
    assert result.exit_code == 0
    assert "<bool>" not in result.stdout
    assert re.search(r"--help\s", result.stdout)


# ---- RUN left out -----------------------------------------------------------------------------
@pytest.mark.parametrize("command", ["status", "watch", "poll"])
def test_no_run_yet_when_run_is_left_out(command: str) -> None:
    human = invoke(command)
    assert human.exit_code == 1
    assert "No runs yet" in human.stderr
    result = invoke(command, "--json")
    assert result.exit_code == 1 and _error(result.stdout)["type"] == "NotFound"


def test_run_left_out_means_the_newest_run(env: RunningServer, tmp_path: Path) -> None:
    older = json_out(invoke("submit", str(sample(tmp_path, 4, "a.jsonl")), "--detach", "--json"))
    newer = json_out(invoke("submit", str(sample(tmp_path, 6, "b.jsonl")), "--detach", "--json"))
    old_id, new_id = older["run_id"], newer["run_id"]
    assert old_id != new_id

    status = invoke("status", "--json")
    assert status.exit_code == 0
    assert json_out(status)["run_id"] == new_id
    assert f"Using the newest run, {new_id}." in status.stderr
    human = invoke("status")
    assert human.exit_code == 0 and new_id in human.stdout and new_id in human.stderr

    watched = invoke("watch", "--json")
    assert watched.exit_code == 0, watched.stderr
    assert json_out(watched)["run_id"] == new_id and json_out(watched)["done"] is True
    polled = invoke("poll")
    assert polled.exit_code == 0 and polled.stdout.startswith(new_id)

    out = tmp_path / "out.jsonl"
    fetched = invoke("fetch", "-o", str(out), "--json")
    assert fetched.exit_code == 0, fetched.stderr
    assert json_out(fetched)["lines"] == 6 and len(out.read_text().splitlines()) == 6

    # costs without RUN keeps meaning every run, and says nothing about a newest one
    every = invoke("costs", "--json")
    assert json_out(every)["run_id"] is None
    assert sum(r["requests"] for r in json_out(every)["rows"]) >= 10
    assert "newest" not in every.stderr


# ---- small words ------------------------------------------------------------------------------
def test_cancel_on_a_finished_run_says_so(env: RunningServer, tmp_path: Path) -> None:
    run_id = json_out(
        invoke("submit", str(sample(tmp_path, 4)), "--route", "batch", "--wait", "--json")
    )["run_id"]
    human = invoke("cancel", run_id)
    assert human.exit_code == 0
    assert f"Run {run_id} had already completed: there was nothing to cancel." in human.stderr
    doc = json_out(invoke("cancel", run_id, "--json"))
    assert doc["already_finished"] is True and doc["state"] == "completed"


def test_fetch_does_not_name_an_empty_errors_file(env: RunningServer, tmp_path: Path) -> None:
    run_id = json_out(
        invoke("submit", str(sample(tmp_path, 4)), "--route", "batch", "--wait", "--json")
    )["run_id"]
    errors = tmp_path / "errors.jsonl"
    result = invoke("fetch", run_id, "-o", str(tmp_path / "o.jsonl"), "--errors", str(errors))
    assert result.exit_code == 0
    assert str(errors) not in result.stdout
    assert "no failed or unfinished lines" in result.stdout


def test_poll_wait_prints_the_final_line_once(env: RunningServer, tmp_path: Path) -> None:
    run_id = json_out(
        invoke("submit", str(sample(tmp_path, 4)), "--route", "batch", "--detach", "--json")
    )["run_id"]
    result = invoke("poll", run_id, "--wait")
    assert result.exit_code == 0
    finals = [line for line in result.stdout.splitlines() if "4/4 finished" in line]
    everything = (result.stdout + result.stderr).count("4/4 finished")
    assert len(finals) == 1 and everything == 1, result.stdout + result.stderr


def test_resume_event_is_a_sentence_not_a_repr(env: RunningServer, tmp_path: Path) -> None:
    run_id = json_out(
        invoke("submit", str(sample(tmp_path, 4)), "--route", "batch", "--detach", "--json")
    )["run_id"]
    resumed = invoke("resume", run_id, "--detach", "--json")
    assert resumed.exit_code == 0, resumed.stderr
    from batchyard.store import Store

    store = Store.open(tmp_path / "batchyard.db")
    try:
        resumed_events = [e.message for e in store.list_events(run_id) if e.kind == "run.resumed"]
    finally:
        store.close()
    assert resumed_events and all("Report(" not in m for m in resumed_events)
    assert all(m.startswith("Resumed: ") and m.endswith(".") for m in resumed_events)
    text = str(ReconcileReport())
    assert text == "batches: nothing to reconcile."
    assert "ReconcileReport(" not in str(ReconcileReport(released_claims=2, busy=[3]))
    assert "2 claim(s)" in str(ReconcileReport(released_claims=2, busy=[3]))


def _status(counts: dict[str, int], batches: bool = False) -> RunStatus:
    from batchyard.orchestrator._reporting.reports import BatchInfo

    shard = BatchInfo(1, "batch_1", "gpt-4o-mini", "in_progress", 4, 0, 0, 0.0, None)
    return RunStatus(
        run_id="run_x",
        state="running",
        source_path="r.jsonl",
        created_at=0.0,
        deadline_at=None,
        budget=None,
        route_override="batch",
        requests=sum(counts.values()),
        counts=route_counts(counts),
        batches=[shard] if batches else [],
        estimated_cost=0.0,
        actual_cost=0.0,
        expected_finish=None,
        deadline_ok=None,
        escalation_at={},
        last_errors={},
        reasons=[],
        done=False,
    )


def test_a_batch_only_run_never_says_real_time_work_is_waiting() -> None:
    waiting = open_work_hint(_status({"batch/pending": 4}), realtime_open=0)
    assert "Real-time" not in waiting and "Batch work is waiting" in waiting
    running = open_work_hint(_status({"batch/submitted": 4}, batches=True), realtime_open=0)
    assert running.startswith("Batches are running")
    mixed = open_work_hint(_status({"standard/pending": 2}, batches=True), realtime_open=2)
    assert mixed.startswith("Real-time work is waiting")
