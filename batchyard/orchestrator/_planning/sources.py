"""What a run is made from: a request file, a template with a data file, or either of those
multiplied into variants, turned into the one request file that intake reads.

Owns `prepare_source`: a plain file without fan-out is used as it is; a template is built
(`batchyard.build`) and a fan-out is expanded into a request file under the spool
directory (beside the job database, `requests/`), which the run then records as its
source. Builds are validated as `submit` validates and name the data row on a problem.
Never touches the store or the API.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from batchyard.build import (
    BuildReport,
    RequestLike,
    Variation,
    build_file,
    expand_file,
    spool_requests,
)
from batchyard.catalog import ModelInfo
from batchyard.errors import InputError

__all__ = ["Requests", "Source", "prepare_source", "spool_path"]


@dataclass(frozen=True)
class Source:
    """The request file to read, and the build that made it (None: the user's own file)."""

    path: Path
    build: BuildReport | None = None


def spool_path(spool: Path, stem: str) -> Path:
    """A new file name under `spool` for built requests (never reused)."""
    spool.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    return spool / f"{stem}-{stamp}-{secrets.token_hex(3)}.jsonl"


Requests = str | os.PathLike[str] | Iterable[RequestLike]
"""What `plan` and `submit` take: a request file's path, or requests in memory (`Request`
objects or batch-format dicts), in input order."""


def prepare_source(
    requests: Requests,
    models: Mapping[str, ModelInfo],
    spool: Path,
    *,
    template: str | os.PathLike[str] | None = None,
    variation: Variation | None = None,
) -> Source:
    """The request file for `requests`: the file itself, or the one written from it.

    Requests in memory are spooled to a file first. With `template`, the path is the data
    file (CSV or JSONL rows). With an active `variation`, every line becomes its variants
    (`batchyard.build` documents the ids)."""
    variation = variation or Variation()
    if not isinstance(requests, str | os.PathLike):
        if template is not None:
            raise InputError("--template takes a data file's path, not requests in memory.")
        spooled = spool_path(spool, "memory")
        spool_requests(requests, spooled)
        if not variation.active:
            return Source(spooled)
        try:
            return prepare_source(spooled, models, spool, variation=variation)
        finally:
            spooled.unlink(missing_ok=True)
    source = Path(requests)
    if template is None and not variation.active:
        return Source(source)
    output = spool_path(spool, source.stem)
    if template is not None:
        report = build_file(Path(template), source, output, models, variation)
    else:
        report = expand_file(source, output, models, variation)
    return Source(output, report)
