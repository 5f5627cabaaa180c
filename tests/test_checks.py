"""Checks on answers: each shipped check, user checks, names and the default set."""

from __future__ import annotations

import json
from typing import Any

import pytest

from batchyard.checks import (
    DEFAULT_CHECKS,
    Answer,
    CheckFailure,
    NamedCheck,
    resolve_checks,
    run_checks,
)
from batchyard.errors import ConfigError

CHAT = "/v1/chat/completions"
RESPONSES = "/v1/responses"
SCHEMA = {
    "type": "object",
    "properties": {"label": {"enum": ["spam", "ham"]}, "score": {"type": "integer"}},
    "required": ["label", "score"],
    "additionalProperties": False,
}
ASK_SCHEMA = {
    "model": "gpt-4o-mini",
    "messages": [{"role": "user", "content": "classify"}],
    "response_format": {"type": "json_schema", "json_schema": {"name": "v", "schema": SCHEMA}},
}
ASK_JSON = {**ASK_SCHEMA, "response_format": {"type": "json_object"}}
ASK_TEXT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


def chat(
    content: str | None, finish: str = "stop", refusal: str | None = None, n: int = 1
) -> dict[str, Any]:
    message = {"role": "assistant", "content": content, "refusal": refusal}
    return {
        "object": "chat.completion",
        "choices": [{"index": i, "message": message, "finish_reason": finish} for i in range(n)],
    }


def responses(
    text: str | None, status: str = "completed", reason: str | None = None, refusal: str = ""
) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    if text is not None:
        content.append({"type": "output_text", "text": text, "annotations": []})
    if refusal:
        content.append({"type": "refusal", "refusal": refusal})
    return {
        "object": "response",
        "status": status,
        "incomplete_details": {"reason": reason} if reason else None,
        "output": [{"type": "message", "role": "assistant", "content": content}],
    }


def failed(request: dict[str, Any], response: dict[str, Any], endpoint: str = CHAT) -> str | None:
    failure = run_checks(resolve_checks(), Answer(endpoint, request, response))
    return failure.check if failure else None


GOOD = json.dumps({"label": "spam", "score": 3})


@pytest.mark.parametrize(
    ("request_body", "response", "expected"),
    [
        (ASK_TEXT, chat("Hello there."), None),
        (ASK_TEXT, chat("Hello th", finish="length"), "finish"),
        (ASK_TEXT, chat("Hel", finish="content_filter"), "finish"),
        (ASK_TEXT, chat(None, refusal="I can't help with that."), "refusal"),
        (ASK_JSON, chat('{"answer": "yes"}'), None),
        (ASK_JSON, chat('{"answer": "yes"'), "json"),
        (ASK_TEXT, chat('{"answer": "yes"'), None),  # free text need not parse
        (ASK_SCHEMA, chat(GOOD), None),
        (ASK_SCHEMA, chat(GOOD[:-1]), "json"),
        (ASK_SCHEMA, chat(json.dumps({"label": "eggs", "score": 3})), "schema"),
        (ASK_SCHEMA, chat(json.dumps({"label": "spam"})), "schema"),
        (ASK_SCHEMA, chat(GOOD[:5], finish="length"), "finish"),  # the cause, not the symptom
        (ASK_SCHEMA, chat(None, refusal="No."), "refusal"),
    ],
)
def test_each_shipped_check_on_chat(
    request_body: dict[str, Any], response: dict[str, Any], expected: str | None
) -> None:
    assert failed(request_body, response) == expected


def test_every_choice_is_checked_and_named() -> None:
    response = chat(GOOD, n=2)
    response["choices"][1]["finish_reason"] = "length"
    failure = run_checks(resolve_checks(), Answer(CHAT, ASK_SCHEMA, response))
    assert failure is not None
    assert failure.check == "finish"
    assert failure.reason.startswith("choice 1:")


def test_responses_endpoint_shapes() -> None:
    fmt = {"format": {"type": "json_schema", "name": "v", "schema": SCHEMA}}
    asked = {"model": "gpt-4o-mini", "input": "classify", "text": fmt}
    assert failed(asked, responses(GOOD), RESPONSES) is None
    cut = responses(GOOD[:4], status="incomplete", reason="max_output_tokens")
    assert failed(asked, cut, RESPONSES) == "finish"
    filtered = responses("", status="incomplete", reason="content_filter")
    assert failed(asked, filtered, RESPONSES) == "finish"
    assert failed(asked, responses(None, refusal="No."), RESPONSES) == "refusal"
    assert failed(asked, responses('{"label": "x"}'), RESPONSES) == "schema"
    assert failed({"model": "m", "input": "x"}, responses("plain"), RESPONSES) is None


def test_completions_and_embeddings() -> None:
    cut = {"choices": [{"index": 0, "text": "abc", "finish_reason": "length"}]}
    assert failed({"model": "m", "prompt": "x"}, cut, "/v1/completions") == "finish"
    vectors = {"object": "list", "data": [{"embedding": [0.1]}]}
    assert failed({"model": "m", "input": "x"}, vectors, "/v1/embeddings") is None


def test_schema_failure_says_where() -> None:
    bad = chat(json.dumps({"label": "spam", "score": "high"}))
    failure = run_checks(resolve_checks(["schema"]), Answer(CHAT, ASK_SCHEMA, bad))
    assert failure == CheckFailure("schema", failure.reason if failure else "")
    assert failure is not None and "at score" in failure.reason
    assert failure.code == "check:schema"


def test_default_set_and_none() -> None:
    assert [c.name for c in resolve_checks()] == list(DEFAULT_CHECKS)
    assert resolve_checks(["none"]) == ()
    assert resolve_checks([]) == ()
    assert [c.name for c in resolve_checks(["json", "finish", "json"])] == ["json", "finish"]


def mentions_price(answer: Answer) -> str | None:
    text = answer.choices[0].text or ""
    return None if "$" in text else "the answer gives no price"


def test_user_checks_callable_registry_and_import() -> None:
    checks = resolve_checks(["finish", mentions_price])
    assert [c.name for c in checks] == ["finish", "mentions_price"]
    assert run_checks(checks, Answer(CHAT, ASK_TEXT, chat("It costs $3."))) is None
    failure = run_checks(checks, Answer(CHAT, ASK_TEXT, chat("It is cheap.")))
    assert failure == CheckFailure("mentions_price", "the answer gives no price")
    # By name: from a registry (the Python API keeps callables there) or MODULE:FUNCTION.
    by_name = resolve_checks(["price"], {"price": mentions_price})
    assert by_name == (NamedCheck("price", mentions_price),)
    imported = resolve_checks(["test_checks:mentions_price"])
    assert imported[0].name == "test_checks:mentions_price"
    assert run_checks(imported, Answer(CHAT, ASK_TEXT, chat("cheap"))) is not None


def test_a_raising_user_check_fails_the_answer_not_the_run() -> None:
    def broken(answer: Answer) -> str | None:
        raise KeyError("usage")

    failure = run_checks(resolve_checks([broken]), Answer(CHAT, ASK_TEXT, chat("x")))
    assert failure is not None and "KeyError" in failure.reason


@pytest.mark.parametrize("spec", ["nonsense", "no_such_module_xyz:check", "json:nothing_here"])
def test_unknown_checks_are_refused_with_the_choices(spec: str) -> None:
    with pytest.raises(ConfigError, match="finish, refusal, json, schema"):
        resolve_checks([spec])
