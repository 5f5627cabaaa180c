"""Crashes at every step of the batch lifecycle, then `reconcile`: nothing twice, nothing lost.

Each test proves it with the simulator's own records: exactly one provider batch per
shard, every custom_id billed exactly once, and no uploaded file left behind.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx2
import openai
import pytest
from batch_path_env import Bench, chat_body, make_bench, sim_config
from simfixtures import running_server

from batchyard.models import RequestStatus
from batchyard.orchestrator.batch.remote import CrashHook

STEPS = ["upload_intent", "uploaded", "create_intent", "created", "applying"]


class Crash(Exception):
    """Stands in for the process dying at a lifecycle step."""


def crash_at(step: str) -> CrashHook:
    fired: list[int] = []

    def hook(name: str, shard: int) -> None:
        if name == step and not fired:
            fired.append(shard)
            raise Crash(f"crash at {name} of shard {shard}")

    return hook


def _assert_exactly_once(bench: Bench, ids: list[str]) -> None:
    assert bench.statuses() == {RequestStatus.SUCCEEDED: len(ids)}
    assert bench.billed() == {cid: 1 for cid in ids}
    per_shard = bench.provider_batches_per_shard()
    shards = {str(b.id) for b in bench.store.list_batches(bench.run_id)}
    assert set(per_shard) == shards and set(per_shard.values()) == {1}
    leftover = [f.filename for f in bench.state.files.values() if f.purpose == "batch"]
    assert leftover == []
    assert not list(bench.workdir.glob("*.jsonl"))  # no local shard or output file either


@pytest.mark.parametrize("step", STEPS)
async def test_crash_at_each_step_then_reconcile(tmp_path: Path, step: str) -> None:
    bench = make_bench(tmp_path)
    ids = bench.add_run([chat_body(i) for i in range(8)])
    before = bench.runner(hook=crash_at(step))
    before.ctx.apply_chunk = 3  # "applying" crashes after 3 of the 8 results
    with pytest.raises(Crash):
        await before.run(bench.run_id)
    if step == "applying":
        assert bench.statuses()[RequestStatus.SUCCEEDED] == 3
    after = bench.runner()  # a new process: new owner, no memory
    report = await after.reconcile(bench.run_id)
    if step == "uploaded":
        assert report.uploads_found == 1
    if step == "created":
        assert report.batches_found == 1
    await after.run(bench.run_id)
    _assert_exactly_once(bench, ids)


async def test_lost_create_response_makes_no_duplicate_batch(tmp_path: Path) -> None:
    bench = make_bench(tmp_path, sim_config({"lost_create_rate": 1.0}))
    ids = bench.add_run([chat_body(i) for i in range(5)])
    await bench.runner().run(bench.run_id)
    assert bench.state.stats["batches_create_responses_lost"] >= 1
    _assert_exactly_once(bench, ids)


class LoseFirstUpload(httpx2.AsyncBaseTransport):
    """The upload reaches the simulator, but its response is lost on the way back."""

    def __init__(self, inner: httpx2.AsyncBaseTransport) -> None:
        self.inner = inner
        self.uploads = 0

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        response = await self.inner.handle_async_request(request)
        if request.method == "POST" and request.url.path == "/v1/files":
            self.uploads += 1
            if self.uploads == 1:
                raise httpx2.ReadError("connection reset after the upload", request=request)
        return response


async def test_lost_upload_response_reuses_the_uploaded_file(tmp_path: Path) -> None:
    bench = make_bench(tmp_path)
    transport = LoseFirstUpload(httpx2.ASGITransport(app=bench.state.extra["test_app"]))
    bench.client = openai.AsyncOpenAI(
        api_key="sk-test",
        base_url="http://sim.test/v1",
        max_retries=0,
        http_client=httpx2.AsyncClient(transport=transport),
    )
    ids = bench.add_run([chat_body(i) for i in range(4)])
    await bench.runner().run(bench.run_id)
    assert transport.uploads == 1  # the retry found the first upload by its name and size
    _assert_exactly_once(bench, ids)


CHILD = textwrap.dedent(
    """
    import asyncio, os, sys
    from pathlib import Path
    import httpx2, openai
    from batchyard.config import Settings, model_table
    from batchyard.orchestrator.batch.runner import BatchRunner
    from batchyard.orchestrator._calls.retry import RetryPolicy
    from batchyard.store import Store

    db, run_id, base_url, step, workdir = sys.argv[1:6]
    root = base_url.removesuffix("/v1")
    admin = httpx2.Client(base_url=root)

    def now():
        return admin.get("/_sim/clock").json()["now"]

    async def sleep(seconds):
        admin.post("/_sim/clock/advance", json={"seconds": max(0.0, seconds)})

    def hook(name, shard):
        if name == step:
            os._exit(9)  # killed: no finally, no cleanup, claims left held

    async def main():
        client = openai.AsyncOpenAI(api_key="sk-test", base_url=base_url, max_retries=0)
        store = Store.open(db, now=now)
        runner = BatchRunner(store, client, model_table(), Settings(max_attempts=4),
                             clock=now, sleep=sleep, workdir=Path(workdir), hook=hook,
                             policy=RetryPolicy(max_attempts=3, base_delay=0.01))
        await runner.run(run_id)

    asyncio.run(main())
    sys.exit(3)  # the hook never fired
    """
)


@pytest.mark.parametrize("step", ["created", "applying"])
async def test_killed_child_process_then_resume(tmp_path: Path, step: str) -> None:
    with running_server(sim_config()) as server:
        bench = make_bench(tmp_path)
        bench.state = server.state  # the server's simulator outlives the child
        bench.client = openai.AsyncOpenAI(
            api_key="sk-test", base_url=server.base_url, max_retries=0
        )
        bench.store = type(bench.store).open(tmp_path / "jobs.db", now=server.state.now)
        ids = bench.add_run([chat_body(i) for i in range(6)])
        script = tmp_path / "child.py"
        script.write_text(CHILD)
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
        args = [
            sys.executable,
            str(script),
            str(tmp_path / "jobs.db"),
            bench.run_id,
            server.base_url,
            step,
            str(tmp_path / "child-work"),
        ]
        done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 9, done.stderr
        # the dead child still holds the shard's lease (submit or apply): a live lease
        # would block everyone for 10 minutes, a dead owner's is released at once
        held = [b for b in bench.store.list_batches(bench.run_id) if b.claim_owner]
        assert len(held) == 1 and str(os.getpid()) not in (held[0].claim_owner or "")
        after = bench.runner()
        report = await after.reconcile(bench.run_id)
        assert report.batches_found == (1 if step == "created" else 0)
        assert report.released_claims == 1
        await after.run(bench.run_id)
        _assert_exactly_once(bench, ids)
