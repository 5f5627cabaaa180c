"""How JSON bodies are stored: compact JSON, zlib-compressed when that pays.

Owns `encode_body`/`decode_body` and the JSON helpers for small JSON columns. No SQL.
A stored body is either TEXT (compact JSON) or a BLOB (zlib of the compact JSON); the
SQLite type tells which, so `typeof(body)` in SQL and `decode_body` agree without an extra
column.

When compression pays: zlib's cost is mostly its per-call setup, which grows with its
window; with a window just wide enough for the text (2 KiB for a body of up to 2 KiB, where
a wider one finds nothing more) a 1 KiB body takes about 15 us, against 45 us with the
default window, and saves 40-55% of a JSON body. Bodies the store encodes itself (a row at
a time, in the writer's process) are compressed from `DEFAULT_MIN_BYTES` (2 KiB), where
the saving per row is large. The bodies of a submitted file are encoded while its lines
are checked (`encode_text`, by the worker processes on a large file, so the cost is paid
in parallel) and compressed from `REQUEST_MIN_BYTES` (512 B): a run records every line of
its file, so bodies are most of the database. Compression is kept only if it saves at
least a fifth.
"""

from __future__ import annotations

import json
import zlib
from typing import Any

__all__ = [
    "DEFAULT_MIN_BYTES",
    "REQUEST_MIN_BYTES",
    "body_text",
    "decode_body",
    "dumps",
    "encode_body",
    "encode_sized",
    "encode_text",
    "loads_dict",
    "loads_list",
]

DEFAULT_MIN_BYTES = 2048
REQUEST_MIN_BYTES = 512
_MIN_SAVING = 0.2  # keep the compressed form only if it is at least 20% smaller
_LEVEL = 1  # fastest level; on JSON it compresses nearly as well as level 6
# One encoder for every call: json.dumps with options builds a new one each time.
_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def dumps(value: Any) -> str:
    """Compact, stable JSON for small JSON columns."""
    return _encode(value)


def loads_dict(text: str | None) -> dict[str, Any]:
    """Parse a JSON object column (None or empty becomes {})."""
    if not text:
        return {}
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError(f"expected a JSON object, got {type(value).__name__}")
    return value


def loads_list(text: str) -> list[str]:
    """Parse a JSON array-of-strings column."""
    value = json.loads(text)
    return [str(v) for v in value] if isinstance(value, list) else []


def encode_body(body: dict[str, Any], min_bytes: int = DEFAULT_MIN_BYTES) -> str | bytes:
    """Compact JSON text, or its zlib compression (bytes) when that saves enough."""
    return encode_text(_encode(body), min_bytes)


def encode_sized(
    body: dict[str, Any], min_bytes: int = DEFAULT_MIN_BYTES
) -> tuple[str | bytes, int]:
    """`encode_body`, and the size in bytes of the body's compact JSON."""
    text = _encode(body)
    size = len(text) if text.isascii() else len(text.encode())
    return encode_text(text, min_bytes), size


def encode_text(text: str | bytes, min_bytes: int = DEFAULT_MIN_BYTES) -> str | bytes:
    """What `encode_body` stores for a body whose compact JSON text is `text` (str, or its
    UTF-8 bytes)."""
    plain = text if isinstance(text, str) else text.decode()
    size = len(text) if isinstance(text, bytes) or text.isascii() else len(text.encode())
    if size < min_bytes:
        return plain
    raw = text if isinstance(text, bytes) else text.encode()
    small = len(raw) <= 2048
    compressor = zlib.compressobj(_LEVEL, zlib.DEFLATED, 11 if small else 15, 3 if small else 8)
    packed = compressor.compress(raw) + compressor.flush()
    return packed if len(packed) <= len(raw) * (1 - _MIN_SAVING) else plain


def body_text(stored: str | bytes) -> str:
    """The JSON text `encode_body` made (decompressed where it was compressed)."""
    return zlib.decompress(stored).decode() if isinstance(stored, bytes) else stored


def decode_body(stored: str | bytes | None) -> dict[str, Any] | None:
    """The dict `encode_body` was given (None stays None)."""
    if stored is None:
        return None
    if isinstance(stored, bytes):
        stored = zlib.decompress(stored).decode()
    value = json.loads(stored)
    if not isinstance(value, dict):
        raise ValueError(f"stored body is not a JSON object but {type(value).__name__}")
    return value
