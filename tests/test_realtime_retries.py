"""Retries on the real-time path as a user sees them: every send in the store, a rate limit
never ending a request, a stall said out loud, and why a request waits.

Runs `RealtimeRunner.run` against the in-process simulator on one virtual clock.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

from test_realtime_support import RealtimeBench, chat_body, make_bench, sim_config

from batchyard.models import RequestStatus
from batchyard.orchestrator._calls.retry import RetryPolicy
from batchyard.orchestrator._reporting.fetch import output_line
from batchyard.orchestrator._reporting.status import status


def _answers(bench: RealtimeBench) -> int:
    """HTTP answers the simulator gave (dropped connections included)."""
    counts = bench.http_status_counts()
    dropped = sum(n for key, n in bench.state.stats.items() if key.endswith("|dropped"))
    return sum(counts.values()) + dropped


async def test_every_send_is_an_attempt_row_with_its_kind_status_and_request_id(
    tmp_path: Path,
) -> None:
    bench = make_bench(tmp_path, sim_config(error_5xx_rate=0.25, drop_rate=0.15), max_attempts=12)
    run_id = bench.add_run([chat_body(i) for i in range(40)])
    report = await bench.runner(breaker_threshold=1000).run(run_id)
    assert report.succeeded == 40
    attempts = bench.store.list_attempts(run_id)
    assert len(attempts) == _answers(bench)  # one row per send, retries included
    faults = bench.state.stats["fault|error"] + bench.state.stats["fault|drop"]
    assert faults > 5 and report.retries == faults
    by_request: dict[str, list[Any]] = {}
    for a in attempts:
        by_request.setdefault(a.custom_id, []).append(a)
    for row in bench.store.iter_requests(run_id):
        sends = sorted(by_request[row.custom_id], key=lambda a: a.attempt)
        assert [a.attempt for a in sends] == list(range(1, row.attempts + 1))
        assert sends[-1].outcome == "succeeded" and sends[-1].request_id
        for a in sends[:-1]:
            assert a.outcome == "retry" and a.finished_at is not None
            assert a.error_kind in ("server", "connection")
            if a.error_kind == "server":
                assert a.status_code in (500, 502, 503) and a.request_id
        # What `fetch` writes: the true number of sends.
        assert output_line(run_id, row, {})["batchyard"]["attempts"] == len(sends)
    kinds = bench.store.retried_sends(run_id)
    assert kinds == {
        k: n
        for k, n in {
            "server": bench.state.stats["fault|error"],
            "connection": bench.state.stats["fault|drop"],
        }.items()
        if n
    }
    shown = status(bench.store, bench.store.get_run(run_id), bench.clock())
    assert shown.retried == kinds
    assert bench.billed() == {f"r{i}": 1 for i in range(40)}


async def test_rate_limits_never_fail_a_request_even_beside_another_client(
    tmp_path: Path,
) -> None:
    # The limit is 20 RPM, another client takes half of it, the 429s carry no headers, and
    # the fault budget is a single send: a 429 must not use it.
    config = sim_config(rpm=20, rate_limits=True, rate_limit_headers="none")
    bench = make_bench(tmp_path, config, seeded=(6_000, 10**8), max_attempts=1)
    bench.state.limits.other_client_share = 0.5
    run_id = bench.add_run([chat_body(i) for i in range(30)])
    report = await bench.runner().run(run_id)
    assert (report.succeeded, report.failed) == (30, 0)
    assert bench.statuses(run_id) == {"succeeded": 30}
    assert bench.billed() == {f"r{i}": 1 for i in range(30)}
    limited = bench.http_status_counts()[429]
    assert limited > 0
    assert bench.store.retried_sends(run_id) == {"rate_limit": limited}
    assert len(bench.store.list_attempts(run_id)) == 30 + limited


async def test_a_run_whose_sends_all_fail_reports_a_stall_until_answers_flow(
    tmp_path: Path,
) -> None:
    bench = make_bench(tmp_path, sim_config(error_5xx_rate=1.0), max_attempts=100)
    run_id = bench.add_run([chat_body(0)])
    runner = bench.runner(breaker_threshold=1000, stall_after=20.0, max_claimed=1)
    seen: list[Any] = []

    def on_progress(kind: str, data: dict[str, Any]) -> None:
        if data["kind"] == "stall":
            # What `status` says while it is stalled, then the provider heals.
            seen.append(status(bench.store, bench.store.get_run(run_id), bench.clock()))
            bench.state.faults.error_5xx_rate = 0.0

    runner.on_progress = on_progress
    report = await runner.run(run_id)
    assert report.succeeded == 1 and report.stalls == 1
    (during,) = seen
    assert during.send_stall is not None
    assert during.send_stall.startswith("Stalled: no answer for")
    assert "5xx server errors" in during.send_stall
    assert "keep waiting and retrying" in during.send_stall
    kinds = [e.kind for e in bench.store.list_events(run_id)]
    assert kinds.index("realtime.stall") < kinds.index("realtime.flowing")
    after = status(bench.store, bench.store.get_run(run_id), bench.clock())
    assert after.send_stall is None


async def test_a_long_retry_after_defers_with_the_reason_recorded(tmp_path: Path) -> None:
    # 1 RPM: a 429 asks for up to a minute, beyond this policy's 5 s: the request goes back
    # to the store with `not_before` and the reason, and the run waits for it.
    config = sim_config(rpm=1, rate_limits=True)
    bench = make_bench(tmp_path, config, seeded=(6_000, 10**8))
    run_id = bench.add_run([chat_body(i) for i in range(3)])
    stop = asyncio.Event()
    waiting: list[list[tuple[str, int, float]]] = []

    def on_progress(kind: str, data: dict[str, Any]) -> None:
        if data["kind"] == "deferred":
            stop.set()

    runner = bench.runner(policy=RetryPolicy(max_retry_after=5.0))
    runner.on_progress = on_progress
    await runner.run(run_id, stop=stop)
    waiting.append(bench.store.waiting_reasons(run_id))
    (reasons,) = waiting
    assert reasons and reasons[0][0].startswith("rate_limit: the provider's retry-after")
    assert reasons[0][2] > bench.clock()
    row = next(r for r in bench.store.iter_requests(run_id) if r.status is RequestStatus.RETRYABLE)
    assert row.not_before is not None and row.not_before > bench.clock()
    shown = status(bench.store, bench.store.get_run(run_id), bench.clock())
    assert shown.waiting == reasons
    report = await bench.runner().run(run_id)  # it waits, then every request is answered
    assert bench.statuses(run_id) == Counter({"succeeded": 3})
    assert report.failed == 0
