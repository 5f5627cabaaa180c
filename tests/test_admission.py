"""Admission on a fake clock: budgets, header corrections, 429 pauses, oversized requests.

No real sleeping: `ManualClock.sleep` advances the clock and yields.
"""

from __future__ import annotations

import asyncio
import math

import pytest

from batchyard.models import Tier
from batchyard.orchestrator._calls.timing import ManualClock
from batchyard.orchestrator.realtime.admission import RateLimitAdmission, RateLimitTable
from batchyard.orchestrator.realtime.headers import parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1s", 1.0),
        ("6m0s", 360.0),
        ("114ms", 0.114),
        ("23m16.298s", 23 * 60 + 16.298),
        ("2m52.8s", 172.8),
        ("1h2m3s", 3723.0),
        ("547ms", 0.547),
        ("0s", 0.0),
        ("1.5", 1.5),
        ("250us", 0.00025),
        ("", None),
        (None, None),
        ("soon", None),
        ("5x", None),
        ("1s garbage", None),
    ],
)
def test_parse_go_durations(text: str | None, seconds: float | None) -> None:
    result = parse_duration(text)
    if seconds is None:
        assert result is None
    else:
        assert result == pytest.approx(seconds)


async def times_of(
    admission: RateLimitAdmission, clock: ManualClock, charges: list[int]
) -> list[float]:
    start = clock.now()
    times = []
    for tokens in charges:
        await admission.acquire(tokens)
        times.append(round(clock.now() - start, 6))
    return times


async def test_rpm_allows_a_burst_then_paces_at_the_rate() -> None:
    clock = ManualClock()
    admission = RateLimitAdmission(60, 1_000_000, clock, clock.sleep)  # 1 request/second
    times = await times_of(admission, clock, [1] * 63)
    assert times[:60] == [0.0] * 60  # a full minute's budget at once, as the provider allows
    assert times[60:] == pytest.approx([1.0, 2.0, 3.0])


async def test_tpm_charges_prompt_plus_max_output() -> None:
    clock = ManualClock()
    admission = RateLimitAdmission(10_000, 6_000, clock, clock.sleep)  # 100 tokens/second
    times = await times_of(admission, clock, [3_000, 3_000, 1_000, 500])
    assert times == pytest.approx([0.0, 0.0, 10.0, 15.0])


async def test_a_request_bigger_than_a_minute_waits_for_the_whole_budget() -> None:
    clock = ManualClock()
    admission = RateLimitAdmission(10_000, 6_000, clock, clock.sleep)
    times = await times_of(admission, clock, [3_000, 9_000, 600])
    # 9,000 > 6,000 per minute: it waits until the bucket is empty (30 s), takes it all,
    # and the next request waits until the 3,000-token debt above capacity has drained.
    assert times == pytest.approx([0.0, 30.0, 30.0 + 36.0])


async def test_headers_from_another_consumer_slow_us_down() -> None:
    clock = ManualClock()
    admission = RateLimitAdmission(600, 1_000_000, clock, clock.sleep)
    await admission.acquire(1)
    # The provider says only 5 requests are left: someone else is using the key.
    admission.observe(
        {
            "x-ratelimit-limit-requests": "600",
            "x-ratelimit-remaining-requests": "5",
            "x-ratelimit-reset-requests": "59.5s",
        }
    )
    times = await times_of(admission, clock, [1] * 7)
    assert times[:5] == [0.0] * 5
    assert times[5] == pytest.approx(0.1)  # then one per 0.1 s (600/min)


async def test_stale_headers_never_speed_us_up() -> None:
    clock = ManualClock()
    admission = RateLimitAdmission(60, 1_000_000, clock, clock.sleep)
    for _ in range(60):
        await admission.acquire(1)
    admission.observe({"x-ratelimit-limit-requests": "60", "x-ratelimit-remaining-requests": "59"})
    times = await times_of(admission, clock, [1])
    assert times == pytest.approx([1.0])


async def test_header_limit_replaces_the_configured_one() -> None:
    clock = ManualClock()
    admission = RateLimitAdmission(60, 1_000_000, clock, clock.sleep)
    admission.observe(
        {"x-ratelimit-limit-requests": "120", "x-ratelimit-remaining-requests": "120"}
    )
    times = await times_of(admission, clock, [1] * 121)
    assert times[119] == 0.0
    assert times[120] == pytest.approx(0.5)


