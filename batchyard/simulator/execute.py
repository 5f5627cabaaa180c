"""Run one request body the way the API would, and price it.

Owns validation of chat, responses and embeddings bodies (OpenAI's 400/404 bodies) and
building the deterministic answer from the openai SDK's own types. It must not apply rate
limits, latency, faults or billing: the real-time handlers do that around it, and the
batch engine calls it once per input line.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import cache
from typing import Any, TypeVar

import openai
from openai.types import CompletionUsage, CreateEmbeddingResponse, Embedding
from openai.types.chat import ChatCompletion, ChatCompletionMessage
from openai.types.chat.chat_completion import Choice
from openai.types.completion_usage import CompletionTokensDetails, PromptTokensDetails
from openai.types.create_embedding_response import Usage as EmbeddingUsage
from openai.types.responses import (
    Response,
    ResponseOutputMessage,
    ResponseOutputText,
    ResponseUsage,
)
from openai.types.responses.response import IncompleteDetails
from openai.types.responses.response_usage import InputTokensDetails, OutputTokensDetails

from batchyard.simulator import content, prompt_cache, tokens
from batchyard.simulator.billing import bill, spec_for
from batchyard.simulator.config import ModelSpec
from batchyard.simulator.errors import ApiError
from batchyard.simulator.state import SimState

__all__ = ["ENDPOINTS", "Outcome", "execute", "price", "resolve_tier", "validate_model"]

ENDPOINTS = ("/v1/chat/completions", "/v1/responses", "/v1/embeddings")
_TIERS = ("auto", "default", "flex", "scale", "priority", "fast")
_M = TypeVar("_M", bound=openai.BaseModel)


def _make(cls: type[_M], **values: Any) -> _M:
    """An SDK object from values that already have the right types (nested SDK objects).

    What pydantic's `model_construct` does, minus filling in defaults for unset fields:
    every dump here uses `exclude_unset`, so those never reach the JSON. This is the
    hottest code of a real-time request; the SDK's own `construct` re-walks every nested
    value and cost more than the rest of the request (see bench/sim_bench.py).
    """
    made = cls.__new__(cls)
    object.__setattr__(made, "__dict__", values)
    object.__setattr__(made, "__pydantic_fields_set__", set(values))
    object.__setattr__(made, "__pydantic_extra__", None)
    object.__setattr__(made, "__pydantic_private__", None)
    return made


@dataclass(frozen=True)
class Outcome:
    status_code: int  # 200, or the 4xx the API would answer
    body: dict[str, Any]  # the endpoint's JSON response, or {"error": {...}}
    input_tokens: int
    output_tokens: int
    model: str
    service_tier: str = "default"  # the tier that served it: "default", "flex" or "priority"
    cached_tokens: int = 0  # of input_tokens, read from the prompt cache
    cache_write_tokens: int = 0  # of input_tokens, written to it (models that charge it)

    @property
    def billing_path(self) -> str:
        return {"flex": "flex", "priority": "fast"}.get(self.service_tier, "standard")


def price(
    state: SimState,
    model: str,
    input_tokens: int,
    output_tokens: int,
    path: str,
    *,
    cached: int = 0,
    written: int = 0,
) -> float:
    """USD for the tokens on `path` ("standard", "flex", "batch" or "fast"); `billing.py`
    has the rules (cached input, cache writes, the long-context band)."""
    spec = spec_for(state.config.models, model)
    if spec is None:
        raise KeyError(f"The simulator has no price for model {model!r}.")
    return bill(spec, path, input_tokens, output_tokens, cached=cached, written=written)


def validate_model(state: SimState, endpoint: str, body: Mapping[str, Any]) -> ModelSpec:
    """The model's spec, or the ApiError OpenAI answers for a missing/unknown/wrong model."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise ApiError(400, "Model parameter is required.", param="model")
    spec = state.config.models.get(model)
    if spec is None:
        raise ApiError(
            404,
            f"The model `{model}` does not exist or you do not have access to it.",
            code="model_not_found",
        )
    if spec.embedding and endpoint != "/v1/embeddings":
        kind = endpoint.removeprefix("/")
        raise ApiError(
            404,
            f"This is not a chat model and thus not supported in the {kind} endpoint.",
            param="model",
        )
    if not spec.embedding and endpoint == "/v1/embeddings":
        raise ApiError(
            404,
            "This is not an embeddings model and thus not supported in the v1/embeddings endpoint.",
            param="model",
        )
    return spec


