"""Every endpoint the batch format allows can also be sent in real time, body verbatim."""

from __future__ import annotations

import json
from typing import Any

import httpx2
import openai
import pytest

from batchyard.models import Endpoint
from batchyard.orchestrator.realtime.call import send


@pytest.mark.parametrize(
    ("endpoint", "body", "reply"),
    [
        (
            Endpoint.COMPLETIONS,
            {"model": "gpt-3.5-turbo-instruct", "prompt": "Say hi", "max_tokens": 5},
            {"id": "cmpl-1", "object": "text_completion", "choices": [], "usage": {}},
        ),
        (
            Endpoint.MODERATIONS,
            {"model": "omni-moderation-latest", "input": "hello"},
            {"id": "modr-1", "model": "omni-moderation-latest", "results": []},
        ),
    ],
)
async def test_legacy_endpoints_are_sent_verbatim(
    endpoint: Endpoint, body: dict[str, Any], reply: dict[str, Any]
) -> None:
    seen: list[httpx2.Request] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        return httpx2.Response(200, json=reply)

    client = openai.AsyncOpenAI(
        api_key="sk-test",
        base_url="http://api.test/v1",
        max_retries=0,
        http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(handler)),
    )
    answer = await send(client, endpoint, body, "cid-1")
    assert answer.status_code == 200 and answer.body == reply
    (request,) = seen
    assert request.url.path == endpoint.value
    assert json.loads(request.content) == body
    assert request.headers["x-batchyard-custom-id"] == "cid-1"
