"""The real-time path against the in-process simulator, on one virtual clock.

Each test runs `RealtimeRunner.run` over a run in the store and checks what a user would
notice: every request answered once, the simulator's ledger never billing a custom_id twice,
rate limits respected, provider messages kept, costs recorded.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from test_realtime_support import FLEX_MODEL, MODEL, chat_body, make_bench, sim_config

from batchyard.errors import QuotaExhausted
from batchyard.models import RequestStatus, Route
from batchyard.orchestrator.realtime.breaker import BreakerState
from batchyard.orchestrator.realtime.types import FlexFallback, StopReason


async def test_every_request_succeeds_once_with_usage_and_cost(tmp_path: Path) -> None:
    bench = make_bench(tmp_path, sim_config())
    run_id = bench.add_run([chat_body(i, max_tokens=20) for i in range(40)])
    report = await bench.runner().run(run_id)
    assert report.succeeded == 40 and report.failed == 0
    assert bench.statuses(run_id) == {"succeeded": 40}
    assert bench.billed() == {f"r{i}": 1 for i in range(40)}
    ledger = {e.custom_id: e for e in bench.state.ledger}
    for row in bench.store.iter_requests(run_id, with_response=True):
        billed = ledger[row.custom_id]
        assert row.input_tokens == billed.input_tokens
        assert row.output_tokens == billed.output_tokens
        assert row.cost == pytest.approx(billed.cost)  # our price table agrees with the bill
        assert row.response_body is not None
        assert row.response_body["choices"][0]["message"]["content"]
    assert report.cost == pytest.approx(sum(e.cost for e in bench.state.ledger))
    assert bench.store.get_run(run_id).actual_cost == pytest.approx(report.cost)
    kinds = [data["kind"] for kind, data in bench.progress if kind == "realtime"]
    assert kinds.count("succeeded") == 40


async def test_responses_and_embeddings_go_through(tmp_path: Path) -> None:
    bench = make_bench(tmp_path, sim_config())
    run_id = bench.add_run(
        [{"model": MODEL, "input": f"Say {i}", "max_output_tokens": 16} for i in range(3)],
        endpoint="/v1/responses",
    )
    emb_id = bench.add_run(
        [{"model": "text-embedding-3-small", "input": [f"a{i}", "b"]} for i in range(3)],
        endpoint="/v1/embeddings",
    )
    runner = bench.runner()
    assert (await runner.run(run_id)).succeeded == 3
    assert (await runner.run(emb_id)).succeeded == 3
    row = bench.store.get_request(emb_id, "r0")
    assert row.response_body is not None
    vector = row.response_body["data"][0]["embedding"]
    assert isinstance(vector, list) and isinstance(vector[0], float)  # float, as the API's default
    assert bench.billed()["r0"] == 2  # r0 of each run


async def test_bad_request_is_terminal_with_the_provider_message(tmp_path: Path) -> None:
    bench = make_bench(tmp_path, sim_config())
    run_id = bench.add_run([chat_body(0), chat_body(1, max_tokens=0), chat_body(2)])
    report = await bench.runner().run(run_id)
    assert (report.succeeded, report.failed) == (2, 1)
    row = bench.store.get_request(run_id, "r1")
    assert row.status is RequestStatus.FAILED
    assert row.status_code == 400
    assert row.error_code == "integer_below_min_value"
    assert row.error_message == (
        "Invalid 'max_tokens': integer below minimum value. Expected a value >= 1, "
        "but got 0 instead."
    )
    assert row.attempts == 1
    assert "r1" not in bench.billed()
    assert len(bench.store.list_attempts(run_id, "r1")) == 1


async def test_unknown_body_keys_reach_the_api(tmp_path: Path) -> None:
    bench = make_bench(tmp_path, sim_config())
    run_id = bench.add_run([chat_body(0, service_tier="bogus")])
    await bench.runner().run(run_id)
    row = bench.store.get_request(run_id, "r0")
    # The simulator refused the value: so the key went through, untouched.
    assert row.status is RequestStatus.FAILED and row.error_message
    assert "bogus" in row.error_message


async def test_runs_at_the_limit_learning_it_from_the_headers(tmp_path: Path) -> None:
    # We were told 6,000 RPM; the provider allows 60. The first response's headers say so.
    bench = make_bench(tmp_path, sim_config(rpm=60, rate_limits=True), seeded=(6_000, 10**8))
    run_id = bench.add_run([chat_body(i) for i in range(150)])
    start, real_start = bench.clock(), time.monotonic()
    report = await bench.runner(max_claimed=1).run(run_id)
    assert report.succeeded == 150
    assert report.rate_limited == 0
    elapsed = bench.clock() - start
    # 60 at once (a full bucket), then one per second: 90 s; never faster. The simulator's
    # clock also moves with real time (time_scale 1): on a loaded machine the run's own
    # seconds of work are added, so they are allowed for, never the pacing itself.
    real = time.monotonic() - real_start
    assert 89.0 <= elapsed <= 92.0 + real
    assert bench.billed() == {f"r{i}": 1 for i in range(150)}


async def test_another_consumer_of_the_key_slows_us_down(tmp_path: Path) -> None:
    bench = make_bench(tmp_path, sim_config(rpm=60, rate_limits=True), seeded=(60, 10**8))
    other = bench.add_run([chat_body(100 + i) for i in range(50)])
    ours = bench.add_run([chat_body(i) for i in range(30)])
    await bench.runner(owner="other-tool").run(other)  # someone else spends 50 of our 60
    report = await bench.runner(max_claimed=1).run(ours)
    assert report.succeeded == 30
    assert report.rate_limited <= 1  # one call at most, then the headers tell us


async def test_retry_after_is_honoured_and_a_429_pauses_the_whole_model(tmp_path: Path) -> None:
    # Seeded far above the real limit and sending 20 at once: 10 pass, 10 get a 429 that
    # says when to retry. Nobody may call again before that.
    bench = make_bench(tmp_path, sim_config(rpm=10, rate_limits=True), seeded=(6_000, 10**8))
    run_id = bench.add_run([chat_body(i) for i in range(20)])
    start = bench.clock()
    report = await bench.runner().run(run_id)
    assert report.succeeded == 20
    assert bench.billed() == {f"r{i}": 1 for i in range(20)}
    first_wave = sorted(e.at for e in bench.state.ledger)[:10]
    later = sorted(e.at for e in bench.state.ledger)[10:]
    assert all(t - start < 1.0 for t in first_wave)
    assert min(later) >= start + 6.0  # retry-after for 1 of 10 RPM: 6 s
    # The pause held every request back: the 429s were only the first wave's (fewer when
    # early responses' headers already said the bucket was empty).
    assert 1 <= report.rate_limited == bench.http_status_counts()[429] <= 10


async def test_transient_faults_are_retried_and_billed_once(tmp_path: Path) -> None:
    bench = make_bench(tmp_path, sim_config(error_5xx_rate=0.25, drop_rate=0.15), max_attempts=12)
    run_id = bench.add_run([chat_body(i) for i in range(60)])
    report = await bench.runner(breaker_threshold=1000).run(run_id)
    assert report.succeeded == 60
    assert report.retries > 10
    assert bench.billed() == {f"r{i}": 1 for i in range(60)}
    faults = bench.state.stats["fault|error"] + bench.state.stats["fault|drop"]
    assert report.retries == faults
    recorded = bench.store.list_events(run_id, kinds=["realtime.retry"])
    assert len(recorded) == faults  # every failed call is in the run's history
    assert {e.data["kind"] for e in recorded} == {"server", "connection"}


async def test_attempts_are_bounded(tmp_path: Path) -> None:
    bench = make_bench(tmp_path, sim_config(error_5xx_rate=1.0), max_attempts=3)
    run_id = bench.add_run([chat_body(0)])
    report = await bench.runner(breaker_threshold=1000).run(run_id)
    assert report.failed == 1
    row = bench.store.get_request(run_id, "r0")
    assert row.status is RequestStatus.FAILED
    assert row.status_code in (500, 502, 503)
    assert row.error_message and "gave up after 3 attempts" in row.error_message
    assert bench.state.stats["fault|error"] == 3


async def test_quota_exhaustion_stops_dispatch_and_keeps_work_routed(tmp_path: Path) -> None:
    bench = make_bench(tmp_path, sim_config(quota_exhausted=True), concurrency=4)
    run_id = bench.add_run([chat_body(i) for i in range(50)])
    runner = bench.runner()
    with pytest.raises(QuotaExhausted) as info:
        await runner.run(run_id)
    assert "insufficient_quota" in str(info.value) and "batchyard resume" in str(info.value)
    assert runner.quota_exhausted
    assert bench.statuses(run_id) == {"routed": 50}  # nothing failed, nothing left in flight
    assert bench.http_status_counts()[429] <= 4  # stopped at once, not 50 refusals
    assert not bench.billed()
    with pytest.raises(QuotaExhausted):  # this runner will not try again
        await runner.run(run_id)
    assert bench.http_status_counts()[429] <= 4


async def test_breaker_opens_defers_work_then_closes(tmp_path: Path) -> None:
    bench = make_bench(tmp_path, sim_config(error_5xx_rate=1.0), max_attempts=50, concurrency=1)
    run_id = bench.add_run([chat_body(i) for i in range(5)])
    runner = bench.runner(breaker_threshold=3, breaker_timeout=30.0, max_claimed=1)
    stop_when_open = runner.breaker(MODEL)

    # Let it fail until the breaker opens and the work is set aside, then heal the provider.
    def heal(old: BreakerState, new: BreakerState) -> None:
        if new is BreakerState.OPEN:
            bench.state.faults.error_5xx_rate = 0.0
            opened.append(bench.clock())

    opened: list[float] = []
    stop_when_open.on_change = heal
    report = await runner.run(run_id)
    assert opened  # it opened
    assert report.deferred >= 1
    assert report.succeeded == 5
    assert runner.breakers[MODEL].state is BreakerState.CLOSED
    first_success = min(e.at for e in bench.state.ledger)
    assert first_success >= opened[0] + 30.0  # nothing was sent while it was open
    assert bench.billed() == {f"r{i}": 1 for i in range(5)}


async def test_flex_is_billed_at_flex_prices(tmp_path: Path) -> None:
    bench = make_bench(tmp_path, sim_config())
    run_id = bench.add_run(
        [chat_body(i, FLEX_MODEL, max_completion_tokens=50) for i in range(5)], Route.FLEX
    )
    report = await bench.runner().run(run_id)
    assert report.succeeded == 5
    assert {e.path for e in bench.state.ledger} == {"flex"}
    assert report.cost == pytest.approx(sum(e.cost for e in bench.state.ledger))


@pytest.mark.parametrize("fallback", [FlexFallback.STANDARD, FlexFallback.BATCH])
async def test_flex_unavailable_falls_back_after_a_bounded_wait(
    tmp_path: Path, fallback: FlexFallback
) -> None:
    bench = make_bench(tmp_path, sim_config(flex_unavailable_rate=1.0))
    run_id = bench.add_run(
        [chat_body(i, FLEX_MODEL, max_completion_tokens=50) for i in range(6)], Route.FLEX
    )
    runner = bench.runner(flex_max_wait=20.0, max_claimed=1)
    start = bench.clock()
    report = await runner.run(run_id, flex_fallback=fallback)
    assert bench.clock() - start <= 20.0 + 1.0  # bounded; later requests fall back at once
    assert bench.state.stats["flex_unavailable"] >= 2
    assert FLEX_MODEL in runner.flex_unavailable()
    if fallback is FlexFallback.STANDARD:
        assert report.succeeded == 6 and report.to_standard == 6
        assert {e.path for e in bench.state.ledger} == {"standard"}
        assert bench.billed() == {f"r{i}": 1 for i in range(6)}
    else:
        assert report.to_batch == 6 and not bench.state.ledger
        rows = list(bench.store.iter_requests(run_id))
        assert {(r.route, r.status) for r in rows} == {(Route.BATCH, RequestStatus.ROUTED)}
        assert all(r.route_reason and "flex unavailable" in r.route_reason for r in rows)


async def test_stop_releases_unsent_work_and_resume_finishes(tmp_path: Path) -> None:
    bench = make_bench(tmp_path, sim_config(rpm=60, rate_limits=True), seeded=(60, 10**8))
    run_id = bench.add_run([chat_body(i) for i in range(100)])
    runner = bench.runner(grace_seconds=5.0)
    import asyncio

    stop = asyncio.Event()
    runner.on_progress = lambda kind, data: (
        stop.set() if data["kind"] == "succeeded" and data["succeeded"] >= 65 else None
    )
    report = await runner.run(run_id, stop=stop)
    assert report.stopped is StopReason.STOPPED
    statuses = bench.statuses(run_id)
    assert "in_flight" not in statuses
    assert statuses["succeeded"] >= 65 and statuses["routed"] == 100 - statuses["succeeded"]
    again = await bench.runner(owner="resumed").run(run_id)
    assert again.succeeded == 100 - statuses["succeeded"]
    assert bench.billed() == {f"r{i}": 1 for i in range(100)}


async def test_hard_cancel_leaves_nothing_claimed_and_a_new_run_carries_on(
    tmp_path: Path,
) -> None:
    # A second Ctrl-C cancels the task outright: no grace, but no request may stay
    # "in flight" (it would be skipped by the next `watch` until its claim goes stale).
    import asyncio

    bench = make_bench(tmp_path, sim_config(rpm=60, rate_limits=True), seeded=(60, 10**8))
    run_id = bench.add_run([chat_body(i) for i in range(80)])
    runner = bench.runner()
    task = asyncio.ensure_future(runner.run(run_id))
    for _ in range(6000):  # at most a minute
        if bench.statuses(run_id)["succeeded"] >= 20:
            break
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    statuses = bench.statuses(run_id)
    assert "in_flight" not in statuses
    assert statuses["succeeded"] + statuses["routed"] + statuses["retryable"] == 80
    again = await bench.runner(owner="next-watch").run(run_id)
    assert again.succeeded == 80 - statuses["succeeded"]
    billed = bench.billed()
    assert set(billed) == {f"r{i}" for i in range(80)}
    # Only calls cut off on the wire may have been billed twice.
    assert sum(n - 1 for n in billed.values()) <= statuses["retryable"]
