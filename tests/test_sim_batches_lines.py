"""Batch input validation and per-line results in the simulator: error codes with 1-based
lines and params, shuffled output, HTTP-shaped and non-HTTP error lines, the usage
aggregate and billing each succeeded line exactly once."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest
from openapi_check import validate
from sim_batch_helpers import at, chat_line, chat_lines, client_for, config, read_lines, submit

from batchyard.simulator.execute import price

GOOD = chat_line("good-1")


def _without(field: str) -> dict[str, Any]:
    line = chat_line("x")
    del line[field]
    return line


def _body(**change: Any) -> dict[str, Any]:
    line = chat_line("x")
    line["body"] = {**line["body"], **change}
    return {**line, "body": {k: v for k, v in line["body"].items() if v is not None}}


VALIDATION_CASES: list[tuple[Any, str, str | None, str | None]] = [
    ('{"custom_id": "x", "method": ', "invalid_json_line", None, "not parseable as valid JSON"),
    ("[1, 2]", "invalid_json_line", None, None),
    (_without("custom_id"), "missing_required_parameter", "custom_id", "'custom_id'"),
    (_without("method"), "missing_required_parameter", "method", "'method'"),
    (_without("url"), "missing_required_parameter", "url", "'url'"),
    (_without("body"), "missing_required_parameter", "body", "'body'"),
    (
        {**chat_line("x"), "url": "/v1/embeddings"},
        "invalid_url",
        "url",
        "The URL provided for this request does not match the batch endpoint.",
    ),
    (
        _body(stream=True),
        "streaming_unsupported",
        "body.stream",
        "Chat Completions: Streaming is not supported in the Batch API.",
    ),
    (
        _body(model="nonexistent-model-xyz"),
        "model_not_found",
        "body.model",
        "The provided model 'nonexistent-model-xyz' is not supported by the Batch API.",
    ),
    (_body(model=None), "invalid_request", "body.model", "Model parameter is required."),
    (_body(messages=None), "invalid_request", "body.messages", "Messages parameter is required."),
    (chat_line("good-1"), "duplicate_custom_id", "custom_id", "good-1"),
    (chat_line("y", model="gpt-4o"), "mismatched_model", "body.model", "gpt-4o"),
]


@pytest.mark.parametrize(("bad", "code", "param", "message"), VALIDATION_CASES)
async def test_each_validation_error_names_its_line_and_param(
    bad: Any, code: str, param: str | None, message: str | None
) -> None:
    client, state = client_for(config())
    # Blank lines are skipped but still counted: the bad line is physical line 3.
    batch = await submit(client, [GOOD, "", bad, chat_line("good-2")])
    failed = await at(client, state, batch, 30)
    assert failed.status == "failed"
    assert failed.failed_at == batch.created_at + 30
    assert failed.errors is not None
    assert [(e.code, e.line, e.param) for e in failed.errors.data or []] == [(code, 3, param)]
    error_message = (failed.errors.data or [])[0].message or ""
    if message is not None:
        assert message in error_message
    raw = await client.batches.with_raw_response.retrieve(batch.id)
    validate("Batch", json.loads(raw.text), strict_keys=True)
    assert failed.output_file_id is None and failed.error_file_id is None
    assert state.ledger == []


async def test_every_bad_line_is_reported() -> None:
    client, state = client_for(config())
    lines: list[Any] = [GOOD, "not json", _without("url"), chat_line("ok"), _body(stream=True)]
    failed = await at(client, state, await submit(client, lines), 30)
    assert failed.errors is not None
    assert [(e.code, e.line) for e in failed.errors.data or []] == [
        ("invalid_json_line", 2),
        ("missing_required_parameter", 3),
        ("streaming_unsupported", 5),
    ]


async def test_more_requests_than_the_cap_fail_the_batch() -> None:
    client, state = client_for(config())
    assert state.config.batch.max_requests == 50_000
    template = json.dumps(chat_line("ID"))
    lines: list[Any] = [template.replace("ID", f"r{i}") for i in range(50_001)]
    failed = await at(client, state, await submit(client, lines), 30)
    assert failed.status == "failed" and failed.errors is not None
    [error] = failed.errors.data or []
    assert (error.code, error.line, error.param) == ("too_many_tasks", None, None)
    assert "50,001" in (error.message or "") and "50,000" in (error.message or "")


async def test_embedding_inputs_over_the_cap_fail_the_batch() -> None:
    client, state = client_for(config(max_embedding_inputs=10))

    def line(i: int, n: int) -> dict[str, Any]:
        body = {"model": "text-embedding-3-small", "input": [f"text {i} {j}" for j in range(n)]}
        return {"custom_id": f"e{i}", "method": "POST", "url": "/v1/embeddings", "body": body}

    ok = await submit(client, [line(i, 5) for i in range(2)], endpoint="/v1/embeddings")
    over = await submit(client, [line(i, 4) for i in range(3)], endpoint="/v1/embeddings")
    assert (await at(client, state, ok, 30)).status == "in_progress"
    failed = await client.batches.retrieve(over.id)
    assert failed.status == "failed" and failed.errors is not None
    assert [e.code for e in failed.errors.data or []] == ["too_many_embedding_inputs"]


async def test_output_is_shuffled_with_every_custom_id_once() -> None:
    client, state = client_for(config())
    batch = await submit(client, chat_lines(50))
    done = await at(client, state, batch, 2_000)
    assert done.status == "completed" and done.error_file_id is None
    lines = await read_lines(client, done.output_file_id)
    ids = [line["custom_id"] for line in lines]
    expected = [f"req-{i}" for i in range(50)]
    assert ids != expected
    assert sorted(ids) == sorted(expected) and len(set(ids)) == 50
    for line in lines:
        validate("BatchRequestOutput", line, strict_keys=True)
        validate("CreateChatCompletionResponse", line["response"]["body"])
        assert line["id"].startswith("batch_req_") and line["error"] is None
        assert line["response"]["status_code"] == 200
        assert line["response"]["request_id"].startswith("req_")
    assert len({line["id"] for line in lines}) == 50


async def test_usage_aggregates_the_succeeded_lines() -> None:
    client, state = client_for(config())
    done = await at(client, state, await submit(client, chat_lines(7)), 2_000)
    lines = await read_lines(client, done.output_file_id)
    usage = [line["response"]["body"]["usage"] for line in lines]
    assert done.usage is not None
    assert done.usage.input_tokens == sum(u["prompt_tokens"] for u in usage) > 0
    assert done.usage.output_tokens == sum(u["completion_tokens"] for u in usage) > 0
    assert done.usage.total_tokens == done.usage.input_tokens + done.usage.output_tokens


async def test_http_errors_go_to_the_error_file_and_an_all_failed_batch_completes() -> None:
    client, state = client_for(config())
    lines = chat_lines(5, model="gpt-5-mini", max_tokens=100)
    done = await at(client, state, await submit(client, lines), 2_000)
    assert done.status == "completed"
    assert done.output_file_id is None and done.error_file_id is not None
    assert done.request_counts is not None
    assert done.request_counts.model_dump() == {"total": 5, "completed": 0, "failed": 5}
    errors = await read_lines(client, done.error_file_id)
    assert sorted(line["custom_id"] for line in errors) == [f"req-{i}" for i in range(5)]
    for line in errors:
        validate("BatchRequestOutput", line, strict_keys=True)
        validate("ErrorResponse", line["response"]["body"])
        assert line["error"] is None and line["response"]["status_code"] == 400
        assert line["response"]["body"]["error"]["message"] == (
            "Unsupported parameter: 'max_tokens' is not supported with this model. "
            "Use 'max_completion_tokens' instead."
        )
    assert state.ledger == []


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        ("batch_line_error_rate", "server_error"),
        ("batch_line_timeout_rate", "request_timeout"),
    ],
)
async def test_line_faults(fault: str, expected: str) -> None:
    client, state = client_for(config())
    setattr(state.faults, fault, 1.0)
    done = await at(client, state, await submit(client, chat_lines(4)), 2_000)
    assert done.status == "completed" and done.output_file_id is None
    errors = await read_lines(client, done.error_file_id)
    assert len(errors) == 4
    for line in errors:
        validate("BatchRequestOutput", line, strict_keys=True)
        if expected == "server_error":
            assert line["error"] is None and line["response"]["status_code"] == 500
            assert line["response"]["body"]["error"]["type"] == "server_error"
        else:
            assert line["response"] is None
            assert line["error"] == {
                "code": "request_timeout",
                "message": "The underlying call to the model timed out.",
            }


async def test_each_succeeded_line_is_billed_once_however_often_it_is_read() -> None:
    client, state = client_for(config())
    state.faults.batch_line_timeout_rate = 0.3
    batch = await submit(client, chat_lines(40))
    for seconds in (100, 500, 1_030, 1_060, 1_090, 1_500, 5_000):
        await at(client, state, batch, seconds)
        await client.batches.list()
    done = await client.batches.retrieve(batch.id)
    for _ in range(5):
        await client.batches.retrieve(batch.id)
    output = await read_lines(client, done.output_file_id)
    errors = await read_lines(client, done.error_file_id)
    assert output and errors
    assert len(output) + len(errors) == 40
    assert done.request_counts is not None
    assert (done.request_counts.completed, done.request_counts.failed) == (
        len(output),
        len(errors),
    )
    billed = Counter(entry.custom_id for entry in state.ledger)
    assert billed == Counter(line["custom_id"] for line in output)
    assert set(billed.values()) == {1}
    for entry in state.ledger:
        assert (entry.path, entry.batch_id, entry.endpoint) == ("batch", batch.id, batch.endpoint)
        assert entry.cost == pytest.approx(
            price(state, "gpt-4o-mini", entry.input_tokens, entry.output_tokens, "standard") / 2
        )
    assert done.usage is not None
    assert done.usage.input_tokens == sum(e.input_tokens for e in state.ledger)


async def test_responses_and_embeddings_batches_answer_with_their_endpoint_bodies() -> None:
    client, state = client_for(config())
    responses = [
        {
            "custom_id": f"r{i}",
            "method": "POST",
            "url": "/v1/responses",
            "body": {"model": "gpt-5-mini", "input": f"say {i}", "max_output_tokens": 64},
        }
        for i in range(3)
    ]
    embeds = [
        {
            "custom_id": f"e{i}",
            "method": "POST",
            "url": "/v1/embeddings",
            "body": {"model": "text-embedding-3-small", "input": [f"a {i}", f"b {i}"]},
        }
        for i in range(3)
    ]
    first = await submit(client, responses, endpoint="/v1/responses")
    second = await submit(client, embeds, endpoint="/v1/embeddings")
    state.clock.advance(2_000)
    for batch, schema in ((first, "Response"), (second, "CreateEmbeddingResponse")):
        done = await client.batches.retrieve(batch.id)
        assert done.status == "completed", done.errors
        lines = await read_lines(client, done.output_file_id)
        assert len(lines) == 3
        for line in lines:
            validate(schema, line["response"]["body"])
    reasoning = await client.batches.retrieve(first.id)
    assert reasoning.usage is not None
    assert reasoning.usage.output_tokens_details.reasoning_tokens > 0


async def test_turnaround_can_be_set_per_model_and_per_batch() -> None:
    cfg = config(turnaround_seconds=1_000, model_turnaround_seconds={"gpt-4o": 100})
    client, state = client_for(cfg)
    default = await submit(client, chat_lines(2))
    per_model = await submit(client, chat_lines(2, model="gpt-4o"))
    per_batch = await submit(client, chat_lines(2), metadata={"sim_turnaround_seconds": "10"})
    state.clock.advance(30 + 10)
    assert (await client.batches.retrieve(per_batch.id)).status == "finalizing"
    assert (await client.batches.retrieve(per_model.id)).status == "in_progress"
    state.clock.advance(90)
    assert (await client.batches.retrieve(per_model.id)).status == "finalizing"
    assert (await client.batches.retrieve(default.id)).status == "in_progress"


async def test_turnaround_spread_is_seeded() -> None:
    async def run(seed: int) -> list[int]:
        cfg = config(turnaround_sigma=0.5)
        cfg.seed = seed
        client, state = client_for(cfg)
        batches = [await submit(client, chat_lines(1, prefix=f"b{i}-")) for i in range(5)]
        state.clock.advance(20 * 1_000)
        return [(await client.batches.retrieve(b.id)).finalizing_at or 0 for b in batches]

    first, again, other = await run(1), await run(1), await run(2)
    assert first == again
    assert first != other
    assert len(set(first)) == 5  # each batch draws its own turnaround
