"""Token counts against known values (OpenAI cookbook, tiktoken's own examples)."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import pytest

from batchyard import tokens
from batchyard.tokens import count_request, encoding_name_for_model, output_tokens, prompt_tokens

# The cookbook's example conversation; the notebook reports 129 prompt tokens for
# gpt-3.5-turbo / gpt-4 and 124 for gpt-4o / gpt-4o-mini, matching the API's usage.
COOKBOOK_MESSAGES = [
    {
        "role": "system",
        "content": "You are a helpful, pattern-following assistant that translates corporate "
        "jargon into plain English.",
    },
    {
        "role": "system",
        "name": "example_user",
        "content": "New synergies will help drive top-line growth.",
    },
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Things working well together will increase revenue.",
    },
    {
        "role": "system",
        "name": "example_user",
        "content": "Let's circle back when we have more bandwidth to touch base on opportunities "
        "for increased leverage.",
    },
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Let's talk later when we're less busy about how to do better.",
    },
    {
        "role": "user",
        "content": "This late pivot means we don't have time to boil the ocean for the client "
        "deliverable.",
    },
]


@pytest.mark.parametrize(
    ("model", "expected"),
    [("gpt-3.5-turbo", 129), ("gpt-4", 129), ("gpt-4o", 124), ("gpt-4o-mini", 124)],
)
def test_cookbook_chat_counts(model: str, expected: int) -> None:
    body = {"model": model, "messages": COOKBOOK_MESSAGES}
    assert prompt_tokens("/v1/chat/completions", body) == expected


@pytest.mark.parametrize(
    ("model", "encoding"),
    [
        ("gpt-5", "o200k_base"),
        ("gpt-5-mini-2025-08-07", "o200k_base"),
        ("gpt-4.1-nano", "o200k_base"),
        ("gpt-4o-2024-08-06", "o200k_base"),
        ("o3", "o200k_base"),
        ("o4-mini", "o200k_base"),
        ("ft:gpt-4o-mini:acme::abc", "o200k_base"),
        ("gpt-4", "cl100k_base"),
        ("gpt-4-turbo", "cl100k_base"),
        ("gpt-3.5-turbo", "cl100k_base"),
        ("text-embedding-3-small", "cl100k_base"),
        ("text-embedding-ada-002", "cl100k_base"),
    ],
)
def test_model_encodings(model: str, encoding: str) -> None:
    assert encoding_name_for_model(model) == encoding


def test_unknown_model_falls_back_once(caplog: pytest.LogCaptureFixture) -> None:
    encoding_name_for_model.cache_clear()
    with caplog.at_level(logging.WARNING, logger="batchyard.tokens"):
        assert encoding_name_for_model("mystery-model") == "o200k_base"
        assert encoding_name_for_model("mystery-model") == "o200k_base"
    warnings = [r for r in caplog.records if "mystery-model" in r.getMessage()]
    assert len(warnings) == 1


def test_known_encodings_of_plain_text() -> None:
    # tiktoken's README: "hello world" -> [15339, 1917] in cl100k_base.
    assert tokens.encoding_for_model("gpt-4").encode("hello world") == [15339, 1917]
    assert len(tokens.encoding_for_model("gpt-4o").encode("tiktoken is great!")) == 6


def test_vocabularies_are_verified() -> None:
    for name, digest in tokens._VOCAB_SHA256.items():
        data = (tokens.DATA_DIR / f"{name}.tiktoken").read_bytes()
        assert hashlib.sha256(data).hexdigest() == digest


def test_damaged_vocabulary_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bad = tmp_path / "o200k_base.tiktoken"
    bad.write_bytes(b"AAAA 0\n")
    monkeypatch.setattr(tokens, "DATA_DIR", tmp_path)
    tokens._load.cache_clear()
    try:
        with pytest.raises(RuntimeError, match="damaged"):
            tokens._load("o200k_base")
    finally:
        tokens._load.cache_clear()


def test_multipart_content_counts_text_and_estimates_images() -> None:
    text_only = {
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": "Describe the picture."}],
    }
    with_image = {
        "model": "gpt-4o",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Describe the picture."},
                    {"type": "image_url", "image_url": {"url": "https://x/y.png", "detail": "low"}},
                ],
            }
        ],
    }
    base = prompt_tokens("/v1/chat/completions", text_only)
    assert prompt_tokens("/v1/chat/completions", with_image) == base + tokens.IMAGE_TOKENS_LOW


def test_tools_add_the_cookbook_function_overhead() -> None:
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Weather in Paris?"}]}
    tool = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Get the weather.",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "description": "City name."},
                    "unit": {"type": "string", "description": "Unit", "enum": ["c", "f"]},
                },
            },
        },
    }
    enc = tokens.encoding_for_model("gpt-4o")
    expected_tools = (
        7
        + len(enc.encode("get_weather:Get the weather"))
        + 3
        + 3
        + len(enc.encode("city:string:City name"))
        + 3
        + (-3)
        + 3
        + len(enc.encode("c"))
        + 3
        + len(enc.encode("f"))
        + len(enc.encode("unit:string:Unit"))
        + 12
    )
    plain = prompt_tokens("/v1/chat/completions", body)
    assert (
        prompt_tokens("/v1/chat/completions", {**body, "tools": [tool]}) == plain + expected_tools
    )


def test_responses_input_string_counts_like_one_user_message() -> None:
    as_chat = prompt_tokens(
        "/v1/chat/completions",
        {
            "model": "gpt-5",
            "messages": [{"role": "user", "content": "Write a haiku about SQLite."}],
        },
    )
    as_responses = prompt_tokens(
        "/v1/responses", {"model": "gpt-5", "input": "Write a haiku about SQLite."}
    )
    assert as_responses == as_chat
    with_instructions = prompt_tokens(
        "/v1/responses",
        {"model": "gpt-5", "instructions": "Be brief.", "input": "Write a haiku about SQLite."},
    )
    enc = tokens.encoding_for_model("gpt-5")
    assert with_instructions == as_chat + 3 + len(enc.encode("system")) + len(
        enc.encode("Be brief.")
    )


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("hello world", 2),
        (["hello world", "hello"], 3),
        ([15339, 1917, 0], 3),
        ([[15339, 1917], [0]], 3),
    ],
)
def test_embedding_inputs(raw: object, expected: int) -> None:
    body = {"model": "text-embedding-3-small", "input": raw}
    assert prompt_tokens("/v1/embeddings", body) == expected


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"model": "gpt-5", "max_completion_tokens": 300}, 300),
        ({"model": "gpt-4o", "max_tokens": 50, "n": 2}, 100),
        ({"model": "gpt-5", "max_output_tokens": 64}, 64),
        ({"model": "gpt-4o"}, None),
    ],
)
def test_output_tokens(body: dict[str, object], expected: int | None) -> None:
    endpoint = "/v1/responses" if "max_output_tokens" in body else "/v1/chat/completions"
    assert output_tokens(endpoint, body) == expected


def test_count_request_pairs_prompt_and_output() -> None:
    body = {"model": "gpt-4o", "messages": COOKBOOK_MESSAGES, "max_tokens": 10}
    count = count_request("/v1/chat/completions", body)
    assert (count.prompt, count.output) == (124, 10)
