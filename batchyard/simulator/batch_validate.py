"""Validation of a batch input file, as the Batch API does it after create.

Owns the rules of reference §3: parse every JSONL line, check the line object and the
parts of the body the Batch API checks itself (url, streaming, model, messages or input),
unique custom_ids, one model per file, the request and embedding-input caps, and the
per-line prompt token counts the enqueued-token limit needs. It returns errors as BatchError dicts
with 1-based lines; it must not execute requests, change batch status or touch the clock.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from batchyard.simulator import tokens
from batchyard.simulator.names import resolve
from batchyard.simulator.state import SimState, StoredFile

__all__ = ["ParsedInput", "batch_error", "json_type", "validate_input"]

_STREAM_NAMES = {
    "/v1/chat/completions": "Chat Completions",
    "/v1/responses": "Responses",
    "/v1/embeddings": "Embeddings",
    "/v1/completions": "Completions",
}
_NEEDS_INPUT = ("/v1/responses", "/v1/embeddings", "/v1/moderations")
_COUNTED = ("/v1/chat/completions", "/v1/responses", "/v1/embeddings")


@dataclass
class ParsedInput:
    """A validated input file: lines as (custom_id, body), or the errors that fail it."""

    lines: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    prompts: list[int] = field(default_factory=list)  # prompt tokens per line
    model: str | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)


def batch_error(
    code: str, message: str, param: str | None = None, line: int | None = None
) -> dict[str, Any]:
    return {"code": code, "message": message, "param": param, "line": line}


def json_type(value: object) -> str:
    """How OpenAI's messages name a JSON value's type ("an array", "a string", ...)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a decimal"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _missing(param: str, line: int) -> dict[str, Any]:
    message = f"Missing required parameter: '{param}'."
    return batch_error("missing_required_parameter", message, param, line)


def _check_line(
    raw: str, number: int, endpoint: str
) -> dict[str, Any] | tuple[str, dict[str, Any]]:
    """One line's first problem as a BatchError, or its (custom_id, body)."""
    try:
        item = json.loads(raw)
    except ValueError:
        item = None
    if not isinstance(item, dict):
        return batch_error(
            "invalid_json_line", "This line is not parseable as valid JSON.", None, number
        )
    for name in ("custom_id", "method", "url", "body"):
        if item.get(name) is None:
            return _missing(name, number)
    custom_id, body = item["custom_id"], item["body"]
    if not isinstance(custom_id, str):
        got = json_type(custom_id)
        message = f"Invalid type for 'custom_id': expected a string, but got {got} instead."
        return batch_error("invalid_type", message, "custom_id", number)
    if item["method"] != "POST":
        message = f"Invalid value: '{item['method']}'. Supported values are: 'POST'."
        return batch_error("invalid_value", message, "method", number)
    if item["url"] != endpoint:
        message = "The URL provided for this request does not match the batch endpoint."
        return batch_error("invalid_url", message, "url", number)
    if not isinstance(body, dict):
        message = f"Invalid type for 'body': expected an object, but got {json_type(body)} instead."
        return batch_error("invalid_type", message, "body", number)
    if body.get("stream"):
        name = _STREAM_NAMES.get(endpoint, endpoint)
        message = f"{name}: Streaming is not supported in the Batch API."
        return batch_error("streaming_unsupported", message, "body.stream", number)
    if not body.get("model"):
        return batch_error("invalid_request", "Model parameter is required.", "body.model", number)
    if endpoint == "/v1/chat/completions" and body.get("messages") is None:
        message = "Messages parameter is required."
        return batch_error("invalid_request", message, "body.messages", number)
    if endpoint in _NEEDS_INPUT and body.get("input") is None:
        message = "Input parameter is required."
        return batch_error("invalid_request", message, "body.input", number)
    return custom_id, body


def _file_problem(state: SimState, file_id: str, stored: StoredFile | None) -> str | None:
    if stored is None:
        org = state.config.organization
        return f"Cannot find file {file_id}, or organization {org} does not have access to it."
    if stored.purpose != "batch":
        return (
            f"File {file_id} was uploaded with purpose '{stored.purpose}'; a batch input file "
            "must be uploaded with purpose 'batch'."
        )
    return None


def validate_input(
    state: SimState, endpoint: str, file_id: str, stored: StoredFile | None
) -> ParsedInput:
    """Everything the Batch API checks between `validating` and `in_progress`."""
    parsed = ParsedInput()
    problem = _file_problem(state, file_id, stored)
    if problem is not None or stored is None:
        parsed.errors.append(batch_error("invalid_request", problem or "", "file_id"))
        return parsed
    numbered = [
        (number, raw)
        for number, raw in enumerate(stored.content.decode("utf-8", "replace").split("\n"), 1)
        if raw.strip()
    ]
    settings = state.config.batch
    if not numbered:
        parsed.errors.append(batch_error("empty_file", f"The input file {file_id} is empty."))
        return parsed
    if len(numbered) > settings.max_requests:
        message = (
            f"The input file contains {len(numbered):,} requests; a batch can include up to "
            f"{settings.max_requests:,} requests. Split it into several batches."
        )
        parsed.errors.append(batch_error("too_many_tasks", message))
        return parsed
    seen: dict[str, int] = {}
    first_model: tuple[str, int] | None = None
    for number, raw in numbered:
        checked = _check_line(raw, number, endpoint)
        if isinstance(checked, dict):
            parsed.errors.append(checked)
            continue
        custom_id, body = checked
        model = str(body["model"])
        if resolve(state, model) is None:
            message = f"The provided model '{model}' is not supported by the Batch API."
            parsed.errors.append(batch_error("model_not_found", message, "body.model", number))
            continue
        if custom_id in seen:
            message = (
                f"The custom_id '{custom_id}' is already used on line {seen[custom_id]}; "
                "custom_id must be unique for each request in a batch."
            )
            parsed.errors.append(batch_error("duplicate_custom_id", message, "custom_id", number))
            continue
        seen[custom_id] = number
        if first_model is None:
            first_model = (model, number)
        elif model != first_model[0]:
            message = (
                f"This line uses model '{model}', but line {first_model[1]} uses "
                f"'{first_model[0]}'; each input file can only include requests to a single model."
            )
            parsed.errors.append(batch_error("mismatched_model", message, "body.model", number))
            continue
        parsed.lines.append((custom_id, body))
    if parsed.errors or first_model is None:
        return parsed
    parsed.model = first_model[0]
    if endpoint == "/v1/embeddings":
        inputs = sum(len(tokens.embedding_inputs(body)) for _, body in parsed.lines)
        if inputs > settings.max_embedding_inputs:
            message = (
                f"The batch has {inputs:,} embedding inputs across its requests; a "
                f"/v1/embeddings batch can include up to {settings.max_embedding_inputs:,}."
            )
            parsed.errors.append(batch_error("too_many_embedding_inputs", message))
            return parsed
    if endpoint in _COUNTED:
        resolved = resolve(state, parsed.model)
        assert resolved is not None  # every line's model resolved above
        enc = tokens.encoding(resolved.spec.encoding)
        parsed.prompts = [tokens.prompt_tokens(enc, endpoint, body) for _, body in parsed.lines]
    else:
        parsed.prompts = [0] * len(parsed.lines)
    return parsed
