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
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from batchyard.catalog import ModelInfo, as_catalog
from batchyard.errors import ConfigError, LineProblem
from batchyard.ingest import (
    Validated,
    read_requests,
    reread_lines,
    validate_file,
    write_rejects,
)
from batchyard.models import Route, RunState
from batchyard.orchestrator._planning.parts import PARALLEL_BYTES, check_in_parts, default_workers
from batchyard.orchestrator._planning.records import (
    CUSTOM_ID,
    GROUP,
    KEY,
    LEFT,
    LINE,
    Evidence,
    Group,
    LineKeeper,
    Preview,
    new_requests,
    preview_lines,
)
from batchyard.orchestrator._planning.spill import Spill, SpillChain
from batchyard.router import (
    Assignment,
    Decision,
    PathCosts,
    Plan,
    RequestFeatures,
    RunPolicy,
    Tally,
)
from batchyard.store import Store
from batchyard.store.recording import Values
from batchyard.store.rows import NewRequest
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


# Rows made elsewhere for a run (its id, the time), or None where the caller makes them.
Made = Callable[[str, float], Iterable[list[Values]] | None]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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
    lines: Spill | SpillChain
    groups: tuple[Group, ...]
    reuse: bool = True  # False: every line is sent as asked (`--no-reuse`)
    preview: Preview | None = None  # the workers' passes, where workers checked the file
    body_min: int | None = None  # the spill keeps each body as stored (compressed from this)

    def new_requests(
        self,
        assignments: Iterable[Assignment] | None = None,
        kinds: bytes = b"",
        leaders: Iterable[str] = (),
    ) -> Iterator[NewRequest]:
        """Every valid line as a row to store: with the plan's `assignments` (of the lines
        `kinds` leaves to send, in order), those routed as assigned, each twin linked to
        its first line (`leaders`, in order), and the lines earlier answers answer pending
        for reuse to settle. The body is the one kept in the spill (`check_file(body_min=
        ...)`), else read from the file again."""
        records: Iterable[tuple[tuple[Any, ...], dict[str, Any] | None]]
        if self.body_min is None:
            records = ((rec, obj["body"]) for rec, (_, obj) in zip(
                self.lines, reread_lines(self.path, (r[LINE] for r in self.lines)), strict=True
            ))  # fmt: skip
        else:
            records = ((rec, None) for rec in self.lines)
        assigned = None if assignments is None else iter(assignments)
        yield from new_requests(self.groups, records, assigned, kinds, 0, iter(leaders))

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
    workers: int | None = None,
    body_min: int | None = None,
) -> Intake:
    """Validate the whole file in one pass before anything is recorded, spilling what the
    router and recording need of every valid line. A file of `PARALLEL_BYTES` or more is
    checked by `workers` processes at once (default: one per core; 1: in this process).
    With `body_min`, the spill keeps each body as the store keeps it (compressed from that
    size), so that recording does not read the file again.

    With `skip_invalid`, the invalid lines go to `rejects` (default FILE.rejects.jsonl)
    and the rest is used. Raises `ValidationFailed` naming file, line and field otherwise.
    """
    learned = dict(learned_output or {})
    count = default_workers() if workers is None else workers
    parted = None
    if count > 1 and path.is_file() and path.stat().st_size >= PARALLEL_BYTES:
        parted = check_in_parts(
            path, models, learned, reuse=reuse, workers=count, body_min=body_min
        )
    lines: Spill | SpillChain
    if parted is not None:
        checked, lines, groups, preview = parted
    else:
        keeper = LineKeeper(Spill(), models, learned, reuse, body_min)
        try:
            checked = validate_file(path, models, on_valid=keeper, plan_shards=False)
        except BaseException:
            keeper.spill.close()
            raise
        lines, groups, preview = keeper.spill.seal(), keeper.groups(), None
    try:
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
        lines.close()
        raise
    found = (checked, rejects_path, learned, lines, tuple(groups))
    return Intake(path, models, *found, reuse, preview, body_min)


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
    leaders: tuple[str, ...] = ()  # the custom_id of each twin line's first line

    def records(self) -> Iterator[tuple[Any, ...]]:
        kinds = self.kinds
        for i, rec in enumerate(self.intake.lines):
            if not kinds or kinds[i] == LEFT:
                yield rec

    def lines(self) -> Iterator[RequestFeatures]:
        groups = self.intake.groups
        return (groups[rec[GROUP]].features(rec) for rec in self.records())

    def ids(self) -> Iterator[str]:
        """The custom_ids of `lines()`, in the same order."""
        return (rec[CUSTOM_ID] for rec in self.records())

    @property
    def names(self) -> list[str]:
        return sorted(self.tally.result())


def _routable(found: Preview, intake: Intake) -> tuple[Routable, ReusePreview]:
    twin_ids = found.twin_ids
    preview = ReusePreview(found.reused, len(twin_ids), found.saving, frozenset(twin_ids))
    if not (found.reused or twin_ids):
        return Routable(intake, found.tally), preview
    kinds, twins, leaders = bytes(found.kinds), tuple(found.twins), tuple(found.leaders)
    return Routable(intake, found.tally, kinds, twins, leaders), preview


def reuse_preview(intake: Intake, store: Store) -> tuple[Routable, ReusePreview]:
    """The lines left to send, and what reuse answers: the plan covers only the former.

    Where workers checked the file (`Intake.preview`), their passes are used, unless the
    store holds answers to look up or a line is a twin of one in another worker's part."""
    if intake.preview is not None and not (intake.reuse and store.has_answer_sources()):
        return _routable(intake.preview, intake)
    if not intake.reuse:
        return _routable(preview_lines(intake.lines.chunks(), intake.groups, None, None), intake)
    seen = DiskSet()
    try:
        found = preview_lines(intake.lines.chunks(), intake.groups, store.answer_sources, seen)
    finally:
        seen.close()
    return _routable(found, intake)


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
            key = rec[KEY]
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
    kinds: bytes = b"",
    leaders: Iterable[str] = (),
    made: Made | None = None,
) -> str:
    """Record the run, its requests and their routes; the run stays `pending` until all of
    it is written (an interrupted recording is closed on resume, never half-submitted).
    `kinds`: what reuse makes of each line (`Routable.kinds`), so the plan's assignments
    (of the lines left) meet their lines; `leaders`: each twin's first line
    (`Routable.leaders`). Twins are recorded linked to it; lines answered from earlier runs
    are recorded pending and answered from the store next. `made`: the rows made elsewhere
    (`recording.part_values`) for the run's id and the time, or None to make them here."""
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
    # One insert per line, with the route the plan gives it; the lines reuse answers are
    # recorded pending and settled from the store next.
    rows = made(run_id, store.now()) if made is not None else None
    if rows is not None:
        store.add_request_values(run_id, rows)
    else:
        store.add_requests(run_id, intake.new_requests(decision.assignments, kinds, leaders))
    if plan.reused or plan.twins:
        store.reuse_answers(run_id)
    store.add_event(run_id, "route.plan", decision.reason, plan.to_dict(assignments=False))
    store.set_run_state(run_id, RunState.RUNNING)
    return run_id
