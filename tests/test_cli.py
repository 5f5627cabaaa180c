"""The CLI's own behaviour, with no run needed: parsing, usage errors, `config show`,
error messages and exit codes, the key never printed, logs and metrics."""

from __future__ import annotations

import json
from pathlib import Path

import httpx2
import pytest
from cli_support import API_KEY, invoke, json_out
from cli_support import counts as route_counts

from batchyard import logs
from batchyard.cli.exits import EXIT_CODES
from batchyard.metrics import Metrics, serving
from batchyard.orchestrator._reporting.reports import BatchInfo, RunStatus


def test_help_lists_every_command() -> None:
    result = invoke("--help")
    assert result.exit_code == 0
    for name in (
        "submit",
        "plan",
        "watch",
        "poll",
        "status",
        "runs",
        "fetch",
        "costs",
        "cancel",
        "resume",
        "verify",
        "config",
        "sim",
        "demo",
    ):
        assert f" {name} " in result.stdout, name


def test_no_command_shows_help_and_fails_as_usage() -> None:
    result = invoke()
    assert result.exit_code == 2
    assert "Usage" in result.stdout + result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("submit",),  # missing FILE
        ("submit", "no-such-file.jsonl"),  # FILE must exist
        ("status", "run_a", "run_b"),  # one RUN at most
        ("plan", "x.jsonl", "--deadline", "tomorrow"),
        ("fetch", "run_x"),  # missing -o
        ("plan", "x.jsonl", "--route", "sideways"),
        ("runs", "--limit", "many"),
        ("frobnicate",),
    ],
)
def test_usage_errors_exit_2(args: tuple[str, ...], tmp_path: Path) -> None:
    result = invoke(*args)
    assert result.exit_code == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_detach_and_wait_together_is_a_usage_error(tmp_path: Path) -> None:
    file = tmp_path / "r.jsonl"
    file.write_text("{}\n")
    result = invoke("submit", str(file), "--detach", "--wait")
    assert result.exit_code == 2
    assert "--detach" in result.stderr and "--wait" in result.stderr


def test_invalid_file_names_the_line_and_exits_3(tmp_path: Path) -> None:
    file = tmp_path / "bad.jsonl"
    good = {
        "custom_id": "a",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
    }
    file.write_text(json.dumps(good) + "\n" + '{"custom_id": "b", "method": "POST"}\n')
    result = invoke("plan", str(file))
    assert result.exit_code == 3
    assert f"{file}:2" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_unknown_run_is_one_message_exit_1() -> None:
    result = invoke("status", "run_20990101_000000")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: ")
    assert "run_20990101_000000" in result.stderr
    assert "`batchyard runs`" in result.stderr  # a command that exists
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) <= 2


def test_bad_deadline_is_a_sentence_not_a_traceback(tmp_path: Path) -> None:
    from batchyard.samples import write_sample

    file = write_sample(tmp_path / "r.jsonl", 3)
    result = invoke("plan", str(file), "--deadline", "soonish")
    assert result.exit_code == 2  # a wrong command line
    assert "'--deadline': 'soonish'" in result.stderr and "2h" in result.stderr
    assert "Traceback" not in result.stderr


def test_debug_shows_the_traceback() -> None:
    from typer.testing import CliRunner

    from batchyard.cli import app
    from batchyard.errors import NotFound

    result = CliRunner().invoke(app, ["--debug", "status", "run_20990101_000000"])
    assert isinstance(result.exception, NotFound)


def test_runs_on_an_empty_database(tmp_path: Path) -> None:
    result = invoke("runs")
    assert result.exit_code == 0
    assert "No runs yet" in result.stderr
    data = json_out(invoke("runs", "--json"))
    assert data == []


# ---- config show -------------------------------------------------------------------------------
def _sources(args: tuple[str, ...] = ()) -> dict[str, dict[str, object]]:
    result = invoke(*args, "config", "show", "--json")
    assert result.exit_code == 0, result.stderr
    settings: dict[str, dict[str, object]] = json_out(result)["settings"]
    return settings


def test_config_show_says_where_each_value_came_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "batchyard.toml").write_text(
        'concurrency = 7\nmargin_seconds = 120\n[models."gpt-4o-mini"]\nrpm = 9\n'
    )
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    monkeypatch.setenv("BATCHYARD_MARGIN_SECONDS", "300")
    monkeypatch.delenv("BATCHYARD_DB")
    settings = _sources(("--base-url", "http://127.0.0.1:9/v1"))
    assert settings["concurrency"] == {"value": 7, "source": str(tmp_path / "batchyard.toml")}
    assert settings["margin_seconds"] == {"value": 300.0, "source": "env BATCHYARD_MARGIN_SECONDS"}
    assert settings["base_url"] == {"value": "http://127.0.0.1:9/v1", "source": "option --base-url"}
    assert settings["api_key"]["source"] == "env OPENAI_API_KEY"
    toml = str(tmp_path / "batchyard.toml")
    assert settings["models"] == {"value": ["gpt-4o-mini"], "source": toml}
    assert settings["max_attempts"]["source"] == "default"
    assert settings["db"]["source"] == "default"


def test_config_show_never_prints_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    human = invoke("config", "show")
    machine = invoke("config", "show", "--json")
    for result in (human, machine):
        assert result.exit_code == 0
        assert API_KEY not in result.stdout + result.stderr
        assert API_KEY[-8:] not in result.stdout
        assert "sk-...cdef" in result.stdout
    assert "prices as of" in human.stdout
    assert "env OPENAI_API_KEY" in human.stdout


