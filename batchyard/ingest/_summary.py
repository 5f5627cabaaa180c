"""One streaming pass that totals a request file without keeping its requests, and rejects files.

Owns `validate_file` (what `plan` shows: per (endpoint, model) group counts, tokens, bytes
and shard counts, plus the problems) and `write_rejects`. Keeps per-group totals and one
open shard of custom_ids per group; never the bodies.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path

from batchyard.config import ModelInfo
from batchyard.errors import LineProblem, ValidationFailed
from batchyard.ingest._reader import open_request_file, read_requests
from batchyard.ingest._rules import ParsedRequest, find_model
from batchyard.models import Endpoint
from batchyard.shards import ShardLimits, ShardPlanner, waves
from batchyard.store.scratch import DiskSet

__all__ = ["MAX_PROBLEMS_KEPT", "GroupSummary", "Validated", "validate_file", "write_rejects"]

MAX_PROBLEMS_KEPT = 10_000  # past this only the count grows, so memory stays bounded


@dataclass
class GroupSummary:
    """Totals for the valid requests of one (endpoint, model) group."""

    endpoint: Endpoint
    model: str
    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0  # sum of the requests' own maximums, where they give one
    uncapped: int = 0  # requests that give no maximum output
    embedding_inputs: int = 0
    bytes: int = 0
    largest_input_tokens: int = 0
    shards: int = 0
    shard_tokens: list[int] = field(default_factory=list)
    never_fit: list[str] = field(default_factory=list)  # why some requests fit in no shard
    queue_limit: int | None = None

    @property
    def waves(self) -> int:
        """Rounds of batches the queue limit forces (1: all enqueued at once)."""
        return waves(self.shard_tokens, self.queue_limit)


@dataclass
class Validated:
    """The outcome of checking a whole file; `problems` keeps the first MAX_PROBLEMS_KEPT."""

    path: str
    lines: int = 0  # non-blank lines
    valid: int = 0
    groups: dict[tuple[Endpoint, str], GroupSummary] = field(default_factory=dict)
    problems: list[LineProblem] = field(default_factory=list)
    problem_count: int = 0

    @property
    def ok(self) -> bool:
        return self.problem_count == 0

    @property
    def invalid_lines(self) -> int:
        return self.lines - self.valid

    def raise_if_invalid(self) -> None:
        """ValidationFailed listing the problems, when there are any."""
        if self.problems:
            raise ValidationFailed(self.problems)


def validate_file(
    path: str | PathLike[str],
    models: Mapping[str, ModelInfo],
    learned_limits: Mapping[str, int] | None = None,
    on_valid: Callable[[ParsedRequest], None] | None = None,
    *,
    span: tuple[int, int] | None = None,
    seen: DiskSet | None = None,
    plan_shards: bool = True,
) -> Validated:
    """Check every line of `path` in one streaming pass, and plan its shards per group.

    `learned_limits` maps a model to the queue limit learned from an earlier
    `token_limit_exceeded`, replacing the configured one. `on_valid` sees each valid
    request as it passes, for callers that keep something of it (the same single pass).
    `plan_shards=False` leaves the groups' shard counts at 0, for callers that do not show
    them (planning and submitting shard the stored lines themselves). `span` and `seen`
    check part of a file, as `read_requests` says.
    """
    result = Validated(path=str(path))
    planners: dict[tuple[Endpoint, str], ShardPlanner] = {}
    last_line = 0
    learned = learned_limits or {}
    for item in read_requests(path, models, span=span, seen=seen):
        if item.line != last_line:
            result.lines += 1
            last_line = item.line
        if isinstance(item, LineProblem):
            result.problem_count += 1
            if len(result.problems) < MAX_PROBLEMS_KEPT:
                result.problems.append(item)
            continue
        result.valid += 1
        if plan_shards:
            _add(result, planners, item, models, learned)
        else:
            _count(result, item)
        if on_valid is not None:
            on_valid(item)
    for key, planner in planners.items():
        last = planner.finish()
        if last is not None:
            _count_shard(result.groups[key], last.input_tokens)
    return result


def _add(
    result: Validated,
    planners: dict[tuple[Endpoint, str], ShardPlanner],
    req: ParsedRequest,
    models: Mapping[str, ModelInfo],
    learned: Mapping[str, int],
) -> None:
    key = req.group
    group = _count(result, req)
    planner = planners.get(key)
    if planner is None:
        info = find_model(models, req.model)
        assert info is not None  # a valid request's model resolves in the table
        limits = ShardLimits.for_model(info, learned.get(info.name))
        group.queue_limit = limits.max_input_tokens
        planner = planners[key] = ShardPlanner(limits)
    item = req.shard_item()
    why = planner.limits.why_never_fits(item)
    if why is not None:
        group.never_fit.append(f"line {req.line}: {why}")
        return
    shard = planner.add(item)
    if shard is not None:
        _count_shard(group, shard.input_tokens)


def _count(result: Validated, req: ParsedRequest) -> GroupSummary:
    """Add a valid request to its group's totals; the group."""
    group = result.groups.get(req.group)
    if group is None:
        group = result.groups[req.group] = GroupSummary(req.endpoint, req.model)
    group.requests += 1
    group.input_tokens += req.input_tokens
    if req.output_tokens is None:
        group.uncapped += 1
    else:
        group.output_tokens += req.output_tokens
    group.embedding_inputs += req.embedding_inputs
    group.bytes += req.raw_bytes
    group.largest_input_tokens = max(group.largest_input_tokens, req.input_tokens)
    return group


def _count_shard(group: GroupSummary, tokens: int) -> None:
    group.shards += 1
    group.shard_tokens.append(tokens)


def write_rejects(
    problems: Iterable[LineProblem],
    dest: str | PathLike[str],
    source: str | PathLike[str] | None = None,
) -> int:
    """Write problems as JSONL `{line, custom_id, field, message}`; returns the lines written.

    With `source`, each record also carries `request`: the rejected line's original text
    (decoded leniently), so that the user can fix the lines and submit them again.
    """
    problems = sorted(problems, key=lambda p: p.line)
    originals: dict[int, str] = {}
    if source is not None:
        wanted = {p.line for p in problems}
        with open_request_file(source) as f:
            for lineno, raw in enumerate(f, 1):
                if lineno in wanted:
                    text = raw.decode("utf-8", errors="replace").rstrip("\r\n")
                    originals[lineno] = text.removeprefix("\ufeff")
    with Path(dest).open("w", encoding="utf-8") as out:
        for p in problems:
            record: dict[str, object] = {
                "line": p.line,
                "custom_id": p.custom_id,
                "field": p.field,
                "message": p.message,
            }
            if source is not None:
                record["request"] = originals.get(p.line)
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
    return len(problems)
