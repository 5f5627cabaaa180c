"""Compact JSON text, byte for byte what `json` writes, at orjson's speed.

Owns `compact`: the bytes of `json.dumps(obj, separators=(",", ":"), ensure_ascii=False,
allow_nan=False)` (optionally with `sort_keys`), encoded as UTF-8. Batch shard lines and
reuse fingerprints are made of this text, and both are computed for every line of a file,
so its speed sets the speed of `plan` and `submit` on large files.

Why not orjson alone: its text differs from json's for a few values, and the bytes must not
change (a shard line is sized at ingest and written at submit; a fingerprint must match the
one stored by an earlier run). Measured over 2 million random doubles, the only differences
are floats between 1e-9 and 1e-4 (`6.2e-05` against `0.000062`, `1e-07` against `1e-7`),
and orjson writes `null` for NaN and infinity where json refuses them. orjson also refuses
integers past 64 bits and lone surrogates. Text that could hold any of these (it contains
`null`, `0.0000` or a one-digit negative exponent), or that orjson refuses, is written by
json instead, so the result is always json's (and json's errors are raised as before).
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

__all__ = ["agrees", "compact", "plain", "quoted"]

_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode
_JSON_SORTED = json.JSONEncoder(
    separators=(",", ":"), ensure_ascii=False, allow_nan=False, sort_keys=True
).encode
_SHORT_EXPONENT = re.compile(rb"[0-9]e-[0-9](?![0-9])")
# Values json refuses or writes by their base type are left to json (orjson would write them).
_OPTIONS = (
    orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_SUBCLASS
)


def _differs(text: bytes) -> bool:
    """Whether json might write `text`'s value differently (see the module docstring)."""
    return (
        b"null" in text
        or b"0.0000" in text
        or (b"e-" in text and _SHORT_EXPONENT.search(text) is not None)
    )


def compact(obj: Any, *, sort_keys: bool = False, agreed: bool = False) -> bytes:
    """`obj` as compact JSON, UTF-8: exactly json's bytes (see the module docstring).

    `agreed`: orjson is known to write each of `obj`'s values as json does (`agrees` said
    so of a value holding them all), so its text is not searched for the values where the
    two differ.

    Raises what json raises: ValueError for NaN or infinity, TypeError for what JSON cannot
    hold, UnicodeEncodeError for a lone surrogate."""
    try:
        text = orjson.dumps(obj, option=_OPTIONS | orjson.OPT_SORT_KEYS if sort_keys else _OPTIONS)
    except TypeError:  # orjson.JSONEncodeError is a TypeError
        text = None
    if text is None or (not agreed and _differs(text)):
        return (_JSON_SORTED(obj) if sort_keys else _JSON(obj)).encode()
    return text


def agrees(obj: Any, text: bytes) -> bool:
    """Whether orjson writes `obj` as `text`, which is `compact(obj)`: then it writes each
    of `obj`'s values as json does, whatever they are put in or however their keys are
    sorted (`compact(..., agreed=True)`). One orjson call and a comparison: a few times
    cheaper than searching the text again for the values where the two differ."""
    try:
        return orjson.dumps(obj, option=_OPTIONS) == text
    except TypeError:
        return False


def quoted(text: str | None) -> str:
    """`json.dumps(text)` (ASCII, escapes as json writes them; None is `null`), without
    json's encoder for the common plain-ASCII string."""
    if text is None:
        return "null"
    return f'"{text}"' if plain(text) else json.dumps(text)


def plain(text: str) -> bool:
    """Whether `text` is its own JSON string between two quotes, as json writes it with or
    without `ensure_ascii`: printable ASCII with no quote or backslash."""
    return text.isascii() and text.isprintable() and '"' not in text and "\\" not in text
