"""The CLI side of fallback models: `--fallback` on submit (checked: exit 2 for a model that
cannot serve), and what submit, status, costs and fetch print, in text and with --json."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_support import fast_config, invoke, json_out, point_at
from simfixtures import RunningServer, running_server
from test_fallback import chat_line, write

TOML = (
    '[models."gpt-legacy"]\ninput = 5.0\noutput = 15.0\nbatch_input = 2.5\nbatch_output = 7.5\n'
    'endpoints = ["/v1/chat/completions"]\n'
)


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    with running_server(fast_config()) as running:
        yield running


@pytest.fixture
def legacy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: RunningServer) -> Path:
    """A file for a model batchyard's table has (from batchyard.toml) and the API refuses."""
    point_at(monkeypatch, server.base_url)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "batchyard.toml").write_text(TOML)
    return write(tmp_path / "in.jsonl", [chat_line(i) for i in range(2)])


def test_fallback_answers_refused_lines_and_json_says_which_model(
    legacy: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out.jsonl"
    args = ("submit", str(legacy), "--route", "realtime", "--wait", "-o", str(out))
    doc = json_out(invoke(*args, "--fallback", "gpt-4o-mini", "--json"))
    assert doc["status"]["counts"] == {"standard/succeeded": 2}
    (moved,) = doc["status"]["fallbacks"]
    assert (moved["from"], moved["to"], moved["reason"]) == (
        "gpt-legacy",
        "gpt-4o-mini",
        "model_not_found",
    )
    assert moved["succeeded"] == 2 and moved["cost"] > 0
    assert doc["fetch"]["fallback"] == 2
    run_id = doc["run_id"]
    for line in (json.loads(x) for x in out.read_text().splitlines()):
        assert line["batchyard"]["model"] == "gpt-4o-mini"
        assert line["batchyard"]["fallback"]["from"] == "gpt-legacy"
    status = invoke("status", run_id)
    assert "fallback model: 2 line(s) of gpt-legacy sent to gpt-4o-mini" in status.stdout
    costs = invoke("costs", run_id)
    assert "fallback model: 2 line(s) of gpt-legacy sent to gpt-4o-mini" in costs.stdout
    costs_doc = json_out(invoke("costs", run_id, "--json"))
    assert [r["model"] for r in costs_doc["rows"]] == ["gpt-4o-mini"]
    assert costs_doc["fallbacks"][0]["lines"] == 2
    fetched = invoke("fetch", run_id, "-o", str(out))
    assert "2 answered by a fallback model" in fetched.stdout


def test_without_fallback_refused_lines_fail_with_exit_5(legacy: Path) -> None:
    done = invoke("submit", str(legacy), "--route", "realtime", "--wait", "--json")
    assert done.exit_code == 5
    assert json_out(done)["status"]["fallbacks"] == []


@pytest.mark.parametrize(
    ("model", "says"),
    [
        ("gpt-nope", "'gpt-nope' is not in batchyard's model table"),
        ("text-embedding-3-small", "does not serve /v1/chat/completions"),
    ],
)
def test_a_fallback_that_cannot_serve_is_a_bad_command_line(
    legacy: Path, model: str, says: str
) -> None:
    done = invoke("submit", str(legacy), "--fallback", model)
    assert done.exit_code == 2
    assert "--fallback" in done.stderr and says in done.stderr
    assert "No runs yet" in invoke("runs").stderr  # nothing recorded
    doc = json_out(invoke("submit", str(legacy), "--fallback", model, "--json"))
    assert doc["error"]["exit_code"] == 2 and says in doc["error"]["message"]
