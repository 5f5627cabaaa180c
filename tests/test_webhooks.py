"""Webhooks end to end, offline: the simulator delivers signed batch events to our receiver,
which verifies them with the SDK, drops bad, stale and repeated ones, and makes the next
round poll that batch at once; `--notify` calls a user URL once, signed the same way."""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from batchyard.config import load_settings
from batchyard.orchestrator import Orchestrator
from batchyard.samples import write_sample
from batchyard.simulator import create_app, load_config
from batchyard.simulator.batch_engine import advance_all
from batchyard.simulator.webhooks import deliver_due, new_secret
from batchyard.store import Store
from batchyard.webhooks import receiver_app, signed_headers

SECRET = new_secret()
HOOK = "http://receiver.test/"


def _sim() -> Any:
    config = load_config(
        None,
        clock={"time_scale": 0.0},
        rate_limits=False,
        batch={"validation_seconds": 10, "turnaround_seconds": 600, "finalizing_seconds": 10},
        webhooks={"endpoints": [{"url": HOOK, "secret": SECRET}]},
    )
    return create_app(config)


def _orchestrator(tmp_path: Path, app: Any, **settings: Any) -> Orchestrator:
    state = app.state.sim
    client = openai.AsyncOpenAI(
        api_key="sk-test",
        base_url="http://sim/v1",
        http_client=httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app)),
    )
    config = load_settings(
        api_key="sk-test",
        db=tmp_path / "by.db",
        small_run_requests=0,
        small_run_usd=0,
        poll_min_seconds=3600,  # without a webhook the next poll is an hour or more away
        poll_max_seconds=7200,
        **settings,
    )

    async def sleep(seconds: float) -> None:
        state.clock.advance(seconds)

    return Orchestrator(config, client=client, clock=state.clock.now, sleep=sleep, workdir=tmp_path)


def _event(batch_id: str, kind: str = "batch.completed") -> bytes:
    return json.dumps(
        {"id": "evt_1", "object": "event", "type": kind, "created_at": 1, "data": {"id": batch_id}}
    ).encode()


async def test_a_verified_delivery_makes_the_next_round_poll_that_batch(tmp_path: Path) -> None:
    app = _sim()
    state = app.state.sim
    orch = _orchestrator(tmp_path, app)
    run_id = (await orch.submit(write_sample(tmp_path / "in.jsonl", 6), route="batch")).run_id
    status = await orch.step(run_id)  # polled once: in progress, next poll an hour away
    batch_id = status.batches[0].provider_batch_id
    assert batch_id is not None and not status.done
    assert orch.batch.next_poll_in(run_id) >= 3600

    receiver_store = Store.open(tmp_path / "by.db")  # the receiver runs in its own process
    transport = httpx2.ASGITransport(app=receiver_app(receiver_store, SECRET))
    receiver = httpx2.AsyncClient(transport=transport, base_url="http://receiver.test")
    body = _event(batch_id)
    now = int(time.time())

    # a bad signature: 400, nothing changes
    forged = signed_headers(new_secret(), "wh_forged", now, body)
    assert (await receiver.post("/", content=body, headers=forged)).status_code == 400
    # a replay: the right secret, but signed 10 minutes ago (the SDK allows 5)
    stale = signed_headers(SECRET, "wh_stale", now - 600, body)
    assert (await receiver.post("/", content=body, headers=stale)).status_code == 400
    # no signature at all
    assert (await receiver.post("/", content=body)).status_code == 400
    assert orch.store.poll_marks(run_id) == set()
    assert orch.batch.next_poll_in(run_id) >= 3600

    # the simulator finishes the batch and delivers its own signed event
    state.clock.advance(700)
    advance_all(state)
    delivered = await deliver_due(state, transport)
    assert len(delivered) == len(status.batches) >= 1  # one event per shard
    assert {d.state for d in delivered} == {"delivered"}
    assert orch.store.poll_marks(run_id) == {b.shard for b in status.batches}
    assert orch.batch.next_poll_in(run_id) == 0.0

    # the same webhook-id again (a retried delivery): answered 200, changes nothing
    again = signed_headers(SECRET, delivered[0].webhook_id, int(time.time()), delivered[0].body)
    answer = await receiver.post("/", content=delivered[0].body, headers=again)
    assert answer.status_code == 200 and answer.json()["duplicate"] is True

    done = await orch.step(run_id)  # polls at once although the backoff said an hour
    assert done.done and done.succeeded == 6
    assert orch.store.poll_marks(run_id) == set()
    kinds = [e.kind for e in orch.store.list_events(run_id)]
    assert kinds.count("batch.webhook") == len(status.batches)
    await receiver.aclose()
    receiver_store.close()
    await orch.aclose()


