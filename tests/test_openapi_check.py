"""Tests for ``openapi_check``: it rejects what the OpenAI spec rejects, accepts what it accepts.

Also pins down how the openai SDK's own types must be serialised for the spec to accept them
(the simulator builds its JSON from those types); the findings are written up in
``tests/openapi/README.md``.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest
from openai import BaseModel
from openai.types import Batch, CreateEmbeddingResponse, Embedding, ErrorObject, FileObject
from openai.types.batch import Errors
from openai.types.batch_error import BatchError
from openai.types.batch_request_counts import BatchRequestCounts
from openai.types.chat import ChatCompletion, ChatCompletionMessage
from openai.types.chat.chat_completion import Choice
from openai.types.completion_usage import CompletionUsage
from openai.types.create_embedding_response import Usage as EmbeddingUsage
from openai.types.responses import (
    FunctionTool,
    Response,
    ResponseFormatTextJSONSchemaConfig,
    ResponseFunctionToolCall,
    ResponseOutputMessage,
    ResponseOutputText,
    ResponseReasoningItem,
    ResponseTextConfig,
    ResponseUsage,
)
from openai.types.responses.response_usage import InputTokensDetails, OutputTokensDetails
from openapi_check import SCHEMAS_PATH, errors, schema_names, validate

# The Batch of openai-api.md §2.2 / the spec's own example, without its null-valued keys.
BATCH: dict[str, Any] = {
    "id": "batch_abc123",
    "object": "batch",
    "endpoint": "/v1/completions",
    "model": "gpt-5-2025-08-07",
    "input_file_id": "file-abc123",
    "completion_window": "24h",
    "status": "completed",
    "output_file_id": "file-cvaTdG",
    "error_file_id": "file-HOWS94",
    "created_at": 1711471533,
    "in_progress_at": 1711471538,
    "expires_at": 1711557933,
    "finalizing_at": 1711493133,
    "completed_at": 1711493163,
    "request_counts": {"total": 100, "completed": 95, "failed": 5},
    "usage": {
        "input_tokens": 1500,
        "input_tokens_details": {"cached_tokens": 1024},
        "output_tokens": 500,
        "output_tokens_details": {"reasoning_tokens": 300},
        "total_tokens": 2000,
    },
    "metadata": {"customer_id": "user_123456789", "batch_description": "Nightly eval job"},
}
BATCH_NULL_KEYS = ["errors", "failed_at", "expired_at", "cancelling_at", "cancelled_at"]
ERROR_RESPONSE: dict[str, Any] = {
    "error": {
        "message": "Cannot cancel a batch with status 'completed'.",
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }
}
CHAT_BODY: dict[str, Any] = {
    "id": "chatcmpl-123",
    "object": "chat.completion",
    "created": 1711652795,
    "model": "gpt-3.5-turbo-0125",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Hello.", "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 22, "completion_tokens": 2, "total_tokens": 24},
    "system_fingerprint": "fp_123",
}


def without(data: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k != key}


# --- the checker itself ------------------------------------------------------------------


def test_valid_batch_passes_plain_and_strict() -> None:
    validate("Batch", BATCH)
    validate("Batch", BATCH, strict_keys=True)


@pytest.mark.parametrize(
    ("instance", "expected"),
    [
        (without(BATCH, "status"), "$: 'status' is a required property"),
        ({**BATCH, "status": "done"}, "$.status: 'done' is not one of"),
        ({**BATCH, "created_at": "1711471533"}, "$.created_at: '1711471533' is not of type"),
        ({**BATCH, "object": "batches"}, "$.object: 'batches' is not one of ['batch']"),
        (
            {**BATCH, "request_counts": {"total": 1, "completed": 1}},
            "$.request_counts: 'failed' is a required property",
        ),
    ],
)
def test_invalid_batch_fails_naming_the_field(instance: dict[str, Any], expected: str) -> None:
    found = errors("Batch", instance)
    assert any(e.startswith(expected) for e in found), found
    with pytest.raises(AssertionError, match=r"violation\(s\) of OpenAPI schema 'Batch'"):
        validate("Batch", instance)


def test_assertion_lists_every_violation_with_its_path() -> None:
    broken = {**without(BATCH, "created_at"), "status": "done"}
    with pytest.raises(AssertionError) as caught:
        validate("Batch", broken)
    text = str(caught.value)
    assert "2 violation(s)" in text
    assert "  - $: 'created_at' is a required property" in text
    assert "  - $.status: 'done' is not one of" in text


def test_spec_example_batch_with_nulls_is_rejected_by_the_spec() -> None:
    # Finding: the spec's own Batch example (and real API responses) carry null for unset
    # fields, but the schema declares them non-nullable. Spec-valid JSON omits those keys.
    with_nulls = {**BATCH, **dict.fromkeys(BATCH_NULL_KEYS)}
    found = errors("Batch", with_nulls)
    assert sorted(e.split(":")[0] for e in found) == sorted(f"$.{k}" for k in BATCH_NULL_KEYS)


def test_strict_keys_flags_undeclared_keys_at_any_depth() -> None:
    typo = copy.deepcopy(BATCH)
    typo["request_counts"]["complete"] = 95
    typo["output_file"] = "file-x"
    assert errors("Batch", typo) == []  # the spec allows extra keys
    found = errors("Batch", typo, strict_keys=True)
    assert found == [
        "$: Unevaluated properties are not allowed ('output_file' was unexpected)",
        "$.request_counts: Unevaluated properties are not allowed ('complete' was unexpected)",
    ]


def test_strict_keys_leaves_free_form_maps_open() -> None:
    batch = {**BATCH, "metadata": {"anything": "goes", "really": "yes"}}
    line = {
        "id": "batch_req_1",
        "custom_id": "r1",
        "response": {"status_code": 200, "request_id": "req_1", "body": {"any": "body"}},
        "error": None,
    }
    assert errors("Batch", batch, strict_keys=True) == []
    assert errors("BatchRequestOutput", line, strict_keys=True) == []


def test_error_response() -> None:
    validate("ErrorResponse", ERROR_RESPONSE, strict_keys=True)
    missing_type = {"error": without(ERROR_RESPONSE["error"], "type")}
    assert errors("ErrorResponse", missing_type) == ["$.error: 'type' is a required property"]
    # code and param are required even when null: dropping them is a spec violation.
    no_param = {"error": without(ERROR_RESPONSE["error"], "param")}
    assert errors("ErrorResponse", no_param) == ["$.error: 'param' is a required property"]


def test_batch_request_output_lines() -> None:
    success = {
        "id": "batch_req_123",
        "custom_id": "request-2",
        "response": {"status_code": 200, "request_id": "req_123", "body": CHAT_BODY},
        "error": None,
    }
    expired = {
        "id": "batch_req_124",
        "custom_id": "request-3",
        "response": None,
        "error": {"code": "batch_expired", "message": "This request could not be executed."},
    }
    http_error = {
        "id": "batch_req_125",
        "custom_id": "request-4",
        "response": {"status_code": 400, "request_id": "req_125", "body": ERROR_RESPONSE},
        "error": None,
    }
    for line in (success, expired, http_error):
        validate("BatchRequestOutput", line, strict_keys=True)
    validate("CreateChatCompletionResponse", CHAT_BODY, strict_keys=True)
    assert errors("BatchRequestOutput", {**expired, "error": {"code": 1, "message": "x"}}) == [
        "$.error.code: 1 is not of type 'string'"
    ]
    assert errors("BatchRequestOutput", {**success, "response": "ok"}) == [
        "$.response: 'ok' is not of type 'object', 'null'"
    ]


def test_batch_request_input_line() -> None:
    line = {"custom_id": "r1", "method": "POST", "url": "/v1/chat/completions", "body": {}}
    validate("BatchRequestInput", line)
    assert errors("BatchRequestInput", {**line, "method": "GET"}) == [
        "$.method: 'GET' is not one of ['POST']"
    ]
    # The old spec forgot to declare `body`, so strict_keys cannot be used for input lines.
    assert errors("BatchRequestInput", line, strict_keys=True) == [
        "$: Unevaluated properties are not allowed ('body' was unexpected)"
    ]


def test_openai_file_and_lists() -> None:
    file = {
        "id": "file-abc123",
        "object": "file",
        "bytes": 120000,
        "created_at": 1677610602,
        "expires_at": 1680202602,
        "filename": "mydata.jsonl",
        "purpose": "batch",
        "status": "processed",
    }
    validate("OpenAIFile", file, strict_keys=True)
    assert errors("OpenAIFile", {**file, "purpose": "batch_input"})[0].startswith("$.purpose:")
    listing = {
        "object": "list",
        "data": [file],
        "first_id": "file-abc123",
        "last_id": "file-abc123",
    }
    assert errors("ListFilesResponse", listing) == ["$: 'has_more' is a required property"]
    validate("ListFilesResponse", {**listing, "has_more": False}, strict_keys=True)
    validate("ListBatchesResponse", {"object": "list", "data": [BATCH], "has_more": False})
    # Spec quirk: first_id/last_id are non-nullable strings, so an empty page cannot null them.
    empty: dict[str, object] = {
        "object": "list",
        "data": [],
        "first_id": None,
        "last_id": None,
        "has_more": False,
    }
    assert errors("ListFilesResponse", empty) == [
        "$.first_id: None is not of type 'string'",
        "$.last_id: None is not of type 'string'",
    ]
    validate("DeleteFileResponse", {"id": "file-abc123", "object": "file", "deleted": True})


def test_unknown_schema_name_is_a_key_error() -> None:
    with pytest.raises(KeyError, match="no schema named 'Batchh'"):
        errors("Batchh", {})


def test_bundle_is_self_contained_and_records_its_source() -> None:
    text = SCHEMAS_PATH.read_text(encoding="utf-8")
    bundle = json.loads(text)
    names = set(schema_names())
    refs = {ref.removeprefix("#/$defs/") for ref in _strings_after(text, '"$ref":"')}
    assert refs <= names, f"dangling $ref: {sorted(refs - names)}"
    source = bundle["x-source"]
    for spec in (source["spec"], source["old_spec"]):
        assert len(spec["sha256"]) == 64
        assert set(spec["roots"]) <= names
    assert "nullable" not in text and "$recursiveRef" not in text
    assert len(text.encode()) < 2_000_000


def _strings_after(text: str, marker: str) -> set[str]:
    found = set()
    for chunk in text.split(marker)[1:]:
        found.add(chunk.split('"', 1)[0])
    return found


# --- how SDK objects must be serialised ------------------------------------------------

Dump = Callable[[BaseModel], dict[str, Any]]
DUMPS: dict[str, Dump] = {
    "model_dump": lambda m: m.model_dump(mode="json"),
    "exclude_none": lambda m: m.model_dump(mode="json", by_alias=True, exclude_none=True),
    "exclude_unset": lambda m: m.model_dump(mode="json", by_alias=True, exclude_unset=True),
    "to_dict": lambda m: m.to_dict(mode="json"),
}


def chat_completion(**overrides: Any) -> ChatCompletion:
    message = ChatCompletionMessage(role="assistant", content="Hello.", refusal=None)
    fields: dict[str, Any] = {
        "id": "chatcmpl-123",
        "object": "chat.completion",
        "created": 1711652795,
        "model": "gpt-4o-mini",
        "choices": [Choice(index=0, message=message, logprobs=None, finish_reason="stop")],
        "usage": CompletionUsage(prompt_tokens=22, completion_tokens=2, total_tokens=24),
        "system_fingerprint": "fp_123",
        "service_tier": "default",
    }
    return ChatCompletion(**{**fields, **overrides})


def response(text_logprobs: bool = True, **overrides: Any) -> Response:
    # The spec requires output_text.logprobs (an array); the SDK defaults it to None.
    logprobs: dict[str, Any] = {"logprobs": []} if text_logprobs else {}
    text = ResponseOutputText(type="output_text", text="Hi", annotations=[], **logprobs)
    usage = ResponseUsage(
        input_tokens=10,
        input_tokens_details=InputTokensDetails(cached_tokens=0, cache_write_tokens=0),
        output_tokens=2,
        output_tokens_details=OutputTokensDetails(reasoning_tokens=0),
        total_tokens=12,
    )
    message = ResponseOutputMessage(
        id="msg_1", type="message", role="assistant", status="completed", content=[text]
    )
    fields: dict[str, Any] = {
        "id": "resp_123",
        "object": "response",
        "created_at": 1741476542,
        "model": "gpt-4o-mini-2024-07-18",
        "status": "completed",
        "output": [message],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": usage,
        # Required by the spec although nullable; the SDK defaults them, so set them.
        "error": None,
        "incomplete_details": None,
        "instructions": None,
        "metadata": {},
        "temperature": 1.0,
        "top_p": 1.0,
    }
    return Response(**{**fields, **overrides})


def sdk_batch(**overrides: Any) -> Batch:
    fields: dict[str, Any] = {
        "id": "batch_abc123",
        "object": "batch",
        "endpoint": "/v1/chat/completions",
        "input_file_id": "file-abc123",
        "completion_window": "24h",
        "status": "validating",
        "created_at": 1711471533,
        "expires_at": 1711557933,
        "request_counts": BatchRequestCounts(total=0, completed=0, failed=0),
    }
    return Batch(**{**fields, **overrides})


def sdk_file(**overrides: Any) -> FileObject:
    fields: dict[str, Any] = {
        "id": "file-abc123",
        "object": "file",
        "bytes": 120000,
        "created_at": 1677610602,
        "filename": "mydata.jsonl",
        "purpose": "batch",
        "status": "processed",
    }
    return FileObject(**{**fields, **overrides})


RICH_RESPONSE: dict[str, Any] = {
    "tools": [FunctionTool(type="function", name="f", parameters={"type": "object"}, strict=True)],
    "output": [
        ResponseReasoningItem(id="rs_1", type="reasoning", summary=[]),
        ResponseFunctionToolCall(
            type="function_call",
            call_id="c1",
            name="f",
            arguments="{}",
            id="fc_1",
            status="completed",
        ),
    ],
    "text": ResponseTextConfig(
        format=ResponseFormatTextJSONSchemaConfig(
            type="json_schema", name="x", schema={"type": "object"}, strict=True
        )
    ),
    "service_tier": "default",
    "truncation": "disabled",
}
EMBEDDING = CreateEmbeddingResponse(
    object="list",
    model="text-embedding-3-small",
    data=[Embedding(object="embedding", index=0, embedding=[0.1, -0.2])],
    usage=EmbeddingUsage(prompt_tokens=3, total_tokens=3),
)
ERROR_OBJECT = ErrorObject(message="Bad.", type="invalid_request_error", param=None, code=None)

# (case, schema, SDK object, dumps expected to give spec-valid JSON). Every other dump in
# DUMPS is expected to be rejected, so a change in the SDK or the spec shows up here.
# refusal and logprobs left to their SDK default instead of set to None explicitly.
BARE_CHOICE = Choice(
    index=0, message=ChatCompletionMessage(role="assistant", content="Hi"), finish_reason="stop"
)
FAILED_BATCH = sdk_batch(
    status="failed",
    failed_at=1711471540,
    errors=Errors(
        object="list",
        data=[BatchError(code="invalid_json_line", message="Bad JSON.", line=3, param=None)],
    ),
    request_counts=BatchRequestCounts(total=0, completed=0, failed=0),
)
CHAT = "CreateChatCompletionResponse"
UNSET = {"exclude_unset", "to_dict"}  # the dumps that keep exactly the fields that were set
CASES: list[tuple[str, str, BaseModel, set[str]]] = [
    ("chat", CHAT, chat_completion(), UNSET),
    ("chat fp=None", CHAT, chat_completion(system_fingerprint=None), set()),
    ("chat tier=None", CHAT, chat_completion(service_tier=None), UNSET),
    ("chat nullables unset", CHAT, chat_completion(choices=[BARE_CHOICE]), set()),
    ("response", "Response", response(), UNSET),
    ("response rich", "Response", response(**RICH_RESPONSE), UNSET),
    ("response user=None", "Response", response(user=None), set()),
    ("response logprobs unset", "Response", response(text_logprobs=False), set()),
    ("embedding", "CreateEmbeddingResponse", EMBEDDING, set(DUMPS)),
    ("batch", "Batch", sdk_batch(), {"exclude_none", *UNSET}),
    ("batch errors=None", "Batch", sdk_batch(errors=None), {"exclude_none"}),
    ("batch failed", "Batch", FAILED_BATCH, {"exclude_none", *UNSET}),
    ("file", "OpenAIFile", sdk_file(expires_at=1680202602), {"exclude_none", *UNSET}),
    ("file expires_at=None", "OpenAIFile", sdk_file(expires_at=None), {"exclude_none"}),
    ("error", "Error", ERROR_OBJECT, UNSET),
]


@pytest.mark.parametrize(("case", "schema", "obj", "valid"), CASES, ids=[c[0] for c in CASES])
def test_which_sdk_dumps_the_spec_accepts(
    case: str, schema: str, obj: BaseModel, valid: set[str]
) -> None:
    outcome = {name: errors(schema, dump(obj), strict_keys=True) for name, dump in DUMPS.items()}
    accepted = {name for name, found in outcome.items() if not found}
    assert accepted == valid, outcome


@pytest.mark.parametrize(("case", "schema", "obj", "valid"), CASES, ids=[c[0] for c in CASES])
def test_spec_valid_dump_parses_back_to_the_same_sdk_object(
    case: str, schema: str, obj: BaseModel, valid: set[str]
) -> None:
    for name in valid:
        dumped = DUMPS[name](obj)
        assert type(obj).model_validate(dumped) == obj, name


def test_response_json_schema_format_needs_api_names() -> None:
    # `schema` is `schema_` on the SDK model: without by_alias the key is wrong.
    obj = response(**RICH_RESPONSE)
    found = errors("Response", obj.model_dump(mode="json", exclude_unset=True))
    assert any("'schema' is a required property" in e for e in found), found
