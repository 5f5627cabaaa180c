"""Webhook deliveries of batch events, verified by the installed SDK's `webhooks.unwrap`."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx2
import openai
import pytest
import uvicorn
from openai.types.webhooks import (
    BatchCancelledWebhookEvent,
    BatchCompletedWebhookEvent,
    BatchExpiredWebhookEvent,
    BatchFailedWebhookEvent,
)
from sim_batch_helpers import CHAT, START, at, chat_lines, client_for, config, submit
from simfixtures import admin_client, quiet_config, running_server
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from batchyard.simulator import SimConfig, SimState
from batchyard.simulator.batch_engine import advance_all
from batchyard.simulator.webhooks import USER_AGENT, deliver_due, hooks, new_secret

SECRET = new_secret()
URL = "http://receiver.test/hook"
DAY = 86_400


@dataclass
class Receiver:
    """A webhook endpoint that verifies with the SDK and answers `statuses` in turn."""

    secret: str = SECRET
    statuses: list[int] = field(default_factory=list)  # then 200
    events: list[Any] = field(default_factory=list)
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)

    async def hook(self, request: Request) -> Response:
        body = await request.body()
        headers = dict(request.headers)
        self.requests.append((headers, body))
        sdk = openai.OpenAI(api_key="sk-unused", webhook_secret=self.secret)
        try:
            event = sdk.webhooks.unwrap(body, headers)
        except openai.InvalidWebhookSignatureError as exc:
            self.refused.append(str(exc))
            return JSONResponse({"error": str(exc)}, status_code=400)
        if self.statuses:
            return Response(status_code=self.statuses.pop(0))
        self.events.append(event)
        return Response(status_code=200)

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/hook", self.hook, methods=["POST"])])

    def transport(self) -> httpx2.ASGITransport:
        return httpx2.ASGITransport(app=self.app())


def _hooked(events: list[str] | None = None, **batch: Any) -> SimConfig:
    cfg = config(**batch)
    endpoint: dict[str, Any] = {"url": URL, "secret": SECRET}
    if events is not None:
        endpoint["events"] = events
    return cfg.model_copy(
        update={"webhooks": cfg.webhooks.model_validate({"endpoints": [endpoint]})}
    )


async def _deliver(state: SimState, receiver: Receiver) -> list[Any]:
    advance_all(state)
    return await deliver_due(state, receiver.transport())


async def test_each_end_of_a_batch_is_delivered_and_unwraps() -> None:
    receiver = Receiver()
    client, state = client_for(_hooked(turnaround_seconds=1_000))
    completed = await submit(client, chat_lines(2, prefix="c-"))
    cancelled = await submit(client, chat_lines(2, prefix="x-"))
    await client.batches.cancel(cancelled.id)
    failed = await client.batches.create(
        input_file_id="file-missing", endpoint=CHAT, completion_window="24h"
    )
    slow = await submit(
        client, chat_lines(2, prefix="s-"), metadata={"sim_turnaround_seconds": "200000"}
    )
    state.clock.advance(2 * DAY)
    await _deliver(state, receiver)

    kinds = {event.data.id: type(event) for event in receiver.events}
    assert kinds == {
        completed.id: BatchCompletedWebhookEvent,
        cancelled.id: BatchCancelledWebhookEvent,
        failed.id: BatchFailedWebhookEvent,
        slow.id: BatchExpiredWebhookEvent,
    }
    for event in receiver.events:
        batch = await client.batches.retrieve(event.data.id)
        stamp = {
            "batch.completed": batch.completed_at,
            "batch.cancelled": batch.cancelled_at,
            "batch.failed": batch.failed_at,
            "batch.expired": batch.expired_at,
        }[event.type]
        assert event.created_at == stamp  # on the simulated clock
        assert event.object == "event" and event.id.startswith("evt_")
    for headers, _ in receiver.requests:
        assert headers["user-agent"] == USER_AGENT
        assert headers["content-type"] == "application/json"
        assert headers["webhook-id"].startswith("wh_")
        assert headers["webhook-signature"].startswith("v1,")
    assert receiver.refused == []
    # Delivered once: a later round sends nothing again.
    state.clock.advance(DAY)
    assert await _deliver(state, receiver) == []
    assert len(receiver.requests) == 4


async def test_an_endpoint_gets_only_the_events_it_asked_for() -> None:
    receiver = Receiver()
    client, state = client_for(_hooked(events=["batch.completed"]))
    done = await submit(client, chat_lines(1, prefix="d-"))
    stopped = await submit(client, chat_lines(1, prefix="s-"))
    await client.batches.cancel(stopped.id)
    state.clock.advance(DAY)
    await _deliver(state, receiver)
    assert [(e.type, e.data.id) for e in receiver.events] == [("batch.completed", done.id)]


async def test_failed_deliveries_are_retried_on_the_simulated_clock() -> None:
    receiver = Receiver(statuses=[500, 302])
    client, state = client_for(_hooked())
    batch = await submit(client, chat_lines(1))
    await client.batches.cancel(batch.id)
    ended = await at(client, state, batch, 30)
    assert ended.status == "cancelled"
    assert len(await _deliver(state, receiver)) == 1  # 500
    state.clock.advance(4.9)
    assert await _deliver(state, receiver) == []  # the retry is not due yet
    state.clock.advance(0.1)
    assert len(await _deliver(state, receiver)) == 1  # 302: a redirect is a failure too
    state.clock.advance(299)
    assert await _deliver(state, receiver) == []
    state.clock.advance(1)
    [last] = await _deliver(state, receiver)
    assert last.state == "delivered"
    assert [a["status"] for a in last.attempts] == [500, 302, 200]
    assert [a["at"] - last.event_at for a in last.attempts] == pytest.approx([0, 5, 305])
    # The same event, the same webhook-id and body on every attempt; one event in the end.
    ids = {headers["webhook-id"] for headers, _ in receiver.requests}
    bodies = {body for _, body in receiver.requests}
    assert len(receiver.requests) == 3 and len(ids) == 1 and len(bodies) == 1
    assert [e.data.id for e in receiver.events] == [batch.id]


async def test_deliveries_give_up_after_72_hours() -> None:
    receiver = Receiver(statuses=[503] * 100)
    client, state = client_for(_hooked())
    batch = await submit(client, chat_lines(1))
    await client.batches.cancel(batch.id)
    await at(client, state, batch, 30)
    [delivery] = hooks(state).deliveries
    for _ in range(50):  # each round: attempt, then jump to the next retry
        await _deliver(state, receiver)
        if delivery.state != "pending":
            break
        state.clock.advance(delivery.next_at - state.now())
    assert delivery.state == "failed"
    offsets = [a["at"] - delivery.event_at for a in delivery.attempts]
    # 5 s, 5 min, 30 min, 2 h, 5 h, then every 10 h while within 72 h of the event.
    assert offsets == pytest.approx(
        [0, 5, 305, 2_105, 9_305, 27_305, 63_305, 99_305, 135_305, 171_305, 207_305, 243_305]
    )
    assert receiver.events == [] and len(receiver.requests) == 12


async def test_a_wrong_secret_or_a_stale_timestamp_does_not_verify() -> None:
    wrong = Receiver(secret=new_secret())
    client, state = client_for(_hooked())
    batch = await submit(client, chat_lines(1))
    await client.batches.cancel(batch.id)
    await at(client, state, batch, 30)
    await _deliver(state, wrong)
    assert wrong.refused == ["The given webhook signature does not match the expected signature"]

    stale_cfg = _hooked()
    stale_cfg.webhooks.timestamp_clock = "simulated"  # START is years before the wall clock
    client, state = client_for(stale_cfg)
    batch = await submit(client, chat_lines(1))
    await client.batches.cancel(batch.id)
    await at(client, state, batch, 30)
    receiver = Receiver()
    [delivery] = await _deliver(state, receiver)
    assert receiver.refused == ["Webhook timestamp is too old"]
    assert delivery.state == "pending" and delivery.attempts[0]["status"] == 400
    assert receiver.requests[0][0]["webhook-timestamp"] == str(int(START + 30))


async def test_an_unreachable_endpoint_is_a_failed_attempt() -> None:
    cfg = config()
    cfg = cfg.model_copy(
        update={
            "webhooks": cfg.webhooks.model_validate(
                {"endpoints": [{"url": "http://127.0.0.1:9/hook", "secret": SECRET}]}
            )
        }
    )
    client, state = client_for(cfg)
    batch = await submit(client, chat_lines(1))
    await client.batches.cancel(batch.id)
    await at(client, state, batch, 30)
    [delivery] = await deliver_due(state)
    assert delivery.state == "pending"
    assert delivery.attempts[0]["status"] is None and delivery.attempts[0]["error"]


async def test_endpoints_are_managed_through_the_admin_routes() -> None:
    client, state = client_for(config())
    admin = admin_client(state)
    added = await admin.post("/_sim/webhooks", json={"url": URL, "events": ["batch.cancelled"]})
    assert added.status_code == 200
    secret = added.json()["secret"]
    assert secret.startswith("whsec_")
    listed = (await admin.get("/_sim/webhooks")).json()
    [endpoint] = listed["endpoints"]
    assert endpoint == {
        "id": added.json()["id"],
        "url": URL,
        "events": ["batch.cancelled"],
        "secret_hint": f"whsec_…{secret[-4:]}",
    }
    assert secret not in str(listed)

    batch = await submit(client, chat_lines(1))
    await client.batches.cancel(batch.id)
    await at(client, state, batch, 30)
    receiver = Receiver(secret=secret)
    await _deliver(state, receiver)
    assert [e.data.id for e in receiver.events] == [batch.id]
    deliveries = (await admin.get("/_sim/webhooks")).json()["deliveries"]
    assert [(d["type"], d["state"]) for d in deliveries] == [("batch.cancelled", "delivered")]

    for bad in ({"url": URL, "events": ["batch.started"]}, {"url": URL, "secret": "whsec_!!"}):
        refused = await admin.post("/_sim/webhooks", json=bad)
        assert refused.status_code == 400, bad
    gone = await admin.delete(f"/_sim/webhooks/{endpoint['id']}")
    assert gone.json() == {"id": endpoint["id"], "deleted": True}
    assert (await admin.delete(f"/_sim/webhooks/{endpoint['id']}")).status_code == 404
    assert (await admin.get("/_sim/webhooks")).json()["endpoints"] == []


@contextmanager
def _serving(app: Starlette) -> Iterator[str]:
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "receiver did not start"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/hook"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_a_served_simulator_delivers_by_itself() -> None:
    receiver = Receiver(statuses=[500])
    with _serving(receiver.app()) as url:
        cfg = quiet_config(
            clock={"start": START, "time_scale": 0.0},
            webhooks={"endpoints": [{"url": url, "secret": SECRET}], "pump_seconds": 0.02},
        )
        with running_server(cfg) as server:
            client = openai.OpenAI(api_key="sk-test", base_url=server.base_url, max_retries=0)
            uploaded = client.files.create(
                file=(
                    "in.jsonl",
                    b'{"custom_id":"a","method":"POST","url":"/v1/chat/completions",'
                    b'"body":{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}}\n',
                ),
                purpose="batch",
            )
            batch = client.batches.create(
                input_file_id=uploaded.id, endpoint=CHAT, completion_window="24h"
            )
            server.state.clock.advance(DAY)  # nobody reads the batch: the pump moves it
            deadline = time.monotonic() + 10
            while len(receiver.requests) < 1 and time.monotonic() < deadline:
                time.sleep(0.02)
            assert len(receiver.requests) == 1 and receiver.events == []  # the 500
            server.state.clock.advance(5)  # the retry falls due
            while not receiver.events and time.monotonic() < deadline:
                time.sleep(0.02)
    assert [(e.type, e.data.id) for e in receiver.events] == [("batch.completed", batch.id)]


async def test_no_endpoints_no_deliveries() -> None:
    client, state = client_for(config())
    batch = await submit(client, chat_lines(1))
    await at(client, state, batch, DAY)
    assert await deliver_due(state) == []
    assert hooks(state).deliveries == []
