"""Deciding on streamed lines (`decide_lines`) gives what deciding on a held list gives.

`decide_lines` sees a `Tally` of the lines and a way to stream them again; it keeps no
assignment. Every decision below is compared with `decide` on the same requests: routes and
reasons line by line, per-route sums, late lines, the estimate, and the refusals.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator

import pytest

from batchyard.errors import PlanRefused
from batchyard.models import Endpoint, Route
from batchyard.router import (
    KEEP_LATE,
    Decision,
    Estimate,
    ModelCapacity,
    PathCosts,
    RequestFeatures,
    RunPolicy,
    Tally,
    decide,
    decide_lines,
)

NOW = 1_750_000_000.0
HOUR = 3600.0


def req(
    cid: str, model: str, inp: int, out: int, priority: int = 0, **kw: object
) -> RequestFeatures:
    flex = (inp * 0.125 + out * 1.0) / 1e6 if model == "gpt-5-mini" else None
    cost = PathCosts((inp * 0.25 + out * 2.0) / 1e6, (inp * 0.125 + out * 1.0) / 1e6, flex)
    return RequestFeatures(cid, Endpoint.CHAT, model, inp, out, cost, priority, **kw)  # type: ignore[arg-type]


def mixed(n: int) -> list[RequestFeatures]:
    """Two models, three priorities, some fast-mode lines, some with a worst case."""
    lines = []
    for i in range(n):
        model = ("gpt-4o-mini", "gpt-5-mini")[i % 2]
        kw: dict[str, object] = {}
        if i % 7 == 0:
            worst = 4 * (100 + i % 300)
            kw = {"output_worst": worst, "cost_worst": PathCosts(0.01, 0.005, 0.005)}
        if i % 11 == 0:
            kw["fast"] = True
        lines.append(req(f"r{i}", model, 1000 + 13 * i, 100 + i % 300, i % 3, **kw))
    return lines


def caps(**kw: object) -> dict[str, ModelCapacity]:
    return {
        "gpt-4o-mini": ModelCapacity(model="gpt-4o-mini", **kw),  # type: ignore[arg-type]
        "gpt-5-mini": ModelCapacity(model="gpt-5-mini", flex_allowed=True, **kw),  # type: ignore[arg-type]
    }


def both(
    requests: list[RequestFeatures], policy: RunPolicy, capacities: dict[str, ModelCapacity]
) -> tuple[tuple[Decision, Estimate], tuple[Decision, Estimate], list[int]]:
    """`decide` and `decide_lines` on the same requests; how often the lines were streamed."""
    streams: list[int] = []

    def lines() -> Iterator[RequestFeatures]:
        streams.append(1)
        return iter(requests)

    held = decide(requests, policy, capacities, NOW)
    source: Callable[[], Iterator[RequestFeatures]] = lines
    streamed = decide_lines(Tally().extend(requests), source, policy, capacities, NOW)
    # kept as codes in a memo, the same assignments replay without assigning again
    ids = lambda: (r.custom_id for r in requests)  # noqa: E731
    memo = decide_lines(
        Tally().extend(requests), iter_of(requests), policy, capacities, NOW, memo=(Codes, ids)
    )
    same(held, memo)
    return held, streamed, streams


class Codes:
    """A memo in a list (the orchestrator keeps its codes in a file)."""

    def __init__(self) -> None:
        self.kept: list[int] = []

    def add(self, code: int) -> None:
        self.kept.append(code)

    def codes(self) -> Iterator[int]:
        return iter(self.kept)


def iter_of(requests: list[RequestFeatures]) -> Callable[[], Iterator[RequestFeatures]]:
    return lambda: iter(requests)


def same(held: tuple[Decision, Estimate], streamed: tuple[Decision, Estimate]) -> None:
    (d1, e1), (d2, e2) = held, streamed
    assert e1 == e2
    assert d1.reason == d2.reason and d1.late == d2.late
    assert d1.cannot_meet == d2.cannot_meet
    by_id = {a.custom_id: a for a in d1.assignments}
    replayed = list(d2.assignments)
    assert len(replayed) == len(by_id)
    assert all(by_id[a.custom_id] == a for a in replayed)
    assert list(d2.assignments) == replayed  # a second replay gives the same again
    for m1, m2 in zip(d1.models, d2.models, strict=True):
        assert dataclasses.replace(m1, assignments=()) == m2


@pytest.mark.parametrize(
    ("deadline_in", "tpm"),
    [(None, 2_000_000), (24 * HOUR, 2_000_000), (2 * HOUR, 2_000_000), (600.0, 200_000)],
    ids=["no-deadline", "far", "near", "too-near-some-late"],
)
def test_streamed_lines_are_decided_as_held_ones(deadline_in: float | None, tpm: int) -> None:
    requests = mixed(3_000)
    policy = RunPolicy(deadline=None if deadline_in is None else NOW + deadline_in)
    held, streamed, streams = both(requests, policy, caps(tpm=tpm, rpm=5_000))
    same(held, streamed)
    assert len(streams) == 3  # assigned once while deciding, then once per replay above
    if deadline_in == 600.0:
        assert streamed[0].late > 0


def test_a_full_queue_defers_the_same_lines() -> None:
    requests = mixed(2_000)
    policy = RunPolicy(deadline=None)
    held, streamed, _ = both(requests, policy, caps(enqueued_token_limit=600_000))
    same(held, streamed)
    assert any(a.deferred for a in streamed[0].assignments)
    assert any(m.deferred.count for m in streamed[0].models)


@pytest.mark.parametrize("share", [1.01, 0.99, 0.8, 0.1])
def test_the_budget_forces_batch_only_or_refuses_alike(share: float) -> None:
    requests = mixed(500)
    capacities = caps(tpm=200_000, rpm=5_000)
    _, free = decide(requests, RunPolicy(deadline=None), capacities, NOW)
    policy = RunPolicy(deadline=None, budget_usd=free.worst * share)
    try:
        held = decide(requests, policy, capacities, NOW)
    except PlanRefused as refused:
        with pytest.raises(PlanRefused) as again:
            decide_lines(Tally().extend(requests), lambda: iter(requests), policy, capacities, NOW)
        assert str(again.value) == str(refused) and share < 1
        return
    _, streamed, _ = both(requests, policy, capacities)
    same(held, streamed)


def test_strict_refuses_with_the_same_message() -> None:
    requests = mixed(3_000)
    policy = RunPolicy(deadline=NOW + 600.0, strict=True)
    capacities = caps(tpm=200_000, rpm=5_000)
    with pytest.raises(PlanRefused) as a:
        decide(requests, policy, capacities, NOW)
    with pytest.raises(PlanRefused) as b:
        decide_lines(Tally().extend(requests), lambda: iter(requests), policy, capacities, NOW)
    assert str(a.value) == str(b.value) and "--strict" in str(b.value)


def test_late_lines_are_all_counted_and_the_first_named() -> None:
    requests = [req(f"r{i}", "gpt-4o-mini", 2_000, 500) for i in range(KEEP_LATE + 2_000)]
    policy = RunPolicy(deadline=NOW + 120.0)
    capacities = {"gpt-4o-mini": ModelCapacity(model="gpt-4o-mini", tpm=100_000, rpm=1_000)}
    held, _ = decide(requests, policy, capacities, NOW)
    streamed, _ = decide_lines(
        Tally().extend(requests), lambda: iter(requests), policy, capacities, NOW
    )
    assert streamed.late == held.late > KEEP_LATE
    assert streamed.cannot_meet == held.cannot_meet[:KEEP_LATE]
    assert {a.route for a in streamed.assignments} == {Route.STANDARD}


def test_a_memo_that_cannot_name_every_assignment_replays_by_assigning_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from batchyard.router import lines as lines_module

    monkeypatch.setattr(lines_module, "MAX_CODES", 1)
    requests = mixed(600)
    policy = RunPolicy(deadline=NOW + 600.0)
    capacities = caps(tpm=200_000, rpm=5_000)
    held = decide(requests, policy, capacities, NOW)
    ids = lambda: (r.custom_id for r in requests)  # noqa: E731
    memo = decide_lines(
        Tally().extend(requests), iter_of(requests), policy, capacities, NOW, memo=(Codes, ids)
    )
    assert len({(a.route, a.reason) for a in held[0].assignments}) > 1
    same(held, memo)
