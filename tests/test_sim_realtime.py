"""Real-time endpoints of the simulator, driven by the real openai SDK in-process.

Shapes are checked against the official OpenAPI schemas; token counts against batchyard's
own (independent) counter; behaviour against the reference's error bodies.
"""

from __future__ import annotations

import math
import time
from typing import Any

import openai
import pytest
from openapi_check import validate
from simfixtures import admin_client, chat_body, error_message, quiet_config, sim_client

from batchyard import tokens as independent
from batchyard.simulator import SimConfig

AUTH = {"Authorization": "Bearer sk-test"}


async def _raw_chat(client: openai.AsyncOpenAI, **body: Any) -> tuple[dict[str, Any], Any]:
    raw = await client.chat.completions.with_raw_response.create(**body)
    return raw.http_response.json(), raw


async def test_models_list_and_get_match_the_spec_and_the_config() -> None:
    client, state = sim_client()
    page = await client.models.list()
    callable_models = [name for name in state.config.models if not name.startswith("ft:")]
    assert sorted(m.id for m in page.data) == sorted(callable_models)
    assert "ft:gpt-4o-mini" not in {m.id for m in page.data}  # a pricing row, not a model
    raw = await client.models.with_raw_response.list()
    validate("ListModelsResponse", raw.http_response.json(), strict_keys=True)
    model = await client.models.retrieve("gpt-4o-mini")
    assert model.id == "gpt-4o-mini"
    assert model.object == "model"
    validate("Model", model.model_dump(exclude_none=True), strict_keys=True)


async def test_unknown_model_is_a_404_with_openai_body() -> None:
    client, _ = sim_client()
    with pytest.raises(openai.NotFoundError) as info:
        await client.models.retrieve("gpt-nope")
    assert info.value.code == "model_not_found"
    validate("ErrorResponse", info.value.response.json())
    with pytest.raises(openai.NotFoundError) as info:
        await client.chat.completions.create(**chat_body(model="gpt-nope"))
    assert info.value.code == "model_not_found"
    assert error_message(info.value) == (
        "The model `gpt-nope` does not exist or you do not have access to it."
    )


async def test_chat_completion_shape_usage_and_headers() -> None:
    client, _ = sim_client()
    body = {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "What is the capital of France?", "name": "ann"},
        ],
    }
    data, raw = await _raw_chat(client, **body)
    validate("CreateChatCompletionResponse", data, strict_keys=True)
    completion = raw.parse()
    assert completion.usage.prompt_tokens == independent.prompt_tokens("/v1/chat/completions", body)
    enc = independent.encoding_for_model("gpt-4o-mini")
    content = completion.choices[0].message.content
    assert "capital of France" in content
    assert completion.usage.completion_tokens == len(enc.encode(content))
    assert completion.usage.total_tokens == (
        completion.usage.prompt_tokens + completion.usage.completion_tokens
    )
    assert completion.service_tier == "default"
    assert completion.choices[0].finish_reason == "stop"
    assert raw.headers["openai-version"] == "2020-10-01"
    assert raw.headers["openai-organization"] == "org-simulated"
    assert raw.headers["openai-model"] == "gpt-4o-mini"
    assert int(raw.headers["openai-processing-ms"]) >= 1
    request_id = raw.headers["x-request-id"]
    assert request_id.startswith("req_") and len(request_id) == 36
    int(request_id[4:], 16)


async def test_answers_are_deterministic_across_simulators() -> None:
    first, _ = sim_client()
    second, _ = sim_client()
    body = chat_body("Tell me about tides.")
    a = await first.chat.completions.create(**body)
    b = await second.chat.completions.create(**body)
    c = await first.chat.completions.create(**chat_body("Tell me about volcanoes."))
    assert a.choices[0].message.content == b.choices[0].message.content
    assert a.usage == b.usage
    assert a.choices[0].message.content != c.choices[0].message.content


async def test_output_never_exceeds_the_requested_cap() -> None:
    client, _ = sim_client()
    for cap in (1, 3, 7):
        done = await client.chat.completions.create(
            **chat_body("A long question " * 5, max_completion_tokens=cap)
        )
        assert done.usage.completion_tokens <= cap
        assert done.choices[0].finish_reason == "length"


async def test_reasoning_models_report_reasoning_tokens_and_reject_max_tokens() -> None:
    client, _ = sim_client()
    done = await client.chat.completions.create(
        **chat_body("Think first.", model="gpt-5", max_completion_tokens=500)
    )
    details = done.usage.completion_tokens_details
    assert details.reasoning_tokens > 0
    visible = len(independent.encoding_for_model("gpt-5").encode(done.choices[0].message.content))
    assert done.usage.completion_tokens == visible + details.reasoning_tokens
    with pytest.raises(openai.BadRequestError) as info:
        await client.chat.completions.create(**chat_body(model="gpt-5", max_tokens=100))
    assert info.value.param == "max_tokens"
    assert info.value.code == "unsupported_parameter"
    assert error_message(info.value) == (
        "Unsupported parameter: 'max_tokens' is not supported with this model. "
        "Use 'max_completion_tokens' instead."
    )


