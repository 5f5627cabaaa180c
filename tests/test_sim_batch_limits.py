"""Today's Batch API limits: creations per hour, the endpoints it takes, lines that need input."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest
from openapi_check import validate
from sim_batch_helpers import CHAT, at, chat_lines, client_for, config, read_lines, submit, upload
from simfixtures import error_message

from batchyard.simulator import SimConfig

# The endpoints the batch guide and the SDK's `batches.create` accept today.
ENDPOINTS = [
    "/v1/responses",
    "/v1/chat/completions",
    "/v1/embeddings",
    "/v1/completions",
    "/v1/moderations",
    "/v1/images/generations",
    "/v1/images/edits",
    "/v1/videos",
]


async def _create(client: openai.AsyncOpenAI, file_id: str) -> Any:
    return await client.batches.create(
        input_file_id=file_id, endpoint=CHAT, completion_window="24h"
    )


def test_the_default_is_the_documented_2000_an_hour() -> None:
    assert SimConfig().batch.max_creates_per_hour == 2_000


async def test_batch_creations_past_the_hourly_limit_get_a_429() -> None:
    client, state = client_for(config(max_creates_per_hour=3))
    uploaded = await upload(client, chat_lines(1))
    for second in (0, 10, 20):
        state.clock.advance(second - (state.now() - state.clock.start))
        await _create(client, uploaded.id)
    state.clock.advance(80)  # t = 100
    with pytest.raises(openai.RateLimitError) as info:
        await _create(client, uploaded.id)
    error = info.value
    validate("ErrorResponse", error.response.json())
    assert (error.code, error.type, error.param) == ("rate_limit_exceeded", "requests", None)
    assert error_message(error).startswith(
        "Rate limit reached for batch creation in organization org-simulated: Limit 3 batches "
        "per hour, Used 3, Requested 1. Please try again in 58m20s."
    )
    assert error.response.headers["retry-after"] == "3500"
    assert len(state.batches) == 3
    assert state.stats["batches_create_rate_limited"] == 1

    state.clock.advance(3_500)  # t = 3600: the first creation has left the hour
    await _create(client, uploaded.id)
    with pytest.raises(openai.RateLimitError) as again:
        await _create(client, uploaded.id)
    assert again.value.response.headers["retry-after"] == "10"  # the one at t = 10
    assert len(state.batches) == 4


async def test_a_bare_creation_429_when_rate_limit_headers_are_off() -> None:
    cfg = config(max_creates_per_hour=1)
    cfg.faults.rate_limit_headers = "not_on_429"
    client, _ = client_for(cfg)
    uploaded = await upload(client, chat_lines(1))
    await _create(client, uploaded.id)
    with pytest.raises(openai.RateLimitError) as info:
        await _create(client, uploaded.id)
    assert "retry-after" not in info.value.response.headers
    assert "retry-after-ms" not in info.value.response.headers


@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_create_accepts_every_endpoint_of_today(endpoint: str) -> None:
    client, _ = client_for(config())
    uploaded = await upload(client, chat_lines(1))
    batch = await client.batches.create(
        input_file_id=uploaded.id,
        endpoint=endpoint,  # type: ignore[arg-type]
        completion_window="24h",
    )
    assert batch.endpoint == endpoint and batch.status == "validating"


async def test_endpoints_the_simulator_does_not_run_fail_line_by_line() -> None:
    client, state = client_for(config())
    line = {
        "custom_id": "m-1",
        "method": "POST",
        "url": "/v1/moderations",
        "body": {"model": "gpt-4o-mini", "input": "is this fine?"},
    }
    batch = await submit(client, [line], endpoint="/v1/moderations")
    done = await at(client, state, batch, 30 + 1_000 + 60)
    assert done.status == "completed"
    [error] = await read_lines(client, done.error_file_id)
    assert error["response"]["status_code"] == 404
    assert error["response"]["body"]["error"]["message"] == "Invalid URL (POST /v1/moderations)"


def _line(custom_id: str, url: str, **body: Any) -> dict[str, Any]:
    return {"custom_id": custom_id, "method": "POST", "url": url, "body": body}


@pytest.mark.parametrize(
    ("endpoint", "lines", "expected"),
    [
        (
            "/v1/responses",
            [
                _line("ok", "/v1/responses", model="gpt-4o-mini", input="hi"),
                _line("no-input", "/v1/responses", model="gpt-4o-mini", instructions="x"),
                _line("no-model", "/v1/responses", input="hi"),
            ],
            {
                (2, "body.input", "Input parameter is required."),
                (3, "body.model", "Model parameter is required."),
            },
        ),
        (
            "/v1/moderations",
            [_line("m", "/v1/moderations", model="gpt-4o-mini")],
            {(1, "body.input", "Input parameter is required.")},
        ),
    ],
)
async def test_lines_without_model_or_input_fail_validation(
    endpoint: str, lines: list[dict[str, Any]], expected: set[tuple[int, str, str]]
) -> None:
    client, state = client_for(config())
    batch = await submit(client, lines, endpoint=endpoint)
    failed = await at(client, state, batch, 30)
    assert failed.status == "failed"
    raw = await client.batches.with_raw_response.retrieve(batch.id)
    validate("Batch", json.loads(raw.text))
    assert failed.errors is not None
    found = {(e.line, e.param, e.message) for e in failed.errors.data or []}
    assert found == expected
    assert {e.code for e in failed.errors.data or []} == {"invalid_request"}
