"""Fallback models: refused models on both paths, a breaker open past the escalation point,
a fallback that is refused too, the settings table, and what fetch, status and costs say."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest

from batchyard.catalog import Usage
from batchyard.config import load_settings
from batchyard.errors import ConfigError, OptionError
from batchyard.models import RequestStatus, Route
from batchyard.orchestrator import Orchestrator
from batchyard.orchestrator._routing.fallback import breaker_due, resolve_fallbacks
from batchyard.simulator import create_app, load_config
from batchyard.simulator.state import SimState

Sim = tuple[Any, SimState]
FALLBACK = "gpt-4o-mini"
# Models batchyard's table knows (added as batchyard.toml would) but the API refuses.
LEGACY = {
    "input": 5.0,
    "output": 15.0,
    "batch_input": 2.5,
    "batch_output": 7.5,
    "endpoints": ["/v1/chat/completions"],
}
TABLE = {"gpt-legacy": LEGACY, "gpt-gone": LEGACY}


def make_sim() -> Sim:
    app = create_app(load_config(None, clock={"time_scale": 0.0}, rate_limits=False))
    return app, app.state.sim


class FailingModel(httpx2.AsyncBaseTransport):
    """The simulator, except that every chat call to `model` gets a 500 (a model whose
    real-time path keeps failing, so its breaker opens)."""

    def __init__(self, inner: httpx2.AsyncBaseTransport, model: str) -> None:
        self.inner = inner
        self.model = model
        self.failed = 0

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        if request.url.path.endswith("/chat/completions"):
            body = json.loads(await request.aread())
            if body.get("model") == self.model:
                self.failed += 1
                error = {"message": "The server had an error.", "type": "server_error"}
                return httpx2.Response(500, json={"error": error})
        return await self.inner.handle_async_request(request)


def orchestrator(
    tmp_path: Path, sim: Sim, *, failing: str | None = None, **settings: Any
) -> Orchestrator:
    app, state = sim
    transport: httpx2.AsyncBaseTransport = httpx2.ASGITransport(app=app)
    if failing is not None:
        transport = FailingModel(transport, failing)
    client = openai.AsyncOpenAI(
        api_key="sk-test",
        base_url="http://sim/v1",
        max_retries=0,
        http_client=httpx2.AsyncClient(transport=transport),
    )
    options: dict[str, Any] = {
        "small_run_requests": 0,
        "small_run_usd": 0,
        "models": TABLE,
        **settings,
    }
    loaded = load_settings(api_key="sk-test", db=tmp_path / "by.db", **options)

    async def sleep(seconds: float) -> None:
        state.clock.advance(seconds)

    return Orchestrator(
        loaded, client=client, clock=state.clock.now, sleep=sleep, workdir=tmp_path / "work"
    )


def chat_line(i: int, model: str = "gpt-legacy") -> dict[str, Any]:
    return {
        "custom_id": f"q-{i}",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {
            "model": model,
            "messages": [{"role": "user", "content": f"Question {i}: name a colour."}],
            "max_completion_tokens": 50,
        },
    }


def write(path: Path, lines: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


def fetched(orch: Orchestrator, run_id: str, tmp_path: Path) -> list[dict[str, Any]]:
    out = tmp_path / "out.jsonl"
    orch.fetch(run_id, out)
    return [json.loads(x) for x in out.read_text().splitlines()]


def price(orch: Orchestrator, model: str, route: Route, line: dict[str, Any]) -> float:
    facts = line["batchyard"]
    usage = Usage(facts["input_tokens"], facts["output_tokens"])
    return orch.models[model].cost(route, usage)


# ---- real time ------------------------------------------------------------------------------
async def test_a_refused_model_fails_its_lines_without_a_fallback(tmp_path: Path) -> None:
    sim = make_sim()
    orch = orchestrator(tmp_path, sim)
    run = await orch.submit(
        write(tmp_path / "in.jsonl", [chat_line(0), chat_line(1)]), route="realtime"
    )
    status = await orch.wait(run.run_id)
    assert status.done and status.failed == 2 and status.fallbacks == []
    for line in fetched(orch, run.run_id, tmp_path):
        # As before fallbacks existed: the API's own error, the line's own model.
        assert line["response"]["status_code"] == 404
        error = line["response"]["body"]["error"]
        assert error["code"] == "model_not_found" and "gpt-legacy" in error["message"]
        assert line["batchyard"]["model"] == "gpt-legacy"
        assert line["batchyard"]["fallback"] is None
    assert sim[1].ledger == []  # nothing was answered, nothing billed
    await orch.aclose()


async def test_a_refused_model_is_answered_by_its_fallback_in_real_time(tmp_path: Path) -> None:
    sim = make_sim()
    orch = orchestrator(tmp_path, sim)
    source = write(tmp_path / "in.jsonl", [chat_line(i) for i in range(3)])
    run = await orch.submit(source, route="realtime", fallback=FALLBACK)
    status = await orch.wait(run.run_id)
    assert status.done and status.succeeded == 3 and status.failed == 0
    assert status.fallback == 3
    (moved,) = status.fallbacks
    assert moved["from"] == "gpt-legacy" and moved["to"] == FALLBACK
    assert moved["reason"] == "model_not_found" and moved["succeeded"] == 3
    lines = fetched(orch, run.run_id, tmp_path)
    for line in lines:
        facts = line["batchyard"]
        assert facts["model"] == FALLBACK
        assert facts["fallback"]["from"] == "gpt-legacy"
        assert facts["fallback"]["to"] == FALLBACK
        assert facts["fallback"]["reason"] == "model_not_found"
        assert "gpt-legacy" in facts["fallback"]["error"]  # what the API said first
        assert line["response"]["body"]["model"].startswith(FALLBACK)
        # Billed at the fallback model's price, not the refused model's.
        assert facts["cost"] == pytest.approx(price(orch, FALLBACK, Route.STANDARD, line))
        assert facts["cost"] < price(orch, "gpt-legacy", Route.STANDARD, line)
    assert status.actual_cost == pytest.approx(sum(x["batchyard"]["cost"] for x in lines))
    costs = orch.costs(run.run_id)
    assert [(r.model, r.succeeded) for r in costs.rows] == [(FALLBACK, 3)]
    assert costs.fallbacks == status.fallbacks
    results = list(orch.results(run.run_id))
    assert [r.model for r in results] == [FALLBACK] * 3
    assert all(r.fallback is not None and r.fallback["from"] == "gpt-legacy" for r in results)
    # Billed once per line, by the fallback model.
    assert sorted(e.model for e in sim[1].ledger) == [FALLBACK] * 3
    await orch.aclose()


@pytest.mark.parametrize("route", ["realtime", "batch"])
async def test_a_refused_fallback_fails_the_line_naming_both_errors(
    tmp_path: Path, route: str
) -> None:
    sim = make_sim()
    orch = orchestrator(tmp_path, sim)
    source = write(tmp_path / "in.jsonl", [chat_line(0), chat_line(1)])
    run = await orch.submit(source, route=route, fallback="gpt-gone")
    status = await orch.wait(run.run_id, max_rounds=200)
    assert status.done and status.failed == 2 and status.succeeded == 0
    for line in fetched(orch, run.run_id, tmp_path):
        message = line["error"]["message"]
        assert line["error"]["code"] == "model_not_found"
        assert "gpt-gone" in message and "gpt-legacy" in message
        assert line["batchyard"]["fallback"]["to"] == "gpt-gone"
    # Never a third model, never a loop: each line was tried once per model.
    rows = list(orch.store.iter_requests(run.run_id))
    assert all(r.model == "gpt-gone" for r in rows)
    await orch.aclose()


# ---- batch ------------------------------------------------------------------------------------
async def test_lines_the_batch_api_refuses_are_sent_again_with_the_fallback(
    tmp_path: Path,
) -> None:
    sim = make_sim()
    orch = orchestrator(tmp_path, sim)
    source = write(tmp_path / "in.jsonl", [chat_line(i) for i in range(4)])
    run = await orch.submit(source, route="batch", fallback=FALLBACK)
    status = await orch.wait(run.run_id, max_rounds=200)
    assert status.done and status.succeeded == 4, status.last_errors
    batches = orch.store.list_batches(run.run_id)
    assert [b.model for b in batches] == ["gpt-legacy", FALLBACK]
    assert batches[0].status.value in ("failed", "applied")
    for line in fetched(orch, run.run_id, tmp_path):
        facts = line["batchyard"]
        assert facts["model"] == FALLBACK and facts["route"] == "batch"
        assert facts["fallback"]["reason"] == "model_not_found"
        assert "not supported by the Batch API" in facts["fallback"]["error"]
        assert facts["cost"] == pytest.approx(price(orch, FALLBACK, Route.BATCH, line))
    assert [(e.path, e.model) for e in sim[1].ledger] == [("batch", FALLBACK)] * 4
    await orch.aclose()


async def test_a_model_removed_while_its_batch_runs_is_answered_by_the_fallback(
    tmp_path: Path,
) -> None:
    sim = make_sim()
    orch = orchestrator(tmp_path, sim)
    source = write(tmp_path / "in.jsonl", [chat_line(i, "gpt-4.1-nano") for i in range(3)])
    run = await orch.submit(source, route="batch", fallback=FALLBACK)
    for _ in range(50):  # until the provider has validated the shard and runs its lines
        await orch.step(run.run_id, realtime=False)
        if orch.store.list_batches(run.run_id)[0].status.value == "in_progress":
            break
        sim[1].clock.advance(10)
    assert orch.store.list_batches(run.run_id)[0].status.value == "in_progress"
    del sim[1].config.models["gpt-4.1-nano"]  # the API stops serving it mid-batch
    status = await orch.wait(run.run_id, max_rounds=200)
    assert status.done and status.succeeded == 3, status.last_errors
    assert [b.model for b in orch.store.list_batches(run.run_id)] == ["gpt-4.1-nano", FALLBACK]
    for line in fetched(orch, run.run_id, tmp_path):
        facts = line["batchyard"]
        assert facts["model"] == FALLBACK and facts["fallback"]["from"] == "gpt-4.1-nano"
        assert "gpt-4.1-nano" in facts["fallback"]["error"]
    await orch.aclose()


async def test_the_fallback_survives_a_restart(tmp_path: Path) -> None:
    sim = make_sim()
    first = orchestrator(tmp_path, sim)
    source = write(tmp_path / "in.jsonl", [chat_line(i) for i in range(2)])
    run = await first.submit(source, route="batch", fallback=FALLBACK)
    for _ in range(200):  # until the refused shard is applied and its lines moved
        await first.step(run.run_id, realtime=False)
        if all(r.fallback for r in first.store.iter_requests(run.run_id)):
            break
        sim[1].clock.advance(30)
    await first.aclose()  # the process ends; a new one carries on from the store
    second = orchestrator(tmp_path, sim)
    rows = list(second.store.iter_requests(run.run_id, with_body=True))
    assert all(r.model == FALLBACK and r.body and r.body["model"] == FALLBACK for r in rows)
    await second.resume(run.run_id)
    status = await second.wait(run.run_id, max_rounds=200)
    assert status.done and status.succeeded == 2 and status.fallback == 2
    assert all(x["batchyard"]["model"] == FALLBACK for x in fetched(second, run.run_id, tmp_path))
    await second.aclose()


# ---- breaker --------------------------------------------------------------------------------
async def test_a_breaker_open_past_the_escalation_point_moves_lines_to_the_fallback(
    tmp_path: Path,
) -> None:
    sim = make_sim()
    orch = orchestrator(
        tmp_path, sim, failing="gpt-4o", max_attempts=20, fallback={"gpt-4o": FALLBACK}
    )
    source = write(tmp_path / "in.jsonl", [chat_line(i, "gpt-4o") for i in range(6)])
    # A deadline so close that the escalation point has passed: real time now.
    run = await orch.submit(source, route="realtime", deadline="1m")
    status = await orch.wait(run.run_id, max_rounds=100)
    assert status.done and status.succeeded == 6, status.last_errors
    assert orch.realtime.breakers["gpt-4o"].opened_count >= 1
    (moved,) = status.fallbacks
    assert (moved["from"], moved["to"], moved["reason"]) == ("gpt-4o", FALLBACK, "circuit_open")
    for line in fetched(orch, run.run_id, tmp_path):
        assert line["batchyard"]["model"] == FALLBACK
        assert "breaker" in line["batchyard"]["fallback"]["error"]
    await orch.aclose()


def test_the_breaker_moves_only_models_open_past_their_point_with_a_fallback() -> None:
    table = {"a": "x", "b": "x"}
    points = {"a": 100.0, "b": 100.0, "c": 100.0}
    assert breaker_due(points, ["a", "b", "c"], table, 100.0) == {"a": "x", "b": "x"}
    assert breaker_due(points, ["a"], table, 99.0) == {}  # before the point: wait
    assert breaker_due(points, [], table, 500.0) == {}  # breakers closed
    assert breaker_due({}, ["a"], table, 500.0) == {}  # no deadline, no escalation point
    assert breaker_due(points, ["a"], {}, 500.0) == {}  # no fallback configured


# ---- configuration ------------------------------------------------------------------------
async def test_the_fallback_table_of_batchyard_toml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "batchyard.toml").write_text(
        '[models."gpt-legacy"]\ninput = 5.0\noutput = 15.0\nbatch_input = 2.5\n'
        'batch_output = 7.5\n\n[fallback]\n"gpt-legacy" = "gpt-4o-mini"\n'
    )
    sim = make_sim()
    orch = orchestrator(tmp_path, sim, models=None)
    assert orch.settings.fallback == {"gpt-legacy": FALLBACK}
    lines = [chat_line(0), chat_line(1, model="gpt-4o")]
    run = await orch.submit(write(tmp_path / "in.jsonl", lines), route="realtime")
    assert orch.store.get_run(run.run_id).options["fallback"] == {"gpt-legacy": FALLBACK}
    status = await orch.wait(run.run_id)
    assert status.succeeded == 2 and status.fallback == 1
    by_id = {x["custom_id"]: x["batchyard"] for x in fetched(orch, run.run_id, tmp_path)}
    assert by_id["q-0"]["model"] == FALLBACK and by_id["q-0"]["fallback"] is not None
    assert by_id["q-1"]["model"] == "gpt-4o" and by_id["q-1"]["fallback"] is None
    await orch.aclose()


def test_fallbacks_resolve_per_model_and_are_checked() -> None:
    models = load_settings(models=TABLE).model_table()
    chat = "/v1/chat/completions"
    groups = [(chat, "gpt-legacy"), (chat, "gpt-4o")]
    configured = {"gpt-legacy": "gpt-4o", "*": FALLBACK}
    assert resolve_fallbacks(None, configured, models, groups) == {
        "gpt-legacy": "gpt-4o",
        "gpt-4o": FALLBACK,
    }
    # The option replaces the table whole; a model is never its own fallback.
    assert resolve_fallbacks("gpt-4o", configured, models, groups) == {"gpt-legacy": "gpt-4o"}
    assert resolve_fallbacks(None, {}, models, groups) == {}
    with pytest.raises(OptionError, match="--fallback gpt-nope: 'gpt-nope' is not in"):
        resolve_fallbacks("gpt-nope", {}, models, groups)
    with pytest.raises(OptionError, match="does not serve /v1/chat/completions"):
        resolve_fallbacks("text-embedding-3-small", {}, models, groups)
    with pytest.raises(ConfigError, match=r"\[fallback\] table"):
        resolve_fallbacks(None, {"gpt-4o": "gpt-nope"}, models, groups)


async def test_a_bad_fallback_is_refused_before_anything_is_recorded(tmp_path: Path) -> None:
    sim = make_sim()
    orch = orchestrator(tmp_path, sim)
    source = write(tmp_path / "in.jsonl", [chat_line(0)])
    with pytest.raises(OptionError, match="--fallback"):
        await orch.submit(source, fallback="text-embedding-3-small")
    assert orch.runs() == [] and sim[1].ledger == []
    await orch.aclose()


def test_rows_keep_the_fallback_record(tmp_path: Path) -> None:
    """The store's view: a moved line is routed again under its fallback model."""
    from batchyard.store import FallbackMove, NewRequest, Store

    store = Store.open(tmp_path / "s.db", now=lambda: 1000.0)
    run_id = store.create_run(
        source_path="in.jsonl", source_sha256="x", endpoint="/v1/chat/completions", models=["a"]
    )
    body = {"model": "a", "messages": []}
    store.add_requests(
        run_id,
        [
            NewRequest(
                custom_id="q",
                line=1,
                endpoint="/v1/chat/completions",
                model="a",
                body=body,
                input_tokens=1,
                output_tokens=1,
                cost_standard=1.0,
                cost_flex=None,
                cost_batch=0.5,
                fingerprint="k",
            )
        ],
    )
    store.set_routes(run_id, [("q", Route.STANDARD, "r")])
    move = FallbackMove(
        "q",
        "b",
        {**body, "model": "b"},
        Route.STANDARD,
        "fallback",
        {"from": "a", "to": "b", "reason": "model_not_found", "error": "gone"},
        0.5,
        None,
        0.25,
    )
    assert store.fall_back(run_id, [move]) == ["q"]
    row = store.get_request(run_id, "q")
    assert row.model == "b" and row.body == {**body, "model": "b"}
    assert row.status is RequestStatus.ROUTED and row.est_cost_standard == 0.5
    assert row.fingerprint is None  # another model's answer is never reused
    assert row.fallback == {**move.record, "at": 1000.0}
    store.transition_requests(run_id, ["q"], RequestStatus.CANCELLED)
    assert store.fall_back(run_id, [move]) == []  # a finished line stays as it is
    store.close()