def resolve_tier(spec: ModelSpec, model: str, body: Mapping[str, Any]) -> str:
    """The tier that serves the request: "flex" when asked for and allowed, "priority" for
    fast mode (asked as "fast" or by its former name "priority") on a model that offers it,
    else "default"."""
    tier = body.get("service_tier")
    if tier is None:
        return "default"
    if tier not in _TIERS:
        listed = ", ".join(f"'{t}'" for t in _TIERS)
        raise ApiError(
            400,
            f"Invalid value: '{tier}'. Supported values are: {listed}.",
            param="service_tier",
            code="invalid_value",
        )
    if tier == "flex" and not spec.flex:
        raise ApiError(
            400,
            f"Flex processing is not available for model '{model}'. Use service_tier "
            "'auto' or 'default' instead.",
            param="service_tier",
            code="invalid_value",
        )
    if tier in ("fast", "priority"):
        return "priority" if spec.fast_prices is not None else "default"
    return "flex" if tier == "flex" else "default"


def _missing(param: str) -> ApiError:
    return ApiError(
        400,
        f"Missing required parameter: '{param}'.",
        param=param,
        code="missing_required_parameter",
    )


def _check_cap(spec: ModelSpec, endpoint: str, body: Mapping[str, Any]) -> None:
    if spec.reasoning and "max_tokens" in body and endpoint == "/v1/chat/completions":
        raise ApiError(
            400,
            "Unsupported parameter: 'max_tokens' is not supported with this model. "
            "Use 'max_completion_tokens' instead.",
            param="max_tokens",
            code="unsupported_parameter",
        )
    minimum = 16 if endpoint == "/v1/responses" else 1
    for key in ("max_completion_tokens", "max_tokens", "max_output_tokens"):
        value = body.get(key)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool):
            raise ApiError(
                400,
                f"Invalid type for '{key}': expected an integer, but got "
                f"{type(value).__name__} instead.",
                param=key,
                code="invalid_type",
            )
        if value < minimum:
            raise ApiError(
                400,
                f"Invalid '{key}': integer below minimum value. Expected a value >= "
                f"{minimum}, but got {value} instead.",
                param=key,
                code="integer_below_min_value",
            )


def _check_body(endpoint: str, body: Mapping[str, Any], batch: bool) -> None:
    if body.get("stream") and not batch:
        raise ApiError(
            400,
            "Streaming is not supported by the batchyard simulator; send stream=false.",
            param="stream",
            code="unsupported_value",
        )
    if endpoint == "/v1/chat/completions":
        messages = body.get("messages")
        if messages is None:
            raise _missing("messages")
        if not isinstance(messages, list) or not messages:
            raise ApiError(
                400,
                "Invalid 'messages': empty array. Expected an array with minimum length 1, "
                "but got an empty array instead.",
                param="messages",
                code="empty_array",
            )
        for i, message in enumerate(messages):
            if not isinstance(message, Mapping) or not isinstance(message.get("role"), str):
                raise _missing(f"messages[{i}].role")
    elif endpoint == "/v1/responses":
        if body.get("input") in (None, "", []):
            raise _missing("input")
    elif any(x in ("", []) for x in tokens.embedding_inputs(body) or [""]):
        raise ApiError(
            400,
            "'$.input' is invalid. Please check the API reference: "
            "https://platform.openai.com/docs/api-reference.",
        )


