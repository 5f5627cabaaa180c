"""The checks one parsed line must pass, and the record a valid line becomes.

Owns the validation rules and their messages (the real API's wording where it is known):
the envelope, the endpoint's input, the model, priority and streaming, and the record a
valid line becomes; the limits on a body's numbers are `_limits.py`'s. Reads no files and
keeps no state across lines except what the caller passes in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from batchyard.catalog import ModelInfo, as_catalog, lookup
from batchyard.errors import ConfigError
from batchyard.ingest._limits import (
    EMBEDDING_MAX_REQUEST_TOKENS,
    INPUT_FIELD,
    Problem,
    check_ranges,
    context_problem,
    type_name,
)
from batchyard.jsontext import compact
from batchyard.models import Endpoint
from batchyard.shards import ShardItem, shard_line_size
from batchyard.tokens import embedding_inputs, output_tokens, prompt_tokens

__all__ = ["EMBEDDING_MAX_ITEMS", "EMBEDDING_MAX_REQUEST_TOKENS", "ParsedRequest", "check_line"]

# Documented for /v1/embeddings: arrays of at most 2048 inputs (and a token sum per request,
# `_limits.EMBEDDING_MAX_REQUEST_TOKENS`).
EMBEDDING_MAX_ITEMS = 2048

_ENDPOINTS = {e.value: e for e in Endpoint}
_SUPPORTED = ", ".join(f"'{e.value}'" for e in Endpoint)
# Endpoints the Batch API accepts today (Batch guide, 2026) that batchyard does not route:
# their bodies are not token-priced requests it can estimate, split or send in real time.
BATCH_ONLY_ENDPOINTS = ("/v1/images/generations", "/v1/images/edits", "/v1/videos")
_LABEL = {
    Endpoint.CHAT: "Chat Completions",
    Endpoint.RESPONSES: "Responses",
    Endpoint.EMBEDDINGS: "Embeddings",
    Endpoint.COMPLETIONS: "Completions",
    Endpoint.MODERATIONS: "Moderations",
}


@dataclass(frozen=True, slots=True)
class ParsedRequest:
    """One valid request line.

    `raw_bytes` is the size of the line as `shards.shard_line` writes it to a batch file.
    `output_tokens` is the request's own maximum (None when uncapped). `priority` comes from
    the batchyard-only top-level `"priority"` key (never uploaded) or, failing that, from
    `body.metadata.priority` (a string, as OpenAI metadata requires); default 0.
    """

    line: int
    custom_id: str
    endpoint: Endpoint
    model: str
    body: dict[str, Any]
    raw_bytes: int
    input_tokens: int
    output_tokens: int | None
    embedding_inputs: int
    priority: int = 0
    sample: bool = False  # a top-level "sample" key: a deliberate repeat, never merged
    body_text: bytes = b""  # the body's compact JSON (`jsontext.compact`), as stored and sent

    @property
    def group(self) -> tuple[Endpoint, str]:
        return (self.endpoint, self.model)

    def shard_item(self) -> ShardItem:
        return ShardItem(self.custom_id, self.raw_bytes, self.input_tokens, self.embedding_inputs)


def _invalid_type(name: str, expected: str, value: object) -> str:
    return f"Invalid type for '{name}': expected {expected}, but got {type_name(value)} instead."


def _missing(name: str) -> str:
    return f"Missing required parameter: '{name}'."


def find_model(models: Mapping[str, ModelInfo], name: str) -> ModelInfo | None:
    """The table row `name` resolves to (see `batchyard.catalog`), or None."""
    return lookup(models, name)


def check_envelope(obj: object) -> tuple[str, Endpoint, dict[str, Any]] | Problem:
    """custom_id, method, url and body of a line object, or its first problem."""
    if not isinstance(obj, dict):
        return (
            None,
            "Each line must be a JSON object with custom_id, method, url and body, "
            f"but this one is {type_name(obj)}.",
        )
    custom_id = obj.get("custom_id")
    if custom_id is None:
        return ("custom_id", _missing("custom_id"))
    if not isinstance(custom_id, str):
        return ("custom_id", _invalid_type("custom_id", "a string", custom_id))
    if not custom_id.strip():
        return ("custom_id", "Invalid 'custom_id': it must not be empty.")
    method = obj.get("method")
    if method is None:
        return ("method", _missing("method"))
    if method != "POST":
        return ("method", f"Invalid value: {method!r}. Supported values are: 'POST'.")
    url = obj.get("url")
    if url is None:
        return ("url", _missing("url"))
    endpoint = _ENDPOINTS.get(url) if isinstance(url, str) else None
    if endpoint is None and url in BATCH_ONLY_ENDPOINTS:
        return (
            "url",
            f"Invalid value: {url!r}. The Batch API accepts it, but batchyard does not route "
            f"it (it prices and routes only {_SUPPORTED}); send these lines to the Batch API "
            "directly.",
        )
    if endpoint is None:
        return ("url", f"Invalid value: {url!r}. Supported values are: {_SUPPORTED}.")
    body = obj.get("body")
    if body is None:
        return ("body", _missing("body"))
    if not isinstance(body, dict):
        return ("body", _invalid_type("body", "an object", body))
    return (custom_id, endpoint, body)


def _check_input(endpoint: Endpoint, body: Mapping[str, Any]) -> Problem | None:
    """The endpoint's input parameter is present and well formed."""
    name = INPUT_FIELD[endpoint]
    value = body.get(name)
    if value is None:
        if endpoint is Endpoint.CHAT:
            return ("body.messages", "Messages parameter is required.")
        return (f"body.{name}", _missing(name))
    if endpoint is Endpoint.CHAT:
        if not isinstance(value, list):
            return ("body.messages", _invalid_type("messages", "an array of objects", value))
        if not value:
            return (
                "body.messages",
                "Invalid 'messages': empty array. Expected an array with minimum length 1, "
                "but got an empty array instead.",
            )
        for i, message in enumerate(value):
            if not isinstance(message, dict):
                return ("body.messages", _invalid_type(f"messages[{i}]", "an object", message))
        return None
    if endpoint is Endpoint.EMBEDDINGS:
        if value == "" or value == []:
            return ("body.input", "Invalid 'input': the input must not be empty.")
        if not isinstance(value, str | list):
            return ("body.input", _invalid_type("input", "a string or an array", value))
        if isinstance(value, list) and not all(
            isinstance(x, int) and not isinstance(x, bool) for x in value
        ):
            if len(value) > EMBEDDING_MAX_ITEMS:
                return (
                    "body.input",
                    f"Invalid 'input': {len(value):,} inputs; an array may hold at most "
                    f"{EMBEDDING_MAX_ITEMS:,}.",
                )
            for i, item in enumerate(value):
                if item == "" or item == []:
                    return ("body.input", f"Invalid 'input[{i}]': it must not be empty.")
                if not isinstance(item, str | list):
                    return (
                        "body.input",
                        _invalid_type(f"input[{i}]", "a string or an array of tokens", item),
                    )
    elif endpoint is Endpoint.RESPONSES and not isinstance(value, str | list):
        return ("body.input", _invalid_type("input", "a string or an array", value))
    return None


