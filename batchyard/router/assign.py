"""Giving each line its route as it streams past, from a decision made on sums.

Owns `Assigner`: per model, a running place in dispatch order (priority first, then file
order) for each priority class, so a line's place is known the moment it is seen: the
classes of higher priority come first, then the lines of its own class seen so far. From
that place it tells a real-time line whether it can make the deadline, and a batch line
whether the enqueued-token queue still has room for it. O(models x priorities) state,
whatever the number of lines. Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from batchyard.models import Route
from batchyard.router.decision import Assignment, Decision, ModelDecision
from batchyard.router.features import ModelCapacity, RequestFeatures
from batchyard.router.pace import finish_offset
from batchyard.router.parse import format_duration, format_time

__all__ = ["Assigner", "Start"]

# Per model and priority class, (lines, rate-limit tokens, input tokens) of the lines before
# the first one an `Assigner` sees: for a part of a file assigned on its own.
Start = Mapping[str, Mapping[int, tuple[int, int, int]]]

_FAST = "the body asks for service_tier fast: sent in fast mode now, never batched"


@dataclass
class _Place:
    """Counts of one priority class seen so far (or of everything ahead of a class)."""

    count: int = 0
    rate_tokens: int = 0
    input_tokens: int = 0


class _ModelLane:
    def __init__(self, md: ModelDecision, capacity: ModelCapacity, now: float) -> None:
        self.md = md
        self.capacity = capacity
        self.now = now
        self.seen: dict[int, _Place] = {}
        self.ahead: dict[int, _Place] = {}
        before = _Place(md.in_flight.count, md.in_flight.rate_tokens, 0)
        for priority, w in sorted(md.classes.items(), key=lambda item: -item[0]):
            self.ahead[priority] = _Place(before.count, before.rate_tokens, before.input_tokens)
            before = _Place(
                before.count + w.count,
                before.rate_tokens + w.rate_tokens,
                before.input_tokens + w.input_tokens,
            )
        self._everything = before  # ahead of a priority the decision did not count

    def place(self, r: RequestFeatures) -> _Place:
        """This line's place in dispatch order, itself included."""
        ahead = self.ahead.get(r.priority, self._everything)
        seen = self.seen.setdefault(r.priority, _Place())
        seen.count += 1
        seen.rate_tokens += r.rate_limit_tokens
        seen.input_tokens += r.input_tokens
        return _Place(
            ahead.count + seen.count,
            ahead.rate_tokens + seen.rate_tokens,
            ahead.input_tokens + seen.input_tokens,
        )


class Assigner:
    """Assigns lines of a decided run, one at a time, in file order.

    `assign(r)` returns the line's `Assignment`; `late` lists the lines it found unable to
    make the deadline (their ids are kept only when `keep_late` is true, for `--strict`
    and the plan's listing; the count is always kept).
    """

    def __init__(
        self,
        decision: Decision,
        capacities: dict[str, ModelCapacity],
        *,
        keep_late: int = 10_000,
        start: Start | None = None,
    ) -> None:
        self.decision = decision
        self._lanes = {
            md.model: _ModelLane(md, capacities[md.model], decision.now) for md in decision.models
        }
        for model, classes in (start or {}).items():
            lane = self._lanes.get(model)
            if lane is None:
                continue
            for priority, (count, rate, tokens) in classes.items():
                lane.seen[priority] = _Place(count, rate, tokens)
        self.keep_late = keep_late
        self.late: list[str] = []
        self.late_count = 0

    def assign(self, r: RequestFeatures) -> Assignment:
        lane = self._lanes[r.model]
        md = lane.md
        if r.shard is not None:
            return self._in_shard(md, r)
        if r.fast:
            return Assignment(r.custom_id, Route.FAST, _FAST)
        place = lane.place(r)
        if md.route is Route.BATCH:
            return self._batch(md, r, place)
        return self._realtime(lane, r, place)

    def _in_shard(self, md: ModelDecision, r: RequestFeatures) -> Assignment:
        shard = r.shard or ""
        if shard in md.release_shards:
            reason = (
                f"batch shard {shard} is still cancelling at the last moment real time can "
                f"start: sent in real time (paid twice if the batch finished it)"
            )
            return Assignment(r.custom_id, md.escalation_route, reason)
        esc = md.escalation_at
        until = (
            f"until the escalation point {format_time(esc)}"
            if esc is not None
            else "(no escalation)"
        )
        if shard in md.cancel_shards:
            until = "cancelled at the escalation point; finished lines are kept"
        return Assignment(r.custom_id, Route.BATCH, f"stays in batch shard {shard} {until}")

    def _batch(self, md: ModelDecision, r: RequestFeatures, place: _Place) -> Assignment:
        limit = md.queue_limit
        if limit is not None and r.input_tokens > limit:
            why = (
                f"{r.input_tokens:,} input tokens exceed the enqueued-token limit "
                f"({limit:,}) on their own: real time"
            )
            return Assignment(r.custom_id, md.escalation_route, why)
        room = md.queue_room
        if room is None or place.input_tokens <= room:
            return Assignment(r.custom_id, Route.BATCH, md.reason)
        why = f"{md.reason}; waits for enqueued-token headroom"
        return Assignment(r.custom_id, Route.BATCH, why, deferred=True)

    def _realtime(self, lane: _ModelLane, r: RequestFeatures, place: _Place) -> Assignment:
        md = lane.md
        slack = md.slack_s
        if slack is not None:
            offset = finish_offset(place.count, place.rate_tokens, lane.capacity, md.route)
            if offset > slack:
                self.late_count += 1
                if len(self.late) < self.keep_late:
                    self.late.append(r.custom_id)
                late_by = format_duration(offset - slack)
                reason = f"{md.reason}; cannot make the deadline: ~{late_by} late"
                return Assignment(r.custom_id, md.route, reason)
        return Assignment(r.custom_id, md.route, md.reason)
