"""Token counting for the simulator, independent of batchyard's own counter.

Owns the tiktoken encodings the simulator uses for `usage` (built from the vocabularies
shipped in `batchyard/data/`, checked by sha256, never downloaded) and the rules that turn
a request body into prompt tokens and a rate-limit charge. It must not import anything from
batchyard outside `batchyard.simulator`: if it shared the client's counter it would share
its bugs, and tests compare the two.

Rules (the OpenAI cookbook's `num_tokens_from_messages`):

- chat: 3 tokens per message, 1 more per `name`, 3 to prime the reply; every string value
  is encoded; list content counts its text parts (other parts count their JSON text);
- responses: `instructions` is a system message, a string `input` one user message, input
  items count like messages, plus 3 priming tokens;
- embeddings: the encoded length of each input (token arrays count their length).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import tiktoken

__all__ = [
    "embedding_inputs",
    "encoding",
    "prompt_tokens",
    "rate_limit_charge",
    "requested_output",
]

_DATA = Path(__file__).resolve().parent.parent / "data"
_SHA256 = {
    "o200k_base": "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
    "cl100k_base": "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
}
# Split patterns and special tokens as in tiktoken_ext/openai_public.py.
_PATTERNS = {
    "cl100k_base": (
        r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++"""
        r"""[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
    ),
    "o200k_base": "|".join(
        [
            r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+"""
            r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
            r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*"""
            r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
            r"""\p{N}{1,3}""",
            r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
            r"""\s*[\r\n]+""",
            r"""\s+(?!\S)""",
            r"""\s+""",
        ]
    ),
}
_SPECIAL = {
    "cl100k_base": {
        "<|endoftext|>": 100257,
        "<|fim_prefix|>": 100258,
        "<|fim_middle|>": 100259,
        "<|fim_suffix|>": 100260,
        "<|endofprompt|>": 100276,
    },
    "o200k_base": {"<|endoftext|>": 199999, "<|endofprompt|>": 200018},
}
PER_MESSAGE = 3
PER_NAME = 1
PRIMING = 3


@cache
def encoding(name: str) -> tiktoken.Encoding:
    """The named vocabulary (`o200k_base` or `cl100k_base`), loaded once and sha256-checked."""
    if name not in _SHA256:
        raise ValueError(f"Unknown encoding {name!r}; use 'o200k_base' or 'cl100k_base'.")
    path = _DATA / f"{name}.tiktoken"
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != _SHA256[name]:
        raise RuntimeError(f"The vocabulary {path} is damaged (sha256 {digest}); reinstall.")
    ranks = {
        base64.b64decode(token): int(rank)
        for token, rank in (line.split() for line in data.splitlines() if line)
    }
    return tiktoken.Encoding(
        name=f"sim_{name}",
        pat_str=_PATTERNS[name],
        mergeable_ranks=ranks,
        special_tokens=_SPECIAL[name],
    )


def _len(enc: tiktoken.Encoding, text: str) -> int:
    return len(enc.encode_ordinary(text))


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def _content(enc: tiktoken.Encoding, content: Any) -> int:
    if content is None:
        return 0
    if isinstance(content, str):
        return _len(enc, content)
    total = 0
    for part in content if isinstance(content, list) else [content]:
        if isinstance(part, Mapping) and isinstance(part.get("text"), str):
            total += _len(enc, part["text"])
        else:
            total += _len(enc, part if isinstance(part, str) else _json(part))
    return total


def _message(enc: tiktoken.Encoding, message: Mapping[str, Any]) -> int:
    total = PER_MESSAGE
    for key, value in message.items():
        if key == "content":
            total += _content(enc, value)
        elif isinstance(value, str):
            total += _len(enc, value)
            if key == "name":
                total += PER_NAME
        elif value is not None:
            total += _len(enc, _json(value))
    return total


def embedding_inputs(body: Mapping[str, Any]) -> list[str | list[int]]:
    """The separate inputs of an embeddings body (a string, strings, or token arrays)."""
    raw = body.get("input")
    if isinstance(raw, str):
        return [raw]
    if not isinstance(raw, list):
        return []
    if raw and all(isinstance(x, int) and not isinstance(x, bool) for x in raw):
        return [list(raw)]
    return [x if isinstance(x, str) else list(x) for x in raw if isinstance(x, str | list)]


def prompt_tokens(enc: tiktoken.Encoding, endpoint: str, body: Mapping[str, Any]) -> int:
    """Input tokens of a request body. Tolerates malformed bodies (counts what it can)."""
    if endpoint == "/v1/chat/completions":
        messages = body.get("messages")
        if not isinstance(messages, list):
            return PRIMING
        return PRIMING + sum(_message(enc, m) for m in messages if isinstance(m, Mapping))
    if endpoint == "/v1/responses":
        total = PRIMING
        instructions = body.get("instructions")
        if isinstance(instructions, str):
            total += _message(enc, {"role": "system", "content": instructions})
        items = body.get("input")
        if isinstance(items, str):
            total += _message(enc, {"role": "user", "content": items})
        elif isinstance(items, list):
            for item in items:
                if isinstance(item, Mapping) and "role" in item:
                    total += _message(enc, {k: v for k, v in item.items() if k != "type"})
                else:
                    total += _len(enc, _json(item))
        return total
    if endpoint == "/v1/embeddings":
        return sum(len(x) if isinstance(x, list) else _len(enc, x) for x in embedding_inputs(body))
    raise ValueError(f"The simulator cannot count tokens for {endpoint!r}.")


def requested_output(body: Mapping[str, Any]) -> int | None:
    """The output cap the body asks for, or None when it sets none."""
    for key in ("max_completion_tokens", "max_output_tokens", "max_tokens"):
        value = body.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def rate_limit_charge(prompt: int, body: Mapping[str, Any]) -> int:
    """What a request costs against TPM: prompt tokens + the requested max output (times n)."""
    cap = requested_output(body) or 0
    n = body.get("n", 1)
    return prompt + max(cap, 0) * (n if isinstance(n, int) and n > 0 else 1)
