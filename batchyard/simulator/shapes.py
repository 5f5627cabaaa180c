"""The JSON of a successful answer, built from the openai SDK's own types.

Owns turning a decided answer (`content.Reply`: text, token counts, how it finished, a
refusal) into a ChatCompletion, a Response or a CreateEmbeddingResponse, and the `Outcome`
that carries it. It validates nothing and decides nothing about the answer's content; it
must stay cheap (it is on every real-time request's path, see bench/sim_bench.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
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
    ResponseOutputRefusal,
    ResponseOutputText,
    ResponseUsage,
)
from openai.types.responses.response import IncompleteDetails
from openai.types.responses.response_usage import InputTokensDetails, OutputTokensDetails

from batchyard.simulator import content, tokens
from batchyard.simulator.config import ModelSpec
from batchyard.simulator.errors import ApiError
from batchyard.simulator.state import SimState

__all__ = ["Outcome", "chat", "embeddings", "make", "response"]

# How a Responses answer says it stopped early, by the chat finish_reason that means it.
_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}

_M = TypeVar("_M", bound=openai.BaseModel)


def make(cls: type[_M], **values: Any) -> _M:
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


def chat(
    state: SimState,
    model: str,
    body: Mapping[str, Any],
    answer: content.Reply,
    prompt: int,
    created: int,
    tier: str,
    hits: tuple[int, int] = (0, 0),
    writes: bool = False,
) -> Outcome:
    """A chat completion; `hits` is (cached, written) prompt tokens, `writes` whether the
    model reports cache writes at all."""
    n = body.get("n", 1)
    n = n if isinstance(n, int) and 1 <= n <= 128 else 1
    refused = answer.refusal is not None
    message = make(
        ChatCompletionMessage,
        role="assistant",
        content=None if refused else answer.text,
        refusal=answer.refusal,
        annotations=[],
    )
    choices = [
        make(Choice, index=i, message=message, logprobs=None, finish_reason=answer.finish)
        for i in range(n)
    ]
    completion = (answer.text_tokens + answer.reasoning_tokens) * n
    usage = make(
        CompletionUsage,
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=prompt + completion,
        prompt_tokens_details=make(
            PromptTokensDetails,
            cached_tokens=hits[0],
            audio_tokens=0,
            **({"cache_write_tokens": hits[1]} if writes else {}),
        ),
        completion_tokens_details=make(
            CompletionTokensDetails,
            reasoning_tokens=answer.reasoning_tokens * n,
            audio_tokens=0,
            accepted_prediction_tokens=0,
            rejected_prediction_tokens=0,
        ),
    )
    result = make(
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


def response(
    state: SimState,
    model: str,
    body: Mapping[str, Any],
    answer: content.Reply,
    prompt: int,
    created: int,
    tier: str,
    hits: tuple[int, int] = (0, 0),
) -> Outcome:
    part: ResponseOutputText | ResponseOutputRefusal
    if answer.refusal is not None:
        part = make(ResponseOutputRefusal, type="refusal", refusal=answer.refusal)
    else:
        part = make(
            ResponseOutputText, type="output_text", text=answer.text, annotations=[], logprobs=[]
        )
    reason = _INCOMPLETE.get(answer.finish)
    message = make(
        ResponseOutputMessage,
        id=state.new_id("msg_", 48),
        type="message",
        role="assistant",
        status="incomplete" if reason else "completed",
        content=[part],
    )
    output = answer.text_tokens + answer.reasoning_tokens
    usage = make(
        ResponseUsage,
        input_tokens=prompt,
        input_tokens_details=make(
            InputTokensDetails, cached_tokens=hits[0], cache_write_tokens=hits[1]
        ),
        output_tokens=output,
        output_tokens_details=make(OutputTokensDetails, reasoning_tokens=answer.reasoning_tokens),
        total_tokens=prompt + output,
    )
    incomplete = make(IncompleteDetails, reason=reason) if reason else None
    metadata = body.get("metadata")
    instructions = body.get("instructions")
    result = make(
        Response,
        id=state.new_id("resp_", 48),
        object="response",
        created_at=created,
        completed_at=None if reason else created,
        status="incomplete" if reason else "completed",
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


def embeddings(
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
        data.append(make(Embedding, object="embedding", index=index, embedding=value))
    result = make(
        CreateEmbeddingResponse,
        object="list",
        data=data,
        model=model,
        usage=make(EmbeddingUsage, prompt_tokens=prompt, total_tokens=prompt),
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
