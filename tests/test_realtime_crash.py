"""The real-time path on a real loopback port: timeouts, and a crash (SIGKILL) mid-run.

The simulator runs in this process (uvicorn in a thread) so its billing ledger outlives
the child process that is killed; the store is a file both processes open.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from pydantic import SecretStr
from simfixtures import running_server
from test_realtime_support import MODEL, chat_body, models_for

from batchyard.config import Settings
from batchyard.models import RequestStatus, Route
from batchyard.orchestrator._calls.client import make_client
from batchyard.orchestrator.realtime.runner import RealtimeRunner
from batchyard.orchestrator.realtime.types import RealtimeOptions
from batchyard.simulator import SimConfig
from batchyard.simulator.config import FaultSettings, LatencySettings
from batchyard.store import NewRequest, Store
from batchyard.tokens import count_request

CHILD = r"""
import asyncio, sys
from batchyard.config import Settings
from batchyard.orchestrator._calls.client import make_client
from batchyard.orchestrator.realtime.runner import RealtimeRunner
from batchyard.store import Store
sys.path.insert(0, sys.argv[4])
from test_realtime_support import models_for

db, run_id, base_url = sys.argv[1:4]
settings = Settings(api_key="sk-test", base_url=base_url, concurrency=16)

async def main() -> None:
    store = Store.open(db)
    client = make_client(settings)
    runner = RealtimeRunner(store, client, models_for(100_000, 10**9), settings, owner="child")
    await runner.run(run_id)

asyncio.run(main())
"""


def seed(store: Store, n: int) -> str:
    run_id = store.create_run(
        source_path="in.jsonl",
        source_sha256="0" * 64,
        endpoint="/v1/chat/completions",
        models=[MODEL],
    )
    requests = []
    for i in range(n):
        body = chat_body(i, max_tokens=30)
        count = count_request("/v1/chat/completions", body)
        requests.append(
            NewRequest(
                f"r{i}", i + 1, "/v1/chat/completions", MODEL, body, count.prompt, 30, 0.0, 0.0, 0.0
            )
        )
    store.add_requests(run_id, requests)
    store.set_routes(run_id, [(f"r{i}", Route.STANDARD, "test") for i in range(n)])
    return run_id


def config(**faults: float) -> SimConfig:
    return SimConfig(
        rate_limits=False,
        latency=LatencySettings(fixed_ms=40.0, jitter_ms=40.0),
        faults=FaultSettings.model_validate(faults),
    )


async def test_crash_mid_run_then_resume_bills_only_in_flight_twice(tmp_path: Path) -> None:
    n = 300
    db = tmp_path / "crash.db"
    store = Store.open(db)
    run_id = seed(store, n)
    with running_server(config()) as server:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        child = subprocess.Popen(
            [
                sys.executable,
                "-c",
                CHILD,
                str(db),
                run_id,
                server.base_url,
                str(Path(__file__).parent),
            ],
            env=env,
        )
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                done = Counter(r.status for r in store.iter_requests(run_id))
                if done[RequestStatus.SUCCEEDED] >= n // 3:
                    break
                assert child.poll() is None, "the child finished or died before the kill"
                time.sleep(0.02)
            os.kill(child.pid, signal.SIGKILL)
        finally:
            child.wait(timeout=10)
        at_kill = {r.custom_id: r.status for r in store.iter_requests(run_id)}
        succeeded_at_kill = {c for c, s in at_kill.items() if s is RequestStatus.SUCCEEDED}
        in_flight_at_kill = {c for c, s in at_kill.items() if s is RequestStatus.IN_FLIGHT}
        assert succeeded_at_kill and len(succeeded_at_kill) < n  # it really died mid-run
        assert in_flight_at_kill  # and had calls in flight

        settings = Settings(api_key=SecretStr("sk-test"), base_url=server.base_url, concurrency=16)
        runner = RealtimeRunner(
            store, make_client(settings), models_for(100_000, 10**9), settings, owner="resume"
        )
        assert runner.recover(run_id) == len(in_flight_at_kill)
        report = await runner.run(run_id)
        ledger = Counter(e.custom_id for e in server.state.ledger)

    assert Counter(r.status for r in store.iter_requests(run_id)) == {RequestStatus.SUCCEEDED: n}
    assert report.succeeded == n - len(succeeded_at_kill)
    assert set(ledger) == {f"r{i}" for i in range(n)}  # everything billed...
    twice = {c for c, count in ledger.items() if count > 1}
    assert all(ledger[c] == 1 for c in succeeded_at_kill)  # ...a recorded success never again
    assert twice <= in_flight_at_kill  # only what was on the wire at the kill, at most
    assert max(ledger.values()) <= 2


async def test_timeouts_are_retried_on_a_real_socket(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "t.db")
    run_id = seed(store, 30)
    with running_server(config(slow_rate=0.2, slow_seconds=3.0)) as server:
        settings = Settings(api_key=SecretStr("sk-test"), base_url=server.base_url, max_attempts=10)
        client = make_client(settings, timeout=0.6)
        runner = RealtimeRunner(
            store,
            client,
            models_for(100_000, 10**9),
            settings,
            owner="t",
            options=RealtimeOptions(breaker_threshold=1000),
        )
        report = await runner.run(run_id)
        ledger = Counter(e.custom_id for e in server.state.ledger)
        slow = server.state.stats["fault|slow"]
    assert slow > 0
    assert report.succeeded == 30
    assert report.retries >= slow
    assert ledger == {f"r{i}": 1 for i in range(30)}
