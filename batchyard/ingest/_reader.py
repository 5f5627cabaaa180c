"""Streaming a request file line by line into valid requests and line problems.

Owns the file-level handling (binary reading, UTF-8, BOM, blank lines, CRLF, a missing
trailing newline, empty files) and duplicate custom_id detection. Keeps one block of lines
in memory at a time; the custom_ids seen so far are kept in a temporary on-disk set
(`store.scratch.DiskSet`), so memory does not grow with the file. Writes nothing else.
"""

from __future__ import annotations

import json
import re
from collections.abc import Generator, Iterable, Iterator, Mapping
from os import PathLike
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from batchyard.config import ModelInfo
from batchyard.errors import InputError, LineProblem
from batchyard.ingest._rules import ParsedRequest, check_envelope, check_line
from batchyard.store.scratch import DiskSet

__all__ = ["open_request_file", "read_requests", "reread_lines"]

_BOM = b"\xef\xbb\xbf"
BLOCK = 1024  # lines checked together: their custom_ids are looked up in one query


def _reject_constant(name: str) -> float:
    # json accepts NaN and Infinity, which are not JSON and which the API would refuse.
    raise ValueError(f"{name} is not valid JSON")


_DECODE = json.JSONDecoder(parse_constant=_reject_constant).decode
_MISS = object()
# orjson reads an integer past 64 bits as a float where json keeps it exact: such lines (any
# run of 20 digits, even inside a string) take json's path, so the objects are the same.
_LONG_NUMBER = re.compile(rb"[0-9]{20}")
_DIGITS = b"0123456789"


def _fast_decode(raw: bytes) -> Any:
    """`raw` (one line, bytes) parsed by orjson, or `_MISS` where json must decide: orjson
    refuses what json refuses (NaN, Infinity, bad UTF-8) and a few things json accepts (a
    lone surrogate escape, 1e400), which then get json's own result or message."""
    # Counting the digits is much faster than the search, and a line with fewer than 20
    # digits in all cannot hold a run of 20.
    digits = len(raw) - len(raw.translate(None, _DIGITS))
    if digits >= 20 and _LONG_NUMBER.search(raw) is not None:
        return _MISS
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return _MISS


def open_request_file(path: str | PathLike[str]) -> BinaryIO:
    """Open a request file for binary reading, with messages a user can act on."""
    try:
        return Path(path).open("rb")
    except FileNotFoundError:
        raise InputError(f"{path} does not exist; give the path of a JSONL request file.") from None
    except IsADirectoryError:
        raise InputError(f"{path} is a directory; give the path of a JSONL request file.") from None
    except PermissionError:
        raise InputError(f"{path} cannot be read: permission denied.") from None


