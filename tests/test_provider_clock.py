"""The provider's clock mapped onto ours: offset only, offset and rate, noisy observations,
a provider whose clock changes, and the observations kept in the store across processes."""

from __future__ import annotations

import math
import random
from email.utils import formatdate
from pathlib import Path

import pytest

from batchyard.orchestrator._calls.timing import ManualClock
from batchyard.orchestrator._routing.provider_clock import (
    IDENTITY,
    KEEP,
    ProviderClock,
    date_header,
    fit,
    provider_key,
)
from batchyard.router import Turnaround
from batchyard.store import Store

OURS = 1_767_225_600.0  # our clock at the first observation


def _dated(provider_at: float) -> float:
    """What a response's Date header says of `provider_at` (whole seconds), as read."""
    stamp = date_header(formatdate(provider_at, usegmt=True))
    assert stamp is not None
    return stamp


def test_a_date_header_counts_as_the_middle_of_its_second() -> None:
    assert _dated(1000.9) == 1000.5
    assert date_header("not a date") is None and date_header(None) is None


def test_no_observation_is_the_identity() -> None:
    assert fit([]) == IDENTITY
    assert IDENTITY.to_local(123.0) == 123.0 and IDENTITY.duration(60.0) == 60.0


def test_offset_only_a_provider_two_days_ahead() -> None:
    ahead = 2 * 86_400 + 11 * 3600.0
    obs = [(_dated(OURS + ahead + 7.3 * i), OURS + 7.3 * i + 0.02) for i in range(20)]
    m = fit(obs)
    assert m.rate == 1.0
    # A batch the provider says it created "now" is now on our clock, within the header's
    # whole second.
    assert m.to_local(OURS + ahead + 100.0) == pytest.approx(OURS + 100.0, abs=0.6)
    assert m.duration(3600.0) == 3600.0


def test_a_small_offset_is_below_what_whole_seconds_can_tell() -> None:
    obs = [(_dated(OURS + 0.7 + 10 * i), OURS + 10 * i) for i in range(10)]
    m = fit(obs)
    assert m.rate == 1.0 and m.offset == 0.0


def test_offset_and_rate_a_simulator_on_a_600x_clock() -> None:
    sim0 = OURS + 86_400.0  # the simulator started a day "ahead" and runs 600x
    obs = [(_dated(sim0 + 600 * 0.4 * i), OURS + 0.4 * i + 0.003) for i in range(12)]
    m = fit(obs)
    assert m.rate == pytest.approx(600.0, rel=0.01)
    # A batch created at the last observation, finishing after one simulated hour: six of
    # our seconds later, not an hour (or two days).
    created = sim0 + 600 * 0.4 * 11
    assert m.to_local(created) == pytest.approx(OURS + 4.4, abs=0.05)
    assert m.to_local(created + 3600.0) - m.to_local(created) == pytest.approx(6.0, rel=0.01)
    median = m.turnaround(Turnaround.prior()).median_s  # the prior: 1 h on the provider
    assert median == pytest.approx(6.0, rel=0.01)
    assert m.to_provider(m.to_local(created)) == pytest.approx(created)


def test_observations_too_close_together_give_no_rate() -> None:
    # Three reads within 50 ms of ours: a rate from them would be mostly jitter.
    obs = [(_dated(OURS + 600 * 0.02 * i), OURS + 0.02 * i) for i in range(3)]
    assert fit(obs).rate == 1.0


def test_noisy_observations_with_outliers() -> None:
    rng = random.Random(7)
    sim0, rate = OURS - 3 * 3600.0, 3600.0
    obs = []
    for i in range(KEEP):
        t = OURS + 0.25 * i
        received = t + rng.uniform(0.0, 0.03)  # network latency
        provider = sim0 + rate * t - rate * OURS
        if i % 6 == 3:  # a proxy's cached response: a stale header, ten minutes old
            provider -= 600.0
        obs.append((_dated(provider), received))
    m = fit(obs)
    assert m.rate == pytest.approx(rate, rel=0.02)
    at = sim0 + rate * 5.0  # provider time five of our seconds after OURS
    assert m.to_local(at) == pytest.approx(OURS + 5.0, abs=0.1)


def test_a_real_provider_rate_near_one_is_one() -> None:
    rng = random.Random(3)
    obs = [(_dated(OURS - 40.0 + 20 * i), OURS + 20 * i + rng.uniform(0, 0.4)) for i in range(30)]
    m = fit(obs)
    assert m.rate == 1.0
    assert m.to_local(OURS - 40.0) == pytest.approx(OURS, abs=1.0)


def test_a_provider_whose_clock_changes_is_followed() -> None:
    old = [(_dated(OURS + 50_000 + 600 * i), OURS + i) for i in range(KEEP)]
    new = [(_dated(OURS + KEEP + 3 + 10 * i), OURS + KEEP + 3 + 10 * i) for i in range(KEEP)]
    assert fit(old).rate == pytest.approx(600.0, rel=0.01)
    m = fit(old + new[: KEEP // 2 + 2])
    assert m.rate == 1.0 and m.to_local(OURS + 5_000) == pytest.approx(OURS + 5_000, abs=1)


def test_turnaround_scaled_moves_every_quantile() -> None:
    t = Turnaround.from_median_p95(3600.0, 12 * 3600.0)
    s = t.scaled(1 / 600)
    assert s.median_s == pytest.approx(6.0)
    assert s.quantile(0.95) == pytest.approx(72.0, rel=1e-6)
    assert s.max_s == pytest.approx(144.0)
    assert s.cdf(6.0) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        t.scaled(0)


def test_observations_are_kept_per_base_url_and_read_by_another_process(
    tmp_path: Path,
) -> None:
    clock = ManualClock(OURS)
    db = tmp_path / "by.db"
    with Store.open(db, now=clock) as store:
        seen = ProviderClock(store, "http://127.0.0.1:8080/v1/", clock)
        for _ in range(3 * KEEP):
            seen.observe_headers({"date": formatdate(OURS + (clock() - OURS) * 600, usegmt=True)})
            clock.advance(0.5)
        seen.flush()
        assert store.clock_observations(provider_key("http://127.0.0.1:8080/v1")) != []
        assert len(store.clock_observations(seen.key, 10 * KEEP)) == KEEP
        assert store.clock_observations(provider_key(None)) == []
        mapped = seen.map()
    with Store.open(db, now=clock) as store:
        other = ProviderClock(store, "http://127.0.0.1:8080/v1", clock).map()
    assert other == mapped and math.isclose(other.rate, 600.0, rel_tol=0.01)


def test_a_new_batch_created_at_is_the_source_without_a_date_header() -> None:
    clock = ManualClock(OURS)
    seen = ProviderClock(None, None, clock)
    seen.observe_headers({}, OURS + 7200.0)
    assert seen.map().to_local(OURS + 7200.5) == pytest.approx(OURS)
