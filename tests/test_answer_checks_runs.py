"""Checks on answers in whole runs: re-queue outcomes on both paths, invalid lines in
status, costs and fetch, the larger token cap for cut-off answers, user checks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest

from batchyard.checks import Answer
from batchyard.config import load_settings
from batchyard.models import RequestStatus
from batchyard.orchestrator import Orchestrator
from batchyard.simulator import create_app, load_config
from batchyard.simulator.answers import REFUSAL
from batchyard.simulator.state import SimState

Sim = tuple[Any, SimState]


def orchestrator(tmp_path: Path, sim: Sim, **settings: Any) -> Orchestrator:
    app, state = sim
    client = openai.AsyncOpenAI(
        api_key="sk-test",
        base_url="http://sim/v1",
        max_retries=0,
        http_client=httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app)),
    )
    options: dict[str, Any] = {"small_run_requests": 0, "small_run_usd": 0, **settings}
    loaded = load_settings(api_key="sk-test", db=tmp_path / "by.db", **options)

    async def sleep(seconds: float) -> None:
        state.clock.advance(seconds)

    return Orchestrator(
        loaded, client=client, clock=state.clock.now, sleep=sleep, workdir=tmp_path / "work"
    )


def make_sim(**rates: float) -> Sim:
    app = create_app(load_config(None, clock={"time_scale": 0.0}, rate_limits=False, answers=rates))
    return app, app.state.sim


def chat_line(i: int, **body: Any) -> dict[str, Any]:
    return {
        "custom_id": f"q-{i}",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": f"Question {i}: name a colour."}],
            "max_completion_tokens": 400,
            **body,
        },
    }


def write(path: Path, lines: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


def sent(state: SimState) -> list[str]:
    return sorted(e.custom_id or "" for e in state.ledger)


@pytest.mark.parametrize("route", ["realtime", "batch"])
async def test_an_answer_that_always_fails_ends_invalid_after_the_requeues(
    tmp_path: Path, route: str
) -> None:
    sim = make_sim(refusal_rate=1.0)
    source = write(tmp_path / "in.jsonl", [chat_line(i) for i in range(3)])
    orch = orchestrator(tmp_path, sim)
    run = await orch.submit(source, route=route, requeues=2)
    status = await orch.wait(run.run_id)
    assert status.done
    assert status.invalid == 3 and status.failed == 3 and status.succeeded == 0
    assert status.requeues == 6  # two re-sends each
    assert sent(sim[1]) == sorted(f"q-{i}" for i in range(3) for _ in range(3))
    # Every answer was paid; the re-sent ones are shown apart and in the run's cost.
    costs = orch.costs(run.run_id)
    assert costs.invalid == 3 and costs.requeues == 6
    assert costs.requeue_cost > 0
    assert status.actual_cost == pytest.approx(costs.actual + costs.requeue_cost, abs=2e-6)
    report = orch.fetch(run.run_id, tmp_path / "out.jsonl", tmp_path / "err.jsonl")
    assert report.invalid == 3 and report.failed == 3
    out = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    errors = (tmp_path / "err.jsonl").read_text().splitlines()
    assert len(errors) == 3
    for line in out:
        assert line["batchyard"]["status"] == "invalid"
        assert line["error"]["code"] == "invalid" and line["error"]["check"] == "refusal"
        assert "refused" in line["error"]["message"]
        # The last answer is kept for a human to read.
        message = line["response"]["body"]["choices"][0]["message"]
        assert message["refusal"] == REFUSAL
    await orch.aclose()


async def test_bad_answers_are_sent_again_until_one_passes(tmp_path: Path) -> None:
    sim = make_sim(refusal_rate=0.4, content_filter_rate=0.2)
    source = write(tmp_path / "in.jsonl", [chat_line(i) for i in range(30)])
    orch = orchestrator(tmp_path, sim)
    run = await orch.submit(source, route="realtime", requeues=6)
    status = await orch.wait(run.run_id)
    assert status.done and status.requeues > 0
    assert len(sim[1].ledger) == 30 + status.requeues
    for row in orch.store.iter_requests(run.run_id, with_response=True):
        if row.status is RequestStatus.SUCCEEDED:
            choice = (row.response_body or {})["choices"][0]
            assert choice["finish_reason"] == "stop" and not choice["message"]["refusal"]
    assert status.succeeded + status.invalid == 30
    assert status.succeeded >= 27  # 0.6 ** 7 per line fails every time
    await orch.aclose()


async def test_checks_off_deliver_bad_answers_as_today(tmp_path: Path) -> None:
    sim = make_sim(refusal_rate=1.0)
    source = write(tmp_path / "in.jsonl", [chat_line(i) for i in range(2)])
    orch = orchestrator(tmp_path, sim)
    run = await orch.submit(source, route="realtime", checks=["none"])
    status = await orch.wait(run.run_id)
    assert status.succeeded == 2 and status.requeues == 0 and len(sim[1].ledger) == 2
    await orch.aclose()


async def test_json_and_schema_checks_follow_the_request(tmp_path: Path) -> None:
    sim = make_sim(malformed_json_rate=1.0)
    schema = {
        "type": "json_schema",
        "json_schema": {
            "name": "c",
            "schema": {
                "type": "object",
                "properties": {"colour": {"type": "string"}},
                "required": ["colour"],
            },
        },
    }
    lines = [chat_line(0, response_format=schema), chat_line(1)]  # line 2 asks for text
    source = write(tmp_path / "in.jsonl", lines)
    orch = orchestrator(tmp_path, sim)
    run = await orch.submit(source, route="realtime", requeues=1)
    await orch.wait(run.run_id)
    first = orch.store.get_request(run.run_id, "q-0")
    assert first.status is RequestStatus.INVALID and first.error_code == "check:json"
    assert orch.store.get_request(run.run_id, "q-1").status is RequestStatus.SUCCEEDED
    await orch.aclose()


async def test_a_cut_off_answer_is_sent_again_with_a_larger_cap(tmp_path: Path) -> None:
    sim = make_sim()
    source = write(tmp_path / "in.jsonl", [chat_line(0, max_completion_tokens=8)])
    orch = orchestrator(tmp_path, sim)
    run = await orch.submit(source, route="realtime", requeues=5)
    status = await orch.wait(run.run_id)
    row = orch.store.get_request(run.run_id, "q-0")
    assert row.status is RequestStatus.SUCCEEDED and status.requeues >= 1
    cap = 8
    for _ in range(row.requeues):
        cap = max(cap * 2, cap + 16)  # doubled, at least 16 more each time
    assert row.body is not None and row.body["max_completion_tokens"] == cap
    assert (row.response_body or {})["choices"][0]["finish_reason"] == "stop"
    await orch.aclose()


async def test_no_larger_cap_when_turned_off(tmp_path: Path) -> None:
    sim = make_sim()
    source = write(tmp_path / "in.jsonl", [chat_line(0, max_completion_tokens=8)])
    orch = orchestrator(tmp_path, sim, length_raise=False)
    run = await orch.submit(source, route="realtime", requeues=1)
    await orch.wait(run.run_id)
    row = orch.store.get_request(run.run_id, "q-0")
    assert row.status is RequestStatus.INVALID and row.error_code == "check:finish"
    assert row.body is not None and row.body["max_completion_tokens"] == 8
    await orch.aclose()


def says_blue(answer: Answer) -> str | None:
    text = answer.choices[0].text or ""
    return None if "blue" in text else "the answer does not say blue"


async def test_user_checks_from_the_python_api(tmp_path: Path) -> None:
    sim = make_sim()
    source = write(tmp_path / "in.jsonl", [chat_line(0)])
    orch = orchestrator(tmp_path, sim)
    run = await orch.submit(source, route="realtime", checks=["finish", says_blue], requeues=0)
    await orch.wait(run.run_id)
    row = orch.store.get_request(run.run_id, "q-0")
    assert row.status is RequestStatus.INVALID
    assert row.error_code == "check:says_blue"
    assert orch.store.get_run(run.run_id).options["checks"] == ["finish", "says_blue"]
    await orch.aclose()
