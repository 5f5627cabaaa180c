"""The orchestrator: one object that plans, submits, drives, reports and fetches runs.

Owns the run lifecycle as users see it (`submit`, `step`, `drive_realtime`, `wait`, `status`,
`fetch`, `cancel`, `resume`, `costs`), gluing ingest → store → router → the two executors
(`BatchRunner` for the Batch API, `RealtimeRunner` for real time). Every decision and change
of course is recorded as an event in the store with its reason. It never writes SQL (the
store does), never prints (callers render), and reads time only through the injected clock.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from batchyard.build import BuildReport, Variation, build_file
from batchyard.checks import CheckFn
from batchyard.errors import ProviderError
from batchyard.models import RouteOverride
from batchyard.orchestrator import _client as key_checks
from batchyard.orchestrator import _routing as routing
from batchyard.orchestrator._answer_checks import check_options
from batchyard.orchestrator._driving import RunDriving
from batchyard.orchestrator._fallback import OPTION as FALLBACK_OPTION
from batchyard.orchestrator._fallback import resolve_fallbacks
from batchyard.orchestrator._intake import check_file, record_run, reuse_preview, with_reuse
from batchyard.orchestrator._notify import notify_secret
from batchyard.orchestrator._progress import OnProgress
from batchyard.orchestrator._reports import (
    SubmitResult,
)
from batchyard.orchestrator._sources import Requests, Source, prepare_source
from batchyard.router import (
    Plan,
    RunPolicy,
    decide_lines,
    is_small_run,
    plan_from_decision,
)
from batchyard.store.codec import REQUEST_MIN_BYTES

__all__ = ["OnProgress", "Orchestrator"]


class Orchestrator(RunDriving):
    """Async entry point of the Python API. See `batchyard.Batchyard` for a sync facade.

    `client` or `http_client` point the SDK somewhere else (the embedded simulator, a
    proxy); `clock`/`sleep` let tests and the demo run on simulated time.
    """

    # ---- planning -------------------------------------------------------------------------
    def policy(
        self,
        *,
        deadline: str | float | None = None,
        budget: float | None = None,
        route: RouteOverride | str = RouteOverride.AUTO,
        strict: bool = False,
    ) -> RunPolicy:
        return routing.user_policy(
            self.settings,
            self.clock(),
            deadline=deadline,
            budget=budget if budget is not None else self.settings.budget,
            route=route,
            strict=strict,
        )

    def _source(
        self,
        path: Requests,
        template: str | os.PathLike[str] | None,
        vary: Sequence[str],
        samples: int,
        spool: Path | None = None,
    ) -> Source:
        return prepare_source(
            path,
            self.models,
            spool or self.settings.db_path().parent / "requests",
            template=template,
            variation=Variation.parse(vary, samples),
        )

    def plan(
        self,
        path: Requests,
        *,
        deadline: str | float | None = None,
        budget: float | None = None,
        route: RouteOverride | str = RouteOverride.AUTO,
        strict: bool = False,
        template: str | os.PathLike[str] | None = None,
        vary: Sequence[str] = (),
        samples: int = 1,
        reuse: bool | None = None,
    ) -> Plan:
        """The plan for a file: routes, escalation point, costs, and how many lines earlier
        answers will answer (`reuse`, default from settings). No API calls.

        With `template`, `path` is a data file (CSV or JSONL) rendered through it; `vary`
        (`"temperature=0,0.7"`) and `samples` multiply every line into variants."""
        with tempfile.TemporaryDirectory(prefix="batchyard-plan-") as spool:
            source = self._source(path, template, vary, samples, Path(spool))
            intake = check_file(
                source.path,
                self.models,
                learned_output=self.store.output_evidence(),
                reuse=self.settings.reuse if reuse is None else reuse,
            )
        # the plan's assignments stream from the intake's spill while the plan lives
        routable, preview = reuse_preview(intake, self.store)
        policy = self.policy(deadline=deadline, budget=budget, route=route, strict=strict)
        names = routable.names
        caps = self._capacities(names)
        batches = self.store.list_batches()
        clock = self.clock_map()
        history = routing.turnarounds(batches, names, self.prior, clock)
        cancel = routing.cancel_latency(batches, self.cancel_prior, clock)
        args = (policy, caps, self.clock(), history)
        decision, est = decide_lines(routable.tally, routable.lines, *args, cancel=cancel)
        return with_reuse(plan_from_decision(decision, est, policy), preview, routable)

    def build(
        self,
        template: str | os.PathLike[str],
        data: str | os.PathLike[str],
        output: str | os.PathLike[str],
        *,
        vary: Sequence[str] = (),
        samples: int = 1,
    ) -> BuildReport:
        """Write the request file `output` from `template` and the rows of `data`, each
        row multiplied into variants by `vary` and `samples`; validated as `submit` does."""
        variation = Variation.parse(vary, samples)
        return build_file(Path(template), Path(data), Path(output), self.models, variation)

    # ---- submit ---------------------------------------------------------------------------
    async def submit(
        self,
        path: Requests,
        *,
        deadline: str | float | None = None,
        budget: float | None = None,
        route: RouteOverride | str = RouteOverride.AUTO,
        strict: bool = False,
        skip_invalid: bool = False,
        rejects: str | os.PathLike[str] | None = None,
        template: str | os.PathLike[str] | None = None,
        vary: Sequence[str] = (),
        samples: int = 1,
        notify: str | None = None,
        checks: Sequence[str | CheckFn] | None = None,
        requeues: int | None = None,
        reuse: bool | None = None,
        fallback: str | Mapping[str, str] | None = None,
    ) -> SubmitResult:
        """Validate, plan, record the run and submit its batch shards.

        `path` is a request file, or requests in memory: an iterable of `Request` objects
        or batch-format dicts, in input order (spooled to the database's `requests/`
        directory and validated like a file; line N is the Nth request).

        Nothing is recorded or sent when a line is invalid, unless `skip_invalid`, in which
        case the invalid lines are written to `rejects` (default: FILE.rejects.jsonl). The
        real-time share is left routed: run it with `step`/`wait` (the CLI does).

        With `template`, `path` is a data file rendered through it; `vary` and `samples`
        multiply every line into variants. The built request file is kept under the
        database's directory (`requests/`) and recorded as the run's source.

        `notify`: a URL called once (signed with the `notify_secret` setting, Standard
        Webhooks) when the run finishes, by whichever process drives it to the end.

        `checks` (names, `module:function` or callables; default: the settings' list, every
        shipped check) judge each answer; one that fails is sent again up to `requeues` times
        (default: settings' `check_requeues`), then the line ends `invalid`. With `reuse`
        (default on), lines identical to an answered request are answered from the store
        and identical lines of the file are sent once.

        `fallback` (a model for every model of the file, or {model: fallback model};
        default: the settings' `fallback` table) answers lines whose model the API refuses
        (`model_not_found`) or whose real-time breaker stays open past the escalation
        point; checked here (`OptionError`: not a known model, or not serving an endpoint
        the lines use).
        """
        if notify is not None:
            notify_secret(self.settings)  # refuse before anything is recorded
        source = self._source(path, template, vary, samples).path
        self.judges.register(checks)
        options = check_options(
            list(checks) if checks is not None else self.settings.checks,
            self.settings.check_requeues if requeues is None else requeues,
            self.settings.length_raise,
        )
        intake = check_file(
            source,
            self.models,
            skip_invalid=skip_invalid,
            rejects=Path(rejects) if rejects else None,
            learned_output=self.store.output_evidence(),
            reuse=self.settings.reuse if reuse is None else reuse,
            body_min=REQUEST_MIN_BYTES,
        )
        groups = ((str(endpoint), model) for endpoint, model in intake.checked.groups)
        fallbacks = resolve_fallbacks(fallback, self.settings.fallback, self.models, groups)
        if fallbacks:
            options[FALLBACK_OPTION] = fallbacks
        policy = self.policy(deadline=deadline, budget=budget, route=route, strict=strict)
        routable, preview = reuse_preview(intake, self.store)
        names = routable.names
        await key_checks.preflight(self.client, self.sleep)
        now = self.clock()
        caps = self._capacities(names)
        batches = self.store.list_batches()
        clock = self.clock_map()
        history = routing.turnarounds(batches, names, self.prior, clock)
        cancel = routing.cancel_latency(batches, self.cancel_prior, clock)
        # may raise PlanRefused
        args = (policy, caps, now, history)
        decision, est = decide_lines(routable.tally, routable.lines, *args, cancel=cancel)
        plan = with_reuse(plan_from_decision(decision, est, policy), preview, routable)
        small = is_small_run(routable.tally.routable.work(), policy)
        checked = intake.checked
        run_id = record_run(
            self.store,
            intake,
            policy,
            decision,
            plan,
            small=small,
            options=options,
            kinds=routable.kinds,
        )
        if notify is not None:
            self.store.set_notify(run_id, notify)
        report = await self._submit_batches(run_id)
        if report.errors and not report.submitted:
            raise ProviderError(
                f"{report.errors[0]} The run {run_id} is recorded: run "
                f"`batchyard resume {run_id}` once the API can be reached."
            )
        return SubmitResult(
            run_id=run_id,
            plan=plan,
            accepted=checked.valid,
            rejected=checked.invalid_lines,
            rejects_path=intake.rejects_path,
            shards_submitted=report.submitted,
            waiting_shards=report.waiting,
        )
