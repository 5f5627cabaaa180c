"""Streaming the rows of a data file (CSV with a header, or JSONL of objects) for templates.

Owns reading DATA one row at a time and naming each row the way a user finds it again
(`data.csv row 3`, `data.jsonl line 7`). Keeps one row in memory; never writes anything.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from batchyard.errors import InputError

__all__ = ["Row", "read_rows", "row_name"]


@dataclass(frozen=True, slots=True)
class Row:
    """One data row: its number (1-based; CSV rows after the header, JSONL non-blank lines
    by their line number), where it is in words, and its fields."""

    number: int
    where: str
    fields: dict[str, Any]


def _open(path: Path) -> Any:
    try:
        return path.open(encoding="utf-8-sig", newline="")
    except FileNotFoundError:
        raise InputError(
            f"{path} does not exist; give the path of a CSV or JSONL data file."
        ) from None
    except IsADirectoryError:
        raise InputError(
            f"{path} is a directory; give the path of a CSV or JSONL data file."
        ) from None


def _is_jsonl(path: Path) -> bool:
    return path.suffix.lower() in (".jsonl", ".ndjson", ".json")


def row_name(path: Path, number: int, *, jsonl: bool | None = None) -> str:
    """How a row is named in messages: `data.csv row 3` or `data.jsonl line 7`."""
    is_jsonl = _is_jsonl(path) if jsonl is None else jsonl
    return f"{path} {'line' if is_jsonl else 'row'} {number}"


def read_rows(path: Path, *, jsonl: bool | None = None) -> Iterator[Row]:
    """Each row of `path` in order. CSV (any name not ending .jsonl/.ndjson/.json, unless
    `jsonl`) needs a header line; its values are strings. JSONL lines must be objects;
    blank lines are skipped. Raises InputError naming the row when one cannot be read."""
    name = str(path)
    with _open(path) as f:
        try:
            if _is_jsonl(path) if jsonl is None else jsonl:
                yield from _jsonl_rows(name, f)
            else:
                yield from _csv_rows(name, f)
        except UnicodeDecodeError as exc:
            raise InputError(
                f"{name} is not UTF-8 text ({exc.reason}); save it as UTF-8."
            ) from None


def _jsonl_rows(name: str, f: Any) -> Iterator[Row]:
    for lineno, text in enumerate(f, 1):
        if not text.strip():
            continue
        where = f"{name} line {lineno}"
        try:
            obj = json.loads(text)
        except ValueError as exc:
            raise InputError(f"{where}: this line is not valid JSON ({exc}).") from None
        if not isinstance(obj, dict):
            raise InputError(f"{where}: each line must be a JSON object of fields.")
        yield Row(lineno, where, obj)


def _csv_rows(name: str, f: Any) -> Iterator[Row]:
    reader = csv.reader(f)
    header = next(reader, None)
    if header is None:
        raise InputError(f"{name} is empty: a CSV data file needs a header line.")
    columns = [c.strip() for c in header]
    if len(set(columns)) != len(columns):
        raise InputError(f"{name}: the header names a column twice ({', '.join(columns)}).")
    number = 0
    for values in reader:
        if not values or all(not v.strip() for v in values):
            continue
        number += 1
        where = f"{name} row {number}"
        if len(values) != len(columns):
            raise InputError(
                f"{where} (line {reader.line_num}): it has {len(values)} value(s) but the "
                f"header names {len(columns)} column(s)."
            )
        yield Row(number, where, dict(zip(columns, values, strict=True)))
