"""Metrics the real-time path records itself: call latency, errors by kind, remaining limits;
and every orchestrator keeps its series in a registry of its own."""

from __future__ import annotations

from pathlib import Path

from test_realtime_support import MODEL, chat_body, make_bench, sim_config

from batchyard.metrics import Metrics


async def test_calls_are_timed_and_refusals_counted_by_kind(tmp_path: Path) -> None:
    # Seeded far above the real limit: the first wave gets 429s, the rest goes through.
    bench = make_bench(tmp_path, sim_config(rpm=10, rate_limits=True), seeded=(6_000, 10**8))
    run_id = bench.add_run([chat_body(i) for i in range(20)])
    runner = bench.runner()
    report = await runner.run(run_id)
    assert report.succeeded == 20
    metrics = runner.ctx.metrics
    calls = sum(bench.http_status_counts().values())
    labels = {"model": MODEL, "route": "standard"}
    assert metrics.value("batchyard_request_seconds_count", **labels) == calls
    assert metrics.value("batchyard_request_seconds_bucket", le="+Inf", **labels) == calls
    seconds = metrics.value("batchyard_request_seconds_sum", **labels)
    assert seconds is not None and 0 < seconds < 60 * calls  # on the run's (simulated) clock
    refused = metrics.value("batchyard_errors_total", kind="rate_limit", model=MODEL)
    assert refused == report.rate_limited == bench.http_status_counts()[429] >= 1
    left = metrics.value(
        "batchyard_ratelimit_remaining", kind="requests", model=MODEL, tier="default"
    )
    assert left is not None and 0 <= left < 10
    text = metrics.render()
    assert "# TYPE batchyard_request_seconds histogram" in text
    assert 'batchyard_errors_total{kind="rate_limit",model="' + MODEL + '"}' in text


def test_each_metrics_object_has_its_own_registry() -> None:
    first, second = Metrics(), Metrics()  # the global registry would refuse the second
    first.observe_event("realtime.retry", {})
    first.observe_call(MODEL, "flex", 0.7, "server")
    assert first.value("batchyard_retries_total") == 1.0
    assert second.value("batchyard_retries_total") == 0.0
    assert first.value("batchyard_errors_total", kind="server", model=MODEL) == 1.0
    assert second.value("batchyard_errors_total", kind="server", model=MODEL) is None
    assert first.value("batchyard_request_seconds_bucket", model=MODEL, route="flex", le="1.0")