def _check_context(spec: ModelSpec, endpoint: str, prompt: int, cap: int | None) -> None:
    asked = prompt + (cap or 0)
    if asked <= spec.context_window:
        return
    if endpoint == "/v1/embeddings":
        message = (
            f"This model's maximum context length is {spec.context_window} tokens, however you "
            f"requested {prompt} tokens ({prompt} in your prompt; 0 for the completion). "
            "Please reduce your prompt; or completion length."
        )
    else:
        message = (
            f"This model's maximum context length is {spec.context_window} tokens. However, "
            f"you requested {asked} tokens ({prompt} in the messages, {cap or 0} in the "
            "completion). Please reduce the length of the messages or completion."
        )
    param = "messages" if endpoint == "/v1/chat/completions" else "input"
    raise ApiError(400, message, param=param, code="context_length_exceeded")


def execute(
    state: SimState,
    endpoint: str,
    body: dict[str, Any],
    *,
    batch: bool = False,
    prompt: int | None = None,
) -> Outcome:
    """Answer `body` as `endpoint` would (no limits, latency, faults or billing).

    `prompt` may pass an already-counted prompt size to save recounting it.
    """
    model = str(body.get("model") or "")
    try:
        if endpoint not in ENDPOINTS:
            raise ApiError(404, f"Invalid URL (POST {endpoint})")
        spec = validate_model(state, endpoint, body)
        tier = "default" if batch else resolve_tier(spec, model, body)
        _check_body(endpoint, body, batch)
        _check_cap(spec, endpoint, body)
        enc = tokens.encoding(spec.encoding)
        if prompt is None:
            prompt = tokens.prompt_tokens(enc, endpoint, body)
        cap = tokens.requested_output(body)
        _check_context(spec, endpoint, prompt, cap)
    except ApiError as exc:
        return Outcome(exc.status, exc.body, 0, 0, model)
    digest = content.body_digest(endpoint, body)
    created = int(state.now())
    if endpoint == "/v1/embeddings":
        return _embeddings(spec, model, body, digest, prompt)
    answer = content.reply(enc, digest, content.last_user_text(endpoint, body), cap, spec.reasoning)
    hits = (0, 0) if batch else prompt_cache.use(state, spec, model, endpoint, body, prompt, enc)
    writes = spec.cache_write_price is not None
    if endpoint == "/v1/chat/completions":
        out = _chat(state, model, body, answer, prompt, created, tier, spec.reasoning, hits, writes)
    else:
        out = _response(state, model, body, answer, prompt, created, tier, hits)
    return replace(out, cached_tokens=hits[0], cache_write_tokens=hits[1])


def _chat(
    state: SimState,
    model: str,
    body: Mapping[str, Any],
    answer: content.Reply,
    prompt: int,
    created: int,
    tier: str,
    reasoning: bool,
    hits: tuple[int, int] = (0, 0),
    writes: bool = False,
) -> Outcome:
    n = body.get("n", 1)
    n = n if isinstance(n, int) and 1 <= n <= 128 else 1
    message = _make(
        ChatCompletionMessage, role="assistant", content=answer.text, refusal=None, annotations=[]
    )
    finish = "length" if answer.truncated else "stop"
    choices = [
        _make(Choice, index=i, message=message, logprobs=None, finish_reason=finish)
        for i in range(n)
    ]
    completion = (answer.text_tokens + answer.reasoning_tokens) * n
    usage = _make(
        CompletionUsage,
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=prompt + completion,
        prompt_tokens_details=_make(
            PromptTokensDetails,
            cached_tokens=hits[0],
            audio_tokens=0,
            **({"cache_write_tokens": hits[1]} if writes else {}),
        ),
        completion_tokens_details=_make(
            CompletionTokensDetails,
            reasoning_tokens=answer.reasoning_tokens * n,
            audio_tokens=0,
            accepted_prediction_tokens=0,
            rejected_prediction_tokens=0,
        ),
    )
    result = _make(
        ChatCompletion,
        id=state.new_id("chatcmpl-", 30),
        object="chat.completion",
        created=created,
        model=model,
        choices=choices,
        usage=usage,
        service_tier=tier,
        system_fingerprint=_fingerprint(model),
    )
    data = result.model_dump(mode="json", exclude_unset=True, warnings=False)
    return Outcome(200, data, prompt, completion, model, tier)


