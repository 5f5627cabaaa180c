"""Turning a request file into stored requests: checked lines, token counts, costs per path.

Owns the bridge between `batchyard.ingest` (streamed parsing and validation) and the
store's `NewRequest` rows, including the per-path cost estimates and the output-token
estimate for requests that set no maximum. Validation spills a small record per valid line
to a temporary file; the reuse preview, the router (`decide_lines`) and recording stream
those records again, so no step holds a Python object per line. Reads the file; writes only
the rejects file and its temporary spill.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from batchyard.build import split_variant
from batchyard.catalog import ModelInfo, as_catalog
from batchyard.errors import ConfigError, LineProblem
from batchyard.fingerprint import fingerprint
from batchyard.ingest import (
    ParsedRequest,
    Validated,
    read_requests,
    reread_lines,
    validate_file,
    write_rejects,
)
from batchyard.models import Endpoint, Route, RunState
from batchyard.orchestrator import _routing as routing
from batchyard.orchestrator._spill import Spill
from batchyard.router import Decision, PathCosts, Plan, RequestFeatures, RunPolicy, Tally
from batchyard.store import Store
from batchyard.store.rows import NewRequest, OutputEvidence
from batchyard.store.scratch import DiskSet

__all__ = [
    "Intake",
    "ReusePreview",
    "Routable",
    "check_file",
    "record_run",
    "reuse_preview",
    "sha256_file",
    "with_reuse",
]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _model_info(models: Mapping[str, ModelInfo], name: str) -> ModelInfo:
    return as_catalog(models).require(name)


def _resolved_name(models: Mapping[str, ModelInfo], name: str) -> str:
    """The model a name means, for reuse: an alias is its target; a dated snapshot or a
    fine-tuned name is itself (its family's answers may change under it)."""
    found = as_catalog(models).resolve(name)
    return found.entry if found.how in ("exact", "alias") else name


Evidence = Mapping[tuple[str, str], OutputEvidence]

# One spilled record per valid line (see `_Group.record`), read back by position:
_LINE, _ID, _GROUP, _IN, _OUT, _WORST_OUT, _MAX_OUT, _PRIORITY, _FAST, _KEY, _COST, _WORST = range(
    12
)
_LEFT, _REUSED, _TWIN = 0, 1, 2


def _is_sample(custom_id: str) -> bool:
    """A fan-out sample (`--samples N`: `ORIGINAL#...,sample=N`): a deliberate repeat of
    its siblings, never merged with them nor answered from an earlier run."""
    _, label = split_variant(custom_id)
    return label is not None and any(p.startswith("sample=") for p in label.split(","))


Costs = tuple[float, float | None, float | None, float | None]  # standard, flex, batch, fast


class _Group:
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

    def record(self, item: ParsedRequest, reuse: bool) -> tuple[Any, ...]:
        """What planning and recording need of a line, priced at its expected output and,
        where it differs, at its worst case; with its reuse key unless it is a sample."""
        sample = item.sample or _is_sample(item.custom_id)
        key = fingerprint(self.endpoint, item.body, self.resolved) if reuse and not sample else None
        cap = item.output_tokens
        out = routing.expected_output(self.endpoint, cap, self.seen)
        worst_out = routing.worst_output(self.endpoint, cap, self.seen)
        costs = self.costs(item.input_tokens, out)
        worst = None if worst_out == out else self.costs(item.input_tokens, worst_out)
        fast = routing.asks_fast(item.body)
        return (item.line, item.custom_id, self.index, item.input_tokens, out, worst_out, cap,
                item.priority, fast, key, costs, worst)  # fmt: skip

    def features(self, rec: tuple[Any, ...]) -> RequestFeatures:
        """The router's view of a spilled record."""
        std, flex, batch, fast = rec[_COST]
        worst = rec[_WORST]
        cost_worst = None
        if worst is not None:
            cost_worst = PathCosts(worst[0], worst[2], worst[1], worst[3])
        return RequestFeatures(
            custom_id=rec[_ID],
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

    def new_request(self, rec: tuple[Any, ...], body: dict[str, Any]) -> NewRequest:
        std, flex, batch, fast = rec[_COST]
        return NewRequest(
            custom_id=rec[_ID],
            line=rec[_LINE],
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
            fingerprint=rec[_KEY],
        )


@dataclass(frozen=True)
class Intake:
    """A checked request file: its summary, and what planning and recording need of each
    valid line, spilled to a temporary file (`lines`: about 100 bytes a line on disk, none
    in memory) so that neither holds a record per line."""

    path: Path
    models: Mapping[str, ModelInfo]
    checked: Validated
    rejects_path: Path | None
    learned_output: Evidence
    lines: Spill
    groups: tuple[_Group, ...]
    reuse: bool = True  # False: every line is sent as asked (`--no-reuse`)

    def new_requests(self) -> Iterator[NewRequest]:
        """Every valid line as a row to store, its body read from the file once more."""
        bodies = reread_lines(self.path, (rec[_LINE] for rec in self.lines))
        for rec, (_, obj) in zip(self.lines, bodies, strict=True):
            yield self.groups[rec[_GROUP]].new_request(rec, obj["body"])

    def close(self) -> None:
        self.lines.close()

    @property
    def endpoint(self) -> str:
        endpoints = sorted({key[0].value for key in self.checked.groups})
        return ",".join(endpoints)


def check_file(
    path: Path,
    models: Mapping[str, ModelInfo],
    *,
    skip_invalid: bool = False,
    rejects: Path | None = None,
    learned_output: Evidence | None = None,
    reuse: bool = True,
) -> Intake:
    """Validate the whole file in one pass before anything is recorded, spilling what the
    router and recording need of every valid line.

    With `skip_invalid`, the invalid lines go to `rejects` (default FILE.rejects.jsonl)
    and the rest is used. Raises `ValidationFailed` naming file, line and field otherwise.
    """
    learned = dict(learned_output or {})
    spill = Spill()
    groups: dict[tuple[str, str], _Group] = {}

    def keep(item: ParsedRequest) -> None:
        key = (item.endpoint.value, item.model)
        group = groups.get(key)
        if group is None:
            seen = learned.get((item.model, key[0]))
            group = groups[key] = _Group(len(groups), key[0], item.model, models, seen)
        spill.add(group.record(item, reuse))

    try:
        checked = validate_file(path, models, on_valid=keep)
        rejects_path: Path | None = None
        if not checked.ok:
            if not skip_invalid:
                checked.raise_if_invalid()
            rejects_path = rejects or path.with_suffix(".rejects.jsonl")
            problems = [p for p in read_requests(path, models) if isinstance(p, LineProblem)]
            write_rejects(problems, rejects_path, source=path)
        if checked.valid == 0:
            raise ConfigError(f"{path} has no valid request to submit.")
    except BaseException:
        spill.close()
        raise
    ordered = tuple(sorted(groups.values(), key=lambda g: g.index))
    return Intake(path, models, checked, rejects_path, learned, spill.seal(), ordered, reuse)


@dataclass(frozen=True)
class ReusePreview:
    """How many lines earlier answers (or an identical earlier line) will answer."""

    reused: int = 0  # from earlier runs' answers that passed their checks
    twins: int = 0  # identical to an earlier line of this file: sent once
    saving: float = 0.0  # what the reused answers cost when bought (twins: added by plan)
    twin_ids: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Routable:
    """The lines of an intake left to send (reuse answers the others): their sums for the
    router, and `lines()`, which streams them again in input order each time it is called.
    `kinds` says what became of each valid line (1 byte a line; empty: all are left)."""

    intake: Intake
    tally: Tally
    kinds: bytes = b""
    twins: tuple[tuple[str, PathCosts], ...] = ()  # (reuse key, costs) of each twin line

    def records(self) -> Iterator[tuple[Any, ...]]:
        kinds = self.kinds
        for i, rec in enumerate(self.intake.lines):
            if not kinds or kinds[i] == _LEFT:
                yield rec

    def lines(self) -> Iterator[RequestFeatures]:
        groups = self.intake.groups
        return (groups[rec[_GROUP]].features(rec) for rec in self.records())

    @property
    def names(self) -> list[str]:
        return sorted(self.tally.result())


def reuse_preview(intake: Intake, store: Store) -> tuple[Routable, ReusePreview]:
    """The lines left to send, and what reuse answers: the plan covers only the former.

    One pass over the spilled lines: earlier answers are looked up a block at a time, and
    the keys seen so far (for twins) are kept on disk, not in memory."""
    tally = Tally()
    groups = intake.groups
    if not intake.reuse:
        for rec in intake.lines:
            tally.add(groups[rec[_GROUP]].features(rec))
        return Routable(intake, tally), ReusePreview()
    seen = DiskSet()
    kinds = bytearray()
    reused = 0
    saving = 0.0
    twin_ids: list[str] = []
    twins: list[tuple[str, PathCosts]] = []
    try:
        for block in intake.lines.chunks():
            keys = [rec[_KEY] for rec in block if rec[_KEY] is not None]
            sources = store.answer_sources(keys) if keys else {}
            fresh = iter(seen.add(keys))
            for rec in block:
                key = rec[_KEY]
                new = next(fresh) if key is not None else True
                if key is not None and key in sources:
                    reused += 1
                    saving += sources[key].cost
                    kinds.append(_REUSED)
                elif not new:
                    kinds.append(_TWIN)
                    twin_ids.append(rec[_ID])
                    twins.append((key, groups[rec[_GROUP]].features(rec).cost))
                else:
                    kinds.append(_LEFT)
                    tally.add(groups[rec[_GROUP]].features(rec))
    finally:
        seen.close()
    preview = ReusePreview(reused, len(twin_ids), saving, frozenset(twin_ids))
    if not (reused or twin_ids):
        return Routable(intake, tally), preview
    return Routable(intake, tally, bytes(kinds), tuple(twins)), preview


def with_reuse(plan: Plan, preview: ReusePreview, routable: Routable) -> Plan:
    """The plan with what reuse answers; a twin saves what its first line's route costs."""
    if not (preview.reused or preview.twins):
        return plan
    saving = preview.saving
    if routable.twins:
        wanted = {key for key, _ in routable.twins}
        leaders: dict[str, Route] = {}
        assigned = zip(routable.records(), plan.decision.assignments, strict=True)
        for rec, a in assigned:
            key = rec[_KEY]
            if key in wanted and key not in leaders:
                leaders[key] = a.route
        for key, cost in routable.twins:
            if key in leaders:
                saving += cost.on(leaders[key])
    return dataclasses.replace(
        plan, reused=preview.reused, twins=preview.twins, reuse_saving=saving
    )


def record_run(
    store: Store,
    intake: Intake,
    policy: RunPolicy,
    decision: Decision,
    plan: Plan,
    *,
    small: bool,
    options: Mapping[str, Any] | None = None,
) -> str:
    """Record the run, its requests and their routes; the run stays `pending` until all of
    it is written (an interrupted recording is closed on resume, never half-submitted)."""
    checked = intake.checked
    run_id = store.create_run(
        source_path=str(intake.path.resolve()),
        source_sha256=sha256_file(intake.path),
        endpoint=intake.endpoint,
        models=sorted({key[1] for key in checked.groups}),
        route_override=policy.route,
        deadline_at=policy.deadline,
        budget=policy.budget_usd,
        estimated_cost=plan.expected,
        options={
            "strict": policy.strict,
            "margin_s": policy.margin_s,
            "realtime_spread": policy.realtime_spread,
            "cancel_quantile": policy.cancel_quantile,
            "batch_setup_s": policy.batch_setup_s,
            "small_run": small,
            "estimate_worst": plan.worst,
            "requests": checked.valid,
            "rejected": checked.invalid_lines,
            "rejects_path": str(intake.rejects_path) if intake.rejects_path else None,
            "reuse": intake.reuse,
            **(options or {}),
            # the name each line sent (what goes to the API) and the table row it priced as
            "model_entries": {
                name: as_catalog(intake.models).resolve(name).entry
                for name in sorted({key[1] for key in checked.groups})
            },
        },
    )
    store.add_requests(run_id, intake.new_requests())
    # Only lines still pending are routed: an answer bought by another process since the
    # plan may have answered one more (its route is then simply not needed).
    settled = intake.reuse and store.reuse_answers(run_id).changed
    routes = ((a.custom_id, a.route, a.reason) for a in decision.assignments)
    store.set_routes(run_id, routes, pending_only=settled)
    store.add_event(run_id, "route.plan", decision.reason, plan.to_dict(assignments=False))
    store.set_run_state(run_id, RunState.RUNNING)
    return run_id
