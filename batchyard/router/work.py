"""Work as the router decides on it: per-model aggregates, never one record per request.

Owns `Work` (how many requests, their tokens and their costs on each path, expected and
worst case), `ModelWork` (one model's open work by priority class, plus what real time
already has on the wire) and `Tally`, which builds them from requests as they stream past.
The router's rules look only at these sums, so planning a file holds O(models x priorities)
state whatever its length; `batchyard.router.assign` then gives each line its route as it
streams past a second time. Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from batchyard.router.features import ZERO_COST, PathCosts, RequestFeatures

K = TypeVar("K")

__all__ = ["NO_WORK", "ModelWork", "ShardState", "Tally", "Work", "WorkSum"]


@dataclass(frozen=True, slots=True)
class Work:
    """The sum of some requests: counts, tokens, and costs on each path.

    `rate_tokens` is what the requests charge against TPM (input plus maximum output);
    `cost` is at the expected output, `worst` at the worst-case output.
    """

    count: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    output_worst: int = 0
    rate_tokens: int = 0
    cost: PathCosts = ZERO_COST
    worst: PathCosts = ZERO_COST

    @classmethod
    def of(cls, r: RequestFeatures) -> Work:
        worst_out = r.output_tokens if r.output_worst is None else r.output_worst
        return cls(
            count=1,
            input_tokens=r.input_tokens,
            output_tokens=r.output_tokens,
            output_worst=worst_out,
            rate_tokens=r.rate_limit_tokens,
            cost=r.cost,
            worst=r.cost if r.cost_worst is None else r.cost_worst,
        )

    def __add__(self, other: Work) -> Work:
        return Work(
            count=self.count + other.count,
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            output_worst=self.output_worst + other.output_worst,
            rate_tokens=self.rate_tokens + other.rate_tokens,
            cost=self.cost + other.cost,
            worst=self.worst + other.worst,
        )

    def share(self, fraction: float) -> Work:
        """A `fraction` of this work, spread evenly (for estimates of partly done work)."""
        f = min(max(fraction, 0.0), 1.0)

        def part(c: PathCosts) -> PathCosts:
            flex = None if c.flex is None else c.flex * f
            fast = None if c.fast is None else c.fast * f
            return PathCosts(c.standard * f, c.batch * f, flex, fast)

        return Work(
            count=round(self.count * f),
            input_tokens=round(self.input_tokens * f),
            output_tokens=round(self.output_tokens * f),
            output_worst=round(self.output_worst * f),
            rate_tokens=round(self.rate_tokens * f),
            cost=part(self.cost),
            worst=part(self.worst),
        )

    def __bool__(self) -> bool:
        return self.count > 0


NO_WORK = Work()


@dataclass(frozen=True)
class ModelWork:
    """One model's work: open requests by priority, and real-time calls already on the wire.

    `classes` maps a priority to the sum of the model's open requests with that priority
    that are not inside a live batch shard (the work the router may route). `in_flight`
    is real-time work already sent or claimed, and `fast` the requests whose bodies ask for
    fast mode (sent that way, never batched): neither moves, but real time has to finish
    them (fast mode shares the standard rate limits), so they count when the router works
    out how long real time needs.
    """

    model: str
    classes: Mapping[int, Work] = field(default_factory=dict)
    in_flight: Work = NO_WORK
    fast: Work = NO_WORK

    @property
    def fixed(self) -> Work:
        """Real-time work the router cannot move: calls in flight and fast-mode requests."""
        return self.in_flight + self.fast

    @property
    def total(self) -> Work:
        return sum(self.classes.values(), NO_WORK)

    def ordered(self) -> list[tuple[int, Work]]:
        """Priority classes in dispatch order: highest priority first."""
        return sorted(self.classes.items(), key=lambda item: -item[0])


@dataclass(frozen=True)
class ShardState:
    """A batch shard that is still live remotely (not yet terminal and applied).

    `work` is the sum of its lines not yet known finished; `completed` how many of them the
    provider reports finished (`request_counts.completed`: their answers arrive with the
    output file). `started_at` is when the provider started it (`in_progress_at`), and
    `cancelling_at` when batchyard asked to cancel it (None: not asked).
    """

    shard_id: str
    model: str
    work: Work
    submitted_at: float
    completed: int = 0
    started_at: float | None = None
    cancelling_at: float | None = None

    @property
    def remaining(self) -> Work:
        """The part of its work still unanswered, by the provider's own count."""
        if self.work.count <= 0:
            return NO_WORK
        done = min(max(self.completed, 0), self.work.count)
        return self.work.share(1.0 - done / self.work.count)

    @property
    def cancelling(self) -> bool:
        return self.cancelling_at is not None