def _check_model(
    endpoint: Endpoint, body: Mapping[str, Any], models: Mapping[str, ModelInfo]
) -> ModelInfo | Problem:
    model = body.get("model")
    if model is None or model == "":
        return ("body.model", "Model parameter is required.")
    if not isinstance(model, str):
        return ("body.model", _invalid_type("model", "a string", model))
    try:
        info = as_catalog(models).require(model)
    except ConfigError as exc:  # the resolver's refusal names the table to add
        return ("body.model", str(exc))
    if info.embedding and endpoint is not Endpoint.EMBEDDINGS:
        return (
            "body.model",
            f"{model!r} is an embeddings model; it can only be used with /v1/embeddings, "
            f"not {endpoint.value}.",
        )
    if endpoint is Endpoint.EMBEDDINGS and not info.embedding:
        return (
            "body.model",
            f"{model!r} is not an embeddings model; use an embeddings model such as "
            "'text-embedding-3-small' with /v1/embeddings.",
        )
    if (endpoint is Endpoint.MODERATIONS) != info.moderation or not info.serves(endpoint.value):
        served = " and ".join(info.endpoints) or "other endpoints"
        return ("body.model", f"{model!r} is not served at {endpoint.value}; it serves {served}.")
    return info


def _rejected(param: str) -> str:
    if param == "max_tokens":
        return (
            "Unsupported parameter: 'max_tokens' is not supported with this model. "
            "Use 'max_completion_tokens' instead."
        )
    return f"Unsupported parameter: '{param}' is not supported with this model."


