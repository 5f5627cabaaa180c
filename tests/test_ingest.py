"""Every line-validation rule of ingest: which line, which field, what the user is told."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from batchyard.catalog import Catalog
from batchyard.config import model_table
from batchyard.errors import LineProblem
from batchyard.ingest import ParsedRequest, read_requests
from batchyard.models import Endpoint
from batchyard.shards import shard_line
from batchyard.tokens import prompt_tokens

CHAT = "/v1/chat/completions"
MESSAGES = [{"role": "user", "content": "Say hello."}]


def line(
    body: dict[str, Any] | None = None, *, url: str = CHAT, cid: object = "r1", **extra: Any
) -> dict[str, Any]:
    obj: dict[str, Any] = {"custom_id": cid, "method": "POST", "url": url}
    obj["body"] = {"model": "gpt-4o-mini", "messages": MESSAGES} if body is None else body
    obj.update(extra)
    return obj


def write(tmp_path: Path, *rows: object) -> Path:
    path = tmp_path / "requests.jsonl"
    text = "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def models() -> Catalog:
    table = model_table(
        {
            "tiny-ctx": {
                "input": 1,
                "output": 1,
                "batch_input": 1,
                "batch_output": 1,
                "context_window": 50,
            }
        }
    )
    return table


def results(path: Path, models: Catalog) -> list[ParsedRequest | LineProblem]:
    return list(read_requests(path, models))


def problems(path: Path, models: Catalog) -> list[LineProblem]:
    return [r for r in results(path, models) if isinstance(r, LineProblem)]


BAD_LINES: list[tuple[str, object, str | None, str]] = [
    ("not json", '{"custom_id": "r1", "method": ', None, "not parseable as valid JSON"),
    ("NaN is not JSON", '{"custom_id": "r1", "x": NaN}', None, "not parseable as valid JSON"),
    ("array", "[1, 2]", None, "must be a JSON object"),
    (
        "missing custom_id",
        {"method": "POST", "url": CHAT, "body": {}},
        "custom_id",
        "Missing required parameter: 'custom_id'.",
    ),
    (
        "integer custom_id",
        line(cid=7),
        "custom_id",
        "Invalid type for 'custom_id': expected a string, but got an integer instead.",
    ),
    ("empty custom_id", line(cid=""), "custom_id", "must not be empty"),
    (
        "missing method",
        {"custom_id": "r1", "url": CHAT, "body": {}},
        "method",
        "Missing required parameter: 'method'.",
    ),
    ("GET", line(method="GET"), "method", "Invalid value: 'GET'. Supported values are: 'POST'."),
    (
        "unknown url",
        line(url="/v1/images/generations"),
        "url",
        "Invalid value: '/v1/images/generations'.",
    ),
    (
        "missing url",
        {"custom_id": "r1", "method": "POST", "body": {}},
        "url",
        "Missing required parameter: 'url'.",
    ),
    (
        "missing body",
        {"custom_id": "r1", "method": "POST", "url": CHAT},
        "body",
        "Missing required parameter: 'body'.",
    ),
    (
        "string body",
        {"custom_id": "r1", "method": "POST", "url": CHAT, "body": "hi"},
        "body",
        "Invalid type for 'body': expected an object, but got a string instead.",
    ),
    (
        "stream",
        line({"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True}),
        "body.stream",
        "Chat Completions: Streaming is not supported in the Batch API.",
    ),
    ("no model", line({"messages": MESSAGES}), "body.model", "Model parameter is required."),
    (
        "unknown model",
        line({"model": "gpt-9", "messages": MESSAGES}),
        "body.model",
        '[models."gpt-9"]',
    ),
    (
        "no messages",
        line({"model": "gpt-4o-mini"}),
        "body.messages",
        "Messages parameter is required.",
    ),
    (
        "empty messages",
        line({"model": "gpt-4o-mini", "messages": []}),
        "body.messages",
        "Invalid 'messages': empty array.",
    ),
    (
        "message not an object",
        line({"model": "gpt-4o-mini", "messages": ["hi"]}),
        "body.messages",
        "Invalid type for 'messages[0]'",
    ),
    (
        "max_tokens on reasoning model",
        line({"model": "gpt-5-mini", "messages": MESSAGES, "max_tokens": 100}),
        "body.max_tokens",
        "Unsupported parameter: 'max_tokens' is not supported with this model. "
        "Use 'max_completion_tokens' instead.",
    ),
    (
        "temperature on reasoning model",
        line({"model": "o4-mini", "messages": MESSAGES, "temperature": 0.2}),
        "body.temperature",
        "Unsupported parameter: 'temperature'",
    ),
    (
        "embeddings model on chat",
        line({"model": "text-embedding-3-small", "messages": MESSAGES}),
        "body.model",
        "is an embeddings model",
    ),
    (
        "chat model on embeddings",
        line({"model": "gpt-4o-mini", "input": "x"}, url="/v1/embeddings"),
        "body.model",
        "is not an embeddings model",
    ),
    (
        "responses without input",
        line({"model": "gpt-4o-mini"}, url="/v1/responses"),
        "body.input",
        "Missing required parameter: 'input'.",
    ),
    (
        "responses stream",
        line({"model": "gpt-4o-mini", "input": "hi", "stream": True}, url="/v1/responses"),
        "body.stream",
        "Responses: Streaming is not supported in the Batch API.",
    ),
    (
        "empty embeddings input",
        line({"model": "text-embedding-3-small", "input": ""}, url="/v1/embeddings"),
        "body.input",
        "must not be empty",
    ),
    (
        "empty embeddings item",
        line({"model": "text-embedding-3-small", "input": ["a", ""]}, url="/v1/embeddings"),
        "body.input",
        "Invalid 'input[1]'",
    ),
    (
        "too many embeddings inputs",
        line({"model": "text-embedding-3-small", "input": ["a"] * 2049}, url="/v1/embeddings"),
        "body.input",
        "at most 2,048",
    ),
    (
        "prompt over context window",
        line({"model": "tiny-ctx", "messages": [{"role": "user", "content": "word " * 60}]}),
        "body.messages",
        "This model's maximum context length is 50 tokens.",
    ),
    (
        "prompt + output over context window",
        line({"model": "tiny-ctx", "messages": MESSAGES, "max_completion_tokens": 45}),
        "body.messages",
        "in the completion",
    ),
    (
        "embedding input over context window",
        line(
            {"model": "text-embedding-3-small", "input": ["short", "token " * 9000]},
            url="/v1/embeddings",
        ),
        "body.input",
        "Invalid 'input[1]'",
    ),
    ("priority not an integer", line(priority="high"), "priority", "Invalid type for 'priority'"),
    (
        "metadata priority not a string",
        line({"model": "gpt-4o-mini", "messages": MESSAGES, "metadata": {"priority": 3}}),
        "body.metadata.priority",
        "expected a string",
    ),
    (
        "number out of range",
        '{"custom_id": "r1", "method": "POST", "url": "/v1/chat/completions", "body": '
        '{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}], '
        '"temperature": 1e400}}',
        "body",
        "out of range",
    ),
    (
        "lone surrogate",
        '{"custom_id": "r\\ud800", "method": "POST", "url": "/v1/chat/completions", "body": '
        '{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]}}',
        None,
        "unpaired surrogate",
    ),
    (
        "tools not countable",
        line({"model": "gpt-4o-mini", "messages": MESSAGES, "tools": 5}),
        "body",
        "Cannot count this request's tokens",
    ),
    (
        "temperature above 2",
        line({"model": "gpt-4o-mini", "messages": MESSAGES, "temperature": 5}),
        "body.temperature",
        "Invalid 'temperature': decimal above maximum value. Expected a value <= 2, but got 5",
    ),
    (
        "top_p below 0",
        line({"model": "gpt-4o-mini", "messages": MESSAGES, "top_p": -0.1}),
        "body.top_p",
        "decimal below minimum value. Expected a value >= 0",
    ),
    (
        "max_completion_tokens zero",
        line({"model": "gpt-4o-mini", "messages": MESSAGES, "max_completion_tokens": 0}),
        "body.max_completion_tokens",
        "integer below minimum value",
    ),
    (
        "n not an integer",
        line({"model": "gpt-4o-mini", "messages": MESSAGES, "n": 1.5}),
        "body.n",
        "Invalid type for 'n': expected an integer, but got a number instead.",
    ),
]


@pytest.mark.parametrize(
    ("row", "field", "message"),
    [case[1:] for case in BAD_LINES],
    ids=[case[0] for case in BAD_LINES],
)
def test_bad_line_names_line_field_and_reason(
    tmp_path: Path, models: Catalog, row: object, field: str | None, message: str
) -> None:
    good = line(cid="first")
    path = write(tmp_path, good, row)
    found = results(path, models)
    assert isinstance(found[0], ParsedRequest) and found[0].custom_id == "first"
    bad = found[1:]
    assert bad, "the bad line was accepted"
    assert all(isinstance(p, LineProblem) for p in bad)
    problems = [p for p in bad if isinstance(p, LineProblem)]
    assert any(p.field == field and message in p.message for p in problems), bad
    for p in bad:
        assert isinstance(p, LineProblem)
        assert (p.path, p.line) == (str(path), 2)
        assert str(p).startswith(f"{path}:2")


def test_one_line_reports_each_of_its_body_problems(tmp_path: Path, models: Catalog) -> None:
    body = {"model": "gpt-5", "messages": MESSAGES, "stream": True, "max_tokens": 5}
    found = problems(write(tmp_path, line(body)), models)
    assert {p.field for p in found} == {"body.stream", "body.max_tokens"}
    assert all(p.custom_id == "r1" for p in found)


def test_valid_chat_request_carries_counts_and_exact_shard_size(
    tmp_path: Path, models: Catalog
) -> None:
    body = {"model": "gpt-4o-mini", "messages": MESSAGES, "max_completion_tokens": 40, "n": 2}
    path = write(tmp_path, line(body, priority=7, cid="é-1"))
    [req] = results(path, models)
    assert isinstance(req, ParsedRequest)
    assert (req.line, req.custom_id, req.endpoint, req.model) == (
        1,
        "é-1",
        Endpoint.CHAT,
        "gpt-4o-mini",
    )
    assert req.input_tokens == prompt_tokens(CHAT, body)
    assert req.output_tokens == 80
    assert req.priority == 7
    written = shard_line(req.custom_id, CHAT, req.body)
    assert req.raw_bytes == len(written)
    assert json.loads(written) == {"custom_id": "é-1", "method": "POST", "url": CHAT, "body": body}
    assert b"priority" not in written  # batchyard's own key is never uploaded


def test_metadata_priority_and_uncapped_output(tmp_path: Path, models: Catalog) -> None:
    body = {"model": "gpt-4o-mini", "messages": MESSAGES, "metadata": {"priority": "-2"}}
    [req] = results(write(tmp_path, line(body)), models)
    assert isinstance(req, ParsedRequest)
    assert req.priority == -2
    assert req.output_tokens is None


def test_embeddings_count_inputs(tmp_path: Path, models: Catalog) -> None:
    body = {"model": "text-embedding-3-small", "input": ["one", "two", "three"]}
    [req] = results(write(tmp_path, line(body, url="/v1/embeddings")), models)
    assert isinstance(req, ParsedRequest)
    assert (req.endpoint, req.embedding_inputs, req.output_tokens) == (Endpoint.EMBEDDINGS, 3, 0)
    assert req.input_tokens == 3


def test_dated_snapshot_uses_base_model_entry(tmp_path: Path, models: Catalog) -> None:
    body = {"model": "gpt-5-mini-2025-08-07", "messages": MESSAGES, "max_tokens": 5}
    [p] = problems(write(tmp_path, line(body)), models)
    assert p.field == "body.max_tokens"  # the snapshot inherits gpt-5-mini's rejects


def test_duplicate_custom_id_names_both_lines(tmp_path: Path, models: Catalog) -> None:
    path = write(tmp_path, line(cid="a"), line(cid="b"), "", line(cid="a"))
    found = results(path, models)
    assert [r.line for r in found] == [1, 2, 4]
    dup = found[2]
    assert isinstance(dup, LineProblem)
    assert (dup.line, dup.field, dup.custom_id) == (4, "custom_id", "a")
    assert "line 1 already uses it" in dup.message


def test_mixed_models_keep_their_groups(tmp_path: Path, models: Catalog) -> None:
    rows = [
        line({"model": "gpt-4o-mini", "messages": MESSAGES}, cid="1"),
        line({"model": "gpt-4.1-mini", "messages": MESSAGES}, cid="2"),
        line({"model": "gpt-4o-mini", "input": "hi"}, url="/v1/responses", cid="3"),
        line({"model": "text-embedding-3-small", "input": "hi"}, url="/v1/embeddings", cid="4"),
    ]
    found = results(write(tmp_path, *rows), models)
    assert [r.group for r in found if isinstance(r, ParsedRequest)] == [
        (Endpoint.CHAT, "gpt-4o-mini"),
        (Endpoint.CHAT, "gpt-4.1-mini"),
        (Endpoint.RESPONSES, "gpt-4o-mini"),
        (Endpoint.EMBEDDINGS, "text-embedding-3-small"),
    ]
