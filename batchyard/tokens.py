"""Exact, offline token counts for request bodies.

Owns the tiktoken encodings (built from the vocabularies shipped in `batchyard/data/`,
checked by sha256, never downloaded) and the rules that turn a request body into prompt
and output token counts. It must not do I/O beyond reading those two files, and knows
nothing of prices, routes or the store.

Counting rules:

- Chat messages follow the OpenAI cookbook (`How_to_count_tokens_with_tiktoken`): 3 tokens
  per message, 1 more per `name`, 3 to prime the reply; every string value is encoded.
  Multi-part content counts its text parts. Images are an estimate: `IMAGE_TOKENS_LOW`
  for `detail: "low"`, else `IMAGE_TOKENS_HIGH` (a 1024x1024 image at high detail),
  since the pixels are not known here. Tools use the cookbook's function rule.
- Responses `input`: a string is one user message; items count like chat messages
  (text parts, images as above); other items (function calls and outputs) count their
  JSON text. `instructions` counts as a system message.
- Embeddings `input`: a string, a list of strings, a token array, or a list of token arrays;
  no per-item overhead.
- Output: `max_completion_tokens`, `max_tokens` or `max_output_tokens` where given (times `n`),
  else `None` so that the caller can use a per-model estimate.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any, NamedTuple

import tiktoken

__all__ = [
    "IMAGE_TOKENS_HIGH",
    "IMAGE_TOKENS_LOW",
    "TokenCount",
    "count_request",
    "embedding_inputs",
    "encoding_for_model",
    "encoding_name_for_model",
    "output_tokens",
    "prompt_tokens",
]

log = logging.getLogger(__name__)

DATA_DIR = Path(__file__).parent / "data"

# sha256 of the official files, as tiktoken_ext/openai_public.py expects them.
_VOCAB_SHA256 = {
    "o200k_base": "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
    "cl100k_base": "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
}
_PATTERNS = {
    "cl100k_base": (
        r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++"""
        r"""[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
    ),
    "o200k_base": "|".join(
        [
            r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
            r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
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

_CL100K_PREFIXES = ("gpt-4", "gpt-3.5", "text-embedding-", "davinci-002", "babbage-002")
_O200K_PREFIXES = ("gpt-6", "gpt-5", "gpt-4.1", "gpt-4.5", "gpt-4o", "chatgpt-4o", "o1", "o3", "o4")

TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING = 3
IMAGE_TOKENS_LOW = 85
IMAGE_TOKENS_HIGH = 765


@cache
def _load(name: str) -> tiktoken.Encoding:
    path = DATA_DIR / f"{name}.tiktoken"
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != _VOCAB_SHA256[name]:
        raise RuntimeError(
            f"The token vocabulary {path} is damaged (sha256 {digest}); reinstall batchyard."
        )
    ranks = {
        base64.b64decode(token): int(rank)
        for token, rank in (line.split() for line in data.splitlines() if line)
    }
    return tiktoken.Encoding(
        name=name,
        pat_str=_PATTERNS[name],
        mergeable_ranks=ranks,
        special_tokens=_SPECIAL[name],
    )


@cache
def encoding_name_for_model(model: str) -> str:
    """The encoding a model uses; unknown models fall back to o200k_base (said once)."""
    base = model.removeprefix("ft:")
    if base.startswith(_O200K_PREFIXES):
        return "o200k_base"
    if base.startswith(_CL100K_PREFIXES):
        return "cl100k_base"
    log.warning("Unknown model %r: counting tokens with o200k_base.", model)
    return "o200k_base"


def encoding_for_model(model: str) -> tiktoken.Encoding:
    return _load(encoding_name_for_model(model))


def _legacy(model: str) -> bool:
    return encoding_name_for_model(model) == "cl100k_base"


def _text_len(enc: tiktoken.Encoding, text: str) -> int:
    return len(enc.encode(text, disallowed_special=()))


def _content_tokens(enc: tiktoken.Encoding, content: Any) -> int:
    """A message's content: a string, or a list of typed parts."""
    if content is None:
        return 0
    if isinstance(content, str):
        return _text_len(enc, content)
    total = 0
    for part in content if isinstance(content, list) else [content]:
        if not isinstance(part, Mapping):
            total += _text_len(enc, str(part))
            continue
        kind = part.get("type", "")
        if "text" in part and isinstance(part["text"], str):
            total += _text_len(enc, part["text"])
        elif kind in ("image_url", "input_image"):
            detail = part.get("detail")
            if isinstance(part.get("image_url"), Mapping):
                detail = part["image_url"].get("detail", detail)
            total += IMAGE_TOKENS_LOW if detail == "low" else IMAGE_TOKENS_HIGH
        elif kind == "refusal" and isinstance(part.get("refusal"), str):
            total += _text_len(enc, part["refusal"])
        else:
            total += _text_len(enc, json.dumps(part, separators=(",", ":")))
    return total


