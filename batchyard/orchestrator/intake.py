"""Turning a request file into stored requests: checked lines, token counts, costs per path.

Owns the bridge between `batchyard.ingest` (streamed parsing and validation) and the
store's `NewRequest` rows, including the per-path cost estimates and the output-token
estimate for requests that set no maximum. Reads the file; writes only the rejects file.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from batchyard.config import ModelInfo
from batchyard.errors import ConfigError, LineProblem
from batchyard.ingest import ParsedRequest, Validated, read_requests, validate_file, write_rejects
from batchyard.models import RunState
from batchyard.orchestrator import routing
from batchyard.router import Decision, Plan, RequestFeatures, RunPolicy
from batchyard.store import Store
from batchyard.store.rows import NewRequest

__all__ = ["Intake", "check_file", "record_run", "sha256_file"]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _model_info(models: Mapping[str, ModelInfo], name: str) -> ModelInfo:
    if name in models:
        return models[name]
    for known in sorted(models, key=len, reverse=True):
        if name.startswith(known):  # dated snapshots price like their base model
            return models[known]
    raise ConfigError(f'Unknown model {name!r}: add [models."{name}"] to batchyard.toml.')


@dataclass(frozen=True)
class Intake:
    """A checked request file, read again as often as needed (never held in memory)."""

    path: Path
    models: Mapping[str, ModelInfo]
    checked: Validated
    rejects_path: Path | None
    learned_output: Mapping[str, float] = field(default_factory=dict)  # per-model mean

    def parsed(self) -> Iterator[ParsedRequest]:
        for item in read_requests(self.path, self.models):
            if isinstance(item, ParsedRequest):
                yield item

    def new_request(self, p: ParsedRequest) -> NewRequest:
        info = _model_info(self.models, p.model)
        out = routing.expected_output(p.endpoint, p.output_tokens, self.learned_output.get(p.model))
        return NewRequest(
            custom_id=p.custom_id,
            line=p.line,
            endpoint=p.endpoint.value,
            model=p.model,
            body=p.body,
            input_tokens=p.input_tokens,
            output_tokens=out,
            cost_standard=info.cost("standard", p.input_tokens, out),
            cost_flex=info.cost("flex", p.input_tokens, out) if info.flex else None,
            cost_batch=info.cost("batch", p.input_tokens, out),
            priority=p.priority,
        )

    def new_requests(self) -> Iterator[NewRequest]:
        return (self.new_request(p) for p in self.parsed())

    def features(self) -> list[RequestFeatures]:
        return [routing.from_new(n) for n in self.new_requests()]

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
    learned_output: Mapping[str, float] | None = None,
) -> Intake:
    """Validate the whole file first, so nothing is recorded when a line is bad.

    With `skip_invalid`, the invalid lines go to `rejects` (default FILE.rejects.jsonl)
    and the rest is used. Raises `ValidationFailed` naming file, line and field otherwise.
    """
    checked = validate_file(path, models)
    rejects_path: Path | None = None
    if not checked.ok:
        if not skip_invalid:
            checked.raise_if_invalid()
        rejects_path = rejects or path.with_suffix(".rejects.jsonl")
        problems = [p for p in read_requests(path, models) if isinstance(p, LineProblem)]
        write_rejects(problems, rejects_path, source=path)
    if checked.valid == 0:
        raise ConfigError(f"{path} has no valid request to submit.")
    return Intake(path, models, checked, rejects_path, dict(learned_output or {}))


def record_run(
    store: Store,
    intake: Intake,
    policy: RunPolicy,
    decision: Decision,
    plan: Plan,
    *,
    small: bool,
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
            "small_run": small,
            "requests": checked.valid,
            "rejected": checked.invalid_lines,
            "rejects_path": str(intake.rejects_path) if intake.rejects_path else None,
        },
    )
    store.add_requests(run_id, intake.new_requests())
    store.set_routes(run_id, ((a.custom_id, a.route, a.reason) for a in decision.assignments))
    store.add_event(run_id, "route.plan", decision.reason, plan.to_dict(assignments=False))
    store.set_run_state(run_id, RunState.RUNNING)
    return run_id
