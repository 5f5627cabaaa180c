"""Regenerate ``tests/openapi/schemas.json`` from the official OpenAI OpenAPI spec.

Owns the one-off extraction: it reads two copies of ``openai/openai-openapi``'s
``openapi.yaml``, keeps the component schemas the tests check the simulator against plus
everything they transitively ``$ref``, rewrites the OpenAPI-isms into plain JSON Schema
2020-12 and writes one minified bundle. It must not run at test time (the YAML files live
outside the repo) and must not alter a schema's meaning: only syntax is rewritten.

Rewrites:
- ``$ref: #/components/schemas/X`` -> ``#/$defs/X`` (inside the bundle);
- ``$recursiveRef: "#"`` (Draft 2019-09, ignored by 2020-12) -> a ``$ref`` to the schema
  that declared ``$recursiveAnchor``; the anchor is dropped;
- ``nullable: true`` (OpenAPI 3.0, the older spec) -> ``"null"`` added to ``type``/``enum``,
  or ``anyOf: [..., {"type": "null"}]`` when there is no ``type``;
- ``x-*`` vendor keys are dropped; ``discriminator`` is kept (validators ignore it; the
  ``oneOf``/``anyOf`` beside it does the checking).

Usage, from the repo root::

    python tests/openapi/extract.py [--spec PATH] [--old-spec PATH] [--out PATH]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SPEC = REPO_ROOT / "../shared/reference/openai-openapi.yaml"
DEFAULT_OLD_SPEC = REPO_ROOT / "../shared/reference/openai-openapi-2025-04-29.yaml"
DEFAULT_OUT = Path(__file__).resolve().parent / "schemas.json"
SPEC_COMMIT = "f85dbe2"
SPEC_DATE = "2026-08-21"
OLD_SPEC_COMMIT = "498c71d"
OLD_SPEC_DATE = "2025-04-29"
REPO_URL = "https://github.com/openai/openai-openapi"

ROOTS = [
    "Batch",
    "BatchError",
    "BatchRequestCounts",
    "OpenAIFile",
    "ListFilesResponse",
    "ListBatchesResponse",
    "DeleteFileResponse",
    "CreateChatCompletionResponse",
    "Response",
    "CreateEmbeddingResponse",
    "ErrorResponse",
    "Error",
    "ListModelsResponse",
    "Model",
    "CompletionUsage",
    "ResponseUsage",
]
OLD_ROOTS = ["BatchRequestInput", "BatchRequestOutput"]
OLD_PREFIX = "old."  # used only when an old-spec name clashes with a current one

COMPONENT_PREFIX = "#/components/schemas/"
# Keywords whose value is a schema, a list of schemas, or a map of name -> schema.
SCHEMA_KEYS = {
    "items", "additionalProperties", "not", "if", "then", "else", "contains",
    "propertyNames", "unevaluatedProperties", "unevaluatedItems",
}  # fmt: skip
SCHEMA_LIST_KEYS = {"allOf", "anyOf", "oneOf", "prefixItems"}
SCHEMA_MAP_KEYS = {"properties", "patternProperties", "dependentSchemas", "$defs"}


class _Yaml12Loader(yaml.CSafeLoader if yaml.__with_libyaml__ else yaml.SafeLoader):  # type: ignore[misc]
    """YAML 1.2 scalars: only true/false are booleans (``on``/``no`` stay strings), no dates."""


_Yaml12Loader.yaml_implicit_resolvers = {
    first: [
        (tag, regexp)
        for tag, regexp in resolvers
        if tag not in ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:timestamp")
    ]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)


def load_spec(path: Path) -> tuple[dict[str, Any], str]:
    """Return the parsed spec and the sha256 of its bytes."""
    raw = path.read_bytes()
    spec = yaml.load(raw, Loader=_Yaml12Loader)  # a SafeLoader subclass
    return spec, hashlib.sha256(raw).hexdigest()


def _child_schemas(schema: dict[str, Any]) -> list[Any]:
    children: list[Any] = []
    for key, value in schema.items():
        if key in SCHEMA_KEYS:
            children.append(value)
        elif key in SCHEMA_LIST_KEYS and isinstance(value, list):
            children.extend(value)
        elif key in SCHEMA_MAP_KEYS and isinstance(value, dict):
            children.extend(value.values())
    return children


def _refs(schema: Any, found: set[str]) -> None:
    if not isinstance(schema, dict):
        return
    ref = schema.get("$ref")
    if isinstance(ref, str):
        if not ref.startswith(COMPONENT_PREFIX):
            raise SystemExit(f"unsupported $ref {ref!r}: only {COMPONENT_PREFIX}* is handled")
        found.add(ref.removeprefix(COMPONENT_PREFIX))
    for mapped in (schema.get("discriminator") or {}).get("mapping", {}).values():
        found.add(str(mapped).removeprefix(COMPONENT_PREFIX))
    for child in _child_schemas(schema):
        _refs(child, found)


def closure(schemas: dict[str, Any], roots: list[str]) -> list[str]:
    """Names of ``roots`` and every component schema they reach through ``$ref``."""
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        if name not in schemas:
            raise SystemExit(f"schema {name!r} is not in the spec's components")
        seen.add(name)
        found: set[str] = set()
        _refs(schemas[name], found)
        todo.extend(sorted(found - seen))
    return sorted(seen)


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    if not schema.pop("nullable", False):
        return schema
    if "enum" in schema and None not in schema["enum"]:
        schema["enum"] = [*schema["enum"], None]
    kind = schema.get("type")
    if isinstance(kind, str):
        schema["type"] = [kind, "null"]
    elif isinstance(kind, list):
        schema["type"] = [*kind, "null"] if "null" not in kind else kind
    else:
        keep = {k: schema.pop(k) for k in list(schema) if k not in ("description", "title")}
        schema["anyOf"] = [keep, {"type": "null"}]
    return schema


def convert(schema: Any, rename: dict[str, str], owner: str) -> Any:
    """Copy ``schema`` with the rewrites listed in the module docstring applied."""
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key.startswith("x-") or key == "$recursiveAnchor":
            continue
        if key == "$ref":
            out[key] = "#/$defs/" + rename[value.removeprefix(COMPONENT_PREFIX)]
        elif key == "$recursiveRef":
            if value != "#":
                raise SystemExit(f"unsupported $recursiveRef {value!r} in {owner}")
            out["$ref"] = "#/$defs/" + rename[owner]
        elif key == "discriminator" and "mapping" in value:
            mapping = {
                k: "#/$defs/" + rename[v.removeprefix(COMPONENT_PREFIX)]
                for k, v in value["mapping"].items()
            }
            out[key] = {**value, "mapping": mapping}
        elif key in SCHEMA_KEYS:
            out[key] = convert(value, rename, owner)
        elif key in SCHEMA_LIST_KEYS and isinstance(value, list):
            out[key] = [convert(v, rename, owner) for v in value]
        elif key in SCHEMA_MAP_KEYS and isinstance(value, dict):
            out[key] = {k: convert(v, rename, owner) for k, v in value.items()}
        else:
            out[key] = value  # data (enum, default, example, required...): copied verbatim
    return _nullable(out)


def build(spec_path: Path, old_spec_path: Path) -> dict[str, Any]:
    spec, sha = load_spec(spec_path)
    old_spec, old_sha = load_spec(old_spec_path)
    current = spec["components"]["schemas"]
    old = old_spec["components"]["schemas"]
    defs: dict[str, Any] = {}
    names = closure(current, ROOTS)
    rename = {n: n for n in names}
    for name in names:
        defs[name] = convert(current[name], rename, name)
    old_names = closure(old, OLD_ROOTS)
    old_rename = {n: (OLD_PREFIX + n if n in defs else n) for n in old_names}
    for name in old_names:
        defs[old_rename[name]] = convert(old[name], old_rename, name)
    source = {
        "repository": REPO_URL,
        "note": "regenerate with: python tests/openapi/extract.py",
        "spec": {
            "file": "openapi.yaml",
            "commit": SPEC_COMMIT,
            "date": SPEC_DATE,
            "sha256": sha,
            "openapi": spec.get("openapi"),
            "roots": ROOTS,
        },
        "old_spec": {
            "file": "openapi.yaml",
            "commit": OLD_SPEC_COMMIT,
            "date": OLD_SPEC_DATE,
            "sha256": old_sha,
            "openapi": old_spec.get("openapi"),
            "roots": OLD_ROOTS,
            "schemas": sorted(old_rename.values()),
        },
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "x-source": source,
        "$defs": dict(sorted(defs.items())),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", type=Path, default=DEFAULT_SPEC, help="current openapi.yaml")
    parser.add_argument(
        "--old-spec", type=Path, default=DEFAULT_OLD_SPEC, help="openapi.yaml with BatchRequest*"
    )
    parser.add_argument("--spec-commit", default=SPEC_COMMIT, help="commit of --spec")
    parser.add_argument("--spec-date", default=SPEC_DATE, help="date of --spec-commit")
    parser.add_argument("--old-spec-commit", default=OLD_SPEC_COMMIT, help="commit of --old-spec")
    parser.add_argument("--old-spec-date", default=OLD_SPEC_DATE, help="date of --old-spec-commit")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="bundle to write")
    args = parser.parse_args(argv)
    bundle = build(args.spec, args.old_spec)
    bundle["x-source"]["spec"].update(commit=args.spec_commit, date=args.spec_date)
    bundle["x-source"]["old_spec"].update(commit=args.old_spec_commit, date=args.old_spec_date)
    text = json.dumps(bundle, separators=(",", ":"), ensure_ascii=False, sort_keys=False)
    args.out.write_text(text + "\n", encoding="utf-8")
    print(
        f"wrote {args.out} ({len(text.encode()):,} bytes, {len(bundle['$defs'])} schemas)",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
