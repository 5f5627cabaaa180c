"""From a checked request file to a plan and a recorded run.

Owns `Planner`, built from the settings, the model table, the store, the run checks
(`Judges`), the clock, the turnaround priors and a view of the models' live limits. Its
steps, in the order `Orchestrator.submit` takes them: the run's check options, the intake
(every line checked, counted and costed), the fallback models, the reuse preview, the
plan (the router's decision) and recording the run with its routes. `Orchestrator.plan`
takes the same steps without recording. It makes no API calls, never writes SQL itself and
reads time only through the clock.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from batchyard.catalog import Catalog
from batchyard.checks import CheckFn
from batchyard.config import Settings
from batchyard.orchestrator import _routing as routing
from batchyard.orchestrator._answers.checks import Judges, check_options
from batchyard.orchestrator._calls.timing import Clock
from batchyard.orchestrator._planning.assigning import parts_stream
from batchyard.orchestrator._planning.intake import (
    Intake,
    ReusePreview,
    Routable,
    check_file,
    record_run,
    reuse_preview,
    with_reuse,
)
from batchyard.orchestrator._planning.recording import part_values
from batchyard.orchestrator._planning.spill import CodeSpill
from batchyard.orchestrator._routing.fallback import OPTION as FALLBACK_OPTION
from batchyard.orchestrator._routing.fallback import resolve_fallbacks
from batchyard.orchestrator._routing.provider_clock import IDENTITY, ClockMap
from batchyard.router import (
    ModelCapacity,
    Plan,
    RunPolicy,
    Turnaround,
    decide_lines,
    is_small_run,
    plan_from_decision,
)
from batchyard.store import Store
from batchyard.store.codec import REQUEST_MIN_BYTES

__all__ = ["Planner"]


class Planner:
    """Plans and records runs in one store.

    `capacities` gives each named model's limits as they stand (`Orchestrator` adds what
    its real-time runner has learned); `clock_map` maps the provider's times onto ours
    (default: they agree).
    """

    def __init__(
        self,
        settings: Settings,
        models: Catalog,
        store: Store,
        judges: Judges,
        *,
        clock: Clock,
        prior: Turnaround,
        cancel_prior: Turnaround,
        capacities: Callable[[list[str]], dict[str, ModelCapacity]],
        clock_map: Callable[[], ClockMap] = lambda: IDENTITY,
    ) -> None:
        self.settings = settings
        self.models = models
        self.store = store
        self.judges = judges
        self.clock = clock
        self.prior = prior
        self.cancel_prior = cancel_prior
        self.capacities = capacities
        self.clock_map = clock_map

    def check_options(
        self, checks: Sequence[str | CheckFn] | None, requeues: int | None
    ) -> dict[str, Any]:
        """The run's checks on answers (default: the settings'), known to the judges, as
        run options; raises on a check that cannot be found."""
        self.judges.register(checks)
        return check_options(
            list(checks) if checks is not None else self.settings.checks,
            self.settings.check_requeues if requeues is None else requeues,
            self.settings.length_raise,
        )

    def intake(
        self,
        source: Path,
        *,
        reuse: bool | None,
        skip_invalid: bool = False,
        rejects: Path | None = None,
        bodies: bool = False,
    ) -> Intake:
        """Every line of `source` checked, counted and costed (output estimates learned
        from this store's answers); `reuse` defaults to the settings'. `bodies`: keep each
        body as the store keeps it, for recording the run without reading the file again."""
        return check_file(
            source,
            self.models,
            skip_invalid=skip_invalid,
            rejects=rejects,
            learned_output=self.store.output_evidence(),
            reuse=self.settings.reuse if reuse is None else reuse,
            body_min=REQUEST_MIN_BYTES if bodies else None,
            workers=self.settings.workers or None,
        )

    def fallback_options(
        self, intake: Intake, fallback: str | Mapping[str, str] | None
    ) -> dict[str, Any]:
        """The run's fallback models (default: the settings' table) as run options, each
        checked against the endpoints its lines use."""
        groups = ((str(endpoint), model) for endpoint, model in intake.checked.groups)
        fallbacks = resolve_fallbacks(fallback, self.settings.fallback, self.models, groups)
        return {FALLBACK_OPTION: fallbacks} if fallbacks else {}

    def preview(self, intake: Intake) -> tuple[Routable, ReusePreview]:
        """The lines left to send, and what earlier answers will answer."""
        return reuse_preview(intake, self.store)

    def decide(self, routable: Routable, preview: ReusePreview, policy: RunPolicy) -> Plan:
        """The plan for the lines left to send: routes, escalation point, costs (raises
        `PlanRefused` when the policy cannot be met)."""
        now = self.clock()
        names = routable.names
        caps = self.capacities(names)
        batches = self.store.list_batches()
        clock = self.clock_map()
        history = routing.turnarounds(batches, names, self.prior, clock)
        cancel = routing.cancel_latency(batches, self.cancel_prior, clock)
        args = (policy, caps, now, history)
        memo = (CodeSpill, routable.ids)  # replays the plan without assigning lines again
        stream = parts_stream(routable)  # the workers that checked a large file route it
        decision, est = decide_lines(
            routable.tally, routable.lines, *args, cancel=cancel, memo=memo, stream=stream
        )
        return with_reuse(plan_from_decision(decision, est, policy), preview, routable)

    def record(
        self,
        intake: Intake,
        routable: Routable,
        policy: RunPolicy,
        plan: Plan,
        options: Mapping[str, Any],
    ) -> str:
        """Record the run, its requests and their planned routes; returns the run's id."""
        small = is_small_run(routable.tally.routable.work(), policy)
        decision = plan.decision
        return record_run(
            self.store,
            intake,
            policy,
            decision,
            plan,
            small=small,
            options=options,
            kinds=routable.kinds,
            leaders=routable.leaders,
            made=lambda run_id, now: part_values(
                intake, decision, routable.kinds, routable.leaders, run_id, now
            ),
        )
