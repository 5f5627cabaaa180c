"""Checking a large request file with several processes, each reading a part of it.

Owns `check_in_parts`. Checking a line (parsing, validating, counting its tokens, pricing
it, computing its reuse key) is Python work that holds the GIL and sets the speed of `plan`
and `submit` on a large file, so a file of at least `PARALLEL_BYTES` is cut into one
line-aligned byte range per core and each range is checked by a worker process, exactly as
`check_file` checks a whole file in one: each writes its own spill of records, keeps its
custom_ids and reuse keys in on-disk sets, and sums the lines it leaves to send. The parent
joins the parts in order: line numbers and group indices are made the whole file's as the
spills are read, the problems are renumbered, the sums are added.

What crosses parts is checked in the parent, from the workers' on-disk sets (one SQL join
per pair of parts, not a pass over the lines): a custom_id used in two parts makes the
caller check the file again in one process, so the duplicate is reported exactly as it
would be without workers; a reuse key in two parts (a twin across parts) leaves the reuse
preview to one pass over the joined spill, as without workers. Sums added part by part may
differ from one running sum in the last bit of a float.
"""

from __future__ import annotations

import dataclasses
import gc
import multiprocessing
import os
import shutil
import sys
import tempfile
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from batchyard.catalog import ModelInfo
from batchyard.ingest import MAX_PROBLEMS_KEPT, GroupSummary, Validated, validate_file
from batchyard.orchestrator._planning.records import (
    Evidence,
    Group,
    LineKeeper,
    Preview,
    preview_lines,
)
from batchyard.orchestrator._planning.spill import Fix, Spill, SpillChain
from batchyard.store.scratch import DiskSet

__all__ = ["PARALLEL_BYTES", "check_in_parts", "default_workers", "worker_pool"]

PARALLEL_BYTES = 32 << 20  # smaller files are checked in one process: workers cost ~0.1 s
_READ = 4 << 20


def default_workers() -> int:
    """One worker per core this process may use, at most 8."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, 8))


def worker_pool(count: int, context: Any = None) -> ProcessPoolExecutor:
    """`count` worker processes (started by `context`, default fork on Linux) that take
    what they inherit out of the garbage collector's reach (`gc.freeze`): the modules,
    vocabularies and price tables forked from this process are never garbage, and each
    full collection in a worker would otherwise walk them all again (about 5% of the time
    a worker spends checking a line, measured on 100k lines)."""
    return ProcessPoolExecutor(count, mp_context=context or _context(), initializer=gc.freeze)


def _spans(path: Path, parts: int) -> list[tuple[int, int]]:
    """`parts` byte ranges of `path`, each starting at the start of a line."""
    size = path.stat().st_size
    starts = [0]
    with path.open("rb") as f:
        for k in range(1, parts):
            f.seek(max(size * k // parts - 1, starts[-1]))
            f.readline()  # to the start of the next line
            at = f.tell()
            if starts[-1] < at < size:
                starts.append(at)
    ends = [*starts[1:], size]
    return list(zip(starts, ends, strict=True))


def _newlines(path: Path, span: tuple[int, int]) -> int:
    """How many lines end within `span`: where the next part's numbering starts."""
    count, left = 0, span[1] - span[0]
    with path.open("rb") as f:
        f.seek(span[0])
        while left > 0 and (data := f.read(min(_READ, left))):
            count += data.count(b"\n")
            left -= len(data)
    return count


@dataclass(frozen=True)
class _Part:
    index: int
    path: Path
    span: tuple[int, int]
    folder: str
    models: Mapping[str, ModelInfo]
    learned: Evidence
    reuse: bool
    body_min: int | None


@dataclass
class _Checked:
    """What a worker found in its part (line numbers within the part)."""

    index: int
    spill: tuple[str, int]
    ids: str
    keys: str | None
    lines: int  # lines that end in the part: the next part's numbers start after them
    checked: Validated
    groups: list[tuple[str, str]]  # (endpoint, model) by the part's own group index
    preview: Preview


def _check_part(part: _Part) -> _Checked:
    """A worker: check one part as `check_file` checks a whole file."""
    # in the parts' folder, so that nothing is left behind if another part fails
    keep = LineKeeper(
        Spill(Path(part.folder)), part.models, part.learned, part.reuse, part.body_min
    )
    spill = keep.spill
    ids_path = os.path.join(part.folder, f"ids-{part.index}.db")
    ids = DiskSet(path=ids_path)
    try:
        checked = validate_file(
            part.path, part.models, on_valid=keep, span=part.span, seen=ids, plan_shards=False
        )
    finally:
        ids.close()
    ordered = keep.groups()
    spill.seal()
    keys_path = os.path.join(part.folder, f"keys-{part.index}.db") if part.reuse else None
    keys = None if keys_path is None else DiskSet(path=keys_path)
    try:
        preview = preview_lines(spill.chunks(), ordered, None, keys)
    finally:
        if keys is not None:
            keys.close()
    return _Checked(
        index=part.index,
        spill=spill.keep(),
        ids=ids_path,
        keys=keys_path,
        lines=_newlines(part.path, part.span),
        checked=checked,
        groups=[(g.endpoint, g.model) for g in ordered],
        preview=preview,
    )


