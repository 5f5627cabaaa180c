"""The limits a request body's numbers must respect, in the API's own wording.

Owns the parameter ranges (`check_ranges`: temperature, top_p, penalties, n, token caps)
and the context window (`context_problem`: prompt plus completion within the model's
context; embeddings inputs within their per-request token sum), with the names the
messages use (`INPUT_FIELD`, `type_name`). Pure: no I/O, no state.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from batchyard.catalog import ModelInfo
from batchyard.models import Endpoint
from batchyard.tokens import embedding_inputs, encoding_for_model

__all__ = [
    "EMBEDDING_MAX_REQUEST_TOKENS",
    "INPUT_FIELD",
    "Problem",
    "check_ranges",
    "context_problem",
    "type_name",
]

# Documented for /v1/embeddings: at most 300,000 tokens summed across all inputs of one
# request.
EMBEDDING_MAX_REQUEST_TOKENS = 300_000
# The parameter holding each endpoint's input, and whether it is a list of message objects.
INPUT_FIELD = {
    Endpoint.CHAT: "messages",
    Endpoint.RESPONSES: "input",
    Endpoint.EMBEDDINGS: "input",
    Endpoint.COMPLETIONS: "prompt",
    Endpoint.MODERATIONS: "input",
}
_TYPE_NAMES = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "a boolean",
    list: "an array",
    dict: "an object",
    type(None): "null",
}


Problem = tuple[str | None, str]  # (field, message)


def type_name(value: object) -> str:
    return _TYPE_NAMES.get(type(value), type(value).__name__)


def context_problem(
    endpoint: Endpoint, body: Mapping[str, Any], info: ModelInfo, prompt: int, output: int | None
) -> Problem | None:
    ctx = info.context_window
    field = f"body.{INPUT_FIELD[endpoint]}"
    if endpoint is Endpoint.EMBEDDINGS:
        if prompt > EMBEDDING_MAX_REQUEST_TOKENS:
            return (
                field,
                f"Invalid 'input': {prompt:,} tokens in all; an embeddings request may have at "
                f"most {EMBEDDING_MAX_REQUEST_TOKENS:,} tokens summed across its inputs.",
            )
        if prompt <= ctx:
            return None
        enc = encoding_for_model(info.name)
        for i, item in enumerate(embedding_inputs(body)):
            n = len(item) if isinstance(item, list) else len(enc.encode_ordinary(item))
            if n > ctx:
                return (
                    field,
                    f"Invalid 'input[{i}]': {n:,} tokens, more than this model's maximum "
                    f"context length of {ctx:,} tokens.",
                )
        return None
    if endpoint is Endpoint.MODERATIONS:
        return None
    wanted = prompt + (output or 0)
    if wanted <= ctx:
        return None
    where = INPUT_FIELD[endpoint]
    return (
        field,
        f"This model's maximum context length is {ctx:,} tokens. However, you requested "
        f"{wanted:,} tokens ({prompt:,} in the {where}, {output or 0:,} in the completion). "
        f"Please reduce the length of the {where} or completion.",
    )


# Numeric parameters the API checks, with its bounds: (low, high, integer?).
_RANGES: dict[str, tuple[float, float | None, bool]] = {
    "temperature": (0, 2, False),
    "top_p": (0, 1, False),
    "presence_penalty": (-2, 2, False),
    "frequency_penalty": (-2, 2, False),
    "top_logprobs": (0, 20, True),
    "n": (1, 128, True),
    "max_tokens": (1, None, True),
    "max_completion_tokens": (1, None, True),
    "max_output_tokens": (1, None, True),
}


def check_ranges(body: Mapping[str, Any]) -> list[Problem]:
    """Out-of-range numbers, in the API's own wording (e.g. temperature above 2)."""
    problems: list[Problem] = []
    for name, (low, high, integer) in _RANGES.items():
        value = body.get(name)
        if value is None or (isinstance(value, float) and not math.isfinite(value)):
            continue  # absent, or out of any range: reported as such elsewhere
        kind = "integer" if integer else "decimal"
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or (integer and not isinstance(value, int))
        ):
            expected = "an integer" if integer else "a number"
            problems.append(
                (
                    f"body.{name}",
                    f"Invalid type for '{name}': expected {expected}, but got "
                    f"{type_name(value)} instead.",
                )
            )
        elif value < low:
            problems.append(
                (
                    f"body.{name}",
                    f"Invalid '{name}': {kind} below minimum value. Expected a value >= "
                    f"{low}, but got {value} instead.",
                )
            )
        elif high is not None and value > high:
            problems.append(
                (
                    f"body.{name}",
                    f"Invalid '{name}': {kind} above maximum value. Expected a value <= "
                    f"{high}, but got {value} instead.",
                )
            )
    return problems
