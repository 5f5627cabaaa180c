"""Giving each line of a large file its route in worker processes, a part each.

Owns `parts_stream`: a `stream` for `router.decide_lines` when worker processes checked
the file (`parts.py`). Once the router has decided on the file's sums, each part's lines
are assigned by a process of their own: a part starts where the parts before it end in
each model's priority classes (`router.starts`, from the sums the workers already made),
so its lines get exactly the places, and so the routes, that one pass over the whole file
gives them. Each worker keeps its part's assignments as codes in a file of its own; the
decision adds up the parts' sums (`Routes.merge`) and replays the parts in order. Where
that cannot hold (the reuse preview was made again in one pass, a part names more distinct
assignments than a memo can, or processes cannot be forked here), it returns None and the
router streams the lines itself. Sums added part by part may differ from one running sum
in the last bit of a float.
"""

from __future__ import annotations

import multiprocessing
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any

from batchyard.orchestrator._planning.intake import Routable
from batchyard.orchestrator._planning.parts import worker_pool
from batchyard.orchestrator._planning.records import CUSTOM_ID, GROUP, LEFT, Group
from batchyard.orchestrator._planning.spill import CodeSpill, Fix, Spill, SpillChain
from batchyard.router import Assignment, Decision, ModelCapacity, RequestFeatures, Routes
from batchyard.router.assign import Start
from batchyard.router.lines import route_lines, starts

__all__ = ["PartsReplay", "parts_stream"]

Stream = Callable[[Decision, Mapping[str, ModelCapacity]], Decision | None]

# What the forked workers read: set just before they start (nothing here is pickled but
# the part's number, and what each worker sends back).
_JOB: tuple[Any, ...] | None = None


def parts_stream(routable: Routable) -> Stream | None:
    """`decide_lines`'s `stream` for a file checked in parts, or None where the lines
    must stream in one process (see the module docstring)."""
    intake = routable.intake
    preview, chain = intake.preview, intake.lines
    if (
        sys.platform != "linux"
        or preview is None
        or routable.tally is not preview.tally
        or not isinstance(chain, SpillChain)
        or len(chain.parts) < 2
        or len(preview.parts) != len(chain.parts)
    ):
        return None
    counts = [count for count, _ in preview.parts]
    offsets = [sum(counts[:k]) for k in range(len(counts))]
    begin = starts(tally for _, tally in preview.parts)
    parts, groups, kinds = chain.parts, intake.groups, routable.kinds

    def stream(decision: Decision, capacities: Mapping[str, ModelCapacity]) -> Decision | None:
        global _JOB
        _JOB = (decision, capacities, parts, groups, kinds, offsets, begin)
        try:
            context = multiprocessing.get_context("fork")
            with worker_pool(len(parts), context) as pool:
                done = list(pool.map(_route_part, range(len(parts))))
        finally:
            _JOB = None
        codes = [CodeSpill.adopt(path) for _, path in done]
        if any(routes.memo_full for routes, _ in done):
            return None
        total = Routes.empty(decision)
        for routes, _ in done:
            total.merge(routes)
        tables = [list(routes.table) for routes, _ in done]
        replay = PartsReplay(parts, kinds, offsets, codes, tables)
        return replace(total.decided(decision), replay=replay)

    return stream


class PartsReplay:
    """A decision's `replay` for a file assigned in parts: called, every line's assignment
    in input order; `part(k)`, part `k`'s alone (its lines left to send start at valid line
    `offsets[k]`), so that a process of its own can read them."""

    def __init__(
        self,
        parts: Sequence[tuple[Spill, Fix | None]],
        kinds: bytes,
        offsets: Sequence[int],
        codes: Sequence[CodeSpill],
        tables: Sequence[list[tuple[Any, ...]]],
    ) -> None:
        self.parts = parts
        self.kinds = kinds
        self.offsets = offsets
        self._codes = codes
        self._tables = tables

    def part(self, k: int) -> Iterator[Assignment]:
        spill, _ = self.parts[k]
        table = self._tables[k]
        ids = _left_ids(spill, self.kinds, self.offsets[k])
        for custom_id, code in zip(ids, self._codes[k].codes(), strict=True):
            yield Assignment(custom_id, *table[code])

    def __call__(self) -> Iterator[Assignment]:
        for k in range(len(self.parts)):
            yield from self.part(k)


def _left_ids(spill: Spill, kinds: bytes, offset: int) -> Iterator[str]:
    """The custom_ids of a part's lines left to send, in order."""
    i = offset
    for block in spill.chunks():
        for rec in block:
            if not kinds or kinds[i] == LEFT:
                yield rec[CUSTOM_ID]
            i += 1


def _lines(
    spill: Spill, fix: Fix | None, groups: Sequence[Group], kinds: bytes, offset: int
) -> Iterator[RequestFeatures]:
    i = offset
    for block in spill.chunks():
        for rec in block if fix is None else fix(block):
            if not kinds or kinds[i] == LEFT:
                yield groups[rec[GROUP]].features(rec)
            i += 1


def _route_part(k: int) -> tuple[Routes, str]:
    """A worker: assign part `k`'s lines from where the parts before it end."""
    assert _JOB is not None
    decision, capacities, parts, groups, kinds, offsets, begin = _JOB
    spill, fix = parts[k]
    memo = CodeSpill()
    start: Start = begin[k]
    lines = _lines(spill, fix, groups, kinds, offsets[k])
    routes = route_lines(decision, lines, capacities, memo, start)
    return routes, memo.keep()
