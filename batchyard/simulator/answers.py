"""What an answer says when JSON is asked for, and how answers go bad at given rates.

Owns two things `execute` asks about every chat and responses answer:

1. **JSON when asked for**: a chat `response_format` (or a responses `text.format`) of type
   `json_object` gets `{"answer": <the reply sentence>}`, and `json_schema` gets an instance
   of the request's own schema (objects with their required properties, enums, consts,
   arrays, numbers within bounds, local `$ref`s), deterministic per body.
2. **Bad answers** (`[answers]`, also at runtime through `/_sim/answers`): truncated
   (`finish_reason: "length"`), content-filtered, refused (`message.refusal`, content null)
   and malformed JSON (only where JSON was asked for). Which answer goes bad is a hash of
   the seed, the body's digest and how many times this simulator has answered that body:
   a run repeats exactly whatever order different requests arrive in, and a body sent
   again gets a fresh draw, as asking the real API again may.

Bad answers are ordinary 200s and billed as such (the API bills the tokens it produced).
It knows nothing of HTTP, limits or billing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
from collections import Counter
from collections.abc import Mapping
from typing import Any

import tiktoken

from batchyard.simulator import content
from batchyard.simulator.state import SimState

__all__ = ["KINDS", "REFUSAL", "Wanted", "json_text", "roll", "spoil", "wanted_json"]

KINDS = ("truncated", "content_filter", "refusal", "malformed_json")
REFUSAL = "I'm sorry, but I can't help with that request."
_COUNTS = "answer_counts"
_MAX_DEPTH = 8

Wanted = tuple[str, Mapping[str, Any] | None]  # ("json_object", None) or ("json_schema", schema)


def wanted_json(endpoint: str, body: Mapping[str, Any]) -> Wanted | None:
    """The JSON the request asks for, or None for free text."""
    if endpoint == "/v1/chat/completions":
        spec = body.get("response_format")
    else:
        text = body.get("text")
        spec = text.get("format") if isinstance(text, Mapping) else None
    if not isinstance(spec, Mapping):
        return None
    kind = spec.get("type")
    if kind == "json_object":
        return ("json_object", None)
    if kind != "json_schema":
        return None
    holder = spec.get("json_schema") if endpoint == "/v1/chat/completions" else spec
    schema = holder.get("schema") if isinstance(holder, Mapping) else None
    return ("json_schema", schema if isinstance(schema, Mapping) else {})


class _Instance:
    """Builds a value that satisfies a JSON schema, from a seeded rng."""

    def __init__(self, root: Mapping[str, Any], rng: random.Random) -> None:
        self.root = root
        self.rng = rng

    def _ref(self, ref: str) -> Mapping[str, Any]:
        node: Any = self.root
        for part in ref.removeprefix("#/").split("/") if ref.startswith("#/") else []:
            node = node.get(part) if isinstance(node, Mapping) else None
        return node if isinstance(node, Mapping) else {}

    def value(self, schema: Mapping[str, Any], depth: int = 0) -> Any:
        if depth > _MAX_DEPTH:
            return None
        if isinstance(schema.get("$ref"), str):
            return self.value(self._ref(schema["$ref"]), depth + 1)
        if "const" in schema:
            return schema["const"]
        if isinstance(schema.get("enum"), list) and schema["enum"]:
            return self.rng.choice(schema["enum"])
        for key in ("anyOf", "oneOf", "allOf"):
            options = [o for o in schema.get(key) or [] if isinstance(o, Mapping)]
            typed = [o for o in options if o.get("type") != "null"] or options
            if typed:
                return self.value(typed[0], depth + 1)
        kind = schema.get("type", "string")
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), "null")
        return self._typed(str(kind), schema, depth)

    def _typed(self, kind: str, schema: Mapping[str, Any], depth: int) -> Any:
        if kind == "object":
            props = schema.get("properties") or {}
            required = schema.get("required")
            names = [n for n in props if required is None or n in required]
            return {n: self.value(props[n], depth + 1) for n in names}
        if kind == "array":
            low = schema.get("minItems", 1)
            high = schema.get("maxItems", max(low, 2))
            count = self.rng.randint(min(low, high), max(low, high))
            items = schema.get("items")
            shape: Mapping[str, Any] = items if isinstance(items, Mapping) else {}
            return [self.value(shape, depth + 1) for _ in range(count)]
        if kind in ("integer", "number"):
            low = schema.get("minimum", 0)
            high = schema.get("maximum", max(low, 100))
            if kind == "integer":
                return self.rng.randint(int(low), int(high))
            return round(self.rng.uniform(float(low), float(high)), 3)
        if kind == "boolean":
            return self.rng.random() < 0.5
        if kind == "null":
            return None
        words = " ".join(self.rng.choice(content.WORDS) for _ in range(self.rng.randint(1, 4)))
        return words.ljust(int(schema.get("minLength", 0)), "x")


def json_text(digest: bytes, echo: str, wanted: Wanted) -> str:
    """The JSON document that answers a request asking for `wanted`."""
    kind, schema = wanted
    if kind == "json_object" or schema is None:
        return json.dumps({"answer": content.sentence(digest, echo)})
    return json.dumps(_Instance(schema, random.Random(digest)).value(schema))


def roll(state: SimState, digest: bytes, wants_json: bool) -> str | None:
    """Which way this answer goes bad (one of KINDS), or None for a good answer."""
    rates = state.answers
    chances = (
        ("truncated", rates.truncated_rate),
        ("content_filter", rates.content_filter_rate),
        ("refusal", rates.refusal_rate),
        ("malformed_json", rates.malformed_json_rate if wants_json else 0.0),
    )
    if not any(rate > 0 for _, rate in chances):
        return None
    counts: Counter[bytes] = state.extra.setdefault(_COUNTS, Counter())
    seen = counts[digest]
    counts[digest] += 1
    key = f"{state.config.seed}:{seen}:".encode() + digest
    draw = int.from_bytes(hashlib.sha256(key).digest()[:8], "big") / 2**64
    edge = 0.0
    for kind, rate in chances:
        edge += rate
        if draw < edge:
            state.stats[f"answers|{kind}"] += 1
            return kind
    return None


def spoil(enc: tiktoken.Encoding, reply: content.Reply, kind: str) -> content.Reply:
    """`reply` gone bad the `kind` way; token counts follow what is left."""
    if kind == "truncated":
        if reply.truncated:
            return reply
        text, size = content.cut(enc, reply.text, max(1, reply.text_tokens // 2))
        return dataclasses.replace(reply, text=text, text_tokens=size, finish="length")
    if kind == "content_filter":
        text, size = content.cut(enc, reply.text, reply.text_tokens // 3)
        return dataclasses.replace(reply, text=text, text_tokens=size, finish="content_filter")
    if kind == "refusal":
        size = len(enc.encode_ordinary(REFUSAL))
        return dataclasses.replace(
            reply, text=REFUSAL, text_tokens=size, finish="stop", refusal=REFUSAL
        )
    if kind == "malformed_json":
        text = reply.text
        broken = text[:-1] if text.endswith(("}", "]")) else text + '"'
        return dataclasses.replace(reply, text=broken, text_tokens=len(enc.encode_ordinary(broken)))
    raise ValueError(f"Unknown kind of bad answer {kind!r}; use one of {', '.join(KINDS)}.")
