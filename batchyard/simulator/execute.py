"""Run one request body the way the API would, and price it.

Owns validation of chat, responses and embeddings bodies (OpenAI's 400/404 bodies) and
deciding the answer (content, answers); `shapes` builds its JSON from the openai SDK's
own types. It must not apply rate limits, latency, faults or billing: the real-time
handlers do that around it, and the batch engine calls it once per input line.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from batchyard.simulator import answers, content, prompt_cache, shapes, tokens
from batchyard.simulator.billing import bill, spec_for
from batchyard.simulator.config import ModelSpec
from batchyard.simulator.errors import ApiError
from batchyard.simulator.names import Resolved, resolve
from batchyard.simulator.shapes import Outcome
from batchyard.simulator.state import SimState

__all__ = ["ENDPOINTS", "Outcome", "execute", "price", "resolve_tier", "validate_model"]

ENDPOINTS = ("/v1/chat/completions", "/v1/responses", "/v1/embeddings")
_TIERS = ("auto", "default", "flex", "scale", "priority", "fast")


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
    has the rules (cached input, cache writes, the long-context band).

    `model` is the name as sent: a fine-tuned name pays its `ft:` row where the table has
    one; aliases, dated snapshots and other ft: names pay their entry's prices.
    """
    spec = spec_for(state.config.models, model)
    if spec is None:
        resolved = resolve(state, model)
        if resolved is None:
            raise KeyError(f"The simulator has no price for model {model!r}.")
        spec = resolved.spec
    return bill(spec, path, input_tokens, output_tokens, cached=cached, written=written)


def validate_model(state: SimState, endpoint: str, body: Mapping[str, Any]) -> Resolved:
    """The entry serving the model, or the ApiError OpenAI answers for a missing/unknown/wrong
    model (names.resolve: table names, dated snapshots and ft: names)."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise ApiError(400, "Model parameter is required.", param="model")
    resolved = resolve(state, model)
    if resolved is None:
        raise ApiError(
            404,
            f"The model `{model}` does not exist or you do not have access to it.",
            code="model_not_found",
        )
    spec = resolved.spec
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
    return resolved


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
        spec = validate_model(state, endpoint, body).spec
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
        return shapes.embeddings(spec, model, body, digest, prompt)
    echo = content.last_user_text(endpoint, body)
    wanted = answers.wanted_json(endpoint, body)
    text = answers.json_text(digest, echo, wanted) if wanted else None
    answer = content.reply(enc, digest, echo, cap, spec.reasoning, text)
    bad = answers.roll(state, digest, wanted is not None)
    if bad is not None:
        answer = answers.spoil(enc, answer, bad)
    hits = (0, 0) if batch else prompt_cache.use(state, spec, model, endpoint, body, prompt, enc)
    writes = spec.cache_write_price is not None
    if endpoint == "/v1/chat/completions":
        out = shapes.chat(state, model, body, answer, prompt, created, tier, hits, writes)
    else:
        out = shapes.response(state, model, body, answer, prompt, created, tier, hits)
    return replace(out, cached_tokens=hits[0], cache_write_tokens=hits[1])
