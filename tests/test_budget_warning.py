"""Budgets: the default from settings, the warning share (event, progress event, metric,
status line) and spent/reserved in status; re-sends after failed checks count as spent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from test_answer_checks_runs import chat_line, make_sim, orchestrator, write

from batchyard.cli.render import status_line
from batchyard.metrics import Metrics


async def test_a_run_warns_once_it_has_spent_the_warning_share(tmp_path: Path) -> None:
    sim = make_sim(refusal_rate=1.0)  # every answer re-sent: the budget covers re-queues
    source = write(tmp_path / "in.jsonl", [chat_line(i) for i in range(4)])
    seen: list[tuple[str, dict[str, Any]]] = []
    # The plan's worst case (every cap used) fits; the warning comes from answers paid for.
    orch = orchestrator(tmp_path, sim, budget=0.0012, budget_warn_share=0.05)
    orch.on_progress = lambda kind, data: seen.append((kind, data))
    plan = orch.plan(source, route="realtime")
    assert plan.budget_usd == 0.0012 and plan.worst <= 0.0012  # the default from settings
    run = await orch.submit(source, route="realtime", requeues=3)
    status = await orch.wait(run.run_id)
    assert status.budget == 0.0012 and status.requeues == 12
    assert status.budget_spent == status.actual_cost >= 0.05 * 0.0012
    # Re-sends are what crossed the share: the lines' own answers alone stay below it.
    assert status.actual_cost - status.requeue_cost < 0.05 * 0.0012
    assert status.budget_warning is not None and "spent of the budget" in status.budget_warning
    warnings = orch.store.list_events(run.run_id, kinds=["budget.warning"])
    assert len(warnings) == 1  # once, however many rounds see it
    assert [k for k, _ in seen].count("budget.warning") == 1
    assert "budget:" in status_line(status)
    metrics = Metrics()
    metrics.observe_status(status)
    assert metrics.value("batchyard_budget_warning", run=run.run_id) == 1.0
    assert metrics.value("batchyard_budget_usd", run=run.run_id, kind="spent") == (
        status.budget_spent
    )
    await orch.aclose()


async def test_no_warning_below_the_share_and_reserved_work_is_shown(tmp_path: Path) -> None:
    sim = make_sim()
    source = write(tmp_path / "in.jsonl", [chat_line(i) for i in range(3)])
    orch = orchestrator(tmp_path, sim, budget=10.0)
    run = await orch.submit(source, route="batch")
    before = orch.status(run.run_id)
    assert before.budget == 10.0 and before.budget_reserved > 0 and before.budget_spent == 0
    status = await orch.wait(run.run_id)
    assert status.done and status.budget_warning is None and status.budget_reserved == 0
    assert orch.store.list_events(run.run_id, kinds=["budget.warning"]) == []
    await orch.aclose()