def _response(
    state: SimState,
    model: str,
    body: Mapping[str, Any],
    answer: content.Reply,
    prompt: int,
    created: int,
    tier: str,
    hits: tuple[int, int] = (0, 0),
) -> Outcome:
    text = _make(
        ResponseOutputText, type="output_text", text=answer.text, annotations=[], logprobs=[]
    )
    message = _make(
        ResponseOutputMessage,
        id=state.new_id("msg_", 48),
        type="message",
        role="assistant",
        status="incomplete" if answer.truncated else "completed",
        content=[text],
    )
    output = answer.text_tokens + answer.reasoning_tokens
    usage = _make(
        ResponseUsage,
        input_tokens=prompt,
        input_tokens_details=_make(
            InputTokensDetails, cached_tokens=hits[0], cache_write_tokens=hits[1]
        ),
        output_tokens=output,
        output_tokens_details=_make(OutputTokensDetails, reasoning_tokens=answer.reasoning_tokens),
        total_tokens=prompt + output,
    )
    incomplete = _make(IncompleteDetails, reason="max_output_tokens") if answer.truncated else None
    metadata = body.get("metadata")
    instructions = body.get("instructions")
    result = _make(
        Response,
        id=state.new_id("resp_", 48),
        object="response",
        created_at=created,
        completed_at=None if answer.truncated else created,
        status="incomplete" if answer.truncated else "completed",
        error=None,
        incomplete_details=incomplete,
        instructions=instructions if isinstance(instructions, str) else None,
        max_output_tokens=tokens.requested_output(body),
        model=model,
        output=[message],
        parallel_tool_calls=True,
        previous_response_id=None,
        metadata=metadata if isinstance(metadata, dict) else {},
        temperature=_number(body.get("temperature"), 1.0),
        top_p=_number(body.get("top_p"), 1.0),
        tool_choice="auto",
        tools=[],
        service_tier=tier,
        usage=usage,
    )
    data = result.model_dump(mode="json", exclude_unset=True, warnings=False)
    return Outcome(200, data, prompt, output, model, tier)


def _embeddings(
    spec: ModelSpec, model: str, body: Mapping[str, Any], digest: bytes, prompt: int
) -> Outcome:
    dimensions = body.get("dimensions", spec.dimensions)
    if not isinstance(dimensions, int) or not 1 <= dimensions <= spec.dimensions:
        error = ApiError(
            400,
            f"Invalid 'dimensions': expected an integer between 1 and {spec.dimensions}.",
            param="dimensions",
            code="invalid_value",
        )
        return Outcome(error.status, error.body, 0, 0, model)
    as_base64 = body.get("encoding_format") == "base64"
    data = []
    for index in range(len(tokens.embedding_inputs(body))):
        vector = content.embedding_vector(digest, index, dimensions)
        value: Any = content.encode_vector(vector) if as_base64 else vector
        data.append(_make(Embedding, object="embedding", index=index, embedding=value))
    result = _make(
        CreateEmbeddingResponse,
        object="list",
        data=data,
        model=model,
        usage=_make(EmbeddingUsage, prompt_tokens=prompt, total_tokens=prompt),
    )
    dumped = result.model_dump(mode="json", exclude_unset=True, warnings=False)
    return Outcome(200, dumped, prompt, 0, model)


def _number(value: Any, default: float) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return default


@cache
def _fingerprint(model: str) -> str:
    return "fp_" + content.body_digest("fingerprint", {"model": model})[:5].hex()