class WorkSum:
    """A running `Work` sum that adds in place: the same figures as folding `Work.__add__`
    over the same requests in the same order, without a new object per request."""

    __slots__ = ("cost", "count", "input", "output", "rate", "worst", "worst_out")

    def __init__(self) -> None:
        self.count = 0
        self.input = 0
        self.output = 0
        self.worst_out = 0
        self.rate = 0
        # standard, batch, flex, fast (None once a request without that tier is added)
        self.cost: list[float | None] = [0.0, 0.0, 0.0, 0.0]
        self.worst: list[float | None] = [0.0, 0.0, 0.0, 0.0]

    @staticmethod
    def _add_costs(acc: list[float | None], c: PathCosts) -> None:
        acc[0] = (acc[0] or 0.0) + c.standard
        acc[1] = (acc[1] or 0.0) + c.batch
        flex, fast = acc[2], acc[3]
        acc[2] = None if flex is None or c.flex is None else flex + c.flex
        acc[3] = None if fast is None or c.fast is None else fast + c.fast

    def add(self, r: RequestFeatures) -> None:
        self.count += 1
        self.input += r.input_tokens
        self.output += r.output_tokens
        self.worst_out += r.output_tokens if r.output_worst is None else r.output_worst
        self.rate += r.rate_limit_tokens
        self._add_costs(self.cost, r.cost)
        self._add_costs(self.worst, r.cost if r.cost_worst is None else r.cost_worst)

    def merge(self, other: WorkSum) -> None:
        """Add another sum into this one (the sum of lines counted apart, as by workers that
        each read part of a file; floats may differ from one running sum in the last bit)."""
        self.count += other.count
        self.input += other.input
        self.output += other.output
        self.worst_out += other.worst_out
        self.rate += other.rate
        for acc, more in ((self.cost, other.cost), (self.worst, other.worst)):
            for i, value in enumerate(more):
                mine = acc[i]
                acc[i] = None if mine is None or value is None else mine + value

    def __bool__(self) -> bool:
        return self.count > 0

    def work(self) -> Work:
        if not self.count:
            return NO_WORK

        def costs(acc: list[float | None]) -> PathCosts:
            return PathCosts(acc[0] or 0.0, acc[1] or 0.0, acc[2], acc[3])

        return Work(
            count=self.count,
            input_tokens=self.input,
            output_tokens=self.output,
            output_worst=self.worst_out,
            rate_tokens=self.rate,
            cost=costs(self.cost),
            worst=costs(self.worst),
        )


class Tally:
    """Builds `ModelWork` per model from requests as they stream past (O(models) memory).

    Requests inside a live shard (`shard` set) are not routable work and are not counted
    here; fast-mode requests are counted apart; `in_flight=True` adds a request to the
    real-time work already on the wire. `routable` sums every request not inside a live
    shard, fast ones included (what decides a small run).
    """

    def __init__(self) -> None:
        self._classes: dict[str, dict[int, WorkSum]] = {}
        self._in_flight: dict[str, WorkSum] = {}
        self._fast: dict[str, WorkSum] = {}
        self.routable = WorkSum()

    def add(self, r: RequestFeatures, *, in_flight: bool = False) -> None:
        if in_flight:
            self._sum(self._in_flight, r.model).add(r)
            return
        if r.shard is not None:
            self._classes.setdefault(r.model, {})
            return
        self.routable.add(r)
        classes = self._classes.setdefault(r.model, {})
        if r.fast:
            self._sum(self._fast, r.model).add(r)
            return
        self._sum(classes, r.priority).add(r)

    @staticmethod
    def _sum(sums: dict[K, WorkSum], key: K) -> WorkSum:
        found = sums.get(key)
        if found is None:
            found = sums[key] = WorkSum()
        return found

    def class_counts(self) -> dict[str, dict[int, tuple[int, int, int]]]:
        """Per model and priority class: (lines, rate-limit tokens, input tokens)."""
        return {
            model: {p: (w.count, w.rate, w.input) for p, w in classes.items()}
            for model, classes in self._classes.items()
        }

    def merge(self, other: Tally) -> None:
        """Add the sums of another tally (of later lines) into this one."""
        self.routable.merge(other.routable)
        for model, classes in other._classes.items():
            mine = self._classes.setdefault(model, {})
            for priority, work in classes.items():
                self._sum(mine, priority).merge(work)
        for own, theirs in ((self._in_flight, other._in_flight), (self._fast, other._fast)):
            for model, work in theirs.items():
                self._sum(own, model).merge(work)

    def extend(self, requests: Iterable[RequestFeatures]) -> Tally:
        for r in requests:
            self.add(r)
        return self

    def result(self) -> dict[str, ModelWork]:
        names = sorted(set(self._classes) | set(self._in_flight))
        return {
            name: ModelWork(
                model=name,
                classes={p: w.work() for p, w in self._classes.get(name, {}).items()},
                in_flight=self._work(self._in_flight, name),
                fast=self._work(self._fast, name),
            )
            for name in names
        }

    @staticmethod
    def _work(sums: dict[str, WorkSum], name: str) -> Work:
        found = sums.get(name)
        return NO_WORK if found is None else found.work()
