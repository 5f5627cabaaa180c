"""Batch lines that fail are sent again without tiny batches: a whole run against the
in-process simulator (its clock moved only by the orchestrator's sleeps) whose batches fail
a share of their lines. Assertions read the simulator's own batches and the store."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2
import openai

from batchyard.config import load_settings
from batchyard.models import RequestStatus, Route
from batchyard.orchestrator import Orchestrator, RunStatus
from batchyard.samples import write_sample
from batchyard.shards import ShardLimits
from batchyard.simulator import create_app, load_config
from batchyard.simulator.state import SimState

H = 3600.0
MINI = "gpt-4o-mini"


class Sim:
    def __init__(self, tmp_path: Path, **faults: Any) -> None:
        config = load_config(
            None,
            clock={"time_scale": 0.0, "start": 1_767_225_600.0},
            rate_limits=False,
            faults=faults,
            batch={"turnaround_seconds": 1 * H},
        )
        self.app = create_app(config)
        self.state: SimState = self.app.state.sim
        self.tmp = tmp_path

    async def sleep(self, seconds: float) -> None:
        self.state.clock.advance(max(0.0, seconds))

    def orchestrator(self, **settings: Any) -> Orchestrator:
        client = openai.AsyncOpenAI(
            api_key="sk-test",
            base_url="http://sim/v1",
            max_retries=0,
            http_client=httpx2.AsyncClient(transport=httpx2.ASGITransport(app=self.app)),
        )
        loaded = load_settings(
            api_key="sk-test",
            db=self.tmp / "by.db",
            small_run_requests=0,
            small_run_usd=0,
            max_attempts=8,
            **settings,
        )
        orch = Orchestrator(
            loaded,
            client=client,
            clock=self.state.clock.now,
            sleep=self.sleep,
            workdir=self.tmp / "w",
        )
        orch.batch.ctx.limits = ShardLimits(max_requests=150, model=MINI)  # two shards
        return orch


Watch = Callable[[str], Callable[[RunStatus], None]]  # run id -> called after each round


async def _run(sim: Sim, orch: Orchestrator, tmp_path: Path, watch: Watch | None = None) -> str:
    source = write_sample(tmp_path / "in.jsonl", 300, models=(MINI,))
    result = await orch.submit(source, deadline="24h")
    _, second = sorted(sim.state.batches.values(), key=lambda b: b.created)
    assert [b.request_count for b in orch.store.list_batches(result.run_id)] == [150, 150]
    second.overrides["turnaround_seconds"] = 4 * H  # back three hours after the first
    on_round = watch(result.run_id) if watch is not None else None
    status = await orch.wait(result.run_id, max_rounds=500, on_round=on_round)
    assert status.done and status.succeeded == 300, status.counts
    billed = Counter(e.custom_id for e in sim.state.ledger)
    assert set(billed.values()) == {1} and len(billed) == 300
    return result.run_id


async def test_lines_sent_again_wait_for_the_other_batch_and_go_out_together(
    tmp_path: Path,
) -> None:
    sim = Sim(tmp_path, batch_line_error_rate=0.1)
    orch = sim.orchestrator()
    run_id = await _run(sim, orch, tmp_path)
    batches = sorted(sim.state.batches.values(), key=lambda b: b.created)
    second_done = batches[1].times["completed_at"]
    again = batches[2:]
    assert again, "the simulator failed no line: the test proves nothing"
    # The first batch's failed lines waited: nothing went out again while the second ran,
    # and its failed lines and the first's went out in one batch.
    assert all(b.created >= second_done for b in again), [b.created for b in again]
    retried = {cid for cid, _ in again[0].lines}
    assert retried & {cid for cid, _ in batches[0].lines}
    assert retried & {cid for cid, _ in batches[1].lines}
    reasons = [e.message for e in orch.store.list_events(run_id, kinds=["batch.resubmit"])]
    assert any("wait for a worthwhile shard" in m for m in reasons), reasons
    await orch.aclose()


async def test_with_a_minimum_of_one_the_first_leftovers_go_at_once(tmp_path: Path) -> None:
    sim = Sim(tmp_path, batch_line_error_rate=0.1)
    orch = sim.orchestrator(resubmit_min_lines=1)
    await _run(sim, orch, tmp_path)
    batches = sorted(sim.state.batches.values(), key=lambda b: b.created)
    # Without the wait, the first batch's failed lines go out while the second still runs.
    assert batches[2].created < batches[1].times["completed_at"]
    await orch.aclose()


async def test_lines_waiting_to_be_sent_again_say_until_when_and_why(tmp_path: Path) -> None:
    sim = Sim(tmp_path, batch_line_error_rate=0.1)
    orch = sim.orchestrator()
    store = orch.store
    held: dict[str, tuple[float | None, str | None, list[str]]] = {}
    resent: dict[str, tuple[float | None, str | None]] = {}

    def watch(run_id: str) -> Callable[[RunStatus], None]:
        def on_round(status: RunStatus) -> None:
            for r in store.iter_requests(run_id, statuses=[RequestStatus.ROUTED]):
                if r.route is Route.BATCH and r.attempts > 0 and r.custom_id not in held:
                    answer = store.next_try(run_id, r.custom_id)
                    assert answer is not None and answer.at == r.not_before
                    assert answer.reason == r.not_before_reason
                    second_poll = store.next_poll(b.id for b in store.list_active_batches(run_id))
                    assert r.not_before == second_poll  # looked at again when it may return
                    shown = [reason for reason, _, _ in status.waiting]
                    held[r.custom_id] = (r.not_before, r.not_before_reason, shown)
            for cid in held.keys() - resent.keys():
                row = store.get_request(run_id, cid, with_body=False)
                if row.status is RequestStatus.SUBMITTED:
                    resent[cid] = (row.not_before, row.not_before_reason)

        return on_round

    await _run(sim, orch, tmp_path, watch)
    assert held, "no line waited to be sent again: the test proves nothing"
    for until, why, shown in held.values():
        assert until is not None and why is not None
        assert "wait for a worthwhile shard" in why
        assert why in shown, shown  # `status` shows it
    # Sent again: the wait is gone from every one of them.
    assert resent.keys() == held.keys()
    assert set(resent.values()) == {(None, None)}
    await orch.aclose()
