"""The orchestrator's collaborators stand alone: a `Planner` and a `Reporter` built on a
store, without an `Orchestrator` (and without an API key), plan and record a run and then
report on it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_store_support import Clock, open_store

from batchyard.config import load_settings
from batchyard.models import RequestStatus
from batchyard.orchestrator import _routing as routing
from batchyard.orchestrator._answers.checks import Judges
from batchyard.orchestrator._planning.planner import Planner
from batchyard.orchestrator._reporting.reporter import Reporter
from batchyard.samples import write_sample


def test_a_planner_records_a_run_that_a_reporter_reads_back(tmp_path: Path) -> None:
    clock = Clock()
    store = open_store(tmp_path / "jobs.db", clock)
    settings = load_settings()
    models = settings.model_table()
    prior, cancel_prior = routing.priors(settings)
    planner = Planner(
        settings,
        models,
        store,
        Judges(store, models),
        clock=clock,
        prior=prior,
        cancel_prior=cancel_prior,
        capacities=lambda names: routing.capacities(models, names),
    )
    source = write_sample(tmp_path / "in.jsonl", 30)
    ids = [json.loads(line)["custom_id"] for line in source.read_text().splitlines()]

    options = planner.check_options(None, None)
    intake = planner.intake(source, reuse=False)
    routable, preview = planner.preview(intake)
    policy = routing.user_policy(
        settings, clock(), deadline="24h", budget=None, route="auto", strict=False
    )
    plan = planner.decide(routable, preview, policy)
    run_id = planner.record(intake, routable, policy, plan, options)

    planned = {a.custom_id: a.route for a in plan.decision.assignments}
    stored = {r.custom_id: r.route for r in store.iter_requests(run_id)}
    assert stored == planned and len(stored) == 30

    reporter = Reporter(store, models, clock=clock, prior=prior)
    assert [run.id for run in reporter.runs()] == [run_id]
    status = reporter.status(run_id)
    assert status.requests == 30 and not status.done and status.stalled is None
    assert status.estimated_cost == plan.expected
    assert reporter.costs(run_id).estimated == pytest.approx(plan.expected, abs=1e-6)
    results = list(reporter.results(run_id))
    assert [r.custom_id for r in results] == ids  # input order, nothing answered yet
    assert {r.status for r in results} == {RequestStatus.ROUTED.value}
