"""One real-time SDK call for a stored request body, and reading its answer.

Owns `send` (the stored body through `chat.completions` / `responses` / `embeddings`
`.with_raw_response.create`, so the rate-limit headers of a success are readable; the body
goes verbatim as `extra_body`, so keys the SDK does not know reach the API unchanged),
`rate_charge` (what OpenAI counts against TPM) and `usage_of` (tokens and served tier from
a response body). It must not retry, sleep,
touch the store or decide anything: `runner.py` does that.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import openai

from batchyard import catalog, tokens
from batchyard.models import Endpoint, Tier

__all__ = ["Answer", "Usage", "rate_charge", "send", "usage_of"]

CUSTOM_ID_HEADER = "X-Batchyard-Custom-Id"

# The keyword arguments each create() requires (passed as NOT_GIVEN; the body has them).
_REQUIRED: dict[str, tuple[str, ...]] = {
    Endpoint.CHAT: ("model", "messages"),
    Endpoint.RESPONSES: ("model",),
    Endpoint.EMBEDDINGS: ("model", "input"),
    Endpoint.COMPLETIONS: ("model", "prompt"),
    Endpoint.MODERATIONS: ("input",),
}


@dataclass(frozen=True, slots=True)
class Answer:
    """A 2xx answer: the JSON body as sent, and the response headers."""

    status_code: int
    body: dict[str, Any]
    headers: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Usage:
    """What an answer used, and the tier that actually served it (a flex or fast ask may be
    served, and billed, at the default tier)."""

    billed: catalog.Usage
    tier: Tier

    @property
    def input_tokens(self) -> int:
        return self.billed.input_tokens

    @property
    def output_tokens(self) -> int:
        return self.billed.output_tokens


def rate_charge(endpoint: str, body: Mapping[str, Any]) -> int:
    """Tokens OpenAI charges against TPM: prompt tokens plus the requested max output."""
    count = tokens.count_request(endpoint, body)
    return count.prompt + (count.output or 0)


def _resource(client: openai.AsyncOpenAI, endpoint: str) -> Any:
    if endpoint == Endpoint.CHAT:
        return client.chat.completions.with_raw_response
    if endpoint == Endpoint.RESPONSES:
        return client.responses.with_raw_response
    if endpoint == Endpoint.EMBEDDINGS:
        return client.embeddings.with_raw_response
    if endpoint == Endpoint.COMPLETIONS:
        return client.completions.with_raw_response
    if endpoint == Endpoint.MODERATIONS:
        return client.moderations.with_raw_response
    raise ValueError(f"The real-time path cannot send {endpoint}; route these requests to batch.")


# What the API answers in `service_tier` for a fast request: "priority" was the name of
# fast mode until 2026-07-30 and both are accepted on requests.
FAST_TIERS = ("fast", "priority")


def prepared_body(body: Mapping[str, Any], tier: Tier) -> dict[str, Any]:
    """The body for this tier: service_tier "flex" set for flex, "fast" for fast (a body
    that already says "priority" keeps it), neither left in a standard request."""
    out = dict(body)
    if tier is Tier.FLEX:
        out["service_tier"] = "flex"
    elif tier is Tier.FAST:
        if out.get("service_tier") not in FAST_TIERS:
            out["service_tier"] = "fast"
    elif out.get("service_tier") in ("flex", *FAST_TIERS):
        del out["service_tier"]
    return out


async def send(
    client: openai.AsyncOpenAI, endpoint: str, body: Mapping[str, Any], custom_id: str
) -> Answer:
    """POST one stored body; SDK errors (`openai.APIError` and subclasses) propagate.

    The body goes out verbatim as `extra_body`: the stored JSON is already what the API
    takes, so the SDK's per-call transform of typed parameters (most of its CPU cost for a
    chat call) is skipped. Required keyword arguments are passed as NOT_GIVEN.
    """
    resource = _resource(client, endpoint)
    payload = dict(body)
    if endpoint == Endpoint.EMBEDDINGS and "encoding_format" not in payload:
        # The SDK asks for base64 unless told; the API's own default is float.
        payload["encoding_format"] = "float"
    kwargs: dict[str, Any] = {key: openai.NOT_GIVEN for key in _REQUIRED[endpoint]}
    raw = await resource.create(
        **kwargs, extra_body=payload, extra_headers={CUSTOM_ID_HEADER: custom_id}
    )
    data = raw.http_response.json()
    if not isinstance(data, dict):
        data = {"data": data}
    return Answer(raw.status_code, data, raw.headers)


def usage_of(endpoint: str, body: Mapping[str, Any], asked: Tier) -> Usage:
    """Tokens billed for a response body (cached and cache-write tokens included), and the
    tier that served it."""
    served = body.get("service_tier")
    if served == "flex":
        tier = Tier.FLEX
    elif served in FAST_TIERS:
        tier = Tier.FAST
    elif isinstance(served, str):
        tier = Tier.DEFAULT
    else:
        tier = asked
    return Usage(catalog.usage_from_body(endpoint, body), tier)
