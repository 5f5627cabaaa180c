"""Deterministic model output: reply text, reasoning-token counts and embedding vectors.

Owns turning a request body into the same answer every time (a hash of the body picks
the words and lengths). It knows nothing of HTTP, validation, limits or billing.
"""

from __future__ import annotations

import array
import base64
import hashlib
import json
import math
import random
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import tiktoken

__all__ = [
    "WORDS",
    "Reply",
    "body_digest",
    "cut",
    "embedding_vector",
    "encode_vector",
    "last_user_text",
    "reply",
    "sentence",
]

WORDS = (
    "the",
    "answer",
    "depends",
    "on",
    "context",
    "and",
    "careful",
    "reading",
    "of",
    "every",
    "detail",
    "in",
    "the",
    "request",
    "so",
    "here",
    "is",
    "a",
    "short",
    "simulated",
    "reply",
    "that",
    "stays",
    "the",
    "same",
    "for",
    "the",
    "same",
    "input",
    "while",
    "different",
    "prompts",
    "produce",
    "different",
    "words",
    "lengths",
    "and",
    "token",
    "counts",
    "for",
    "testing",
)
_ECHOWORDS = 12
# Body keys that change how an answer is delivered or billed, not what it says.
_NOT_CONTENT = frozenset(
    {"service_tier", "stream", "stream_options", "user", "encoding_format", "metadata", "store"}
)


@dataclass(frozen=True)
class Reply:
    text: str  # the answer's text (for a refusal: the refusal's)
    text_tokens: int
    reasoning_tokens: int
    finish: str = "stop"  # "stop", "length" (cut short) or "content_filter"
    refusal: str | None = None  # set when the model refused; content is then null

    @property
    def truncated(self) -> bool:
        return self.finish == "length"


def body_digest(endpoint: str, body: Mapping[str, Any]) -> bytes:
    """A stable hash of what determines the answer (not the tier or streaming flags)."""
    relevant = {k: v for k, v in body.items() if k not in _NOT_CONTENT}
    text = json.dumps(relevant, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(f"{endpoint}\n{text}".encode()).digest()


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p["text"]) for p in content if isinstance(p, Mapping) and "text" in p)
    return ""


def last_user_text(endpoint: str, body: Mapping[str, Any]) -> str:
    """The text of the last user message (chat) or input item (responses)."""
    items = body.get("messages") if endpoint == "/v1/chat/completions" else body.get("input")
    if isinstance(items, str):
        return items
    if not isinstance(items, list):
        return ""
    for item in reversed(items):
        if isinstance(item, Mapping) and item.get("role", "user") == "user":
            return _text_of(item.get("content"))
    return ""


def sentence(digest: bytes, echo: str, extra: int | None = None) -> str:
    """The reply sentence: echoes the first words of `echo`, then 4..43 filler words."""
    seed = int.from_bytes(digest[:8], "big")
    snippet = " ".join(echo.split()[:_ECHOWORDS])
    count = 4 + seed % 40 if extra is None else extra
    words = [WORDS[b % len(WORDS)] for b in digest[8:] * 2][:count]
    return f'Simulated reply {digest[:4].hex()} to "{snippet}": ' + " ".join(words) + "."


def cut(enc: tiktoken.Encoding, text: str, room: int) -> tuple[str, int]:
    """`text` cut to at most `room` tokens (whole tokens that decode cleanly), and its size."""
    tokens = enc.encode_ordinary(text)
    if len(tokens) <= room:
        return text, len(tokens)
    keep = max(room, 0)
    text = enc.decode(tokens[:keep]) if keep > 0 else ""
    while keep > 0 and len(enc.encode_ordinary(text)) > room:
        keep -= 1
        text = enc.decode(tokens[:keep])
    return text, len(enc.encode_ordinary(text))


def reply(
    enc: tiktoken.Encoding,
    digest: bytes,
    echo: str,
    cap: int | None,
    reasoning: bool,
    text: str | None = None,
) -> Reply:
    """`text` (default: the `sentence()` for `echo`), never more than `cap` tokens in all.

    Reasoning models spend 16..63 reasoning tokens first, as real ones do; if the cap
    leaves nothing for text the reply is empty and truncated.
    """
    seed = int.from_bytes(digest[:8], "big")
    think = 16 + (seed >> 8) % 48 if reasoning else 0
    if text is None:
        text = sentence(digest, echo)
    tokens = enc.encode_ordinary(text)
    limit = cap if cap is not None else think + len(tokens)
    think = min(think, limit)
    room = limit - think
    if len(tokens) <= room:
        return Reply(text, len(tokens), think)
    text, size = cut(enc, text, room)
    return Reply(text, size, think, "length")


def embedding_vector(digest: bytes, index: int, dimensions: int) -> list[float]:
    """A deterministic unit vector for input number `index` of a request."""
    rng = random.Random(digest + index.to_bytes(4, "big"))
    vector = [rng.gauss(0.0, 1.0) for _ in range(dimensions)]
    norm = math.sqrt(sum(x * x for x in vector)) or 1.0
    return [x / norm for x in vector]


def encode_vector(vector: list[float]) -> str:
    """`encoding_format: base64`: little-endian float32, base64-encoded, as OpenAI sends it."""
    packed = array.array("f", vector)
    if sys.byteorder == "big":  # pragma: no cover
        packed.byteswap()
    return base64.b64encode(packed.tobytes()).decode("ascii")
