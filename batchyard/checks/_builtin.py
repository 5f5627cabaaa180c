"""The shipped checks: `finish`, `refusal`, `json` and `schema`.

Each is a function from an `Answer` to None (passed) or a sentence saying what is wrong.
Pure: no I/O. `schema` validates with the `jsonschema` library against the request's own
`json_schema`, never a copy of it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import jsonschema

from ._answer import Answer

__all__ = ["check_finish", "check_json", "check_refusal", "check_schema"]

_BAD_FINISH = {
    "length": "the answer was cut off at its token limit (finish_reason: length)",
    "content_filter": "the answer was cut by the content filter (finish_reason: content_filter)",
}


def _where(answer: Answer, index: int) -> str:
    return f"choice {index}: " if len(answer.choices) > 1 else ""


def check_finish(answer: Answer) -> str | None:
    """Fails an answer that stopped at its token limit or at the content filter."""
    for choice in answer.choices:
        if choice.finish_reason in _BAD_FINISH:
            return _where(answer, choice.index) + _BAD_FINISH[choice.finish_reason]
    return None


def check_refusal(answer: Answer) -> str | None:
    """Fails an answer the model refused (`message.refusal`, or a refusal output item)."""
    for choice in answer.choices:
        if choice.refusal:
            return f"{_where(answer, choice.index)}the model refused: {choice.refusal[:200]}"
    return None


def _parsed(answer: Answer) -> list[tuple[int, Any]] | str:
    """Every choice's text parsed as JSON, or the reason one does not parse."""
    values: list[tuple[int, Any]] = []
    for choice in answer.choices:
        if choice.refusal:
            continue  # a refusal is `refusal`'s to report, not a JSON fault
        if choice.text is None:
            return f"{_where(answer, choice.index)}JSON was asked for but the answer has no text"
        try:
            values.append((choice.index, json.loads(choice.text)))
        except json.JSONDecodeError as exc:
            return (
                f"{_where(answer, choice.index)}JSON was asked for but the answer does not "
                f"parse: {exc.msg} at character {exc.pos}"
            )
    return values


def check_json(answer: Answer) -> str | None:
    """Fails an answer whose text does not parse, when the request asked for JSON."""
    if answer.wanted is None:
        return None
    parsed = _parsed(answer)
    return parsed if isinstance(parsed, str) else None


def check_schema(answer: Answer) -> str | None:
    """Fails parsed JSON that does not validate against the request's own `json_schema`.

    Text that does not parse is `json`'s to report; this check then passes.
    """
    wanted = answer.wanted
    if wanted is None or wanted[0] != "json_schema" or not isinstance(wanted[1], Mapping):
        return None
    parsed = _parsed(answer)
    if isinstance(parsed, str):
        return None
    schema = dict(wanted[1])
    try:
        validator_cls = jsonschema.validators.validator_for(schema)
        validator_cls.check_schema(schema)
    except jsonschema.SchemaError as exc:
        return f"the request's json_schema is not a valid schema: {exc.message}"
    validator = validator_cls(schema)
    for index, value in parsed:
        error = jsonschema.exceptions.best_match(validator.iter_errors(value))
        if error is not None:
            path = "/".join(str(p) for p in error.absolute_path) or "(root)"
            return (
                f"{_where(answer, index)}the JSON does not match the request's schema at "
                f"{path}: {error.message}"
            )
    return None
