"""Making the rows of a large file's run in worker processes, a part each.

Owns `part_values`. Recording a run inserts one row per line; on a large file, making
those rows (reading the spilled records and the plan's assignments back, building each
`NewRequest` and its row) costs about as much Python time as SQLite spends inserting them,
and both ran in this one process while the other cores waited. Where workers checked and
routed the file in parts (`parts.py`, `assigning.PartsReplay`), each part's rows are made
by a process of its own, exactly as `Intake.new_requests` makes them, and written to a
spill of row blocks; this process only reads those blocks back in order and inserts them
(`Store.add_request_values`), starting with the first part as soon as it is made. Elsewhere
(a file checked in one process, a plan replayed in one stream, no fork here) it returns
None and the caller records the rows itself.
"""

from __future__ import annotations

import multiprocessing
import shutil
import sys
import tempfile
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from itertools import islice
from pathlib import Path
from typing import Any

from batchyard.orchestrator._planning.assigning import PartsReplay
from batchyard.orchestrator._planning.intake import Intake
from batchyard.orchestrator._planning.records import TWIN, new_requests
from batchyard.orchestrator._planning.spill import Spill, SpillChain
from batchyard.router import Decision
from batchyard.store.recording import Values, request_values

__all__ = ["part_values"]

# What the forked workers read: set just before they start (nothing here is pickled but
# the part's number, and the path of the rows each worker made).
_JOB: tuple[Any, ...] | None = None


def part_values(
    intake: Intake,
    decision: Decision,
    kinds: bytes,
    leaders: Iterable[str],
    run_id: str,
    now: float,
) -> Iterator[list[Values]] | None:
    """The rows of run `run_id` (as `Intake.new_requests` gives them, with `decision`'s
    assignments), made by one worker per part, a block at a time in line order; None where
    the caller must make them itself (see the module docstring)."""
    replay, chain = decision.replay, intake.lines
    if (
        sys.platform != "linux"
        or intake.body_min is None  # without the bodies kept, the file is read again
        or not isinstance(chain, SpillChain)
        or not isinstance(replay, PartsReplay)
        or replay.parts is not chain.parts
    ):
        return None
    offsets = replay.offsets
    twins_before = [kinds.count(TWIN, 0, offset) for offset in offsets] if kinds else []
    job = (intake, replay, kinds, twins_before, tuple(leaders), run_id, now)
    return _values(job, len(chain.parts))


def _values(job: tuple[Any, ...], parts: int) -> Iterator[list[Values]]:
    global _JOB
    folder = tempfile.mkdtemp(prefix="batchyard-rows-")
    try:
        _JOB = (*job, folder)
        try:
            pool = ProcessPoolExecutor(parts, mp_context=multiprocessing.get_context("fork"))
            futures = [pool.submit(_part_rows, k) for k in range(parts)]
        finally:
            _JOB = None  # the workers were forked with it
        with pool:
            for future in futures:
                path, count = future.result()
                rows = Spill.adopt(path, count)
                try:
                    yield from rows.chunks()
                finally:
                    rows.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _part_rows(k: int) -> tuple[str, int]:
    """A worker: make part `k`'s rows into a spill of its own; its path and row count."""
    assert _JOB is not None
    intake, replay, kinds, twins_before, leaders, run_id, now, folder = _JOB
    spill, fix = replay.parts[k]
    records = (
        (rec, None) for block in spill.chunks() for rec in (block if fix is None else fix(block))
    )
    firsts = islice(leaders, twins_before[k] if kinds else 0, None)
    made = new_requests(intake.groups, records, replay.part(k), kinds, replay.offsets[k], firsts)
    rows = Spill(Path(folder))
    for request in made:
        rows.add(request_values(run_id, now, request))
    return rows.keep()
