"""The Orchestrator's own guarantees: nothing half-submitted, status and fetch shapes."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest

from batchyard.config import load_settings
from batchyard.errors import InputError, ValidationFailed
from batchyard.models import RunState
from batchyard.orchestrator import Orchestrator, RunInfo
from batchyard.samples import write_sample
from batchyard.simulator import create_app, load_config
from batchyard.simulator.state import SimState
from batchyard.store import Store


def _orchestrator(tmp_path: Path, app: Any, state: SimState) -> Orchestrator:
    client = openai.AsyncOpenAI(
        api_key="sk-test",
        base_url="http://sim/v1",
        max_retries=0,
        http_client=httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app)),
    )
    settings = load_settings(
        api_key="sk-test", db=tmp_path / "by.db", small_run_requests=0, small_run_usd=0
    )

    async def sleep(seconds: float) -> None:
        state.clock.advance(seconds)

    return Orchestrator(
        settings, client=client, clock=state.clock.now, sleep=sleep, workdir=tmp_path / "work"
    )


@pytest.fixture
def sim() -> tuple[Any, SimState]:
    app = create_app(load_config(None, clock={"time_scale": 0.0}, rate_limits=False))
    return app, app.state.sim


async def test_invalid_file_records_nothing(tmp_path: Path, sim: tuple[Any, SimState]) -> None:
    source = write_sample(tmp_path / "in.jsonl", 5)
    lines = source.read_text().splitlines()
    lines[2] = lines[2].replace('"POST"', '"GET"')
    source.write_text("\n".join(lines) + "\n")
    orch = _orchestrator(tmp_path, *sim)
    with pytest.raises(ValidationFailed, match=r"in\.jsonl:3 \(method\)"):
        await orch.submit(source, route="batch")
    assert orch.runs() == []
    assert sim[1].files == {} and sim[1].batches == {}
    await orch.aclose()


async def test_crash_while_recording_is_never_half_submitted(
    tmp_path: Path, sim: tuple[Any, SimState], monkeypatch: pytest.MonkeyPatch
) -> None:
    source = write_sample(tmp_path / "in.jsonl", 40)
    orch = _orchestrator(tmp_path, *sim)
    real_add = Store.add_requests

    def crash_after_some(self: Store, run_id: str, rows: Any, **kw: Any) -> int:
        kept = [row for _, row in zip(range(15), rows, strict=False)]
        real_add(self, run_id, kept, **kw)
        raise KeyboardInterrupt  # the process dies here

    monkeypatch.setattr(Store, "add_requests", crash_after_some)
    with pytest.raises(KeyboardInterrupt):
        await orch.submit(source, route="batch")
    monkeypatch.undo()
    (run,) = orch.runs()
    assert run.state is RunState.PENDING and run.request_count == 15

    again = _orchestrator(tmp_path, *sim)
    with pytest.raises(InputError, match=r"Submit .* again"):
        await again.resume(run.id)
    assert again.store.get_run(run.id).state is RunState.CANCELLED
    assert sim[1].files == {} and sim[1].batches == {}, "nothing may reach the API"
    await orch.aclose()
    await again.aclose()


async def test_fetch_writes_every_line_in_input_order(
    tmp_path: Path, sim: tuple[Any, SimState]
) -> None:
    source = write_sample(tmp_path / "in.jsonl", 12)
    orch = _orchestrator(tmp_path, *sim)
    result = await orch.submit(source, route="batch")
    status = await orch.wait(result.run_id)
    assert status.done and status.succeeded == 12
    (info,) = orch.runs()  # a report, not the store's row
    assert isinstance(info, RunInfo) and info.id == result.run_id and info.request_count == 12
    assert info.to_dict()["state"] == "completed" and info.to_dict()["models"] == list(info.models)
    report = orch.fetch(result.run_id, tmp_path / "out.jsonl", tmp_path / "err.jsonl")
    lines = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [x["custom_id"] for x in lines] == [f"req-{i:06d}" for i in range(12)]
    first = lines[0]
    assert first["error"] is None and first["response"]["status_code"] == 200
    assert first["response"]["body"]["object"] == "chat.completion"
    assert first["batchyard"]["route"] == "batch"
    assert first["batchyard"]["batch_id"].startswith("batch_")
    assert first["batchyard"]["line"] == 1 and first["batchyard"]["cost"] > 0
    assert report.failed == 0 and (tmp_path / "err.jsonl").read_text() == ""
    billed = sorted(e.custom_id or "" for e in sim[1].ledger)
    assert billed == sorted(x["custom_id"] for x in lines)
    costs = orch.costs(result.run_id)
    assert costs.saving == pytest.approx(costs.all_standard / 2, rel=0.01)
    await orch.aclose()


async def test_resume_takes_back_only_the_claims_of_processes_that_are_gone(
    tmp_path: Path, sim: tuple[Any, SimState]
) -> None:
    import os
    import socket

    from batchyard.models import Route

    source = write_sample(tmp_path / "in.jsonl", 6)
    orch = _orchestrator(tmp_path, *sim)
    run_id = (await orch.submit(source, route="realtime")).run_id
    host = socket.gethostname()
    alive = f"{host}:{os.getpid()}:watch"  # a `watch` still running (this very process)
    dead = f"{host}:999999:crashed"  # no such process
    store = orch.store
    live_claims = store.claim_realtime(run_id, owner=alive, limit=2, routes=(Route.STANDARD,))
    dead_claims = store.claim_realtime(run_id, owner=dead, limit=2, routes=(Route.STANDARD,))
    assert len(live_claims) == len(dead_claims) == 2

    resumer = _orchestrator(tmp_path, *sim)
    await resumer.resume(run_id)
    rows = {r.custom_id: r for r in resumer.store.iter_requests(run_id)}
    for claim in live_claims:  # the live watch keeps its work: no second purchase
        assert rows[claim.custom_id].status.value == "in_flight"
    for claim in dead_claims:  # the crashed process's work was taken back and done
        assert rows[claim.custom_id].status.value == "succeeded"
    billed = [e.custom_id for e in sim[1].ledger]
    assert not {c.custom_id for c in live_claims} & set(billed)
    assert len(billed) == len(set(billed)) == 4
    await orch.aclose()
    await resumer.aclose()


async def test_a_client_handed_in_never_retries_on_its_own(
    tmp_path: Path, sim: tuple[Any, SimState]
) -> None:
    app, state = sim
    client = openai.AsyncOpenAI(  # the SDK's default: 2 retries of its own
        api_key="sk-test",
        base_url="http://sim/v1",
        http_client=httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app)),
    )
    settings = load_settings(api_key="sk-test", db=tmp_path / "by.db", max_attempts=1)
    orch = Orchestrator(settings, client=client, clock=state.clock.now, workdir=tmp_path)
    source = write_sample(tmp_path / "in.jsonl", 1)
    run_id = (await orch.submit(source, route="realtime")).run_id
    state.faults.error_5xx_rate = 1.0
    await orch.step(run_id)
    calls = sum(n for key, n in state.stats.items() if key.startswith("request|/v1/chat"))
    assert calls == 1, "only our retry layer may retry"
    await orch.aclose()


async def test_uncapped_requests_are_estimated_from_finished_ones(
    tmp_path: Path, sim: tuple[Any, SimState]
) -> None:
    orch = _orchestrator(tmp_path, *sim)
    uncapped = tmp_path / "uncapped.jsonl"
    lines = [json.loads(x) for x in write_sample(tmp_path / "s.jsonl", 25).read_text().splitlines()]
    for line in lines:
        line["body"].pop("max_completion_tokens")
        line["body"]["model"] = "gpt-4o-mini"
    uncapped.write_text("".join(json.dumps(x) + "\n" for x in lines))
    before = orch.plan(uncapped, route="batch").rows[0].output_tokens
    assert before == 25 * 256  # nothing learned yet: the default estimate
    run_id = (await orch.submit(uncapped, route="batch")).run_id
    await orch.wait(run_id)
    actual = [r.output_tokens or 0 for r in orch.store.iter_requests(run_id)]
    # The same file again would be answered from the store: plan it as if sent anew.
    after = orch.plan(uncapped, route="batch", reuse=False).rows[0].output_tokens
    assert after == 25 * round(sum(actual) / len(actual))
    assert after != before
    await orch.aclose()


async def test_fetch_carries_the_provider_request_ids(
    tmp_path: Path, sim: tuple[Any, SimState]
) -> None:
    source = write_sample(tmp_path / "in.jsonl", 6)
    orch = _orchestrator(tmp_path, *sim)
    batch_run = (await orch.submit(source, route="batch")).run_id
    realtime_run = (await orch.submit(source, route="realtime")).run_id
    for run_id in (batch_run, realtime_run):
        await orch.wait(run_id)
        orch.fetch(run_id, tmp_path / f"{run_id}.jsonl")
        lines = [json.loads(x) for x in (tmp_path / f"{run_id}.jsonl").read_text().splitlines()]
        ids = [line["response"]["request_id"] for line in lines]
        assert all(isinstance(i, str) and i.startswith("req_") for i in ids), ids
        assert len(set(ids)) == len(ids)
    await orch.aclose()


async def test_flex_that_stays_unavailable_falls_back_as_the_run_says(
    tmp_path: Path, sim: tuple[Any, SimState]
) -> None:
    from batchyard.samples import sample_lines

    source = tmp_path / "flex.jsonl"
    lines = sample_lines(8, models=("gpt-5-mini",))
    source.write_text("".join(json.dumps(x) + "\n" for x in lines))
    app, state = sim
    state.faults.flex_unavailable_rate = 1.0
    orch = _orchestrator(tmp_path, app, state)
    auto = (await orch.submit(source)).run_id  # the router picks flex for gpt-5-mini
    await orch.step(auto)
    assert {e.path for e in state.ledger} <= {"batch"}  # never bought at standard price
    routes = {r.route.value for r in orch.store.iter_requests(auto) if r.route}
    assert routes == {"batch"}
    forced = (await orch.submit(source, route="flex")).run_id  # the user wants answers now
    await orch.wait(forced)
    paths = {e.path for e in state.ledger if e.custom_id and e.batch_id is None}
    assert paths == {"standard"}
    assert orch.status(forced).succeeded == 8
    await orch.aclose()


async def test_a_wrong_base_url_stops_real_time_instead_of_failing_every_request(
    tmp_path: Path, sim: tuple[Any, SimState]
) -> None:
    app, state = sim
    source = write_sample(tmp_path / "in.jsonl", 5)
    orch = _orchestrator(tmp_path, app, state)
    run_id = (await orch.submit(source, route="realtime")).run_id
    wrong = Orchestrator(
        orch.settings,
        client=openai.AsyncOpenAI(
            api_key="sk-test",
            base_url="http://sim/wrong",
            http_client=httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app)),
        ),
        clock=state.clock.now,
        workdir=tmp_path / "w2",
    )
    status = await wrong.step(run_id)
    assert status.failed == 0 and not status.done
    assert status.stalled and "OPENAI_BASE_URL" in status.stalled
    assert "run.stalled" in status.last_errors
    await wrong.aclose()
    fixed = await orch.resume(run_id)  # the right URL again: everything is sent
    assert fixed.done and fixed.succeeded == 5
    await orch.aclose()


async def test_submit_to_a_wrong_base_url_says_so_and_records_nothing(
    tmp_path: Path, sim: tuple[Any, SimState]
) -> None:
    from batchyard.errors import ConfigError

    app, state = sim
    orch = Orchestrator(
        load_settings(api_key="sk-test", db=tmp_path / "by.db"),
        client=openai.AsyncOpenAI(
            api_key="sk-test",
            base_url="http://sim/wrong",
            http_client=httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app)),
        ),
        clock=state.clock.now,
    )
    with pytest.raises(ConfigError, match=r"OPENAI_BASE_URL.*/v1\. Nothing was recorded"):
        await orch.submit(write_sample(tmp_path / "in.jsonl", 3))
    assert orch.runs() == []
    await orch.aclose()


async def test_pending_real_time_work_expects_to_finish_when_the_plan_said(
    tmp_path: Path, sim: tuple[Any, SimState]
) -> None:
    source = write_sample(tmp_path / "in.jsonl", 8)
    orch = _orchestrator(tmp_path, *sim)
    result = await orch.submit(source, route="realtime")
    planned = result.plan.expected_finish
    assert planned is not None and planned > orch.clock()
    assert orch.status(result.run_id).expected_finish == pytest.approx(planned)
    await orch.aclose()


async def test_drive_realtime_finishes_the_realtime_share_and_leaves_batches_running(
    tmp_path: Path, sim: tuple[Any, SimState]
) -> None:
    orch = _orchestrator(tmp_path, *sim)
    realtime = await orch.submit(write_sample(tmp_path / "rt.jsonl", 6), route="realtime")
    rounds: list[int] = []
    status = await orch.drive_realtime(
        realtime.run_id, on_round=lambda s: rounds.append(s.finished)
    )
    assert status.done and status.succeeded == 6 and status.realtime_open == 0
    assert rounds[0] == 0 and rounds[-1] == 6

    # the same six lines: sent again (reuse would answer them from the first run)
    batch = await orch.submit(write_sample(tmp_path / "b.jsonl", 6), route="batch", reuse=False)
    status = await orch.drive_realtime(batch.run_id)
    assert not status.done and status.realtime_open == 0
    assert status.batches and status.succeeded == 0, "batches are left to `wait`"
    assert (await orch.wait(batch.run_id)).succeeded == 6
    await orch.aclose()


async def test_a_run_leaves_no_temporary_folder_behind(
    tmp_path: Path, sim: tuple[Any, SimState], monkeypatch: pytest.MonkeyPatch
) -> None:
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    app, state = sim
    made = _orchestrator(tmp_path, app, state)
    settings, client = made.settings, made.client

    async def sleep(seconds: float) -> None:
        state.clock.advance(seconds)

    source = write_sample(tmp_path / "in.jsonl", 6)
    async with Orchestrator(settings, client=client, clock=state.clock.now, sleep=sleep) as orch:
        run_id = (await orch.submit(source, route="batch")).run_id
        workdir = orch.batch.ctx.workdir
        assert workdir.parent == temp and workdir.name.startswith("batchyard-")
        assert (await orch.wait(run_id)).done
    assert list(temp.glob("batchyard-*")) == []
    await made.aclose()