async def test_events_for_other_batches_or_kinds_change_nothing(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "by.db")
    receiver = httpx2.AsyncClient(
        transport=httpx2.ASGITransport(app=receiver_app(store, SECRET)),
        base_url="http://receiver.test",
    )
    now = int(time.time())
    body = _event("batch_not_ours")
    answer = await receiver.post(
        "/", content=body, headers=signed_headers(SECRET, "wh_a", now, body)
    )
    assert answer.status_code == 200 and answer.json() == {
        "duplicate": False,
        "run_id": None,
        "shard": None,
    }
    other = _event("resp_1", "response.completed")
    answer = await receiver.post(
        "/", content=other, headers=signed_headers(SECRET, "wh_b", now, other)
    )
    assert answer.status_code == 200 and answer.json() == {"ignored": "response.completed"}
    await receiver.aclose()
    store.close()


@contextmanager
def _serving(app: Starlette) -> Iterator[str]:
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the receiver did not start"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/done"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


async def test_notify_calls_the_url_once_signed_when_the_run_finishes(tmp_path: Path) -> None:
    secret = new_secret()
    seen: list[tuple[dict[str, str], Any]] = []

    async def done(request: Request) -> Response:
        body = await request.body()
        sdk = openai.OpenAI(api_key="unused", webhook_secret=secret)
        sdk.webhooks.verify_signature(body, dict(request.headers))  # raises if not signed
        seen.append((dict(request.headers), json.loads(body)))
        return Response(status_code=204)

    app = _sim()
    with _serving(Starlette(routes=[Route("/done", done, methods=["POST"])])) as url:
        orch = _orchestrator(tmp_path, app, notify_secret=secret)
        source = write_sample(tmp_path / "in.jsonl", 3)
        run_id = (await orch.submit(source, route="realtime", notify=url)).run_id
        status = await orch.wait(run_id)
        again = await orch.step(run_id)
        await orch.aclose()
    assert status.done and again.done
    assert len(seen) == 1
    headers, event = seen[0]
    assert event["type"] == "batchyard.run.finished"
    data = event["data"]
    assert (data["run_id"], data["state"], data["succeeded"]) == (run_id, "completed", 3)
    assert headers["webhook-id"].startswith("wh_")


async def test_notify_without_a_secret_is_refused_before_anything_is_recorded(
    tmp_path: Path,
) -> None:
    orch = _orchestrator(tmp_path, _sim())
    with pytest.raises(Exception, match="BATCHYARD_NOTIFY_SECRET"):
        await orch.submit(write_sample(tmp_path / "in.jsonl", 2), notify="http://127.0.0.1:9/x")
    assert orch.runs() == []
    await orch.aclose()


def test_the_readme_receiver_command_serves_and_verifies(tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    line = next(x for x in readme.splitlines() if x.startswith("OPENAI_WEBHOOK_SECRET=whsec_"))
    argv = shlex.split(line.split(" ", 1)[1])
    assert argv[:3] == ["batchyard", "webhooks", "serve"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    argv[argv.index("--port") + 1] = str(port)
    env = {**os.environ, "OPENAI_WEBHOOK_SECRET": SECRET, "BATCHYARD_DB": str(tmp_path / "by.db")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "batchyard", *argv[1:]],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        url = f"http://127.0.0.1:{port}{argv[argv.index('--path') + 1]}"
        body = _event("batch_x")
        answer = None
        deadline = time.monotonic() + 20
        while answer is None and time.monotonic() < deadline:
            try:
                good = signed_headers(SECRET, "wh_1", int(time.time()), body)
                answer = httpx2.post(url, content=body, headers=good, timeout=5)
            except httpx2.ConnectError:
                time.sleep(0.1)
        assert answer is not None and answer.status_code == 200, "the receiver did not start"
        bad = signed_headers(new_secret(), "wh_2", int(time.time()), body)
        assert httpx2.post(url, content=body, headers=bad, timeout=5).status_code == 400
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    missing = subprocess.run(
        [sys.executable, "-m", "batchyard", "webhooks", "serve", "--port", str(port)],
        env={k: v for k, v in env.items() if k != "OPENAI_WEBHOOK_SECRET"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 1 and "OPENAI_WEBHOOK_SECRET" in missing.stderr
