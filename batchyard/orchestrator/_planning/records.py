"""What planning and recording need of each valid line: the spilled record and its group.

Owns `Group` (one (endpoint, model) of a file: its prices and output evidence, looked up
once, and the record it spills for each line: line number, custom_id, tokens, the four path
costs at expected and worst output, flags and the reuse key), and `preview_lines`, the pass
over spilled records that finds what reuse answers and sums the lines left to send. Used
by `check_file` and by the workers that check parts of a large file. No I/O of its own.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from batchyard.build import split_variant
from batchyard.catalog import ModelInfo, as_catalog
from batchyard.fingerprint import fingerprint
from batchyard.ingest import ParsedRequest
from batchyard.models import Endpoint, Route
from batchyard.orchestrator import _routing as routing
from batchyard.orchestrator._planning.spill import Spill
from batchyard.router import Assignment, PathCosts, RequestFeatures, Tally
from batchyard.store.codec import encode_text
from batchyard.store.reuse import AnswerSource
from batchyard.store.rows import NewRequest, OutputEvidence
from batchyard.store.scratch import DiskSet

__all__ = [
    "CUSTOM_ID",
    "GROUP",
    "KEY",
    "LEFT",
    "LINE",
    "REUSED",
    "TWIN",
    "Evidence",
    "Group",
    "LineKeeper",
    "Preview",
    "Sources",
    "new_requests",
    "preview_lines",
]


def _model_info(models: Mapping[str, ModelInfo], name: str) -> ModelInfo:
    return as_catalog(models).require(name)


def _resolved_name(models: Mapping[str, ModelInfo], name: str) -> str:
    """The model a name means, for reuse: an alias is its target; a dated snapshot or a
    fine-tuned name is itself (its family's answers may change under it)."""
    found = as_catalog(models).resolve(name)
    return found.entry if found.how in ("exact", "alias") else name


Evidence = Mapping[tuple[str, str], OutputEvidence]

# One spilled record per valid line (see `Group.record`), read back by position:
(LINE, CUSTOM_ID, GROUP, _IN, _OUT, _WORST_OUT, _MAX_OUT, _PRIORITY, _FAST, KEY, _COST, _WORST) = (
    range(12)
)
_STORED, _BODY_BYTES = 12, 13  # the body as stored and its size, with `body_min`
LEFT, REUSED, TWIN = 0, 1, 2


def _is_sample(custom_id: str) -> bool:
    """A fan-out sample (`--samples N`: `ORIGINAL#...,sample=N`): a deliberate repeat of
    its siblings, never merged with them nor answered from an earlier run."""
    _, label = split_variant(custom_id)
    return label is not None and any(p.startswith("sample=") for p in label.split(","))


Costs = tuple[float, float | None, float | None, float | None]  # standard, flex, batch, fast


class Group:
    """One (endpoint, model) of the file: its prices and output evidence, looked up once."""

    def __init__(
        self, index: int, endpoint: str, model: str, models: Mapping[str, ModelInfo], seen: Any
    ) -> None:
        info = _model_info(models, model)
        self.index = index
        self.endpoint = endpoint
        self.endpoint_enum = Endpoint(endpoint)
        self.model = model
        self.resolved = _resolved_name(models, model)
        self.seen = seen
        self._standard = info.estimator(Route.STANDARD)
        self._batch = info.estimator(Route.BATCH)
        self._flex = info.estimator(Route.FLEX) if info.flex else None
        self._fast = info.estimator(Route.FAST) if info.fast else None

    def costs(self, tokens_in: int, tokens_out: int) -> Costs:
        flex, fast = self._flex, self._fast
        return (
            self._standard(tokens_in, tokens_out),
            None if flex is None else flex(tokens_in, tokens_out),
            self._batch(tokens_in, tokens_out),
            None if fast is None else fast(tokens_in, tokens_out),
        )

    def record(
        self, item: ParsedRequest, reuse: bool, body_min: int | None = None
    ) -> tuple[Any, ...]:
        """What planning and recording need of a line, priced at its expected output and,
        where it differs, at its worst case; with its reuse key unless it is a sample; and,
        with `body_min`, its body as the store keeps it (compressed from that size)."""
        sample = item.sample or _is_sample(item.custom_id)
        key = None
        if reuse and not sample:
            key = fingerprint(self.endpoint, item.body, self.resolved, item.body_text or None)
        cap = item.output_tokens
        out = routing.expected_output(self.endpoint, cap, self.seen)
        worst_out = routing.worst_output(self.endpoint, cap, self.seen)
        costs = self.costs(item.input_tokens, out)
        worst = None if worst_out == out else self.costs(item.input_tokens, worst_out)
        fast = routing.asks_fast(item.body)
        rec = (item.line, item.custom_id, self.index, item.input_tokens, out, worst_out, cap,
               item.priority, fast, key, costs, worst)  # fmt: skip
        if body_min is None:
            return rec
        return (*rec, encode_text(item.body_text, body_min), len(item.body_text))

    def features(self, rec: tuple[Any, ...]) -> RequestFeatures:
        """The router's view of a spilled record."""
        std, flex, batch, fast = rec[_COST]
        worst = rec[_WORST]
        cost_worst = None
        if worst is not None:
            cost_worst = PathCosts(worst[0], worst[2], worst[1], worst[3])
        return RequestFeatures(
            custom_id=rec[CUSTOM_ID],
            endpoint=self.endpoint_enum,
            model=self.model,
            input_tokens=rec[_IN],
            output_tokens=rec[_OUT],
            cost=PathCosts(std, batch, flex, fast),
            priority=rec[_PRIORITY],
            max_output_tokens=rec[_MAX_OUT],
            output_worst=None if worst is None else rec[_WORST_OUT],
            cost_worst=cost_worst,
            fast=rec[_FAST],
        )

    def new_request(
        self,
        rec: tuple[Any, ...],
        body: dict[str, Any] | None = None,
        route: Route | None = None,
        reason: str | None = None,
        twin_of: str | None = None,
    ) -> NewRequest:
        """The row to store for a spilled record: its body given, or kept in the record;
        routed when `route` is given, a twin of `twin_of`, else pending."""
        std, flex, batch, fast = rec[_COST]
        return NewRequest(
            custom_id=rec[CUSTOM_ID],
            line=rec[LINE],
            endpoint=self.endpoint,
            model=self.model,
            body=body,
            input_tokens=rec[_IN],
            output_tokens=rec[_OUT],
            cost_standard=std,
            cost_flex=flex,
            cost_batch=batch,
            cost_fast=fast,
            priority=rec[_PRIORITY],
            max_output_tokens=rec[_MAX_OUT],
            fingerprint=rec[KEY],
            stored_body=None if body is not None else rec[_STORED],
            body_bytes=None if body is not None else rec[_BODY_BYTES],
            route=route,
            reason=reason,
            twin_of=twin_of,
        )


def new_requests(
    groups: Sequence[Group],
    lines: Iterable[tuple[tuple[Any, ...], dict[str, Any] | None]],
    assigned: Iterator[Assignment] | None,
    kinds: bytes,
    start: int,
    firsts: Iterator[str],
) -> Iterator[NewRequest]:
    """The rows to store for spilled records and their bodies (None: kept in the record),
    the `start`-th valid line first: with `assigned` (the plan's assignments of the lines
    `kinds` leaves to send, in order) those routed as assigned, each twin linked to its
    first line (`firsts`, in order), and the lines earlier answers answer pending for reuse
    to settle; without it, every line pending."""
    for i, (rec, body) in enumerate(lines, start):
        group = groups[rec[GROUP]]
        kind = kinds[i] if kinds else LEFT
        if assigned is None or kind == REUSED:
            yield group.new_request(rec, body)
        elif kind == TWIN:
            yield group.new_request(rec, body, twin_of=next(firsts))
        else:
            a = next(assigned)
            assert a.custom_id == rec[CUSTOM_ID]  # the plan streams the same lines in order
            yield group.new_request(rec, body, a.route, a.reason)


class LineKeeper:
    """Spills the record of each valid line it is called with (`validate_file`'s
    `on_valid`), making the line's group the first time the group is seen."""

    def __init__(
        self,
        spill: Spill,
        models: Mapping[str, ModelInfo],
        learned: Evidence,
        reuse: bool,
        body_min: int | None = None,
    ) -> None:
        self.spill = spill
        self.body_min = body_min
        self.models = models
        self.learned = learned
        self.reuse = reuse
        self._groups: dict[tuple[str, str], Group] = {}

    def __call__(self, item: ParsedRequest) -> None:
        key = (item.endpoint.value, item.model)
        group = self._groups.get(key)
        if group is None:
            seen = self.learned.get((item.model, key[0]))
            group = Group(len(self._groups), key[0], item.model, self.models, seen)
            self._groups[key] = group
        self.spill.add(group.record(item, self.reuse, self.body_min))

    def groups(self) -> list[Group]:
        """The groups seen, by index (in order of their first line)."""
        return sorted(self._groups.values(), key=lambda g: g.index)


@dataclass
class Preview:
    """What one pass over spilled lines finds: the sums of the lines left to send, what
    became of each line (`kinds`, empty while every line is left), and the twins."""

    tally: Tally = dataclasses.field(default_factory=Tally)
    kinds: bytearray = dataclasses.field(default_factory=bytearray)
    reused: int = 0
    saving: float = 0.0
    twin_ids: list[str] = dataclasses.field(default_factory=list)
    twins: list[tuple[str, PathCosts]] = dataclasses.field(default_factory=list)
    leaders: list[str] = dataclasses.field(default_factory=list)  # each twin's first line's id
    # where workers made it: each part's records and the sums of its lines left to send
    parts: list[tuple[int, Tally]] = dataclasses.field(default_factory=list)


Sources = Callable[[list[str]], Mapping[str, AnswerSource]]


def preview_lines(
    chunks: Iterable[list[tuple[Any, ...]]],
    groups: Sequence[Group],
    sources: Sources | None,
    seen: DiskSet | None,
) -> Preview:
    """One pass over spilled lines: earlier answers (`sources`) are looked up a block at a
    time, and the keys seen so far (for twins) are kept on disk (`seen`), not in memory.
    Without `seen` (no reuse), every line is left to send."""
    found = Preview()
    tally, kinds = found.tally, found.kinds
    for block in chunks:
        if seen is None:
            for rec in block:
                tally.add(groups[rec[GROUP]].features(rec))
            continue
        keyed = [rec for rec in block if rec[KEY] is not None]
        keys = [rec[KEY] for rec in keyed]
        answers = sources(keys) if keys and sources is not None else {}
        # the custom_id of the first line with each key: the line's own when it is new
        firsts = iter(seen.first_lines(keys, [rec[CUSTOM_ID] for rec in keyed]))
        for rec in block:
            key = rec[KEY]
            first = next(firsts) if key is not None else rec[CUSTOM_ID]
            if key is not None and key in answers:
                found.reused += 1
                found.saving += answers[key].cost
                kinds.append(REUSED)
            elif first != rec[CUSTOM_ID]:
                kinds.append(TWIN)
                found.twin_ids.append(rec[CUSTOM_ID])
                found.twins.append((key, groups[rec[GROUP]].features(rec).cost))
                found.leaders.append(first)
            else:
                kinds.append(LEFT)
                tally.add(groups[rec[GROUP]].features(rec))
    return found
