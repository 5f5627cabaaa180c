"""The request handler built alone on a `RealtimeContext`, without a runner."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_realtime_support import MODEL, chat_body, make_bench, sim_config

from batchyard.models import RequestStatus, Route
from batchyard.orchestrator.realtime.context import RealtimeContext, RunDispatch
from batchyard.orchestrator.realtime.request import Job, RequestHandler
from batchyard.orchestrator.realtime.types import RealtimeOptions, RealtimeReport


async def test_a_handler_on_its_own_context_answers_or_sets_aside(tmp_path: Path) -> None:
    bench = make_bench(tmp_path, sim_config())
    run_id = bench.add_run([chat_body(i) for i in range(2)])
    ctx = RealtimeContext.build(
        bench.store,
        bench.client,
        bench.models,
        bench.settings,
        clock=bench.clock,
        sleep=bench.clock.sleep,
        owner="alone",
        options=RealtimeOptions(breaker_threshold=1, breaker_timeout=30.0),
    )
    ctx.run = RunDispatch(run_id, report=RealtimeReport(run_id=run_id))
    handler = RequestHandler(ctx)
    first, second = bench.store.claim_realtime(
        run_id, owner="alone", limit=2, routes=(Route.STANDARD,)
    )

    await handler.process(Job(first))
    opened = bench.clock()
    ctx.breaker(MODEL).record_failure()  # the model's circuit opens
    await handler.process(Job(second))
    handler.outcomes.flush()

    rows = {r.custom_id: r for r in bench.store.iter_requests(run_id)}
    assert rows["r0"].status is RequestStatus.SUCCEEDED
    assert rows["r1"].status is RequestStatus.RETRYABLE
    assert rows["r1"].not_before == pytest.approx(opened + 30.0, abs=1.0)
    assert rows["r1"].error_code == "circuit_open"
    assert bench.billed() == {"r0": 1}, "nothing is sent while the circuit is open"
    assert ctx.run.report.succeeded == 1 and ctx.run.report.deferred == 1
