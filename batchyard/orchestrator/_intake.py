"""Turning a request file into stored requests: checked lines, token counts, costs per path.

Owns the bridge between `batchyard.ingest` (streamed parsing and validation) and the
store's `NewRequest` rows, including the per-path cost estimates and the output-token
estimate for requests that set no maximum. Reads the file; writes only the rejects file.
"""

from __future__ import annotations

import dataclasses
import hashlib
from array import array
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
from batchyard.models import RequestStatus, Route, RunState
from batchyard.orchestrator import _routing as routing
from batchyard.router import Decision, Plan, RequestFeatures, RunPolicy
from batchyard.store import Store
from batchyard.store.rows import NewRequest, OutputEvidence

__all__ = [
    "Intake",
    "ReusePreview",
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


def _new_request(
    models: Mapping[str, ModelInfo],
    evidence: Evidence,
    p: _Line,
    *,
    worst: bool = False,
    reuse: bool = True,
) -> NewRequest:
    """The stored row of one line, costed at its expected output (`worst`: its worst case)."""
    info = _model_info(models, p.model)
    key = None
    if reuse and not p.sample:
        key = fingerprint(p.endpoint, p.body, _resolved_name(models, p.model))
    seen = evidence.get((p.model, p.endpoint))
    if worst:
        out = routing.worst_output(p.endpoint, p.max_output, seen)
    else:
        out = routing.expected_output(p.endpoint, p.max_output, seen)
    return NewRequest(
        custom_id=p.custom_id,
        line=p.line,
        endpoint=p.endpoint,
        model=p.model,
        body=p.body,
        input_tokens=p.input_tokens,
        output_tokens=out,
        cost_standard=info.estimate(Route.STANDARD, p.input_tokens, out),
        cost_flex=info.estimate(Route.FLEX, p.input_tokens, out) if info.flex else None,
        cost_batch=info.estimate(Route.BATCH, p.input_tokens, out),
        cost_fast=info.estimate(Route.FAST, p.input_tokens, out) if info.fast else None,
        priority=p.priority,
        max_output_tokens=p.max_output,
        fingerprint=key,
    )


def _is_sample(custom_id: str) -> bool:
    """A fan-out sample (`--samples N`: `ORIGINAL#...,sample=N`): a deliberate repeat of
    its siblings, never merged with them nor answered from an earlier run."""
    _, label = split_variant(custom_id)
    return label is not None and any(p.startswith("sample=") for p in label.split(","))


@dataclass(frozen=True, slots=True)
class _Line:
    """What recording needs of one valid line."""

    line: int
    custom_id: str
    endpoint: str
    model: str
    body: dict[str, Any]
    input_tokens: int
    max_output: int | None
    priority: int
    sample: bool = False


@dataclass(frozen=True)
class Intake:
    """A checked request file: its summary, the router's view of every valid request, and a
    small per-line cache (line number, tokens, priority: 32 bytes a line) so that recording
    reads the file once more without validating or counting tokens again."""

    path: Path
    models: Mapping[str, ModelInfo]
    checked: Validated
    rejects_path: Path | None
    learned_output: Evidence
    requests: list[RequestFeatures]
    cache: tuple[array[int], array[int], array[int], array[int]]
    reuse: bool = True  # False: every line is sent as asked (`--no-reuse`)
    fingerprints: tuple[str | None, ...] = ()  # beside `requests`, for the plan's preview

    def features(self) -> list[RequestFeatures]:
        return self.requests

    def new_requests(self) -> Iterator[NewRequest]:
        lines, inputs, outputs, priorities = self.cache
        rows = zip(reread_lines(self.path, lines), inputs, outputs, priorities, strict=True)
        for (line, obj), tokens_in, tokens_out, priority in rows:
            body = obj["body"]
            yield _new_request(
                self.models,
                self.learned_output,
                _Line(
                    line,
                    obj["custom_id"],
                    obj["url"],
                    body["model"],
                    body,
                    tokens_in,
                    tokens_out if tokens_out >= 0 else None,
                    priority,
                    obj.get("sample") is not None or _is_sample(obj["custom_id"]),
                ),
                reuse=self.reuse,
            )

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
    """Validate the whole file in one pass before anything is recorded, keeping what the
    router needs of every valid line.

    With `skip_invalid`, the invalid lines go to `rejects` (default FILE.rejects.jsonl)
    and the rest is used. Raises `ValidationFailed` naming file, line and field otherwise.
    """
    learned = dict(learned_output or {})
    requests: list[RequestFeatures] = []
    keys: list[str | None] = []
    cache: tuple[array[int], array[int], array[int], array[int]] = (
        array("q"),
        array("q"),
        array("q"),
        array("q"),
    )

    def keep(item: ParsedRequest) -> None:
        line = _Line(
            item.line,
            item.custom_id,
            item.endpoint.value,
            item.model,
            item.body,
            item.input_tokens,
            item.output_tokens,
            item.priority,
            item.sample or _is_sample(item.custom_id),
        )
        expected = _new_request(models, learned, line, reuse=reuse)
        # Cost the worst case only where it differs (a cap above the billed p95, say).
        seen = learned.get((line.model, line.endpoint))
        worst_out = routing.worst_output(line.endpoint, line.max_output, seen)
        worst = None
        if worst_out != expected.output_tokens:
            worst = _new_request(models, learned, line, worst=True, reuse=False)  # no key needed
        requests.append(routing.from_new(expected, worst))
        keys.append(expected.fingerprint)
        cached = (
            item.line,
            item.input_tokens,
            -1 if item.output_tokens is None else item.output_tokens,
            item.priority,
        )
        for column, value in zip(cache, cached, strict=True):
            column.append(value)

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
    return Intake(path, models, checked, rejects_path, learned, requests, cache, reuse, tuple(keys))


@dataclass(frozen=True)
class ReusePreview:
    """How many lines earlier answers (or an identical earlier line) will answer."""

    reused: int = 0  # from earlier runs' answers that passed their checks
    twins: int = 0  # identical to an earlier line of this file: sent once
    saving: float = 0.0  # what the reused answers cost when bought (twins: added by plan)
    twin_ids: frozenset[str] = frozenset()


def reuse_preview(intake: Intake, store: Store) -> tuple[list[RequestFeatures], ReusePreview]:
    """The lines left to send, and what reuse answers: the plan covers only the former."""
    if not intake.reuse:
        return intake.requests, ReusePreview()
    sources = store.answer_sources(k for k in intake.fingerprints if k is not None)
    seen: set[str] = set()
    left: list[RequestFeatures] = []
    reused = 0
    saving = 0.0
    twins: set[str] = set()
    for features, key in zip(intake.requests, intake.fingerprints, strict=True):
        if key is not None and key in sources:
            reused += 1
            saving += sources[key].cost
        elif key is not None and key in seen:
            twins.add(features.custom_id)
        else:
            left.append(features)
        if key is not None:
            seen.add(key)
    return left, ReusePreview(reused, len(twins), saving, frozenset(twins))


def with_reuse(plan: Plan, preview: ReusePreview, intake: Intake) -> Plan:
    """The plan with what reuse answers; a twin saves what its first line's route costs."""
    if not (preview.reused or preview.twins):
        return plan
    routes = {a.custom_id: a.route for a in plan.decision.assignments}
    first: dict[str, str] = {}
    saving = preview.saving
    for features, key in zip(intake.requests, intake.fingerprints, strict=True):
        if key is None:
            continue
        leader = first.setdefault(key, features.custom_id)
        if features.custom_id in preview.twin_ids and leader in routes:
            saving += features.cost.on(routes[leader])
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
    assignments = decision.assignments
    if intake.reuse and store.reuse_answers(run_id).changed:
        # Only lines still pending are routed: an answer bought by another process since
        # the plan may have answered one more (its route is then simply not needed).
        pending = {
            r.custom_id for r in store.iter_requests(run_id, statuses=[RequestStatus.PENDING])
        }
        assignments = tuple(a for a in assignments if a.custom_id in pending)
    store.set_routes(run_id, ((a.custom_id, a.route, a.reason) for a in assignments))
    store.add_event(run_id, "route.plan", decision.reason, plan.to_dict(assignments=False))
    store.set_run_state(run_id, RunState.RUNNING)
    return run_id
