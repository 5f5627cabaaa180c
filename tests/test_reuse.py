"""Reuse of earlier answers: identical requests answered from the store, identical lines of
one file sent once, deliberate repeats never merged, failed checks never reused, and reuse
across two runs in two processes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cli_support import fast_config, run_cli, sim_env
from simfixtures import running_server
from test_answer_checks_runs import chat_line, make_sim, orchestrator, write
from test_store_support import assert_stored_lines_current

from batchyard.fingerprint import fingerprint
from batchyard.models import RequestStatus


def test_fingerprint_ignores_who_asked_not_what() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 0}
    same = {**body, "user": "u-1", "metadata": {"k": "v"}, "service_tier": "flex"}
    base = fingerprint("/v1/chat/completions", body, "m")
    assert fingerprint("/v1/chat/completions", same, "m") == base
    assert fingerprint("/v1/chat/completions", dict(reversed(body.items())), "m") == base
    assert fingerprint("/v1/chat/completions", {**body, "temperature": 1}, "m") != base
    assert fingerprint("/v1/chat/completions", body, "other") != base
    assert fingerprint("/v1/responses", body, "m") != base


async def test_a_second_run_is_answered_from_the_store(tmp_path: Path) -> None:
    sim = make_sim()
    source = write(tmp_path / "in.jsonl", [chat_line(i) for i in range(4)])
    orch = orchestrator(tmp_path, sim)
    first = await orch.submit(source, route="realtime")
    await orch.wait(first.run_id)
    assert len(sim[1].ledger) == 4
    edited = write(tmp_path / "edited.jsonl", [chat_line(i) for i in range(6)])  # 2 new lines
    plan = orch.plan(edited, route="realtime")
    assert plan.reused == 4 and plan.requests == 2
    assert plan.reuse_saving == pytest.approx(orch.costs(first.run_id).actual, rel=1e-3)
    second = await orch.submit(edited, route="realtime")
    status = await orch.wait(second.run_id)
    assert status.done and status.succeeded == 6 and status.reused == 4
    assert len(sim[1].ledger) == 6  # only the two new lines were bought
    costs = orch.costs(second.run_id)
    assert costs.reused == 4 and costs.reuse_saving > 0
    orch.fetch(second.run_id, tmp_path / "out.jsonl")
    out = {
        x["custom_id"]: x
        for x in map(json.loads, (tmp_path / "out.jsonl").read_text().splitlines())
    }
    origin = out["q-0"]["batchyard"]["reused_from"]
    assert origin["run"] == first.run_id and origin["custom_id"] == "q-0"
    assert origin["at"] > 0 and out["q-0"]["batchyard"]["cost"] == 0
    assert (
        out["q-0"]["response"]["body"] == orch.store.get_request(first.run_id, "q-0").response_body
    )
    assert out["q-5"]["batchyard"]["reused_from"] is None
    assert_stored_lines_current(orch.store, first.run_id)
    assert_stored_lines_current(orch.store, second.run_id)  # reused lines kept too
    await orch.aclose()


async def test_identical_lines_of_one_file_are_sent_once(tmp_path: Path) -> None:
    sim = make_sim()
    lines = [chat_line(0), {**chat_line(0), "custom_id": "copy"}, chat_line(1)]
    source = write(tmp_path / "in.jsonl", lines)
    orch = orchestrator(tmp_path, sim)
    plan = orch.plan(source, route="batch")
    assert plan.twins == 1 and plan.requests == 2 and plan.reuse_saving > 0
    run = await orch.submit(source, route="batch")
    status = await orch.wait(run.run_id)
    assert status.done and status.succeeded == 3
    assert sorted(e.custom_id or "" for e in sim[1].ledger) == ["q-0", "q-1"]
    twin = orch.store.get_request(run.run_id, "copy")
    assert twin.reused_from is not None and twin.reused_from["custom_id"] == "q-0"
    assert twin.response_body == orch.store.get_request(run.run_id, "q-0").response_body
    assert_stored_lines_current(orch.store, run.run_id)  # the twin's line too
    await orch.aclose()


async def test_samples_and_no_reuse_are_sent_as_asked(tmp_path: Path) -> None:
    sim = make_sim()
    samples = [{**chat_line(0), "custom_id": f"s-{k}", "sample": k} for k in range(3)]
    source = write(tmp_path / "in.jsonl", samples)
    orch = orchestrator(tmp_path, sim)
    run = await orch.submit(source, route="realtime")
    await orch.wait(run.run_id)
    assert len(sim[1].ledger) == 3  # three samples of one request: three answers
    plain = write(tmp_path / "plain.jsonl", [chat_line(1), {**chat_line(1), "custom_id": "x"}])
    again = await orch.submit(plain, route="realtime", reuse=False)
    await orch.wait(again.run_id)
    repeat = await orch.submit(plain, route="realtime", reuse=False)
    status = await orch.wait(repeat.run_id)
    assert status.reused == 0 and len(sim[1].ledger) == 3 + 2 + 2
    await orch.aclose()


async def test_an_answer_that_failed_a_check_is_never_reused(tmp_path: Path) -> None:
    bad = make_sim(refusal_rate=1.0)
    source = write(tmp_path / "in.jsonl", [chat_line(0)])
    orch = orchestrator(tmp_path, bad)
    run = await orch.submit(source, route="realtime", requeues=0)
    await orch.wait(run.run_id)
    assert orch.store.get_request(run.run_id, "q-0").status is RequestStatus.INVALID
    await orch.aclose()
    good = make_sim()
    orch = orchestrator(tmp_path, good)  # the same database
    assert orch.plan(source, route="realtime").reused == 0
    again = await orch.submit(source, route="realtime")
    status = await orch.wait(again.run_id)
    assert status.succeeded == 1 and status.reused == 0 and len(good[1].ledger) == 1
    await orch.aclose()


def test_reuse_across_two_runs_in_two_processes(tmp_path: Path) -> None:
    source = write(tmp_path / "in.jsonl", [chat_line(i) for i in range(5)])
    with running_server(fast_config()) as server:
        env = {**sim_env(server.base_url), "BATCHYARD_DB": str(tmp_path / "shared.db")}
        args = ["submit", str(source), "--route", "realtime", "--wait", "--json"]
        first = run_cli([*args, "-o", str(tmp_path / "a.jsonl")], env, cwd=tmp_path)
        assert first.returncode == 0, first.stderr
        first_id = json.loads(first.stdout)["run_id"]
        bought = len(server.state.ledger)
        planned = run_cli(["plan", str(source), "--json"], env, cwd=tmp_path)
        assert json.loads(planned.stdout)["reuse"]["reused"] == 5
        second = run_cli([*args, "-o", str(tmp_path / "b.jsonl")], env, cwd=tmp_path)
        assert second.returncode == 0, second.stderr
        assert len(server.state.ledger) == bought == 5
    lines = [json.loads(x) for x in (tmp_path / "b.jsonl").read_text().splitlines()]
    assert [x["batchyard"]["reused_from"]["run"] for x in lines] == [first_id] * 5
    assert all(x["response"]["status_code"] == 200 for x in lines)


async def test_twins_of_a_cancelled_line_end_cancelled(tmp_path: Path) -> None:
    sim = make_sim()
    lines: list[dict[str, Any]] = [chat_line(0), {**chat_line(0), "custom_id": "copy"}]
    source = write(tmp_path / "in.jsonl", lines)
    orch = orchestrator(tmp_path, sim)
    run = await orch.submit(source, route="realtime")
    status = await orch.cancel(run.run_id)
    assert status.done
    assert orch.store.get_request(run.run_id, "copy").status is RequestStatus.CANCELLED
    assert_stored_lines_current(orch.store, run.run_id)
    await orch.aclose()
