"""Check JSON the simulator produces against the official OpenAI OpenAPI schemas.

Owns loading ``tests/openapi/schemas.json`` (a bundle extracted from openai/openai-openapi
by ``tests/openapi/extract.py``; provenance in ``tests/openapi/README.md``) and turning
JSON Schema 2020-12 violations into readable assertion messages. It must not read the
network or anything outside the repo, and must not loosen the spec: where the spec is
lax, so is this check, except for the opt-in ``strict_keys`` mode.

    from openapi_check import errors, validate

    validate("Batch", batch_json)                      # AssertionError listing violations
    validate("Response", body, strict_keys=True)       # also flag undeclared keys (typos)
    assert errors("ErrorResponse", {"error": {}}) != []

``strict_keys=True`` adds ``unevaluatedProperties: false`` at every place an object value
starts (the root, each property, each array item) whose schema declares ``properties``
and has no ``additionalProperties``/``patternProperties`` and no free-form object branch.
``unevaluatedProperties`` sees through ``$ref``/``allOf``/``anyOf``/``oneOf``, so keys
declared by any matching branch are accepted and only truly undeclared keys are flagged.
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

__all__ = ["SCHEMAS_PATH", "errors", "schema_names", "validate"]

SCHEMAS_PATH = Path(__file__).resolve().parent / "openapi" / "schemas.json"
_MAX_MESSAGE = 240
# Keywords whose subschemas describe a new instance location (a property, an item).
_LOCATION_KEYS = ("items", "additionalProperties", "contains", "unevaluatedItems")
_LOCATION_LIST_KEYS = ("prefixItems",)
_LOCATION_MAP_KEYS = ("properties", "patternProperties")
# Keywords whose subschemas apply in place, to the same instance.
_IN_PLACE_LIST_KEYS = ("allOf", "anyOf", "oneOf")
_OPEN_KEYS = ("additionalProperties", "patternProperties", "unevaluatedProperties")


@functools.cache
def _bundle() -> dict[str, Any]:
    bundle: dict[str, Any] = json.loads(SCHEMAS_PATH.read_text(encoding="utf-8"))
    return bundle


def schema_names() -> list[str]:
    """Names accepted by :func:`validate` and :func:`errors` (keys of the bundle's ``$defs``)."""
    return sorted(_bundle()["$defs"])


def _allows_object(schema: dict[str, Any]) -> bool:
    if "enum" in schema or "const" in schema:
        return False
    kind = schema.get("type")
    return kind is None or kind == "object" or (isinstance(kind, list) and "object" in kind)


def _key_shape(schema: Any, defs: dict[str, Any], seen: frozenset[str]) -> tuple[bool, bool]:
    """(declares properties somewhere in place, is open or free-form somewhere in place)."""
    if schema is True:
        return False, True
    if not isinstance(schema, dict):
        return False, False
    declares = "properties" in schema
    open_ = any(key in schema for key in _OPEN_KEYS)
    branches: list[Any] = [b for key in _IN_PLACE_LIST_KEYS for b in schema.get(key, [])]
    ref = schema.get("$ref")
    if isinstance(ref, str):
        name = ref.removeprefix("#/$defs/")
        if name not in seen:
            branches.append(defs[name])
            seen = seen | {name}
    if not declares and not branches and _allows_object(schema):
        open_ = True  # a bare {"type": "object"} (or {}) accepts any keys
    for branch in branches:
        branch_declares, branch_open = _key_shape(branch, defs, seen)
        declares = declares or branch_declares
        open_ = open_ or branch_open
    return declares, open_


def _closed(schema: Any, defs: dict[str, Any]) -> Any:
    declares, open_ = _key_shape(schema, defs, frozenset())
    if declares and not open_ and isinstance(schema, dict):
        return {**schema, "unevaluatedProperties": False}
    return schema


def _strict_copy(schema: Any, defs: dict[str, Any]) -> Any:
    """Copy ``schema``, closing every object location it describes (see module docstring)."""
    if not isinstance(schema, dict):
        return schema
    out = dict(schema)
    for key in _LOCATION_KEYS:
        if key in out:
            out[key] = _closed(_strict_copy(out[key], defs), defs)
    for key in _LOCATION_LIST_KEYS:
        if key in out:
            out[key] = [_closed(_strict_copy(s, defs), defs) for s in out[key]]
    for key in _LOCATION_MAP_KEYS:
        if key in out:
            out[key] = {k: _closed(_strict_copy(s, defs), defs) for k, s in out[key].items()}
    for key in _IN_PLACE_LIST_KEYS:
        if key in out:
            out[key] = [_strict_copy(s, defs) for s in out[key]]
    return out


@functools.cache
def _defs(strict_keys: bool) -> dict[str, Any]:
    defs: dict[str, Any] = _bundle()["$defs"]
    if not strict_keys:
        return defs
    # _key_shape reads the original defs, so closing one def never changes another's shape.
    return {name: _strict_copy(copy.deepcopy(schema), defs) for name, schema in defs.items()}


@functools.cache
def _validator(schema_name: str, strict_keys: bool) -> Draft202012Validator:
    if schema_name not in _bundle()["$defs"]:
        raise KeyError(
            f"no schema named {schema_name!r} in {SCHEMAS_PATH.name}; add it to ROOTS in "
            f"tests/openapi/extract.py and regenerate. Known: {', '.join(schema_names())}"
        )
    root: dict[str, Any] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$defs": _defs(strict_keys),
        "$ref": f"#/$defs/{schema_name}",
    }
    if strict_keys:
        root = _closed(root, _bundle()["$defs"])
    return Draft202012Validator(root)


