"""A batch-path test bench: store + in-process simulator + BatchRunner on one simulated clock.

The simulator's clock is frozen (time_scale 0); the runner's `sleep` advances it, so a 24 h
batch window passes instantly. The store uses the same clock, so leases and the tag
search's look-back agree with the simulator's timestamps.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import openai
from simfixtures import sim_client

from batchyard.catalog import Catalog
from batchyard.config import Settings, model_table
from batchyard.models import RequestStatus, Route
from batchyard.orchestrator._calls.retry import RetryPolicy
from batchyard.orchestrator.batch.remote import CrashHook
from batchyard.orchestrator.batch.runner import BatchRunner
from batchyard.shards import ShardLimits
from batchyard.simulator import SimConfig, SimState
from batchyard.simulator.config import BatchSettings, ClockSettings, FaultSettings
from batchyard.store import NewRequest, Store
from batchyard.tokens import prompt_tokens

START = 1_750_000_000.0
CHAT = "/v1/chat/completions"
MODEL = "gpt-4o-mini"


def sim_config(faults: dict[str, Any] | None = None, **batch: Any) -> SimConfig:
    settings = {
        "validation_seconds": 30.0,
        "turnaround_seconds": 600.0,
        "finalizing_seconds": 60.0,
        "cancelling_seconds": 30.0,
        **batch,
    }
    return SimConfig(
        batch=BatchSettings(**settings),
        clock=ClockSettings(start=START, time_scale=0.0),
        faults=FaultSettings(**(faults or {})),
        rate_limits=False,
    )


def chat_body(i: int, words: int = 3) -> dict[str, Any]:
    text = " ".join(f"word{i}" for _ in range(words))
    return {"model": MODEL, "messages": [{"role": "user", "content": f"Question {i}: {text}"}]}


@dataclass
class Bench:
    store: Store
    client: openai.AsyncOpenAI
    state: SimState
    workdir: Path
    run_id: str = ""
    models: Catalog = field(default_factory=lambda: Catalog({}))
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    # Lines sent again go back to batch however few (the bench has no real-time path).
    settings: Settings = field(
        default_factory=lambda: Settings(max_attempts=4, resubmit_min_lines=1)
    )

    def now(self) -> float:
        return self.state.now()

    async def sleep(self, seconds: float) -> None:
        self.state.clock.advance(max(0.0, seconds))

    def runner(
        self,
        *,
        owner: str | None = None,
        hook: CrashHook | None = None,
        limits: ShardLimits | None = None,
    ) -> BatchRunner:
        return BatchRunner(
            self.store,
            self.client,
            self.models,
            self.settings,
            clock=self.now,
            sleep=self.sleep,
            owner=owner,
            workdir=self.workdir,
            on_progress=lambda kind, data: self.events.append((kind, data)),
            policy=RetryPolicy(max_attempts=4, base_delay=0.01, max_delay=0.05),
            hook=hook,
            limits=limits,
        )

    def add_run(self, bodies: list[dict[str, Any]], prefix: str = "r") -> list[str]:
        self.run_id = self.store.create_run(
            source_path="in.jsonl", source_sha256="0" * 64, endpoint=CHAT, models=[MODEL]
        )
        info = self.models[MODEL]
        ids = [f"{prefix}{i}" for i in range(len(bodies))]
        new = []
        for i, (cid, body) in enumerate(zip(ids, bodies, strict=True)):
            tokens = prompt_tokens(CHAT, body)
            new.append(
                NewRequest(
                    custom_id=cid,
                    line=i + 1,
                    endpoint=CHAT,
                    model=MODEL,
                    body=body,
                    input_tokens=tokens,
                    output_tokens=16,
                    cost_standard=info.estimate(Route.STANDARD, tokens, 16),
                    cost_flex=None,
                    cost_batch=info.estimate(Route.BATCH, tokens, 16),
                )
            )
        self.store.add_requests(self.run_id, new)
        self.store.set_routes(self.run_id, [(cid, Route.BATCH, "test") for cid in ids])
        return ids

    def statuses(self) -> Counter[RequestStatus]:
        return Counter(r.status for r in self.store.iter_requests(self.run_id))

    def billed(self) -> Counter[str]:
        return Counter(e.custom_id for e in self.state.ledger if e.custom_id is not None)

    def provider_batches_per_shard(self) -> Counter[str]:
        return Counter(
            (rec.metadata or {}).get("batchyard_shard", "?")
            for rec in self.state.batches.values()
            if (rec.metadata or {}).get("batchyard_run") == self.run_id
        )


def make_bench(tmp_path: Path, config: SimConfig | None = None, **model_overrides: Any) -> Bench:
    client, state = sim_client(config or sim_config())
    store = Store.open(tmp_path / "jobs.db", now=state.now)
    overrides = {MODEL: model_overrides} if model_overrides else None
    return Bench(store, client, state, tmp_path / "work", models=model_table(overrides))