def _message_tokens(enc: tiktoken.Encoding, message: Mapping[str, Any]) -> int:
    total = TOKENS_PER_MESSAGE
    for key, value in message.items():
        if key == "content":
            total += _content_tokens(enc, value)
        elif key == "tool_calls" and isinstance(value, list):
            total += sum(_text_len(enc, json.dumps(call, separators=(",", ":"))) for call in value)
        elif isinstance(value, str):
            total += _text_len(enc, value)
            if key == "name":
                total += TOKENS_PER_NAME
    return total


def _tools_tokens(enc: tiktoken.Encoding, tools: list[Any], legacy: bool) -> int:
    """The cookbook's estimate for function definitions."""
    func_init, prop_init, prop_key, enum_init, enum_item, func_end = (
        (10 if legacy else 7),
        3,
        3,
        -3,
        3,
        12,
    )
    total = 0
    for tool in tools:
        if not isinstance(tool, Mapping):
            continue
        function = tool.get("function", tool)
        total += func_init
        desc = str(function.get("description", "")).removesuffix(".")
        total += _text_len(enc, f"{function.get('name', '')}:{desc}")
        properties = (function.get("parameters") or {}).get("properties") or {}
        if properties:
            total += prop_init
            for key, prop in properties.items():
                total += prop_key
                prop = prop if isinstance(prop, Mapping) else {}
                for item in prop.get("enum", []):
                    total += enum_item + _text_len(enc, str(item))
                if "enum" in prop:
                    total += enum_init
                p_desc = str(prop.get("description", "")).removesuffix(".")
                total += _text_len(enc, f"{key}:{prop.get('type', '')}:{p_desc}")
    return total + func_end if tools else 0


def _responses_input_tokens(enc: tiktoken.Encoding, body: Mapping[str, Any]) -> int:
    total = 0
    instructions = body.get("instructions")
    if isinstance(instructions, str):
        total += _message_tokens(enc, {"role": "system", "content": instructions})
    items = body.get("input")
    if isinstance(items, str):
        total += _message_tokens(enc, {"role": "user", "content": items})
    elif isinstance(items, list):
        for item in items:
            if isinstance(item, Mapping) and ("role" in item or item.get("type") == "message"):
                message = {k: v for k, v in item.items() if k != "type"}
                total += _message_tokens(enc, message)
            else:
                total += _text_len(enc, json.dumps(item, separators=(",", ":")))
    return total + REPLY_PRIMING


def embedding_inputs(body: Mapping[str, Any]) -> list[str | list[int]]:
    """The separate inputs of an embeddings (or moderations) body, as given."""
    raw = body.get("input")
    if raw is None:
        return []
    if isinstance(raw, str):
        return [raw]
    if isinstance(raw, list) and raw and all(isinstance(x, int) for x in raw):
        return [list(raw)]
    return [x if isinstance(x, str) else list(x) for x in raw] if isinstance(raw, list) else []


def prompt_tokens(endpoint: str, body: Mapping[str, Any]) -> int:
    """Prompt (input) tokens of one request body for the given endpoint."""
    model = str(body.get("model") or "")
    enc = encoding_for_model(model)
    if endpoint.endswith("/chat/completions"):
        messages = body.get("messages") or []
        total = sum(_message_tokens(enc, m) for m in messages if isinstance(m, Mapping))
        tools = body.get("tools") or body.get("functions") or []
        return total + REPLY_PRIMING + _tools_tokens(enc, list(tools), _legacy(model))
    if endpoint.endswith("/responses"):
        tools = body.get("tools") or []
        return _responses_input_tokens(enc, body) + _tools_tokens(enc, list(tools), False)
    if endpoint.endswith(("/embeddings", "/moderations")):
        return sum(
            len(x) if isinstance(x, list) else _text_len(enc, x) for x in embedding_inputs(body)
        )
    if endpoint.endswith("/completions"):
        prompt = body.get("prompt", "")
        prompts = prompt if isinstance(prompt, list) else [prompt]
        return sum(_text_len(enc, p) if isinstance(p, str) else 1 for p in prompts)
    raise ValueError(f"Cannot count tokens for endpoint {endpoint!r}.")


def output_tokens(endpoint: str, body: Mapping[str, Any]) -> int | None:
    """The requested maximum output tokens, or None when the body does not cap them."""
    if endpoint.endswith(("/embeddings", "/moderations")):
        return 0
    for key in ("max_completion_tokens", "max_output_tokens", "max_tokens"):
        value = body.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            n = body.get("n", 1)
            return value * (n if isinstance(n, int) and n > 0 else 1)
    return None


class TokenCount(NamedTuple):
    """Prompt tokens, and the requested maximum output tokens (None when uncapped)."""

    prompt: int
    output: int | None


def count_request(endpoint: str, body: Mapping[str, Any]) -> TokenCount:
    return TokenCount(prompt_tokens(endpoint, body), output_tokens(endpoint, body))
