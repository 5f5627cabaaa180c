"""Typed results the orchestrator returns to the CLI and to Python callers.

Owns plain frozen records (and their `to_dict()` for `--json`); no I/O, no SQL, no HTTP.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from batchyard.router import Plan

__all__ = [
    "BatchInfo",
    "CostReport",
    "CostRow",
    "FetchReport",
    "RunStatus",
    "SubmitResult",
    "VerifyReport",
]


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
    waiting_shards: int  # shards held back by the enqueued-token limit

    def to_dict(self) -> dict[str, Any]:
        data = {k: _jsonable(v) for k, v in asdict(self).items() if k != "plan"}
        data["plan"] = self.plan.to_dict(assignments=False)  # routes are in the store
        return data


@dataclass(frozen=True)
class BatchInfo:
    shard: int
    provider_batch_id: str | None
    model: str
    status: str
    total: int
    completed: int
    failed: int
    created_at: float | None
    expected_finish: float | None  # from the turnaround model

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
    # "route/status" -> count, e.g. "batch/submitted": 1200; route "-" when not routed yet
    counts: dict[str, int]
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

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["batches"] = [b.to_dict() for b in self.batches]
        return data

    @property
    def succeeded(self) -> int:
        return sum(n for key, n in self.counts.items() if key.endswith("/succeeded"))

    @property
    def failed(self) -> int:
        """Failed lines, invalid ones (an answer that failed its checks) included."""
        return sum(n for key, n in self.counts.items() if key.endswith(("/failed", "/invalid")))

    @property
    def invalid(self) -> int:
        return sum(n for key, n in self.counts.items() if key.endswith("/invalid"))

    @property
    def cancelled(self) -> int:
        return sum(n for key, n in self.counts.items() if key.endswith("/cancelled"))

    @property
    def finished(self) -> int:
        terminal = ("/succeeded", "/failed", "/invalid", "/cancelled")
        return sum(n for key, n in self.counts.items() if key.endswith(terminal))


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

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["rows"] = [r.to_dict() for r in self.rows]
        return data


@dataclass(frozen=True)
class FetchReport:
    run_id: str
    output: Path
    errors: Path | None
    lines: int  # one per input line
    succeeded: int
    failed: int  # invalid lines included
    unfinished: int
    invalid: int = 0  # answered, but failed a check every time (last answer kept)

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
