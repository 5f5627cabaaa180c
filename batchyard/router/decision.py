"""The router's outputs: where each model's work goes, why, and when to change course.

Owns frozen result records only; the rules in `rules.py` build them, `assign.py` turns them
into one `Assignment` per line as the lines stream past, and the orchestrator reads them.
Every record carries a short human-readable reason, meant to be stored as an event and
shown by `status` and `costs`. Reasons name absolute times, never "in 7m": they are read
long after they were written.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from batchyard.models import Route
from batchyard.router.work import NO_WORK, Work

__all__ = ["Assignment", "Change", "Decision", "ModelDecision", "Redecision"]


@dataclass(frozen=True, slots=True)
class Assignment:
    """One request's route. `deferred`: batch, but waiting for enqueued-token headroom."""

    custom_id: str
    route: Route
    reason: str
    deferred: bool = False


@dataclass(frozen=True)
class ModelDecision:
    """The decision for one model's open work.

    `route` is where the model's routable open work goes. `escalation_at` (unix s) is the
    last safe moment to cancel the model's batches and move their unfinished work to
    `escalation_route`; None when nothing will escalate. `realtime_s` is how long real time
    needs for all of the model's open work at current limits. `late` counts the requests
    that miss the deadline even in real time from now.

    How single lines are assigned (`assign.Assigner`): in batch, a line whose input alone
    exceeds `queue_limit` goes to `escalation_route`, and lines past `queue_room` (input
    tokens, in dispatch order) wait for headroom; in real time, a line is late when its
    place in dispatch order (after `in_flight`, then higher priorities) finishes past
    `slack_s` seconds from now (`classes`: the open work by priority).

    `cancel_shards`: live shards to cancel now; `release_shards`: shards still cancelling
    whose lines go to real time now. `routed`/`deferred` sum the work per route (exact
    once the lines are assigned), for estimates.
    """

    model: str
    route: Route
    escalation_at: float | None
    escalation_route: Route
    realtime_s: float
    reason: str
    rule: str
    late: int = 0
    queue_room: int | None = None
    queue_limit: int | None = None
    slack_s: float | None = None
    in_flight: Work = NO_WORK
    classes: Mapping[int, Work] = field(default_factory=dict)
    cancel_shards: tuple[str, ...] = ()
    release_shards: tuple[str, ...] = ()
    release_at: float | None = None  # the next release point of a cancelling shard
    routed: Mapping[Route, Work] = field(default_factory=dict)
    deferred: Work = NO_WORK
    assignments: tuple[Assignment, ...] = ()
    cannot_meet: tuple[str, ...] = ()

    def ids(self, route: Route) -> tuple[str, ...]:
        return tuple(a.custom_id for a in self.assignments if a.route is route)


@dataclass(frozen=True)
class Decision:
    """The decision for a whole run at `now`: one `ModelDecision` per model, sorted.

    Built from aggregates, a decision names no request; `policy.route` (for callers that
    hold the requests) fills in each model's `assignments` and `cannot_meet`. A decision
    made on lines that stream past (`policy.decide_lines`) keeps none of them: `replay`
    gives its assignments again, in input order, each time it is called, and `cannot_meet`
    holds the first `KEEP_LATE` late lines (`late` counts them all).
    """

    now: float
    models: tuple[ModelDecision, ...]
    reason: str
    _by_id: Mapping[str, Assignment] = field(default_factory=dict, repr=False, compare=False)
    replay: Callable[[], Iterator[Assignment]] | None = field(
        default=None, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        by_id = {a.custom_id: a for m in self.models for a in m.assignments}
        object.__setattr__(self, "_by_id", by_id)

    @property
    def assignments(self) -> Iterable[Assignment]:
        """Every line's assignment: grouped by model, or in input order when replayed."""
        if self.replay is not None:
            return _Replayed(self.replay)
        return tuple(a for m in self.models for a in m.assignments)

    @property
    def cannot_meet(self) -> tuple[str, ...]:
        return tuple(c for m in self.models for c in m.cannot_meet)

    @property
    def late(self) -> int:
        return sum(m.late for m in self.models)

    @property
    def escalation_at(self) -> dict[str, float | None]:
        return {m.model: m.escalation_at for m in self.models}

    @property
    def wake_at(self) -> float | None:
        """The next moment the decision may change on its own: the earliest escalation or
        release point among the models (None: nothing scheduled)."""
        points = [t for m in self.models for t in (m.escalation_at, m.release_at) if t is not None]
        return min(points, default=None)

    @property
    def cancel_shards(self) -> tuple[str, ...]:
        return tuple(s for m in self.models for s in m.cancel_shards)

    @property
    def release_shards(self) -> tuple[str, ...]:
        return tuple(s for m in self.models for s in m.release_shards)

    def assignment(self, custom_id: str) -> Assignment:
        return self._by_id[custom_id]

    def route_of(self, custom_id: str) -> Route:
        return self._by_id[custom_id].route

    def model(self, name: str) -> ModelDecision:
        for m in self.models:
            if m.model == name:
                return m
        raise KeyError(name)


class _Replayed:
    """Assignments given again on each iteration, never held."""

    def __init__(self, replay: Callable[[], Iterator[Assignment]]) -> None:
        self._replay = replay

    def __iter__(self) -> Iterator[Assignment]:
        return self._replay()


@dataclass(frozen=True)
class Change:
    """A change of course mid-run, to be stored as an event.

    `action` is "cancel_shard" (subject: shard id), "release_shard" (subject: shard id: a
    cancel that has not finished in time; its lines go to real time anyway) or "reroute"
    (subject: custom_id).
    """

    action: str
    subject: str
    from_route: Route | None
    to_route: Route | None
    reason: str


@dataclass(frozen=True)
class Redecision:
    """What to do now for work already under way.

    `cancel_shards`: batch shards to cancel now (their finished lines are kept);
    `release_shards`: shards still cancelling whose lines go to real time now;
    `decision`: routes for the open work; `changes`: every change of course, each with
    its reason.
    """

    decision: Decision
    cancel_shards: tuple[str, ...]
    release_shards: tuple[str, ...]
    changes: tuple[Change, ...]