def _priority(obj: Mapping[str, Any], body: Mapping[str, Any]) -> int | Problem:
    top = obj.get("priority")
    if top is not None:
        if isinstance(top, int) and not isinstance(top, bool):
            return top
        return ("priority", _invalid_type("priority", "an integer", top))
    metadata = body.get("metadata")
    if not isinstance(metadata, dict) or "priority" not in metadata:
        return 0
    value = metadata["priority"]
    if not isinstance(value, str):
        # OpenAI metadata values must be strings; the API would reject this line.
        return ("body.metadata.priority", _invalid_type("metadata.priority", "a string", value))
    try:
        return int(value)
    except ValueError:
        return (
            "body.metadata.priority",
            f"Invalid 'metadata.priority': {value!r} is not a whole number such as \"5\".",
        )


def check_line(
    line: int,
    obj: Mapping[str, Any],
    custom_id: str,
    endpoint: Endpoint,
    body: dict[str, Any],
    models: Mapping[str, ModelInfo],
) -> ParsedRequest | list[Problem]:
    """Check the body of a line whose envelope is valid; the request, or every problem found."""
    problems: list[Problem] = []
    if body.get("stream") is True:
        problems.append(
            ("body.stream", f"{_LABEL[endpoint]}: Streaming is not supported in the Batch API.")
        )
    checked = _check_model(endpoint, body, models)
    info = checked if isinstance(checked, ModelInfo) else None
    if isinstance(checked, tuple):
        problems.append(checked)
    if info is not None and info.rejects and endpoint is not Endpoint.EMBEDDINGS:
        problems.extend(
            (f"body.{p}", _rejected(p)) for p in info.rejects if body.get(p) is not None
        )
    bad_input = _check_input(endpoint, body)
    if bad_input is not None:
        problems.append(bad_input)
    problems.extend(check_ranges(body))
    priority = _priority(obj, body)
    if isinstance(priority, tuple):
        problems.append(priority)
    if problems or info is None or isinstance(priority, tuple):
        return problems
    model: str = body["model"]
    try:
        prompt = prompt_tokens(endpoint, body)
    except (TypeError, ValueError, AttributeError) as exc:
        return [("body", f"Cannot count this request's tokens ({exc}); check its structure.")]
    output = output_tokens(endpoint, body)
    too_long = context_problem(endpoint, body, info, prompt, output)
    if too_long is not None:
        return [too_long]
    inputs = len(embedding_inputs(body)) if endpoint is Endpoint.EMBEDDINGS else 0
    try:
        text = compact(body)
        raw_bytes = shard_line_size(custom_id, endpoint.value, len(text))
    except UnicodeEncodeError:
        return [
            (
                None,
                "This line holds an unpaired surrogate escape (such as \\ud800), "
                "which is not valid Unicode; fix or remove it.",
            )
        ]
    except ValueError:  # a number such as 1e400 parses as infinity, which JSON cannot carry
        return [("body", "A number in the body is out of range (such as 1e400); fix it.")]
    return ParsedRequest(
        line=line,
        custom_id=custom_id,
        endpoint=endpoint,
        model=model,
        body=body,
        raw_bytes=raw_bytes,
        input_tokens=prompt,
        output_tokens=output,
        embedding_inputs=inputs,
        priority=priority,
        sample=obj.get("sample") is not None,
        body_text=text,
    )
