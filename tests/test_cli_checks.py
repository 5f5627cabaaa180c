"""The CLI side of answer checks and reuse: --check, --requeues, --no-reuse, and what
plan, status, costs and fetch print about invalid lines and reused answers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_support import fast_config, invoke, json_out, point_at
from simfixtures import RunningServer, running_server
from test_answer_checks_runs import chat_line, write


@pytest.fixture(scope="module")
def refusing() -> Iterator[RunningServer]:
    with running_server(fast_config(answers={"refusal_rate": 1.0})) as server:
        yield server


def test_invalid_lines_exit_5_and_are_shown_everywhere(
    refusing: RunningServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    point_at(monkeypatch, refusing.base_url)
    source = write(tmp_path / "in.jsonl", [chat_line(i) for i in range(2)])
    out = tmp_path / "out.jsonl"
    done = invoke(
        "submit", str(source), "--route", "realtime", "--requeues", "1", "--wait", "-o", str(out)
    )
    assert done.exit_code == 5, done.stderr  # invalid counts as failed
    assert "2 invalid: failed a check" in done.stdout
    run_id = json.loads(out.read_text().splitlines()[0])["id"].split("_", 1)[1].rsplit("_", 1)[0]
    status = invoke("status", run_id)
    assert (
        "2 of them invalid" in status.stdout and "re-sent after a failed check: 2" in status.stdout
    )
    costs = invoke("costs", run_id)
    assert (
        "re-sends after a failed check: 2" in costs.stdout and "2 line(s) invalid" in costs.stdout
    )
    errors = tmp_path / "errors.jsonl"
    fetched = json_out(invoke("fetch", run_id, "-o", str(out), "--errors", str(errors), "--json"))
    assert fetched["invalid"] == 2 and len(errors.read_text().splitlines()) == 2


def test_checks_off_and_plan_without_reuse(
    refusing: RunningServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    point_at(monkeypatch, refusing.base_url)
    source = write(tmp_path / "in.jsonl", [chat_line(i) for i in range(2)])
    done = invoke("submit", str(source), "--route", "realtime", "--check", "none", "--wait")
    assert done.exit_code == 0, done.stderr  # today's behaviour: every 200 is a success
    again = json_out(invoke("plan", str(source), "--json"))
    assert again["reuse"]["reused"] == 2 and again["requests"] == 0
    fresh = json_out(invoke("plan", str(source), "--no-reuse", "--json"))
    assert fresh["reuse"]["reused"] == 0 and fresh["requests"] == 2
    human = invoke("plan", str(source))
    assert "reuse: 2 line(s) answered from earlier runs" in human.stdout


def test_an_unknown_check_is_a_message(
    refusing: RunningServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    point_at(monkeypatch, refusing.base_url)
    source = write(tmp_path / "in.jsonl", [chat_line(0)])
    done = invoke("submit", str(source), "--check", "spelling")
    assert done.exit_code == 1
    assert "Unknown check 'spelling'" in done.stderr and "Traceback" not in done.stderr