async def test_responses_endpoint_shape_and_usage() -> None:
    client, _ = sim_client()
    body: dict[str, Any] = {
        "model": "gpt-4.1-mini",
        "instructions": "Be brief.",
        "input": "Name a planet.",
    }
    raw = await client.responses.with_raw_response.create(**body)
    data = raw.http_response.json()
    validate("Response", data, strict_keys=True)
    response = raw.parse()
    assert response.status == "completed"
    assert "Name a planet" in response.output_text
    assert response.usage.input_tokens == independent.prompt_tokens("/v1/responses", body)
    enc = independent.encoding_for_model("gpt-4.1-mini")
    assert response.usage.output_tokens == len(enc.encode(response.output_text))
    assert response.usage.output_tokens_details.reasoning_tokens == 0


async def test_embeddings_are_unit_vectors_in_float_and_base64() -> None:
    client, _ = sim_client()
    inputs = ["first text", "second text"]
    raw = await client.embeddings.with_raw_response.create(
        model="text-embedding-3-small", input=inputs, encoding_format="float"
    )
    validate("CreateEmbeddingResponse", raw.http_response.json(), strict_keys=True)
    floats = raw.parse()
    assert [e.index for e in floats.data] == [0, 1]
    assert all(len(e.embedding) == 1536 for e in floats.data)
    assert math.isclose(sum(x * x for x in floats.data[0].embedding), 1.0, rel_tol=1e-9)
    assert floats.data[0].embedding != floats.data[1].embedding
    body = {"model": "text-embedding-3-small", "input": inputs}
    assert floats.usage.prompt_tokens == independent.prompt_tokens("/v1/embeddings", body)
    decoded = await client.embeddings.create(model="text-embedding-3-small", input=inputs)
    for a, b in zip(decoded.data[0].embedding, floats.data[0].embedding, strict=True):
        assert math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-7)
    small = await client.embeddings.create(
        model="text-embedding-3-small", input="x", dimensions=8, encoding_format="float"
    )
    assert len(small.data[0].embedding) == 8


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"messages": [{"role": "user", "content": "x"}]}, "model", None),
        ({"model": "gpt-4o-mini"}, "messages", "missing_required_parameter"),
        ({"model": "gpt-4o-mini", "messages": []}, "messages", "empty_array"),
        (chat_body(stream=True), "stream", "unsupported_value"),
        (chat_body(max_completion_tokens=0), "max_completion_tokens", "integer_below_min_value"),
        (chat_body(service_tier="turbo"), "service_tier", "invalid_value"),
    ],
)
async def test_invalid_chat_bodies_are_400s(
    body: dict[str, Any], param: str, code: str | None
) -> None:
    _, state = sim_client()
    http = admin_client(state)
    answer = await http.post("/v1/chat/completions", json=body, headers=AUTH)
    assert answer.status_code == 400
    validate("ErrorResponse", answer.json())
    assert answer.json()["error"]["param"] == param
    assert answer.json()["error"]["code"] == code
    assert state.ledger == []


async def test_prompt_over_the_context_window_is_rejected() -> None:
    config = quiet_config(models={"gpt-4o-mini": {"context_window": 40}})
    client, _ = sim_client(config)
    with pytest.raises(openai.BadRequestError) as info:
        await client.chat.completions.create(**chat_body("word " * 60))
    assert info.value.code == "context_length_exceeded"
    assert "maximum context length is 40 tokens" in error_message(info.value)


async def test_embedding_and_chat_models_stay_on_their_endpoints() -> None:
    client, _ = sim_client()
    with pytest.raises(openai.NotFoundError):
        await client.chat.completions.create(**chat_body(model="text-embedding-3-small"))
    with pytest.raises(openai.NotFoundError):
        await client.embeddings.create(model="gpt-4o-mini", input="x")


async def test_bad_json_and_missing_auth() -> None:
    client, state = sim_client()
    http = admin_client(state)
    bad = await http.post(
        "/v1/chat/completions", content=b"{not json", headers={"Authorization": "Bearer k"}
    )
    assert bad.status_code == 400
    assert bad.json()["error"]["message"].startswith("We could not parse the JSON body")
    anonymous = await http.get("/v1/models")
    assert anonymous.status_code == 401
    validate("ErrorResponse", anonymous.json())
    with pytest.raises(openai.AuthenticationError):
        await client.models.list(extra_headers={"Authorization": "Bearer "})


async def test_flex_on_allowed_and_disallowed_models() -> None:
    client, state = sim_client()
    flex = await client.chat.completions.create(
        **chat_body(model="gpt-5", service_tier="flex", max_completion_tokens=400)
    )
    assert flex.service_tier == "flex"
    entry = state.ledger[-1]
    assert entry.path == "flex"
    spec = state.config.models["gpt-5"]
    full = (entry.input_tokens * spec.input_price + entry.output_tokens * spec.output_price) / 1e6
    assert math.isclose(entry.cost, full * spec.batch_discount)
    with pytest.raises(openai.BadRequestError) as info:
        await client.chat.completions.create(**chat_body(service_tier="flex"))
    assert info.value.param == "service_tier"
    assert len(state.ledger) == 1


async def test_latency_setting_delays_answers() -> None:
    config = SimConfig.model_validate(
        {"latency": {"fixed_ms": 120, "per_output_token_ms": 2}, "rate_limits": False}
    )
    client, _ = sim_client(config)
    started = time.perf_counter()
    done = await client.chat.completions.create(**chat_body())
    elapsed = time.perf_counter() - started
    assert elapsed >= 0.120 + 0.002 * done.usage.completion_tokens
    fast, _ = sim_client()
    started = time.perf_counter()
    await fast.chat.completions.create(**chat_body())
    assert time.perf_counter() - started < elapsed