def test_config_show_db_option_wins_over_env(tmp_path: Path) -> None:
    settings = _sources(("--db", str(tmp_path / "other.db")))
    assert settings["db"] == {"value": str(tmp_path / "other.db"), "source": "option --db"}


def test_config_show_reports_a_broken_toml_as_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "batchyard.toml").write_text("concurrency = 'lots'\n")
    result = invoke("config", "show")
    assert result.exit_code == 1
    assert "configuration is invalid" in result.stderr
    assert "Traceback" not in result.stderr


# ---- exit codes, logs, metrics ------------------------------------------------------------------
def test_exit_code_table_is_documented_in_the_readme() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    for code in EXIT_CODES:
        assert f"| {code} |" in readme, code


def test_logs_are_json_lines_without_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    result = invoke("status", f"run_{API_KEY}")  # the key even appears in the arguments
    assert result.exit_code == 1
    path = logs.log_path()
    text = path.read_text()
    records = [json.loads(line) for line in text.splitlines()]
    assert any(r["message"] == "command" for r in records)
    assert any(r["level"] == "warning" and "error" in r for r in records)
    assert API_KEY not in text
    assert "[redacted]" in text


def test_redact_masks_keys_and_secret_fields() -> None:
    assert logs.redact(
        {
            "api_key": "x",
            "note": "Bearer abcdef123456",
            "n": 3,
            "url": ["https://me:hunter2@proxy.example.com/v1"],
        }
    ) == {
        "api_key": "[redacted]",
        "note": "[redacted]",
        "n": 3,
        "url": ["https://[redacted]@proxy.example.com/v1"],
    }


def _status(counts: dict[str, int]) -> RunStatus:
    batch = BatchInfo(1, "batch_1", "gpt-4o-mini", "in_progress", 10, 4, 1, 0.0, None)
    return RunStatus(
        run_id="run_1",
        state="running",
        source_path="r.jsonl",
        created_at=0.0,
        deadline_at=None,
        budget=None,
        route_override="auto",
        requests=sum(counts.values()),
        counts=route_counts(counts),
        batches=[batch],
        estimated_cost=0.5,
        actual_cost=0.25,
        expected_finish=None,
        deadline_ok=None,
        escalation_at={},
        last_errors={},
        reasons=[],
        done=False,
    )


def test_metrics_are_served_in_prometheus_text_format() -> None:
    metrics = Metrics()
    metrics.observe_status(_status({"batch/submitted": 10, "standard/succeeded": 5}))
    metrics.observe_event("realtime.retry", {"status_code": 429})
    metrics.observe_event("breaker.open", {"model": "gpt-4o-mini"})
    with serving(metrics, 0) as port:
        response = httpx2.get(f"http://127.0.0.1:{port}/metrics")
        missing = httpx2.get(f"http://127.0.0.1:{port}/other")
    assert response.status_code == 200 and missing.status_code == 404
    text = response.text
    assert 'batchyard_requests{route="batch",run="run_1",status="submitted"} 10' in text
    assert 'batchyard_requests{route="standard",run="run_1",status="succeeded"} 5' in text
    assert 'batchyard_batches{run="run_1",status="in_progress"} 1' in text
    assert 'batchyard_cost_usd{kind="actual",run="run_1"} 0.25' in text
    assert "batchyard_rate_limited_total 1" in text
    assert "batchyard_retries_total 1" in text
    assert 'batchyard_breaker_open{model="gpt-4o-mini"} 1' in text
    assert "# TYPE batchyard_requests gauge" in text
    # a later round replaces the request gauges rather than adding to them
    metrics.observe_status(_status({"batch/succeeded": 10}))
    assert 'status="submitted"' not in metrics.render()


def test_metrics_port_serves_while_the_command_runs() -> None:
    result = invoke("--metrics-port", "0", "runs")
    assert result.exit_code == 0
    assert "Metrics on http://127.0.0.1:" in result.stderr


def test_a_bad_budget_is_a_sentence_not_a_traceback(tmp_path: Path) -> None:
    file = tmp_path / "r.jsonl"
    file.write_text(
        json.dumps(
            {
                "custom_id": "a",
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
            }
        )
        + "\n"
    )
    for command in ("plan", "submit"):
        result = invoke(command, str(file), "--budget", "abc")
        assert result.exit_code == 2, (command, result.stderr)  # a wrong command line
        assert "Error: " in result.stderr and "budget" in result.stderr.lower()
        assert "Traceback" not in result.stderr


def test_demo_keeps_its_runs_out_of_the_users_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlite3

    db = tmp_path / "mine.db"
    monkeypatch.setenv("BATCHYARD_DB", str(db))
    monkeypatch.chdir(tmp_path)
    result = invoke("demo", "-n", "20", "--json")
    assert result.exit_code == 0, result.stderr
    if db.exists():
        with sqlite3.connect(db) as conn:
            assert conn.execute("SELECT count(*) FROM runs").fetchone() == (0,)
    shown = json_out(invoke("config", "show", "--json"))
    assert "BATCHYARD_DB" in shown["settings"]["db"]["source"]  # from the environment


def test_the_progress_line_counts_cancelled_requests_apart() -> None:
    from batchyard.cli.render import status_line

    line = status_line(_status({"batch/succeeded": 170, "batch/cancelled": 330}))
    assert "500/500 finished (100%), 170 succeeded, 0 failed, 330 cancelled;" in line
    assert "cancelled" not in status_line(_status({"batch/succeeded": 2}))
