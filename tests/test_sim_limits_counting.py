"""How the simulator's real-time limits count: refused requests, bare 429s, a second client.

The clock is frozen (time_scale 0) and moved by hand, so every wait is exact.
"""

from __future__ import annotations

from typing import Any

import openai
import pytest
from simfixtures import admin_client, chat_body, error_message, quiet_config, sim_client

from batchyard import tokens as independent
from batchyard.simulator import SimConfig

START = 1_800_000_000
RATE_HEADERS = ("retry-after", "retry-after-ms", "x-ratelimit-remaining-requests")


def _frozen(rpm: int = 60, tpm: int = 1_000_000, **overrides: Any) -> SimConfig:
    return quiet_config(
        clock={"start": START, "time_scale": 0.0},
        models={"gpt-4o-mini": {"rpm": rpm, "tpm": tpm}},
        **overrides,
    )


async def _admitted(client: openai.AsyncOpenAI, **body: Any) -> bool:
    try:
        await client.chat.completions.create(**chat_body(**body))
    except openai.RateLimitError:
        return False
    return True


async def _drain(client: openai.AsyncOpenAI, rpm: int) -> None:
    for _ in range(rpm):
        assert await _admitted(client)
    assert not await _admitted(client)


async def test_a_refused_request_still_uses_the_request_limit() -> None:
    client, state = sim_client(_frozen(rpm=60))  # one request a second
    await _drain(client, 60)
    state.clock.advance(0.5)
    with pytest.raises(openai.RateLimitError) as info:
        await client.chat.completions.create(**chat_body())
    # Half a request had refilled; the refused one used it, so the next fits in a full second.
    assert info.value.response.headers["retry-after-ms"] == "1000"
    assert "Used 60, Requested 1" in error_message(info.value)
    state.clock.advance(0.5)
    assert not await _admitted(client)  # half a second is no longer enough
    state.clock.advance(1.0)
    assert await _admitted(client)  # waiting as told is


async def test_resending_faster_than_the_limit_refills_never_gets_through() -> None:
    client, state = sim_client(_frozen(rpm=60))
    await _drain(client, 60)
    tries = 0
    for _ in range(30):
        state.clock.advance(0.9)
        tries += 1
        assert not await _admitted(client)
    assert tries == 30 and len(state.ledger) == 60


async def test_uncharged_refusals_when_switched_off_at_runtime() -> None:
    client, state = sim_client(_frozen(rpm=60))
    admin = admin_client(state)
    patched = await admin.post("/_sim/limits", json={"charge_rejected_requests": False})
    assert patched.json()["charge_rejected_requests"] is False
    await _drain(client, 60)
    state.clock.advance(0.5)
    with pytest.raises(openai.RateLimitError) as info:
        await client.chat.completions.create(**chat_body())
    assert info.value.response.headers["retry-after-ms"] == "500"
    state.clock.advance(0.5)
    assert await _admitted(client)
    bad = await admin.post("/_sim/limits", json={"other_client_share": 1.5})
    assert bad.status_code == 400
    assert bad.json()["error"]["param"] == "other_client_share"


async def test_refused_requests_use_tokens_only_when_asked() -> None:
    body = chat_body(max_completion_tokens=60)
    charge = independent.prompt_tokens("/v1/chat/completions", body) + 60
    for charge_tokens, remaining_after in ((False, 100 - charge), (True, 0)):
        config = _frozen(rpm=1_000, tpm=100, limits={"charge_rejected_tokens": charge_tokens})
        client, state = sim_client(config)
        await client.chat.completions.create(**body)
        with pytest.raises(openai.RateLimitError) as info:
            await client.chat.completions.create(**body)
        assert info.value.type == "tokens"
        assert int(info.value.response.headers["x-ratelimit-remaining-tokens"]) == remaining_after
        wait = int(info.value.response.headers["retry-after-ms"]) / 1000
        assert wait == pytest.approx((charge - remaining_after) * 60 / 100, abs=0.01)
        state.clock.advance(wait)
        assert await _admitted(client, max_completion_tokens=60)


async def test_bare_429s_carry_no_rate_limit_headers() -> None:
    client, state = sim_client(_frozen(rpm=1, faults={"rate_limit_headers": "not_on_429"}))
    raw = await client.chat.completions.with_raw_response.create(**chat_body())
    assert raw.headers["x-ratelimit-remaining-requests"] == "0"
    with pytest.raises(openai.RateLimitError) as info:
        await client.chat.completions.create(**chat_body())
    assert info.value.code == "rate_limit_exceeded"
    assert not any(name in info.value.response.headers for name in RATE_HEADERS)
    assert not any(k.startswith("x-ratelimit-") for k in info.value.response.headers)
    admin = admin_client(state)
    await admin.post("/_sim/faults", json={"rate_limit_headers": "none"})
    state.clock.advance(60)
    raw = await client.chat.completions.with_raw_response.create(**chat_body())
    assert raw.status_code == 200
    assert not any(k.startswith("x-ratelimit-") for k in raw.headers)
    await admin.post("/_sim/faults", json={"rate_limit_headers": "all"})
    with pytest.raises(openai.RateLimitError) as info:
        await client.chat.completions.create(**chat_body())
    assert all(name in info.value.response.headers for name in RATE_HEADERS)


async def test_a_second_client_on_the_key_uses_its_share_all_the_time() -> None:
    # Refusals charged nothing here, so probing until refused each second loses nothing.
    limits = {"other_client_share": 0.3, "charge_rejected_requests": False}
    client, state = sim_client(_frozen(rpm=100, tpm=1_000_000, limits=limits))
    raw = await client.chat.completions.with_raw_response.create(**chat_body())
    assert raw.headers["x-ratelimit-limit-requests"] == "100"
    assert raw.headers["x-ratelimit-remaining-requests"] == "69"  # 70 left by the other
    admitted = 1
    for _ in range(600):  # ten simulated minutes, one second at a time
        state.clock.advance(1.0)
        for _ in range(1000):  # the limit refuses long before this bound
            if not await _admitted(client):
                break
            admitted += 1
    # What is left to us: 70 at the start, then 70 a minute.
    assert admitted == pytest.approx(70 + 700, abs=2)
    used = (await admin_client(state).get("/_sim/limits")).json()["other_client_used"]
    assert used["gpt-4o-mini"]["requests"] == pytest.approx(300, abs=0.01)
    with pytest.raises(openai.RateLimitError) as info:
        await client.chat.completions.create(**chat_body())
    assert "Limit 100, Used 100, Requested 1" in error_message(info.value)


async def test_the_second_client_can_be_limited_to_some_models() -> None:
    config = _frozen(rpm=100, limits={"other_client_share": 0.5, "other_client_models": ["gpt-4o"]})
    client, _ = sim_client(config)
    mini = await client.chat.completions.with_raw_response.create(**chat_body())
    assert mini.headers["x-ratelimit-remaining-requests"] == "99"
    big = await client.chat.completions.with_raw_response.create(**chat_body(model="gpt-4o"))
    assert big.headers["x-ratelimit-remaining-requests"] == "2499"