def _slow_decode(name: str, lineno: int, raw: bytes) -> Generator[LineProblem, None, Any]:
    """json's parse of a line orjson did not take: the object, or `_MISS` after yielding
    the line's problem."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        yield LineProblem(
            name,
            lineno,
            None,
            f"This line is not valid UTF-8 (byte 0x{raw[exc.start]:02x} at position "
            f"{exc.start + 1}); save the file as UTF-8.",
        )
        return _MISS
    try:
        return _DECODE(text.rstrip("\r\n"))  # columns count within the line
    except ValueError as exc:
        detail = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
        where = f" at column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else ""
        yield LineProblem(
            name, lineno, None, f"This line is not parseable as valid JSON: {detail}{where}."
        )
        return _MISS


def read_requests(
    path: str | PathLike[str],
    models: Mapping[str, ModelInfo],
    *,
    span: tuple[int, int] | None = None,
    seen: DiskSet | None = None,
) -> Iterator[ParsedRequest | LineProblem]:
    """Each non-blank line of `path`, in order, as a ParsedRequest or a LineProblem.

    A line with several problems yields one LineProblem per problem. Raises InputError when
    the file cannot be read or holds no request at all. Memory stays flat: lines are read
    `BLOCK` at a time, and the custom_ids seen so far (for duplicates) are kept on disk.

    `span` (start, end) reads only the lines that start in that byte range (`start` at the
    start of a line), numbered from 1 within it, for workers that each read part of a
    file; `seen` is then the caller's set of the custom_ids (it is left open).
    """
    name = str(path)
    own = seen is None
    ids = DiskSet() if seen is None else seen
    seen_any = False
    try:
        with open_request_file(path) as f:
            for block in _blocks(f, span):
                seen_any = True
                yield from _check_block(name, block, ids, models)
    finally:
        if own:
            ids.close()
    if not seen_any and span is None:
        raise InputError(f"{name} is empty: it holds no request lines.")


def _blocks(f: BinaryIO, span: tuple[int, int] | None = None) -> Iterator[list[tuple[int, bytes]]]:
    """The non-blank lines of `f` (of `span`) with their numbers, `BLOCK` at a time."""
    block: list[tuple[int, bytes]] = []
    lines: Iterable[bytes] = f
    if span is not None:
        f.seek(span[0])
        lines = _until(f, span[1] - span[0])
    first = span is None or span[0] == 0
    for lineno, raw in enumerate(lines, 1):
        if lineno == 1 and first and raw.startswith(_BOM):
            raw = raw[len(_BOM) :]
        if not raw or raw.isspace():
            continue
        block.append((lineno, raw))
        if len(block) >= BLOCK:
            yield block
            block = []
    if block:
        yield block


def _until(f: BinaryIO, size: int) -> Iterator[bytes]:
    """The lines of `f` from where it stands that start within the next `size` bytes."""
    read = 0
    for raw in f:
        if read >= size:
            return
        read += len(raw)
        yield raw


def _check_block(
    name: str, block: list[tuple[int, bytes]], seen: DiskSet, models: Mapping[str, ModelInfo]
) -> Iterator[ParsedRequest | LineProblem]:
    """A block of lines checked in order; their custom_ids are looked up together."""
    parsed: list[tuple[int, Any, list[LineProblem], str | None]] = []
    ids: list[bytes] = []
    at: list[int] = []
    for lineno, raw in block:
        problems: list[LineProblem] = []
        obj = _fast_decode(raw)
        if obj is _MISS:
            decoding = _slow_decode(name, lineno, raw)
            try:
                while True:
                    problems.append(next(decoding))
            except StopIteration as done:
                obj = done.value
        cid = obj.get("custom_id") if isinstance(obj, dict) else None
        custom_id = cid if isinstance(cid, str) and cid.strip() else None
        if obj is not _MISS and custom_id is not None:
            ids.append(custom_id.encode("utf-8", "surrogatepass"))
            at.append(lineno)
        parsed.append((lineno, obj, problems, custom_id))
    firsts = iter(seen.first_lines(ids, at))
    for lineno, obj, problems, custom_id in parsed:
        yield from problems
        if obj is _MISS:
            continue
        if custom_id is not None:
            earlier = next(firsts)
            if earlier != lineno:
                yield LineProblem(
                    name,
                    lineno,
                    "custom_id",
                    f"Duplicate custom_id {custom_id!r}: line {earlier} already uses it; "
                    "custom_id must be unique for each request in a batch.",
                    custom_id,
                )
                continue
        envelope = check_envelope(obj)
        if len(envelope) == 2:
            yield LineProblem(name, lineno, envelope[0], envelope[1], custom_id)
            continue
        assert isinstance(obj, dict)
        result = check_line(lineno, obj, envelope[0], envelope[1], envelope[2], models)
        if isinstance(result, ParsedRequest):
            yield result
        else:
            for field, message in result:
                yield LineProblem(name, lineno, field, message, custom_id)


def reread_lines(path: str | PathLike[str], lines: Iterable[int]) -> Iterator[tuple[int, Any]]:
    """The decoded JSON of the given (ascending, already validated) line numbers, read again
    without validating or counting tokens: for a second pass over a checked file."""
    wanted = iter(lines)
    next_line = next(wanted, None)
    with open_request_file(path) as f:
        for lineno, raw in enumerate(f, 1):
            if next_line is None:
                break
            if lineno != next_line:
                continue
            if lineno == 1 and raw.startswith(_BOM):
                raw = raw[len(_BOM) :]
            obj = _fast_decode(raw)
            if obj is _MISS:
                obj = _DECODE(raw.decode("utf-8").rstrip("\r\n"))
            yield lineno, obj
            next_line = next(wanted, None)
    if next_line is not None:
        raise InputError(f"{path} changed while it was being read; submit it again.")
