"""The router's outputs: where each request goes, why, and when to change course.

Owns frozen result records only; the rules in `rules.py` build them and the orchestrator
reads them. Every record carries a short human-readable reason, meant to be stored as an
event and shown by `status` and `costs`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from batchyard.models import Route

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
    """The decision for one model's open work; assignments are in dispatch order.

    `escalation_at` (unix s) is the last safe moment to move unfinished batch work to
    `escalation_route`; None when nothing will escalate. `realtime_s` is how long real time
    needs for all of this model's open work on `escalation_route` at current limits.
    `cannot_meet` lists requests that miss the deadline even in real time from now.
    """

    model: str
    assignments: tuple[Assignment, ...]
    escalation_at: float | None
    escalation_route: Route
    realtime_s: float
    reason: str
    rule: str
    cannot_meet: tuple[str, ...] = ()

    def ids(self, route: Route) -> tuple[str, ...]:
        return tuple(a.custom_id for a in self.assignments if a.route is route)


@dataclass(frozen=True)
class Decision:
    """The decision for a whole run at `now`: one `ModelDecision` per model, sorted."""

    now: float
    models: tuple[ModelDecision, ...]
    reason: str
    _by_id: Mapping[str, Assignment] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_id = {a.custom_id: a for m in self.models for a in m.assignments}
        object.__setattr__(self, "_by_id", by_id)

    @property
    def assignments(self) -> tuple[Assignment, ...]:
        return tuple(a for m in self.models for a in m.assignments)

    @property
    def cannot_meet(self) -> tuple[str, ...]:
        return tuple(c for m in self.models for c in m.cannot_meet)

    @property
    def escalation_at(self) -> dict[str, float | None]:
        return {m.model: m.escalation_at for m in self.models}

    def assignment(self, custom_id: str) -> Assignment:
        return self._by_id[custom_id]

    def route_of(self, custom_id: str) -> Route:
        return self._by_id[custom_id].route

    def model(self, name: str) -> ModelDecision:
        for m in self.models:
            if m.model == name:
                return m
        raise KeyError(name)


@dataclass(frozen=True)
class Change:
    """A change of course mid-run, to be stored as an event.

    `action` is "cancel_shard" (subject: shard id) or "reroute" (subject: custom_id).
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
    `kept`: lines already finished in a batch, never sent again; `decision`: routes for
    the open work; `changes`: every change of course, each with its reason.
    """

    decision: Decision
    cancel_shards: tuple[str, ...]
    kept: tuple[str, ...]
    changes: tuple[Change, ...]