def _move_out(path: str) -> str:
    """Move a part's spill out of the parts' folder (removed at the end) to a file of its
    own in the temp folder; its new path."""
    fd, dest = tempfile.mkstemp(prefix="batchyard-lines-", suffix=".spill")
    os.close(fd)
    os.replace(path, dest)
    return dest


def _context() -> Any:
    # fork starts a worker in milliseconds with the vocabularies already loaded; elsewhere
    # (macOS, Windows) fork is unsafe or missing and each worker imports afresh
    method = "fork" if sys.platform == "linux" else "spawn"
    return multiprocessing.get_context(method)


def _shares(paths: Sequence[str | None]) -> bool:
    """Whether a key of one part's set is also in an earlier part's."""
    for k in range(1, len(paths)):
        later = paths[k]
        if later is None:
            continue
        found = DiskSet(path=later)
        try:
            if any(
                earlier is not None and found.shared_key(earlier) is not None
                for earlier in paths[:k]
            ):
                return True
        finally:
            found.close()
    return False


def _fixer(offset: int, where: list[int]) -> Fix | None:
    """Make a part's records the whole file's: line number and group index."""
    if offset == 0 and where == list(range(len(where))):
        return None

    def fix(block: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        return [(r[0] + offset, r[1], where[r[2]], *r[3:]) for r in block]

    return fix


def _join_checked(path: Path, parts: Sequence[_Checked], offsets: Sequence[int]) -> Validated:
    joined = Validated(path=str(path))
    for part, offset in zip(parts, offsets, strict=True):
        c = part.checked
        joined.lines += c.lines
        joined.valid += c.valid
        joined.problem_count += c.problem_count
        room = MAX_PROBLEMS_KEPT - len(joined.problems)
        joined.problems.extend(
            dataclasses.replace(p, path=str(path), line=p.line + offset) for p in c.problems[:room]
        )
        for key, group in c.groups.items():
            mine = joined.groups.setdefault(key, GroupSummary(group.endpoint, group.model))
            mine.requests += group.requests
            mine.input_tokens += group.input_tokens
            mine.output_tokens += group.output_tokens
            mine.uncapped += group.uncapped
            mine.embedding_inputs += group.embedding_inputs
            mine.bytes += group.bytes
            mine.largest_input_tokens = max(mine.largest_input_tokens, group.largest_input_tokens)
    return joined


def _join_previews(parts: Sequence[_Checked], previews: Sequence[Preview]) -> Preview:
    joined = Preview()
    listed = any(p.twin_ids for p in previews)  # what each line became is then needed
    for part, p in zip(parts, previews, strict=True):
        joined.tally.merge(p.tally)
        joined.twin_ids.extend(p.twin_ids)
        joined.twins.extend(p.twins)
        joined.leaders.extend(p.leaders)
        if listed:
            joined.kinds.extend(p.kinds or bytes(part.spill[1]))
        joined.parts.append((part.spill[1], p.tally))
    return joined


def check_in_parts(
    path: Path,
    models: Mapping[str, ModelInfo],
    learned: Evidence,
    *,
    reuse: bool,
    workers: int,
    body_min: int | None = None,
) -> tuple[Validated, SpillChain, list[Group], Preview | None] | None:
    """Check `path` in `workers` parts at once: the joined summary, spill, groups and (when
    no line is a twin of one in another part) preview; None when the file is too small to
    cut, or a custom_id is used in two parts (check it in one process instead)."""
    spans = _spans(path, workers)
    if len(spans) < 2:
        return None
    folder = tempfile.mkdtemp(prefix="batchyard-parts-")
    spills: list[Spill] = []
    try:
        jobs = [
            _Part(i, path, span, folder, models, learned, reuse, body_min)
            for i, span in enumerate(spans)
        ]
        with worker_pool(len(jobs)) as pool:
            parts = list(pool.map(_check_part, jobs))
        spills = [Spill.adopt(_move_out(path), count) for path, count in (p.spill for p in parts)]
        if _shares([part.ids for part in parts]):
            return None
        offsets = [0]
        for part in parts[:-1]:
            offsets.append(offsets[-1] + part.lines)
        index: dict[tuple[str, str], int] = {}
        for part in parts:
            for key in part.groups:
                index.setdefault(key, len(index))
        groups = [
            Group(i, endpoint, model, models, learned.get((model, endpoint)))
            for (endpoint, model), i in index.items()
        ]
        chain = SpillChain(
            [
                (spill, _fixer(offset, [index[key] for key in part.groups]))
                for spill, part, offset in zip(spills, parts, offsets, strict=True)
            ]
        )
        checked = _join_checked(path, parts, offsets)
        twins_across = reuse and _shares([part.keys for part in parts])
        preview = None if twins_across else _join_previews(parts, [p.preview for p in parts])
        spills = []  # the chain owns them now
        return checked, chain, groups, preview
    finally:
        for spill in spills:
            spill.close()
        shutil.rmtree(folder, ignore_errors=True)
