"""How JSON bodies are stored: compact JSON, zstd-compressed when that pays.

Owns `encode_body`/`decode_body` and the JSON helpers for small JSON columns. No SQL.
A stored body is either TEXT (compact JSON) or a BLOB (a zstd frame of the compact JSON,
or, in rows an earlier batchyard wrote, its zlib stream: the first four bytes tell which,
as no zlib header begins with zstd's magic number); the SQLite type tells text from
compressed, so `typeof(body)` in SQL and `decode_body` agree without an extra column.

Why zstd (the `zstandard` package) and not the standard library's zlib: on the ~1.1 KB
chat bodies of the scale benchmark, zstd at level 1 with a reused compressor takes about
4-8 us a body and keeps 45.6% of it, where zlib at level 1 (its window cut to the body's
size) takes 17-21 us for the same 45.5%; the file's checking workers compress every body,
and with zlib that was about a seventh of their time (profiled on 300k lines). Bodies the
store encodes itself (a row at a time, in the writer's process) are compressed from
`DEFAULT_MIN_BYTES` (2 KiB), where the saving per row is large. The bodies of a submitted
file are encoded while its lines are checked (`encode_text`, by the worker processes on a
large file, so the cost is paid in parallel) and compressed from `REQUEST_MIN_BYTES`
(512 B): a run records every line of its file, so bodies are most of the database.
Compression is kept only if it saves at least a fifth.
"""

from __future__ import annotations

import json
import threading
import zlib
from typing import Any

import zstandard

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
_LEVEL = 1  # zstd's fastest positive level: on JSON bodies as small as zlib's level 1
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"  # a zstd frame's first bytes; never a zlib header's
# zstandard's (de)compressors are reused (a new one costs more than a small body) and are
# not safe to share between threads: one of each per thread.
_local = threading.local()
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
    packed = _compressor().compress(raw)
    return packed if len(packed) <= len(raw) * (1 - _MIN_SAVING) else plain


def body_text(stored: str | bytes) -> str:
    """The JSON text `encode_body` made (decompressed where it was compressed)."""
    return _unpack(stored).decode() if isinstance(stored, bytes) else stored


def _compressor() -> zstandard.ZstdCompressor:
    """This thread's compressor, made on first use."""
    try:
        compressor: zstandard.ZstdCompressor = _local.compressor
    except AttributeError:
        compressor = _local.compressor = zstandard.ZstdCompressor(level=_LEVEL)
    return compressor


def _unpack(stored: bytes) -> bytes:
    """The bytes a stored BLOB holds: a zstd frame, or zlib from an older batchyard."""
    if not stored.startswith(_ZSTD_MAGIC):
        return zlib.decompress(stored)
    try:
        decompressor: zstandard.ZstdDecompressor = _local.decompressor
    except AttributeError:
        decompressor = _local.decompressor = zstandard.ZstdDecompressor()
    return decompressor.decompress(stored)


def decode_body(stored: str | bytes | None) -> dict[str, Any] | None:
    """The dict `encode_body` was given (None stays None)."""
    if stored is None:
        return None
    if isinstance(stored, bytes):
        stored = _unpack(stored).decode()
    value = json.loads(stored)
    if not isinstance(value, dict):
        raise ValueError(f"stored body is not a JSON object but {type(value).__name__}")
    return value
