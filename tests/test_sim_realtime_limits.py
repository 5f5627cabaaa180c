"""Rate limits of the simulator's real-time path: buckets, headers, 429 bodies, quota mode."""

from __future__ import annotations

import re

import openai
import pytest
from openapi_check import validate
from simfixtures import admin_client, chat_body, quiet_config, sim_client

from batchyard import tokens as independent
from batchyard.simulator.clock import SimClock
from batchyard.simulator.ratelimit import go_duration

_GO = re.compile(r"^(?:(\d+)h)?(?:(\d+)m(?!s))?(?:(\d+(?:\.\d+)?)s)?(?:(\d+)ms)?$")


def _still_clock(time_scale: float) -> SimClock:
    """A simulator clock whose real time never moves: timings exact on any machine."""
    return SimClock(start=1_800_000_000.0, time_scale=time_scale, real=lambda: 0.0)


def _seconds(duration: str) -> float:
    match = _GO.match(duration)
    assert match and duration, f"not a Go duration: {duration!r}"
    h, m, s, ms = match.groups()
    return int(h or 0) * 3600 + int(m or 0) * 60 + float(s or 0) + int(ms or 0) / 1000


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (0.114, "114ms"),
        (1, "1s"),
        (1.2, "1.2s"),
        (1.574, "1.574s"),
        (360, "6m0s"),
        (1396.298, "23m16.298s"),
        (3600, "1h0m0s"),
        (3725.5, "1h2m5.5s"),
    ],
)
def test_go_durations(seconds: float, text: str) -> None:
    assert go_duration(seconds) == text
    assert _seconds(text) == pytest.approx(seconds)


async def test_headers_on_every_response_and_remaining_decreases() -> None:
    config = quiet_config(models={"gpt-4o-mini": {"rpm": 100, "tpm": 10_000}})
    client, state = sim_client(config)
    state.clock = _still_clock(time_scale=1.0)  # no time passes between the calls
    remaining_requests, remaining_tokens = [], []
    for _ in range(3):
        raw = await client.chat.completions.with_raw_response.create(
            **chat_body(max_completion_tokens=50)
        )
        headers = raw.headers
        assert headers["x-ratelimit-limit-requests"] == "100"
        assert headers["x-ratelimit-limit-tokens"] == "10000"
        remaining_requests.append(int(headers["x-ratelimit-remaining-requests"]))
        remaining_tokens.append(int(headers["x-ratelimit-remaining-tokens"]))
        assert _seconds(headers["x-ratelimit-reset-requests"]) > 0
        assert _seconds(headers["x-ratelimit-reset-tokens"]) > 0
    assert remaining_requests == [99, 98, 97]
    charge = independent.prompt_tokens("/v1/chat/completions", chat_body()) + 50
    # With no time passing, each call takes exactly its charge from the token bucket.
    assert remaining_tokens == [10_000 - charge, 10_000 - 2 * charge, 10_000 - 3 * charge]
    # One request is 0.6 s of a 100 RPM bucket; after three the bucket is full in 1.8 s.
    assert _seconds(raw.headers["x-ratelimit-reset-requests"]) == pytest.approx(1.8, abs=0.001)
    with pytest.raises(openai.BadRequestError) as info:  # a failed request carries them too
        await client.chat.completions.create(**chat_body(max_completion_tokens=0))
    assert info.value.response.headers["x-ratelimit-remaining-requests"] == "96"


async def test_requests_per_minute_429_body_and_retry_headers() -> None:
    client, state = sim_client(quiet_config(models={"gpt-4o-mini": {"rpm": 3}}))
    for _ in range(3):
        await client.chat.completions.create(**chat_body())
    with pytest.raises(openai.RateLimitError) as info:
        await client.chat.completions.create(**chat_body())
    error = info.value
    validate("ErrorResponse", error.response.json())
    assert error.type == "requests"
    assert error.code == "rate_limit_exceeded"
    assert error.param is None
    message = error.body["message"]
    assert message.startswith(
        "Rate limit reached for gpt-4o-mini in organization org-simulated on requests per min "
        "(RPM): Limit 3, Used 3, Requested 1. Please try again in "
    )
    assert message.endswith("Visit https://platform.openai.com/account/rate-limits to learn more.")
    wait = re.search(r"Please try again in (\S+)\. ", message)
    assert wait and _seconds(wait.group(1)) == pytest.approx(20, abs=0.1)
    headers = error.response.headers
    assert int(headers["retry-after-ms"]) == pytest.approx(20_000, abs=100)
    assert headers["retry-after"] == "20"
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert len(state.ledger) == 3
    assert state.stats["rate_limited|requests"] == 1


