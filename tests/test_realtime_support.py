"""A real-time test bench (no tests here): store + in-process simulator + RealtimeRunner.

Time is virtual: the simulator's clock is frozen (time_scale 0) and one `SharedClock`
drives the store, the runner's admission and the simulator; the runner's `sleep` advances
all of them, so rate-limit windows, retry-after waits and breaker timeouts pass instantly
and the simulator's buckets refill exactly as much as our clock says.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import openai

from batchyard.config import ModelInfo, Settings, model_table
from batchyard.models import Endpoint, Route
from batchyard.orchestrator._calls.client import make_client
from batchyard.orchestrator.realtime.runner import RealtimeRunner
from batchyard.orchestrator.realtime.types import RealtimeOptions
from batchyard.simulator import SimConfig, SimState, create_app
from batchyard.simulator.config import (
    ClockSettings,
    FaultSettings,
    LatencySettings,
    default_models,
)
from batchyard.store import NewRequest, Store
from batchyard.tokens import count_request

START = 1_750_000_000.0
CHAT = Endpoint.CHAT.value
MODEL = "gpt-4o-mini"
FLEX_MODEL = "gpt-5-mini"


class SharedClock:
    """One clock for the store, the runner and the simulator: the simulator's own.

    The simulator runs at time_scale 1 (its headers convert durations by that scale, so it
    cannot be 0); the tests' few real milliseconds are noise next to the seconds `sleep`
    jumps.
    """

    def __init__(self, state: SimState) -> None:
        self.state = state
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.state.now()

    def advance(self, seconds: float) -> None:
        self.state.clock.advance(max(0.0, seconds))

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.advance(seconds)
        await asyncio.sleep(0)


def sim_config(
    *, rpm: int = 100_000, tpm: int = 100_000_000, rate_limits: bool = False, **faults: Any
) -> SimConfig:
    models = default_models()
    for name in (MODEL, FLEX_MODEL):
        models[name] = models[name].model_copy(update={"rpm": rpm, "tpm": tpm})
    return SimConfig(
        models=models,
        clock=ClockSettings(start=START, time_scale=1.0),
        faults=FaultSettings(**faults),
        latency=LatencySettings(),
        rate_limits=rate_limits,
    )


def chat_body(i: int, model: str = MODEL, words: int = 4, **extra: Any) -> dict[str, Any]:
    text = " ".join(f"w{i}" for _ in range(words))
    return {"model": model, "messages": [{"role": "user", "content": f"Q{i}: {text}"}], **extra}


def models_for(rpm: int, tpm: int) -> dict[str, ModelInfo]:
    table = model_table()
    return {
        name: table[name].model_copy(update={"rpm": rpm, "tpm": tpm})
        for name in (MODEL, FLEX_MODEL)
    }


@dataclass
class RealtimeBench:
    store: Store
    state: SimState
    client: openai.AsyncOpenAI
    clock: SharedClock
    settings: Settings
    models: dict[str, ModelInfo]
    progress: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def runner(self, *, owner: str = "test-owner", **options: Any) -> RealtimeRunner:
        return RealtimeRunner(
            self.store,
            self.client,
            self.models,
            self.settings,
            clock=self.clock,
            sleep=self.clock.sleep,
            owner=owner,
            on_progress=lambda kind, data: self.progress.append((kind, data)),
            options=RealtimeOptions(**options),
        )

    def add_run(
        self, bodies: list[dict[str, Any]], route: Route = Route.STANDARD, endpoint: str = CHAT
    ) -> str:
        models = sorted({str(b["model"]) for b in bodies})
        run_id = self.store.create_run(
            source_path="in.jsonl", source_sha256="0" * 64, endpoint=endpoint, models=models
        )
        new = []
        for i, body in enumerate(bodies):
            count = count_request(endpoint, body)
            new.append(
                NewRequest(
                    custom_id=f"r{i}",
                    line=i + 1,
                    endpoint=endpoint,
                    model=str(body["model"]),
                    body=body,
                    input_tokens=count.prompt,
                    output_tokens=count.output or 0,
                    cost_standard=0.0,
                    cost_flex=0.0,
                    cost_batch=0.0,
                )
            )
        self.store.add_requests(run_id, new)
        self.store.set_routes(run_id, [(f"r{i}", route, "test") for i in range(len(bodies))])
        return run_id

    def billed(self) -> Counter[str]:
        """How many times each custom_id was billed by the simulator."""
        return Counter(e.custom_id for e in self.state.ledger if e.custom_id is not None)

    def statuses(self, run_id: str) -> Counter[str]:
        return Counter(r.status.value for r in self.store.iter_requests(run_id))

    def http_status_counts(self) -> Counter[int]:
        out: Counter[int] = Counter()
        for key, n in self.state.stats.items():
            parts = key.split("|")
            if parts[0] == "request" and len(parts) == 3 and parts[2].isdigit():
                out[int(parts[2])] += n
        return out


def make_bench(
    tmp_path: Path,
    config: SimConfig,
    *,
    seeded: tuple[int, int] = (100_000, 100_000_000),
    timeout: float | None = None,
    **settings: Any,
) -> RealtimeBench:
    app = create_app(config)
    state: SimState = app.state.sim
    clock = SharedClock(state)
    store = Store.open(tmp_path / "rt.db", now=clock)
    values: dict[str, Any] = {"api_key": "sk-test", "base_url": "http://sim.test/v1"}
    values.update(settings)
    config_settings = Settings(**values)
    client = make_client(
        config_settings,
        http_client=httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app)),
        timeout=timeout,
    )
    return RealtimeBench(store, state, client, clock, config_settings, models_for(*seeded))
