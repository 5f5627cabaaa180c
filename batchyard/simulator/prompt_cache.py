"""Prompt caching, as the simulator does it: which input tokens of a request were cached.

Owns `use`, a deterministic version of OpenAI's documented rule (prompt-caching guide):
caching is automatic for prompts of 1,024 tokens or more; a hit covers the longest
previously seen exact prefix, in increments of 128 tokens (1,024, 1,152, 1,280, ...);
caches are per model (the simulator has one organization); an unused prefix is evicted
after 10 minutes of simulated time (OpenAI: 5-10 minutes of inactivity, at most an hour).
The request's prompt is the JSON of its prompt-bearing fields (`messages`, or
`instructions` + `input`), tokenized with the model's encoding; that stream is what prefixes
are compared on, and the counts are clipped to the request's prompt tokens.

Models that charge cache writes (`cache_write_price`) also report `cache_write_tokens`: the
part of the cacheable prefix that was not already cached. Only real-time chat and responses
requests use the cache; batch lines never hit it (OpenAI does not promise cache hits inside
a batch). No HTTP, no billing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import tiktoken

from batchyard.simulator.config import ModelSpec
from batchyard.simulator.state import SimState

__all__ = ["INCREMENT", "MINIMUM", "RETENTION_SECONDS", "use"]

MINIMUM = 1_024
INCREMENT = 128
RETENTION_SECONDS = 600.0
_KEY = "prompt_cache"
_FIELDS = {"/v1/chat/completions": ("messages",), "/v1/responses": ("instructions", "input")}


def _stream(enc: tiktoken.Encoding, endpoint: str, body: Mapping[str, Any]) -> list[int]:
    fields = {k: body.get(k) for k in _FIELDS[endpoint] if body.get(k) is not None}
    text = json.dumps(fields, ensure_ascii=False, separators=(",", ":"), sort_keys=False)
    return enc.encode_ordinary(text)


def use(
    state: SimState,
    spec: ModelSpec,
    model: str,
    endpoint: str,
    body: Mapping[str, Any],
    prompt: int,
    enc: tiktoken.Encoding,
) -> tuple[int, int]:
    """(cached_tokens, cache_write_tokens) for this request; records its prefixes."""
    if spec.cached_input_price is None or endpoint not in _FIELDS or prompt < MINIMUM:
        return 0, 0
    stream = _stream(enc, endpoint, body)
    usable = min(len(stream), prompt) // INCREMENT * INCREMENT
    if usable < MINIMUM:
        return 0, 0
    cache: dict[tuple[str, bytes], float] = state.extra.setdefault(_KEY, {})
    now = state.now()
    digest = hashlib.sha256(model.encode())
    cached, hitting = 0, True
    for start in range(0, usable, INCREMENT):
        digest.update(b"".join(t.to_bytes(4, "little") for t in stream[start : start + INCREMENT]))
        end = start + INCREMENT
        if end < MINIMUM:
            continue
        key = (model, digest.digest())
        seen = cache.get(key)
        if hitting and seen is not None and now - seen <= RETENTION_SECONDS:
            cached = end
        else:
            hitting = False
        cache[key] = now
    written = usable - cached if spec.cache_write_price is not None else 0
    return cached, written