def _short(text: str) -> str:
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 3] + "..."


def _branch_rank(branch_errors: list[ValidationError]) -> tuple[bool, int]:
    """Sort key: branches rejected for their kind (wrong ``type`` tag, wrong JSON type) last."""
    wrong_kind = any(
        (e.validator == "type" and not e.relative_path)
        or (e.validator in ("enum", "const") and list(e.relative_path) in (["type"], ["object"]))
        for e in branch_errors
    )
    return wrong_kind, len(branch_errors)


def _describe(error: ValidationError, depth: int = 0) -> str:
    message = _short(error.message)
    if error.validator in ("anyOf", "oneOf") and error.context and depth < 3:
        # The default message repeats the whole instance; show why the closest branch failed.
        branches: dict[object, list[ValidationError]] = {}
        for sub in error.context:
            branches.setdefault(sub.relative_schema_path[0], []).append(sub)
        closest = min(branches.values(), key=_branch_rank)
        reasons = "; ".join(_describe(e, depth + 1) for e in closest[:3])
        more = f" (+{len(closest) - 3} more)" if len(closest) > 3 else ""
        kind = type(error.instance).__name__
        message = f"{kind} matches no {error.validator} branch; closest fails with: {reasons}{more}"
    return f"{error.json_path}: {message}"


def _iter(schema_name: str, instance: object, strict_keys: bool) -> Iterator[ValidationError]:
    yield from _validator(schema_name, strict_keys).iter_errors(instance)


def errors(schema_name: str, instance: object, *, strict_keys: bool = False) -> list[str]:
    """Every violation of ``schema_name`` by ``instance``, as ``"<json path>: <message>"``.

    An empty list means the instance is valid. Raises ``KeyError`` for an unknown name.
    """
    found = sorted(_iter(schema_name, instance, strict_keys), key=lambda e: e.json_path)
    return [_describe(e) for e in found]


def validate(schema_name: str, instance: object, *, strict_keys: bool = False) -> None:
    """Raise ``AssertionError`` listing every violation if ``instance`` is not valid."""
    problems = errors(schema_name, instance, strict_keys=strict_keys)
    if problems:
        mode = " (strict_keys)" if strict_keys else ""
        listing = "\n".join(f"  - {p}" for p in problems)
        raise AssertionError(
            f"{len(problems)} violation(s) of OpenAPI schema {schema_name!r}{mode}:\n{listing}"
        )
