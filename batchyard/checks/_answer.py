"""A read-only view of one answer beside the request that asked for it.

Owns `Answer`: the endpoint, the request body and the response body, and what checks ask
of them (each choice's text, finish reason and refusal; the JSON the request asked for),
for chat completions, responses and completions alike. Pure: no I/O, no SDK.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Answer", "Choice", "wanted_json"]

JSONDict = Mapping[str, Any]

# A responses `incomplete_details.reason` as a chat `finish_reason`.
_INCOMPLETE = {"max_output_tokens": "length", "content_filter": "content_filter"}


def wanted_json(endpoint: str, body: JSONDict) -> tuple[str, JSONDict | None] | None:
    """("json_object", None), ("json_schema", schema) or None for free text.

    Chat asks in `response_format`; responses in `text.format` (the schema beside `type`).
    """
    if endpoint.endswith("/chat/completions"):
        spec = body.get("response_format")
    elif endpoint.endswith("/responses"):
        text = body.get("text")
        spec = text.get("format") if isinstance(text, Mapping) else None
    else:
        return None
    if not isinstance(spec, Mapping):
        return None
    kind = spec.get("type")
    if kind == "json_object":
        return ("json_object", None)
    if kind != "json_schema":
        return None
    holder = spec.get("json_schema") if endpoint.endswith("/chat/completions") else spec
    schema = holder.get("schema") if isinstance(holder, Mapping) else None
    return ("json_schema", schema if isinstance(schema, Mapping) else None)


@dataclass(frozen=True, slots=True)
class Choice:
    """One generated answer: its text (None if it has none), finish reason and refusal."""

    index: int
    text: str | None
    finish_reason: str | None
    refusal: str | None


@dataclass(frozen=True, slots=True)
class Answer:
    """What a check sees: `endpoint`, the `request` body and the `response` body."""

    endpoint: str
    request: JSONDict
    response: JSONDict

    @property
    def choices(self) -> list[Choice]:
        """Every generated answer (chat and completions may hold several, `n`)."""
        if self.endpoint.endswith("/responses"):
            return [self._response_choice()]
        found: list[Choice] = []
        for i, raw in enumerate(self.response.get("choices") or []):
            if not isinstance(raw, Mapping):
                continue
            finish = raw.get("finish_reason")
            message = raw.get("message")
            if isinstance(message, Mapping):
                text, refusal = message.get("content"), message.get("refusal")
            else:
                text, refusal = raw.get("text"), None
            found.append(
                Choice(
                    int(raw.get("index", i)) if isinstance(raw.get("index", i), int) else i,
                    text if isinstance(text, str) else None,
                    finish if isinstance(finish, str) else None,
                    refusal if isinstance(refusal, str) and refusal else None,
                )
            )
        return found

    def _response_choice(self) -> Choice:
        texts: list[str] = []
        refusal: str | None = None
        for item in self.response.get("output") or []:
            if not isinstance(item, Mapping) or item.get("type") != "message":
                continue
            for part in item.get("content") or []:
                if not isinstance(part, Mapping):
                    continue
                if part.get("type") == "output_text" and isinstance(part.get("text"), str):
                    texts.append(part["text"])
                elif part.get("type") == "refusal" and isinstance(part.get("refusal"), str):
                    refusal = part["refusal"]
        finish = "stop"
        if self.response.get("status") == "incomplete":
            details = self.response.get("incomplete_details")
            reason = details.get("reason") if isinstance(details, Mapping) else None
            finish = _INCOMPLETE.get(str(reason), str(reason or "incomplete"))
        return Choice(0, "".join(texts) if texts else None, finish, refusal)

    @property
    def wanted(self) -> tuple[str, JSONDict | None] | None:
        """The JSON the request asked for (see `wanted_json`)."""
        return wanted_json(self.endpoint, self.request)