async def test_tokens_per_minute_429_and_refill_over_simulated_time() -> None:
    config = quiet_config(models={"gpt-4o-mini": {"tpm": 100, "rpm": 1000}})
    client, state = sim_client(config)
    body = chat_body(max_completion_tokens=60)
    charge = independent.prompt_tokens("/v1/chat/completions", body) + 60
    await client.chat.completions.create(**body)
    with pytest.raises(openai.RateLimitError) as info:
        await client.chat.completions.create(**body)
    assert info.value.type == "tokens"
    assert info.value.code == "rate_limit_exceeded"
    assert (
        f"on tokens per min (TPM): Limit 100, Used {charge}, Requested {charge}."
        in info.value.body["message"]
    )
    expected_wait = (charge - (100 - charge)) * 60 / 100
    retry_ms = int(info.value.response.headers["retry-after-ms"])
    assert retry_ms == pytest.approx(expected_wait * 1000, abs=100)
    admin = admin_client(state)
    moved = await admin.post("/_sim/clock/advance", json={"seconds": expected_wait + 0.5})
    assert moved.status_code == 200
    raw = await client.chat.completions.with_raw_response.create(**body)
    assert raw.http_response.status_code == 200


async def test_a_request_larger_than_the_whole_tpm_limit() -> None:
    client, _ = sim_client(quiet_config(models={"gpt-4o-mini": {"tpm": 100}}))
    with pytest.raises(openai.RateLimitError) as info:
        await client.chat.completions.create(**chat_body(max_completion_tokens=500))
    assert info.value.body["message"].startswith(
        "Request too large for gpt-4o-mini in organization org-simulated on tokens per min "
        "(TPM): Limit 100, Requested "
    )
    assert info.value.code == "rate_limit_exceeded"
    assert "retry-after-ms" not in info.value.response.headers


async def test_rate_limits_off_still_sends_headers() -> None:
    config = quiet_config(rate_limits=False, models={"gpt-4o-mini": {"rpm": 1}})
    client, state = sim_client(config)
    for _ in range(4):
        raw = await client.chat.completions.with_raw_response.create(**chat_body())
        assert raw.headers["x-ratelimit-limit-requests"] == "1"
        assert raw.headers["x-ratelimit-remaining-requests"] == "0"
    assert len(state.ledger) == 4


async def test_quota_exhausted_mode() -> None:
    client, state = sim_client(quiet_config(faults={"quota_exhausted": True}))
    with pytest.raises(openai.RateLimitError) as info:
        await client.chat.completions.create(**chat_body())
    assert info.value.code == "insufficient_quota"
    assert info.value.type == "insufficient_quota"
    assert info.value.body["message"] == (
        "You exceeded your current quota, please check your plan and billing details. For more "
        "information on this error, read the docs: "
        "https://platform.openai.com/docs/guides/error-codes/api-errors."
    )
    with pytest.raises(openai.RateLimitError):
        await client.embeddings.create(model="text-embedding-3-small", input="x")
    assert state.ledger == []


async def test_waits_are_reported_in_real_seconds_under_a_fast_clock() -> None:
    config = quiet_config(clock={"time_scale": 60.0}, models={"gpt-4o-mini": {"rpm": 3}})
    client, state = sim_client(config)
    state.clock = _still_clock(time_scale=60.0)  # a slow machine must not refill the bucket
    for _ in range(3):
        await client.chat.completions.create(**chat_body())
    with pytest.raises(openai.RateLimitError) as info:
        await client.chat.completions.create(**chat_body())
    # 20 simulated seconds until one request fits = 1/3 of a real second at 60x.
    assert int(info.value.response.headers["retry-after-ms"]) == pytest.approx(333, abs=1)
    assert info.value.response.headers["retry-after"] == "1"


async def test_frozen_clock_still_answers_with_rate_limit_headers() -> None:
    # time_scale 0 freezes simulated time (tests advance it by hand); headers must not fail.
    from simfixtures import quiet_config, sim_client

    client, _ = sim_client(quiet_config(clock={"time_scale": 0.0}))
    raw = await client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], max_tokens=5
    )
    assert raw.status_code == 200
    assert raw.headers["x-ratelimit-reset-requests"].endswith("s")
