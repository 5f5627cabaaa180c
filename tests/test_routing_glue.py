"""What the orchestrator tells the router: turnaround history and the configured prior."""

from __future__ import annotations

from typing import Any

import pytest

from batchyard.config import load_settings
from batchyard.models import BatchStatus
from batchyard.orchestrator import Orchestrator
from batchyard.orchestrator._routing import turnarounds
from batchyard.router import Turnaround
from batchyard.store.rows import BatchRow

T0 = 1_750_000_000.0


def _batch(model: str, **times: float) -> BatchRow:
    fields: dict[str, Any] = dict(
        id=1, run_id="run_x", endpoint="/v1/chat/completions", model=model,
        status=BatchStatus.APPLIED, provider_batch_id="batch_x", input_file_row=None,
        input_file_id=None, output_file_id=None, error_file_id=None, request_count=1,
        counts_total=1, counts_completed=1, counts_failed=0, metadata={},
        provider_times={"created_at": T0, **times}, errors=None, raw=None, claim_owner=None,
        claim_expires_at=None, created_at=T0, updated_at=T0, applied_at=T0,
    )  # fmt: skip
    return BatchRow(**fields)


def test_models_without_history_get_the_prior() -> None:
    prior = Turnaround.from_median_p95(600, 7200)
    assert turnarounds([], ["gpt-4o-mini"], prior) == {"gpt-4o-mini": prior}


def test_fast_batches_pull_the_estimate_down_and_expired_ones_push_it_up() -> None:
    prior = Turnaround.prior()
    fast = turnarounds([_batch("m", completed_at=T0 + 300) for _ in range(20)], ["m"], prior)
    expired = turnarounds([_batch("m", expired_at=T0 + 86_400) for _ in range(20)], ["m"], prior)
    assert fast["m"].quantile(0.5) < prior.quantile(0.5) < expired["m"].quantile(0.5)


def test_cancelled_batches_are_not_evidence() -> None:
    prior = Turnaround.prior()
    cancelled = [_batch("m", cancelled_at=T0 + 60) for _ in range(20)]
    assert turnarounds(cancelled, ["m"], prior)["m"] == prior


def test_the_prior_comes_from_settings() -> None:
    settings = load_settings(
        api_key="sk-test", batch_turnaround_median_seconds=120, batch_turnaround_p95_seconds=900
    )
    orch = Orchestrator(settings)
    assert orch.prior.quantile(0.5) == pytest.approx(120)
    assert orch.prior.quantile(0.95) == pytest.approx(900)


def test_the_turnaround_prior_weighs_outcomes_but_never_stops_batch_being_tried(
    tmp_path: Any,
) -> None:
    from batchyard.models import Route
    from batchyard.router import Plan
    from batchyard.samples import write_sample

    source = write_sample(tmp_path / "in.jsonl", 200, models=("gpt-4o-mini",))

    def plan(median: float, p95: float) -> Plan:
        settings = load_settings(
            api_key="sk-test",
            small_run_requests=0,
            small_run_usd=0,
            batch_turnaround_median_seconds=median,
            batch_turnaround_p95_seconds=p95,
        )
        return Orchestrator(settings).plan(source, deadline="2h")

    fast, slow = plan(300, 1800), plan(10 * 3600, 22 * 3600)
    # Either way the batch is tried: the escalation point is two hours minus the safety
    # away, far more than a new shard needs.
    assert {row.route for row in fast.rows} == {row.route for row in slow.rows} == {Route.BATCH}
    # What the prior changes is the outlook: minutes-long batches are expected back at half
    # price; hours-long ones are expected to escalate and cost nearly all-standard.
    assert fast.expected == pytest.approx(fast.best, rel=0.02)
    assert slow.p_escalation > 0.9 > 0.1 > fast.p_escalation
    assert fast.expected < slow.expected <= slow.worst
