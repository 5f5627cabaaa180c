"""What a run looks like from outside: the typed reports.

Owns the plain frozen records the orchestrator returns to the CLI and to Python callers
(`SubmitResult`, `RunInfo`, `RunStatus`, `CostReport`, `FetchReport`, `VerifyReport`, with
`to_dict()` for `--json`). Reading the store into them is `status.py` (`RunStatus`),
`costs.py` (`CostReport`) and `fetch.py` (the `fetch` output). Plain data: no I/O.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, NamedTuple

from batchyard.models import RequestStatus, Route, RouteOverride, RunState
from batchyard.orchestrator._answers.variants import VariantCost
from batchyard.router import Plan
from batchyard.store.rows import RunRow

__all__ = [
    "BatchInfo",
    "CostReport",
    "CostRow",
    "FetchReport",
    "RouteStatus",
    "RunInfo",
    "RunStatus",
    "SubmitResult",
    "VariantCost",
    "VerifyReport",
]


_REALTIME_ROUTES = (Route.STANDARD, Route.FLEX, Route.FAST)
_TERMINAL_STATUSES = (
    RequestStatus.SUCCEEDED,
    RequestStatus.FAILED,
    RequestStatus.INVALID,
    RequestStatus.CANCELLED,
)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


@dataclass(frozen=True)
class SubmitResult:
    run_id: str
    plan: Plan
    accepted: int  # requests recorded
    rejected: int  # invalid lines skipped (--skip-invalid)
    rejects_path: Path | None
    shards_submitted: int  # batches created at submit
    waiting_requests: int  # requests held back (the enqueued-token or creations limit)

    def to_dict(self) -> dict[str, Any]:
        # Field by field: `asdict` deep-copies the plan, and a large file's plan replays its
        # routes from a file, which cannot be copied.
        data = {f.name: _jsonable(getattr(self, f.name)) for f in fields(self) if f.name != "plan"}
        data["plan"] = self.plan.to_dict(assignments=False)  # routes are in the store
        return data


class RouteStatus(NamedTuple):
    """A key of `RunStatus.counts`: the route requests were given (None: not routed yet)
    and the status they are in. `str()` is the `--json` key, e.g. "batch/submitted"."""

    route: Route | None
    status: RequestStatus

    def __str__(self) -> str:
        return f"{self.route.value if self.route else '-'}/{self.status.value}"


@dataclass(frozen=True)
class RunInfo:
    """One run as `runs` lists it: what was submitted, when, and what it cost."""

    id: str
    state: RunState
    source_path: str
    source_sha256: str
    endpoint: str
    models: tuple[str, ...]
    route_override: RouteOverride
    deadline_at: float | None
    budget: float | None
    created_at: float
    updated_at: float
    finished_at: float | None
    estimated_cost: float
    actual_cost: float
    request_count: int
    options: dict[str, Any] = field(default_factory=dict)  # the submit options it was run with
    pruned_at: float | None = None  # `prune` removed its requests, attempts and events

    @classmethod
    def from_row(cls, run: RunRow) -> RunInfo:
        """The report of a store row (the store's record is not public API)."""
        return cls(**{f.name: getattr(run, f.name) for f in fields(cls)})

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["state"] = self.state.value
        data["route_override"] = self.route_override.value
        data["models"] = list(self.models)
        return data


@dataclass(frozen=True)
class BatchInfo:
    shard: int
    provider_batch_id: str | None
    model: str
    status: str
    total: int
    completed: int  # succeeded in this batch
    failed: int  # a final error in this batch
    created_at: float | None
    expected_finish: float | None  # from the turnaround model
    # Once applied (counted from the store, not the provider's request_counts): lines
    # cancelled by the user, and lines sent again elsewhere (counted where answered).
    cancelled: int = 0
    rerouted: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RunStatus:
    run_id: str
    state: str
    source_path: str
    created_at: float
    deadline_at: float | None
    budget: float | None
    route_override: str
    requests: int
    # (route, status) -> count, e.g. (Route.BATCH, RequestStatus.SUBMITTED): 1200
    counts: dict[RouteStatus, int]
    batches: list[BatchInfo]
    estimated_cost: float
    actual_cost: float
    expected_finish: float | None
    deadline_ok: bool | None  # None: no deadline
    escalation_at: dict[str, float]  # model -> when waiting batch work moves to real time
    last_errors: dict[str, str]  # error kind -> latest message
    reasons: list[str]  # latest routing reasons and changes of course, newest last
    done: bool  # every request terminal and every batch applied
    stalled: str | None = None  # why this process cannot move the run on (quota, budget)
    # The plan's estimate: `estimated_cost` is the expected figure, this the worst case.
    estimated_worst: float | None = None
    # Lines answered in batch after being sent again in real time: the deadline's price.
    paid_twice: int = 0
    paid_twice_cost: float = 0.0
    # Seconds real time needs from now for the open work (the deadline verdict's basis).
    realtime_needed_s: float | None = None
    reused: int = 0  # lines answered from earlier runs or an identical line (not sent)
    reuse_saving: float = 0.0  # what those answers cost when they were bought
    requeues: int = 0  # sends after an answer failed a check
    requeue_cost: float = 0.0  # what the answers that failed a check cost (in actual_cost)
    budget_spent: float = 0.0  # actual cost so far, re-sends included
    budget_reserved: float = 0.0  # expected cost of the work not finished yet
    budget_warning: str | None = None  # the latest budget warning, once the share is reached
    # Real-time sends that failed and were tried again, per error kind (rate_limit, server,
    # timeout, connection, ...): each is an attempt row.
    retried: dict[str, int] = field(default_factory=dict)
    # Every send failing for a while (429s, 5xx, ...): the latest stall's message, until
    # answers flow again. Requests keep waiting and retrying meanwhile.
    send_stall: str | None = None
    # Requests held back right now: (reason, how many, when the first is due).
    waiting: list[tuple[str, int, float]] = field(default_factory=list)
    # Why batch work waits for the model's enqueued-token queue: who holds the room (other
    # runs, more urgent ones) and the commands that free it; None when nothing waits.
    queue_wait: str | None = None
    # Lines moved to a fallback model, per {from, to, reason, lines, succeeded, failed, cost}.
    fallbacks: list[dict[str, Any]] = field(default_factory=list)

    @property
    def fallback(self) -> int:
        """Lines moved to a fallback model (refused model, or breaker open too long)."""
        return sum(int(f["lines"]) for f in self.fallbacks)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["counts"] = {str(key): n for key, n in self.counts.items()}  # "batch/submitted"
        data["batches"] = [b.to_dict() for b in self.batches]
        return data

    def count(self, *statuses: RequestStatus) -> int:
        """Requests in any of `statuses`, on every route."""
        return sum(n for key, n in self.counts.items() if key.status in statuses)

    @property
    def succeeded(self) -> int:
        return self.count(RequestStatus.SUCCEEDED)

    @property
    def failed(self) -> int:
        """Failed lines, invalid ones (an answer that failed its checks) included."""
        return self.count(RequestStatus.FAILED, RequestStatus.INVALID)

    @property
    def invalid(self) -> int:
        return self.count(RequestStatus.INVALID)

    @property
    def cancelled(self) -> int:
        return self.count(RequestStatus.CANCELLED)

    @property
    def realtime_open(self) -> int:
        """Requests routed to real time that are not finished yet."""
        return sum(
            n
            for key, n in self.counts.items()
            if key.route in _REALTIME_ROUTES and key.status not in _TERMINAL_STATUSES
        )

    @property
    def finished(self) -> int:
        return self.count(*_TERMINAL_STATUSES)


@dataclass(frozen=True)
class CostRow:
    model: str
    route: str
    requests: int
    succeeded: int
    input_tokens: int
    output_tokens: int
    estimated: float
    actual: float
    all_standard: float  # what the finished requests would have cost at standard prices

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class CostReport:
    run_id: str | None  # None: every run in the store
    rows: list[CostRow]
    estimated: float
    actual: float
    all_standard: float
    saving: float  # all_standard - actual, over finished requests
    reasons: list[str] = field(default_factory=list)
    # `estimated` is the plan's expected cost (the figure `status` shows); this its worst.
    estimated_worst: float | None = None
    paid_twice: int = 0  # lines billed twice to hold a deadline (their cost is in actual)
    paid_twice_cost: float = 0.0
    reused: int = 0  # lines answered from the store or an identical line, not bought
    reuse_saving: float = 0.0  # what those answers cost when bought: not paid again
    requeues: int = 0  # sends after an answer failed a check
    requeue_cost: float = 0.0  # answers that failed a check: paid, outside `actual`
    invalid: int = 0  # lines whose answer failed a check every time
    variants: list[VariantCost] = field(default_factory=list)  # one run's fan-out, if any
    # Lines answered by a fallback model (their cost is in the fallback model's rows).
    fallbacks: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["rows"] = [r.to_dict() for r in self.rows]
        data["variants"] = [v.to_dict() for v in self.variants]
        return data


@dataclass(frozen=True)
class FetchReport:
    run_id: str
    output: Path
    errors: Path | None
    lines: int  # one per input line (grouped: one per original request)
    succeeded: int
    failed: int  # a final error; invalid lines included, cancelled ones not
    unfinished: int
    invalid: int = 0  # answered, but failed a check every time (last answer kept)
    cancelled: int = 0  # cancelled by the user before an answer
    fallback: int = 0  # succeeded lines answered by a fallback model (`batchyard.fallback`)

    def to_dict(self) -> dict[str, Any]:
        return {k: _jsonable(v) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class VerifyReport:
    base_url: str
    ok: bool
    models: list[str]
    message: str
    key_hint: str  # e.g. "sk-...abcd" (never the key)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
