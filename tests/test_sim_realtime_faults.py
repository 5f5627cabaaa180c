"""Injected faults on the real-time path: 5xx, slow answers, dropped connections, flex
capacity, and that none of them is billed. Some run on a real uvicorn port."""

from __future__ import annotations

import time

import httpx2
import openai
import pytest
from openapi_check import validate
from simfixtures import (
    admin_client,
    chat_body,
    error_message,
    quiet_config,
    running_server,
    sim_client,
)


async def test_server_errors_are_openai_shaped_and_unbilled() -> None:
    client, state = sim_client(quiet_config(faults={"error_5xx_rate": 1.0}))
    seen = set()
    for _ in range(12):
        with pytest.raises(openai.InternalServerError) as info:
            await client.chat.completions.create(**chat_body())
        seen.add(info.value.status_code)
        assert info.value.type == "server_error"
        validate("ErrorResponse", info.value.response.json())
        assert "x-request-id" in info.value.response.headers
    assert seen <= {500, 502, 503} and len(seen) > 1
    assert state.ledger == []
    assert state.stats["fault|error"] == 12


async def test_dropped_connection_in_process_is_a_connection_error() -> None:
    client, state = sim_client(quiet_config(faults={"drop_rate": 1.0}))
    with pytest.raises(openai.APIConnectionError):
        await client.chat.completions.create(**chat_body())
    assert state.ledger == []


async def test_flex_unavailable_is_an_unbilled_429() -> None:
    client, state = sim_client(quiet_config(faults={"flex_unavailable_rate": 1.0}))
    body = chat_body(model="gpt-5", service_tier="flex")
    with pytest.raises(openai.RateLimitError) as info:
        await client.chat.completions.create(**body)
    assert info.value.code == "resource_unavailable"
    assert error_message(info.value).startswith("Resource Unavailable")
    validate("ErrorResponse", info.value.response.json())
    # Standard requests to the same model are unaffected.
    done = await client.chat.completions.create(**chat_body(model="gpt-5"))
    assert done.service_tier == "default"
    assert [e.path for e in state.ledger] == ["standard"]


async def test_faults_can_be_switched_at_runtime() -> None:
    client, state = sim_client()
    admin = admin_client(state)
    await client.chat.completions.create(**chat_body())
    changed = await admin.post("/_sim/faults", json={"error_5xx_rate": 1.0})
    assert changed.json()["error_5xx_rate"] == 1.0
    with pytest.raises(openai.InternalServerError):
        await client.chat.completions.create(**chat_body())
    assert (await admin.get("/_sim/faults")).json()["error_5xx_rate"] == 1.0
    await admin.post("/_sim/faults", json={"error_5xx_rate": 0})
    await client.chat.completions.create(**chat_body())
    bad = await admin.post("/_sim/faults", json={"no_such_fault": 1})
    assert bad.status_code == 400
    assert len(state.ledger) == 2


def test_real_port_sync_client_success_drop_and_slow() -> None:
    with running_server() as (base_url, state):
        client = openai.OpenAI(api_key="sk-test", base_url=base_url, max_retries=0)
        done = client.chat.completions.create(
            **chat_body(), extra_headers={"X-Client-Request-Id": "real-1"}
        )
        assert done.usage.total_tokens > 0
        assert [e.custom_id for e in state.ledger] == ["real-1"]

        state.faults = state.faults.model_copy(update={"drop_rate": 1.0})
        with pytest.raises(openai.APIConnectionError) as info:
            client.chat.completions.create(**chat_body())
        assert not isinstance(info.value, openai.APITimeoutError)

        state.faults = state.faults.model_copy(
            update={"drop_rate": 0.0, "slow_rate": 1.0, "slow_seconds": 1.5}
        )
        started = time.perf_counter()
        with pytest.raises(openai.APITimeoutError):
            client.with_options(timeout=0.3).chat.completions.create(**chat_body())
        assert time.perf_counter() - started < 1.2
        assert len(state.ledger) == 1


def test_real_port_serves_the_admin_routes() -> None:
    with running_server(quiet_config(rate_limits=False)) as server:
        client = openai.OpenAI(api_key="sk-test", base_url=server.base_url, max_retries=0)
        client.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
        ledger = httpx2.get(f"{server.root}/_sim/ledger").json()
        assert ledger["totals"]["standard"]["requests"] == 1
        assert ledger["totals"]["standard"]["input_tokens"] == 2
