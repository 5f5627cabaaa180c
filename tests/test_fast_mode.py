"""Fast mode: a line asking for it is sent and priced that way and never batched; `--route
fast` sends a whole run that way; fast shares the standard rate-limit pool."""

from __future__ import annotations

import pytest

from batchyard.errors import ConfigError
from batchyard.models import Endpoint, Route, RouteOverride, Tier
from batchyard.orchestrator.realtime.call import prepared_body, usage_of
from batchyard.router import ModelCapacity, PathCosts, RequestFeatures, RunPolicy, route

NOW = 1_796_083_200.0


def _req(i: int, *, fast: bool = False) -> RequestFeatures:
    return RequestFeatures(
        custom_id=f"r{i}",
        endpoint=Endpoint.CHAT,
        model="gpt-6-sol",
        input_tokens=1_000,
        output_tokens=100,
        cost=PathCosts(standard=0.003, batch=0.0015, flex=0.0015, fast=0.006),
        fast=fast,
    )


CAP = {"gpt-6-sol": ModelCapacity(model="gpt-6-sol", fast_allowed=True)}


def test_a_line_asking_for_fast_is_never_batched() -> None:
    work = [_req(i, fast=i < 3) for i in range(200)]
    decision = route(work, RunPolicy(small_run_requests=0, small_run_usd=0), CAP, NOW)
    routes = {a.custom_id: a.route for a in decision.assignments}
    assert [routes[f"r{i}"] for i in range(3)] == [Route.FAST] * 3
    assert {routes[f"r{i}"] for i in range(3, 200)} == {Route.BATCH}  # no deadline: batch
    (md,) = decision.models
    assert "fast mode" in md.reason
    for batch_only in (RunPolicy(route=RouteOverride.BATCH),):
        forced = route(work, batch_only, CAP, NOW)
        assert {a.route for a in forced.assignments if a.custom_id in ("r0", "r1", "r2")} == {
            Route.FAST
        }


def test_route_fast_sends_the_run_in_fast_mode_and_refuses_models_without_it() -> None:
    decision = route([_req(i) for i in range(5)], RunPolicy(route=RouteOverride.FAST), CAP, NOW)
    assert {a.route for a in decision.assignments} == {Route.FAST}
    without = {"gpt-6-sol": ModelCapacity(model="gpt-6-sol")}
    with pytest.raises(ConfigError, match="does not offer fast mode"):
        route([_req(0)], RunPolicy(route=RouteOverride.FAST), without, NOW)


def test_fast_costs_are_the_plan_s_cost_on_the_fast_route() -> None:
    assert _req(0).cost.on(Route.FAST) == 0.006
    assert PathCosts(standard=1.0, batch=0.5).on(Route.FAST) == 1.0  # not offered: standard


@pytest.mark.parametrize(
    ("body", "tier", "sent"),
    [
        ({"model": "m"}, Tier.FAST, "fast"),
        ({"model": "m", "service_tier": "priority"}, Tier.FAST, "priority"),
        ({"model": "m", "service_tier": "fast"}, Tier.DEFAULT, None),
        ({"model": "m", "service_tier": "flex"}, Tier.FAST, "fast"),
    ],
)
def test_the_real_time_executor_sends_service_tier_for_its_tier(
    body: dict[str, str], tier: Tier, sent: str | None
) -> None:
    assert prepared_body(body, tier).get("service_tier") == sent


@pytest.mark.parametrize(
    ("served", "tier"), [("priority", Tier.FAST), ("fast", Tier.FAST), ("default", Tier.DEFAULT)]
)
def test_the_tier_that_served_a_fast_ask_is_what_is_billed(served: str, tier: Tier) -> None:
    body = {"service_tier": served, "usage": {"prompt_tokens": 10, "completion_tokens": 2}}
    usage = usage_of(Endpoint.CHAT, body, Tier.FAST)
    assert usage.tier is tier and usage.tier.route in (Route.FAST, Route.STANDARD)
    assert (usage.input_tokens, usage.output_tokens) == (10, 2)
