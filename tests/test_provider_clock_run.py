"""A whole run against a simulator whose clock runs 600 times ours and two days ahead of it
(`batchyard sim serve --time-scale 600` that has been up a while): every time `status` and
the live view show is on our clock, so a run that takes seconds shows ETAs of seconds.

Deterministic: the simulator's clock is frozen and moved only when the orchestrator sleeps
(600 simulated seconds per second of ours), our clock is a `ManualClock`.
"""

from __future__ import annotations

from pathlib import Path

import httpx2
import openai

from batchyard.config import load_settings
from batchyard.orchestrator import Orchestrator
from batchyard.orchestrator._calls.timing import ManualClock
from batchyard.orchestrator._reporting.reports import RunStatus
from batchyard.samples import write_sample
from batchyard.simulator import create_app, load_config
from batchyard.simulator.state import SimState

OURS = 1_767_225_600.0
AHEAD = 2 * 86_400 + 11 * 3600.0  # the simulator's clock, ahead of ours
RATE = 600.0


class FastSim:
    def __init__(self, tmp_path: Path) -> None:
        config = load_config(
            None,
            clock={"time_scale": 0.0, "start": OURS + AHEAD},
            rate_limits=False,
            batch={"turnaround_seconds": 1800.0},  # half an hour simulated: 3 s of ours
        )
        self.app = create_app(config)
        self.state: SimState = self.app.state.sim
        self.ours = ManualClock(OURS)
        self.tmp = tmp_path

    async def sleep(self, seconds: float) -> None:
        self.ours.advance(seconds)
        self.state.clock.advance(max(0.0, seconds) * RATE)

    def orchestrator(self) -> Orchestrator:
        client = openai.AsyncOpenAI(
            api_key="sk-test",
            base_url="http://sim/v1",
            max_retries=0,
            http_client=httpx2.AsyncClient(transport=httpx2.ASGITransport(app=self.app)),
        )
        settings = load_settings(
            api_key="sk-test",
            base_url="http://sim/v1",
            db=self.tmp / "by.db",
            small_run_requests=0,
            small_run_usd=0,
            poll_min_seconds=1.0,
            poll_max_seconds=5.0,
        )
        return Orchestrator(
            settings, client=client, clock=self.ours, sleep=self.sleep, workdir=self.tmp / "w"
        )


async def test_status_on_a_fast_provider_clock_shows_true_etas(tmp_path: Path) -> None:
    sim = FastSim(tmp_path)
    orch = sim.orchestrator()
    source = write_sample(tmp_path / "in.jsonl", 30, models=("gpt-4o-mini",))
    result = await orch.submit(source, deadline="2h", route="batch")
    rounds: list[tuple[float, RunStatus]] = []
    status = await orch.wait(
        result.run_id, on_round=lambda s: rounds.append((sim.ours(), s)), max_rounds=200
    )
    assert status.done and status.succeeded == 30
    took = sim.ours() - OURS
    assert took < 60, f"the run took {took:.0f} s of our clock"
    assert rounds
    live, checked = ("validating", "in_progress", "finalizing"), 0
    for now, s in rounds:
        assert s.deadline_ok is not False, (now - OURS, s.last_errors)
        for b in s.batches:
            # Created on our clock (not two days ahead), and expected within a minute.
            assert b.created_at is not None and OURS - 1 <= b.created_at <= now + 1
            # From the first poll on (two reads of the provider's clock a second apart
            # give its rate), the expected finish is seconds away, not the hour the
            # provider's turnaround would be on our clock.
            if now > OURS and b.expected_finish is not None and b.status in live:
                assert b.expected_finish - now < 60, (now - OURS, b)
                checked += 1
    assert checked >= 1
    assert abs(orch.clock_map().rate / RATE - 1) < 0.02
    # The next plan on this store: the shard's setup allowance (a minute of ours) and the
    # learned turnaround (simulated half hours: seconds of ours), not an hour or more.
    plan = orch.plan(source, deadline="2h", route="batch", reuse=False)
    assert plan.expected_finish is not None and plan.expected_finish - sim.ours() < 90
    await orch.aclose()

    # `batchyard status` in another process reads the same map from the store.
    other = sim.orchestrator()
    again = other.status(result.run_id)
    assert [b.created_at for b in again.batches] == [b.created_at for b in status.batches]
    await other.aclose()
