"""Writing request files from templates and fan-out, validated exactly as `submit` validates.

Owns `build_file` (template + data rows → request file) and `expand_file` (a request file
→ its variants). Both stream: one row in memory, plus the source row of each written line
(8 bytes a line) so that a problem in the written file names the data row it came from.
The output is written beside the destination and renamed into place only when every line
passes `batchyard.ingest.validate_file`; on a problem nothing is left behind.
"""

from __future__ import annotations

import json
from array import array
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from batchyard.build._data import Row, read_rows, row_name
from batchyard.build._fanout import Variation
from batchyard.build._template import RenderProblem, Template, load_template
from batchyard.config import ModelInfo
from batchyard.errors import BuildFailed, InputError
from batchyard.ingest import MAX_PROBLEMS_KEPT, validate_file

__all__ = ["BuildReport", "build_file", "expand_file"]

_SHOWN = 20


@dataclass(frozen=True)
class BuildReport:
    """What a build wrote: the file, the data rows read and the request lines written."""

    output: Path
    rows: int
    requests: int
    variants_per_row: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "output": str(self.output),
            "rows": self.rows,
            "requests": self.requests,
            "variants_per_row": self.variants_per_row,
        }


class _Problems:
    """The first problems in words, and how many rows and problems there were."""

    def __init__(self) -> None:
        self.shown: list[str] = []
        self.count = 0
        self.rows: set[int] = set()

    def add(self, row: int, text: str) -> None:
        self.count += 1
        if len(self.rows) < MAX_PROBLEMS_KEPT:
            self.rows.add(row)
        if len(self.shown) < _SHOWN:
            self.shown.append(text)

    def raise_if_any(self) -> None:
        if self.count:
            raise BuildFailed(self.shown, self.count, len(self.rows))


def _write(
    output: Path,
    lines: Iterable[tuple[Row, dict[str, Any] | RenderProblem]],
    variation: Variation,
    models: Mapping[str, ModelInfo],
    where_of: Callable[[int], str],
) -> BuildReport:
    partial = output.with_name(output.name + ".partial")
    output.parent.mkdir(parents=True, exist_ok=True)
    origins: array[int] = array("q")
    problems = _Problems()
    rows = written = 0
    try:
        with partial.open("w", encoding="utf-8") as out:
            for row, rendered in lines:
                rows += 1
                if isinstance(rendered, RenderProblem):
                    problems.add(row.number, str(rendered))
                    continue
                for line in variation.expand(rendered):
                    out.write(json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n")
                    origins.append(row.number)
                    written += 1
        problems.raise_if_any()
        if written == 0:
            raise InputError("The data file holds no rows; nothing was written.")
        checked = validate_file(partial, models)
        for p in checked.problems:
            number = origins[p.line - 1]
            field = f" ({p.field})" if p.field else ""
            variant = f" [{p.custom_id}]" if p.custom_id and variation.active else ""
            problems.add(number, f"{where_of(number)}{variant}{field}: {p.message}")
        problems.count = checked.problem_count
        problems.raise_if_any()
        partial.replace(output)
    finally:
        partial.unlink(missing_ok=True)
    return BuildReport(output, rows, written, variation.per_line)


def build_file(
    template: Path | Template,
    data: Path,
    output: Path,
    models: Mapping[str, ModelInfo],
    variation: Variation | None = None,
) -> BuildReport:
    """Render `template` for every row of `data` (CSV or JSONL, streamed), expand each line
    by `variation`, and write the request file `output` once all of it is valid.

    Raises BuildFailed naming each bad data row and the field (the template key whose
    placeholder failed, or the request field validation refused)."""
    tpl = template if isinstance(template, Template) else load_template(template)
    rendered = ((row, tpl.render(row)) for row in read_rows(data))
    return _write(output, rendered, variation or Variation(), models, lambda n: row_name(data, n))


def expand_file(
    source: Path,
    output: Path,
    models: Mapping[str, ModelInfo],
    variation: Variation,
) -> BuildReport:
    """Write every line of the request file `source` as its variants into `output`.

    `source` must be valid first (ValidationFailed names its lines otherwise); a variant
    that is not valid (a varied value the model refuses) names the source line."""
    validate_file(source, models).raise_if_invalid()
    lines = ((row, row.fields) for row in read_rows(source, jsonl=True))
    return _write(output, lines, variation, models, lambda n: row_name(source, n, jsonl=True))
