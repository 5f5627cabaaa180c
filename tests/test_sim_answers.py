"""What answers say: JSON when asked for, and bad answers at given rates (real time and batch)."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import openai
import pytest
from openapi_check import validate
from sim_batch_helpers import at, chat_lines, client_for, config, read_lines, submit
from simfixtures import admin_client, chat_body, quiet_config, sim_client

from batchyard.simulator import SimConfig
from batchyard.simulator.answers import REFUSAL

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "label": {"type": "string", "enum": ["spam", "ham"]},
        "score": {"type": "integer", "minimum": 1, "maximum": 5},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
        "ok": {"type": "boolean"},
        "note": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        "tags": {"type": "array", "items": {"$ref": "#/$defs/tag"}, "minItems": 1},
    },
    "required": ["label", "score", "confidence", "ok", "note", "tags"],
    "additionalProperties": False,
    "$defs": {
        "tag": {
            "type": "object",
            "properties": {"name": {"type": "string"}, "weight": {"type": "number"}},
            "required": ["name", "weight"],
            "additionalProperties": False,
        }
    },
}
CHAT_SCHEMA = {"type": "json_schema", "json_schema": {"name": "verdict", "schema": SCHEMA}}
RESPONSES_SCHEMA = {"format": {"type": "json_schema", "name": "verdict", "schema": SCHEMA}}


def _rates(**rates: float) -> SimConfig:
    return quiet_config(rate_limits=False, answers=rates)


async def _chat(client: openai.AsyncOpenAI, **body: Any) -> dict[str, Any]:
    raw = await client.chat.completions.with_raw_response.create(**chat_body(**body))
    data: dict[str, Any] = raw.http_response.json()
    validate("CreateChatCompletionResponse", data, strict_keys=True)
    return data


async def _respond(client: openai.AsyncOpenAI, **body: Any) -> dict[str, Any]:
    raw = await client.responses.with_raw_response.create(model="gpt-4o-mini", **body)
    data: dict[str, Any] = raw.http_response.json()
    validate("Response", data, strict_keys=True)
    return data


async def test_json_mode_answers_are_json() -> None:
    client, _ = sim_client(_rates())
    chat = await _chat(client, response_format={"type": "json_object"})
    assert set(json.loads(chat["choices"][0]["message"]["content"])) == {"answer"}
    reply = await _respond(client, input="hi", text={"format": {"type": "json_object"}})
    assert set(json.loads(reply["output"][0]["content"][0]["text"])) == {"answer"}


@pytest.mark.parametrize("question", ["first", "second", "third"])
async def test_json_schema_answers_follow_the_requests_schema(question: str) -> None:
    client, _ = sim_client(_rates())
    chat = await _chat(client, text=question, response_format=CHAT_SCHEMA)
    jsonschema.validate(json.loads(chat["choices"][0]["message"]["content"]), SCHEMA)
    reply = await _respond(client, input=question, text=RESPONSES_SCHEMA)
    jsonschema.validate(json.loads(reply["output"][0]["content"][0]["text"]), SCHEMA)


async def test_a_cap_cuts_json_short_and_says_so() -> None:
    client, _ = sim_client(_rates())
    chat = await _chat(client, response_format=CHAT_SCHEMA, max_completion_tokens=8)
    choice = chat["choices"][0]
    assert choice["finish_reason"] == "length"
    with pytest.raises(ValueError):
        json.loads(choice["message"]["content"])


async def test_truncated_answers() -> None:
    good, _ = sim_client(_rates())
    bad, _ = sim_client(_rates(truncated_rate=1.0))
    whole = await _chat(good)
    cut = await _chat(bad)
    assert whole["choices"][0]["finish_reason"] == "stop"
    assert cut["choices"][0]["finish_reason"] == "length"
    whole_text = whole["choices"][0]["message"]["content"]
    assert whole_text.startswith(cut["choices"][0]["message"]["content"])
    assert 0 < cut["usage"]["completion_tokens"] < whole["usage"]["completion_tokens"]
    reply = await _respond(bad, input="hi")
    assert reply["status"] == "incomplete"
    assert reply["incomplete_details"] == {"reason": "max_output_tokens"}
    assert reply["output"][0]["status"] == "incomplete"


async def test_content_filtered_answers() -> None:
    client, _ = sim_client(_rates(content_filter_rate=1.0))
    chat = await _chat(client)
    assert chat["choices"][0]["finish_reason"] == "content_filter"
    reply = await _respond(client, input="hi")
    assert reply["status"] == "incomplete"
    assert reply["incomplete_details"] == {"reason": "content_filter"}


async def test_refused_answers() -> None:
    client, state = sim_client(_rates(refusal_rate=1.0))
    chat = await _chat(client, response_format=CHAT_SCHEMA)
    message = chat["choices"][0]["message"]
    assert message["content"] is None
    assert message["refusal"] == REFUSAL
    assert chat["choices"][0]["finish_reason"] == "stop"
    parsed = await client.chat.completions.create(**chat_body())
    assert parsed.choices[0].message.refusal == REFUSAL
    reply = await _respond(client, input="hi")
    assert reply["status"] == "completed"
    assert reply["output"][0]["content"] == [{"type": "refusal", "refusal": REFUSAL}]
    # A refusal is an answer like another: billed for the tokens it took.
    assert len(state.ledger) == 3 and all(e.output_tokens > 0 for e in state.ledger)


async def test_malformed_json_only_where_json_was_asked_for() -> None:
    client, _ = sim_client(_rates(malformed_json_rate=1.0))
    for response_format in ({"type": "json_object"}, CHAT_SCHEMA):
        chat = await _chat(client, response_format=response_format)
        assert chat["choices"][0]["finish_reason"] == "stop"
        with pytest.raises(ValueError):
            json.loads(chat["choices"][0]["message"]["content"])
    reply = await _respond(client, input="hi", text=RESPONSES_SCHEMA)
    with pytest.raises(ValueError):
        json.loads(reply["output"][0]["content"][0]["text"])
    plain = await _chat(client)
    assert plain["choices"][0]["message"]["content"].startswith("Simulated reply")


async def _outcomes(seed: int, n: int = 400) -> list[str]:
    config = quiet_config(
        rate_limits=False,
        seed=seed,
        answers={
            "truncated_rate": 0.1,
            "content_filter_rate": 0.1,
            "refusal_rate": 0.1,
            "malformed_json_rate": 0.1,
        },
    )
    client, _ = sim_client(config)
    kinds = []
    for i in range(n):
        data = await _chat(client, text=f"question {i}", response_format={"type": "json_object"})
        choice = data["choices"][0]
        if choice["message"]["refusal"]:
            kinds.append("refusal")
        elif choice["finish_reason"] != "stop":
            kinds.append(choice["finish_reason"])
        else:
            try:
                json.loads(choice["message"]["content"])
                kinds.append("good")
            except ValueError:
                kinds.append("malformed")
    return kinds


async def test_rates_hold_and_repeat_under_the_seed() -> None:
    kinds = await _outcomes(seed=3)
    for kind in ("length", "content_filter", "refusal", "malformed"):
        assert 20 <= kinds.count(kind) <= 65, (kind, kinds.count(kind))
    assert 180 <= kinds.count("good") <= 300
    assert await _outcomes(seed=3) == kinds
    assert await _outcomes(seed=4) != kinds


async def test_asking_again_gets_a_fresh_draw() -> None:
    client, _ = sim_client(_rates(refusal_rate=0.5))
    refused = [
        (await _chat(client, text="the same question"))["choices"][0]["message"]["refusal"]
        is not None
        for _ in range(20)
    ]
    assert any(refused) and not all(refused)


async def test_batch_lines_go_bad_as_the_same_requests_would_in_real_time() -> None:
    lines = chat_lines(120, response_format={"type": "json_object"})
    answers = {"refusal_rate": 0.2, "truncated_rate": 0.2}

    batch_config = config(turnaround_seconds=1_000)
    batch_config.answers = batch_config.answers.model_copy(update=answers)
    client, state = client_for(batch_config)
    batch = await submit(client, lines)
    done = await at(client, state, batch, 30 + 1_000 + 60)
    output = {line["custom_id"]: line for line in await read_lines(client, done.output_file_id)}
    assert len(output) == 120
    refused_in_batch = {
        cid
        for cid, line in output.items()
        if line["response"]["body"]["choices"][0]["message"]["refusal"] == REFUSAL
    }
    cut_in_batch = {
        cid
        for cid, line in output.items()
        if line["response"]["body"]["choices"][0]["finish_reason"] == "length"
    }
    assert 10 <= len(refused_in_batch) <= 40 and 10 <= len(cut_in_batch) <= 40

    realtime, _ = sim_client(_rates(**answers))
    refused_live, cut_live = set(), set()
    for line in lines:
        answer = await realtime.chat.completions.create(**line["body"])
        if answer.choices[0].message.refusal:
            refused_live.add(line["custom_id"])
        if answer.choices[0].finish_reason == "length":
            cut_live.add(line["custom_id"])
    assert (refused_live, cut_live) == (refused_in_batch, cut_in_batch)


async def test_rates_change_at_runtime_and_are_counted() -> None:
    client, state = sim_client(_rates())
    admin = admin_client(state)
    changed = await admin.post("/_sim/answers", json={"refusal_rate": 1.0})
    assert changed.json()["refusal_rate"] == 1.0
    assert (await _chat(client))["choices"][0]["message"]["refusal"] == REFUSAL
    assert (await admin.post("/_sim/answers", json={"refusal_rate": 2})).status_code == 400
    assert (await admin.post("/_sim/answers", json={"rudeness_rate": 0.1})).status_code == 400
    stats = (await admin.get("/_sim/stats")).json()
    assert stats["bad_answers"] == {"refusal": 1}
