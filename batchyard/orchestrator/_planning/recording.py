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
import os
import shutil
import sys
import tempfile
from collections.abc import Iterable, Iterator
from concurrent.futures import Future
from itertools import islice
from multiprocessing.queues import Queue
from pathlib import Path
from queue import Empty
from typing import Any

from batchyard.orchestrator._planning.assigning import PartsReplay
from batchyard.orchestrator._planning.intake import Intake
from batchyard.orchestrator._planning.parts import worker_pool
from batchyard.orchestrator._planning.records import TWIN, new_requests
from batchyard.orchestrator._planning.spill import Spill, SpillChain, follow
from batchyard.router import Decision
from batchyard.store.recording import Values, request_values

__all__ = ["part_values"]

# What the forked workers read: set just before they start (nothing here is pickled but
# the part's number, the count of rows each worker made, and what they say on their queues).
_JOB: tuple[Any, ...] | None = None
_BLOCK = ""  # a worker's word that one more block of rows is written
_POLL_S = 0.5
_SILENT_S = 60.0


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
    context = multiprocessing.get_context("fork")
    told: list[Queue[str | None]] = [context.Queue() for _ in range(parts)]
    try:
        _JOB = (*job, folder, told)
        try:
            pool = worker_pool(parts, context)
            futures = [pool.submit(_part_rows, k) for k in range(parts)]
        finally:
            _JOB = None  # the workers were forked with it
        with pool:
            for queue, future in zip(told, futures, strict=True):
                written = _written(queue, future)
                path = next(written)
                try:
                    yield from follow(path, written)
                except OSError:
                    # a worker that fails removes its spill: say why it failed
                    failed = future.exception(timeout=_SILENT_S)
                    if failed is not None:
                        raise failed from None
                    raise
                future.result()
                os.unlink(path)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _written(queue: Queue[str | None], future: Future[int]) -> Iterator[str]:
    """What a worker says as it makes its part's rows: the path of its spill, then one
    item for each block it has written, until it is done. Raises what the worker raised,
    and gives up when a worker that finished says nothing more for `_SILENT_S`."""
    silent = 0.0
    while True:
        try:
            message = queue.get(timeout=_POLL_S)
        except Empty:
            if future.done():
                failed = future.exception()
                if failed is not None:
                    raise failed from None
                silent += _POLL_S
                if silent >= _SILENT_S:
                    raise RuntimeError("a worker making a run's rows stopped reporting") from None
            continue
        if message is None:
            return
        silent = 0.0
        yield message


def _part_rows(k: int) -> int:
    """A worker: make part `k`'s rows into a spill of its own, saying on its queue where
    the spill is and when each block of rows is written (so that the caller inserts the
    first rows while the rest are made); its row count."""
    assert _JOB is not None
    intake, replay, kinds, twins_before, leaders, run_id, now, folder, told = _JOB
    spill, fix = replay.parts[k]
    records = (
        (rec, None) for block in spill.chunks() for rec in (block if fix is None else fix(block))
    )
    firsts = islice(leaders, twins_before[k] if kinds else 0, None)
    made = new_requests(intake.groups, records, replay.part(k), kinds, replay.offsets[k], firsts)
    queue = told[k]
    rows = Spill(Path(folder), on_block=lambda: queue.put(_BLOCK))
    queue.put(rows.path)
    for request in made:
        rows.add(request_values(run_id, now, request))
    _, count = rows.keep()
    queue.put(None)
    return count