async def test_reset_header_alone_corrects_the_level() -> None:
    clock = ManualClock()
    admission = RateLimitAdmission(60, 6_000, clock, clock.sleep)
    admission.observe({"x-ratelimit-reset-tokens": "30s"})  # half the minute used elsewhere
    times = await times_of(admission, clock, [3_000, 100])
    assert times == pytest.approx([0.0, 1.0])


async def test_a_429_pauses_every_waiter_of_the_model() -> None:
    clock = ManualClock()
    admission = RateLimitAdmission(6_000, 1_000_000, clock, clock.sleep)
    admission.penalize(7.5)
    started: list[float] = []

    async def one() -> None:
        await admission.acquire(1)
        started.append(clock.now())

    t0 = clock.now()
    await asyncio.gather(*(one() for _ in range(5)))
    assert min(started) - t0 >= 7.5
    assert admission.penalties == 1


async def test_settle_replaces_the_estimate_with_the_provider_count() -> None:
    clock = ManualClock()
    admission = RateLimitAdmission(10_000, 6_000, clock, clock.sleep)
    await admission.acquire(6_000)
    admission.settle(charged=6_000, actual=3_000)  # we over-estimated by half
    assert await times_of(admission, clock, [3_000]) == [0.0]


async def test_concurrency_cap() -> None:
    clock = ManualClock()
    admission = RateLimitAdmission(10_000, 1_000_000, clock, clock.sleep, concurrency=3)
    inside = 0
    most = 0

    async def one() -> None:
        nonlocal inside, most
        async with admission.slot(1):
            inside += 1
            most = max(most, inside)
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            inside -= 1

    await asyncio.gather(*(one() for _ in range(10)))
    assert most == 3


def test_table_keys_by_model_and_tier() -> None:
    clock = ManualClock()
    table = RateLimitTable({"m": (60, 1000)}, clock, clock.sleep)
    assert table["m", Tier.DEFAULT] is table["m", Tier.DEFAULT]
    assert table["m", Tier.DEFAULT] is not table["m", Tier.FLEX]
    assert table["m", Tier.FLEX].requests.capacity == 60


async def test_learns_what_another_client_uses_and_paces_on_what_is_left() -> None:
    # The key: 600 RPM (10/s). Another client uses 3/s all the time, so 7/s are ours. The
    # provider's bucket is replayed here and answers every call with its remaining count.
    clock = ManualClock()
    admission = RateLimitAdmission(600, 10**9, clock, clock.sleep)
    used, last, over = 0.0, clock.now(), 0
    times: list[float] = []
    for _ in range(2_000):
        sent = await admission.acquire(1)
        now = clock.now()
        used = max(0.0, used - (now - last) * 10.0 + (now - last) * 3.0)
        last = now
        if used + 1 > 600:
            over += 1  # the provider would have answered 429
        used = min(600.0, used + 1)
        headers = {
            "x-ratelimit-limit-requests": "600",
            "x-ratelimit-remaining-requests": str(max(0, math.floor(600 - used))),
        }
        admission.observe(headers, sent)
        times.append(now)
    last_minute = [t for t in times if t > times[-1] - 60.0]
    assert 0.95 * 420 <= len(last_minute) <= 1.01 * 420  # 7/s: what the other client leaves
    assert over <= 0.01 * len(times)
    assert admission.requests.foreign * 60 == pytest.approx(180, rel=0.15)


async def test_no_room_left_never_speeds_us_up() -> None:
    # "0 remaining" hides how far over the key is: it may not lower our level.
    clock = ManualClock()
    admission = RateLimitAdmission(60, 1_000_000, clock, clock.sleep)
    for _ in range(59):
        await admission.acquire(1)
    sent = await admission.acquire(1)
    admission.observe(
        {"x-ratelimit-limit-requests": "60", "x-ratelimit-remaining-requests": "0"}, sent
    )
    times = await times_of(admission, clock, [1])
    assert times == pytest.approx([1.0])
