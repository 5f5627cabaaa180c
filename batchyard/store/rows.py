"""Typed records that go into and come out of the store.

Owns the frozen dataclasses the store's API takes and returns (one per table, plus the
inputs `NewRequest` and `Result` and small reports). Plain data: no SQL, no I/O. Times are
unix seconds (float) from the store's injected clock; money is US dollars (float).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from batchyard.models import BatchStatus, RequestStatus, Route, RouteOverride, RunState

__all__ = [
    "ApplyReport",
    "AttemptRow",
    "BatchCandidate",
    "BatchRow",
    "Claim",
    "EventRow",
    "FailedSend",
    "FileKind",
    "FileRow",
    "NewRequest",
    "NextTry",
    "OutputEvidence",
    "RequestRow",
    "Result",
    "ReuseReport",
    "RunRow",
    "StatusTotals",
    "SummaryRow",
]

JSONDict = dict[str, Any]


class FileKind(StrEnum):
    """What a row of the `files` table is."""

    INPUT = "input"  # a shard's JSONL we upload (purpose=batch)
    OUTPUT = "output"  # a batch's output file we download
    ERROR = "error"  # a batch's error file we download


@dataclass(frozen=True, slots=True)
class NewRequest:
    """One input line to record with `Store.add_requests`."""

    custom_id: str
    line: int
    endpoint: str
    model: str
    body: JSONDict | None  # None: `stored_body` holds it
    input_tokens: int
    output_tokens: int
    cost_standard: float
    cost_flex: float | None
    cost_batch: float | None
    priority: int = 0
    cost_fast: float | None = None  # for the plan only; not stored
    max_output_tokens: int | None = None  # the request's own cap, if it sets one
    fingerprint: str | None = None  # None: never answered from the store nor merged
    stored_body: str | bytes | None = None  # the body already encoded (`codec.encode_text`)
    body_bytes: int | None = None  # with `stored_body`: the size of its compact JSON
    route: Route | None = None  # recorded routed with `reason`; None: pending
    reason: str | None = None
    twin_of: str | None = None  # recorded as a twin of this custom_id (sent once, by it)


@dataclass(frozen=True, slots=True)
class BatchCandidate:
    """A routed batch line no shard holds yet, as shard planning reads it (no body)."""

    line: int
    custom_id: str
    endpoint: str
    model: str
    body_bytes: int | None  # the body's compact JSON size; None: read the body
    est_input_tokens: int
    attempts: int
    route_reason: str | None
    est_cost_standard: float
    est_cost_flex: float | None
    est_cost_batch: float | None


@dataclass(frozen=True, slots=True)
class Result:
    """The outcome of one request, from a real-time call or a batch output/error line.

    `status` is SUCCEEDED, FAILED (terminal) or RETRYABLE. When `shard` is given, the
    result is only applied if the request still belongs to that shard (a late file from an
    old shard cannot overwrite a newer attempt).
    """

    custom_id: str
    status: RequestStatus
    status_code: int | None = None
    response_body: JSONDict | None = None
    error_code: str | None = None
    error_message: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost: float = 0.0
    shard: int | None = None
    route: Route | None = None
    request_id: str | None = None  # the provider's id of the answer
    not_before: float | None = None  # retryable: do not claim again before this time
    # RETRYABLE after a failed check: the answer was paid for (cost goes to requeue_cost,
    # requeues goes up) and, when given, `resend_body` replaces the body for the re-send.
    requeue: bool = False
    requeue_limit: int = 0  # re-sends allowed: past it, the store ends the line INVALID
    resend_body: JSONDict | None = None
    wait_reason: str | None = None  # retryable: why `not_before` holds it back
    error_kind: str | None = None  # a real-time send's error: rate_limit, server, ...


@dataclass(frozen=True, slots=True)
class ApplyReport:
    """What `apply_results` did. Re-applying the same results yields only duplicates."""

    applied: int = 0
    duplicates: int = 0  # already had this outcome (or a terminal one): nothing changed
    stale: int = 0  # result from a shard the request no longer belongs to: ignored
    unknown: int = 0  # custom_id not in this run: ignored
    unknown_ids: tuple[str, ...] = ()  # the first few of them, for the message
    cost: float = 0.0  # sum of cost of the applied results
    # Lines a released shard answered after they were sent again in real time: billed
    # twice. Their count and batch cost (also in `cost`, since the provider bills them).
    paid_twice: int = 0
    paid_twice_cost: float = 0.0

    def __add__(self, other: ApplyReport) -> ApplyReport:
        return ApplyReport(
            applied=self.applied + other.applied,
            duplicates=self.duplicates + other.duplicates,
            stale=self.stale + other.stale,
            unknown=self.unknown + other.unknown,
            unknown_ids=(self.unknown_ids + other.unknown_ids)[:20],
            cost=self.cost + other.cost,
            paid_twice=self.paid_twice + other.paid_twice,
            paid_twice_cost=self.paid_twice_cost + other.paid_twice_cost,
        )


@dataclass(frozen=True, slots=True)
class OutputEvidence:
    """Output tokens billed for one (model, endpoint) across the store's history."""

    mean: float
    high: int  # a high quantile (p95): the worst case the router plans for
    samples: int


@dataclass(frozen=True, slots=True)
class RunRow:
    id: str
    source_path: str
    source_sha256: str
    endpoint: str
    models: tuple[str, ...]
    route_override: RouteOverride
    deadline_at: float | None
    budget: float | None
    state: RunState
    created_at: float
    updated_at: float
    finished_at: float | None
    estimated_cost: float
    actual_cost: float
    request_count: int
    options: JSONDict = field(default_factory=dict)
    pruned_at: float | None = None  # `prune` removed its requests, attempts and events


@dataclass(frozen=True, slots=True)
class RequestRow:
    """One request. `body`/`response_body` are None unless asked for (they are large)."""

    run_id: str
    custom_id: str
    line: int
    endpoint: str
    model: str
    priority: int
    est_input_tokens: int
    est_output_tokens: int
    est_cost_standard: float
    est_cost_flex: float | None
    est_cost_batch: float | None
    route: Route | None
    route_reason: str | None
    status: RequestStatus
    attempts: int
    shard: int | None
    owner: str | None
    not_before: float | None
    status_code: int | None
    error_code: str | None
    error_message: str | None
    input_tokens: int | None
    output_tokens: int | None
    cost: float | None
    updated_at: float
    finished_at: float | None
    body: JSONDict | None = None
    response_body: JSONDict | None = None
    request_id: str | None = None
    max_output_tokens: int | None = None  # the request's own cap (None: it sets none)
    fingerprint: str | None = None
    reused_from: JSONDict | None = None  # {run, custom_id, at} of a reused answer
    saved: float | None = None  # what a reused answer cost when it was bought
    requeues: int = 0  # sends after a failed check
    requeue_cost: float = 0.0  # what the answers that failed a check cost
    # {from, to, reason, error, at}: the line was moved to a fallback model (`model` is it)
    fallback: JSONDict | None = None
    not_before_reason: str | None = None  # why `not_before` holds it back (`Store.next_try`)
    # the stored JSON text of the response body, undecoded (`iter_requests(raw_response=True)`;
    # `response_body` is then None)
    response_text: str | None = None


@dataclass(frozen=True, slots=True)
class ReuseReport:
    """What `reuse_answers` and `link_twins` did for one run."""

    reused: int = 0  # answered from earlier runs
    twins: int = 0  # identical to an earlier line of the run: sent once
    saved: float = 0.0  # what the reused answers cost when they were bought

    @property
    def changed(self) -> bool:
        return bool(self.reused or self.twins)


@dataclass(frozen=True, slots=True)
class Claim:
    """A real-time request claimed by one owner (status in_flight, attempt row written)."""

    custom_id: str
    line: int
    endpoint: str
    model: str
    route: Route
    attempt: int
    body: JSONDict
    faults: int = 0  # earlier sends that met a 5xx, timeout or dropped connection


@dataclass(frozen=True, slots=True)
class FileRow:
    id: int
    run_id: str
    shard: int | None
    kind: FileKind
    remote_id: str | None
    local_path: str | None
    bytes: int | None
    sha256: str | None
    created_at: float
    remote_at: float | None
    deleted_at: float | None


SHARD_TOKENS_KEY = "batchyard_tokens"  # store-only shard metadata; never sent to the provider


@dataclass(frozen=True, slots=True)
class BatchRow:
    """One shard: a set of requests sent as one provider batch."""

    id: int
    run_id: str
    endpoint: str
    model: str
    status: BatchStatus
    provider_batch_id: str | None
    input_file_row: int | None
    input_file_id: str | None
    output_file_id: str | None
    error_file_id: str | None
    request_count: int
    counts_total: int | None
    counts_completed: int | None
    counts_failed: int | None
    metadata: dict[str, str]
    provider_times: dict[str, float]  # provider *_at fields that are set, e.g. completed_at
    errors: JSONDict | None
    raw: JSONDict | None
    claim_owner: str | None
    claim_expires_at: float | None
    created_at: float
    updated_at: float
    applied_at: float | None

    @property
    def planned_tokens(self) -> int:
        """The shard's estimated input tokens, as recorded when it was planned (0 where
        not recorded)."""
        try:
            return int(self.metadata.get(SHARD_TOKENS_KEY) or 0)
        except ValueError:
            return 0


@dataclass(frozen=True, slots=True)
class EventRow:
    id: int
    run_id: str
    at: float
    kind: str
    message: str
    data: JSONDict
    custom_id: str | None
    shard: int | None


@dataclass(frozen=True, slots=True)
class AttemptRow:
    run_id: str
    custom_id: str
    attempt: int
    route: Route
    shard: int | None
    owner: str | None
    started_at: float
    finished_at: float | None
    outcome: str | None  # a RequestStatus value, or "retry" / "released" / "abandoned"
    status_code: int | None
    error_code: str | None
    cost: float | None
    error_kind: str | None = None  # a send tried again: rate_limit, server, timeout, ...
    request_id: str | None = None  # the provider's x-request-id
    not_before: float | None = None  # a send tried again: when the next one was due


@dataclass(frozen=True, slots=True)
class SummaryRow:
    """Totals for one (model, route) of a run; route None means not routed yet."""

    model: str
    route: Route | None
    requests: int
    succeeded: int
    failed: int
    open: int  # not terminal yet
    estimated_cost: float
    actual_cost: float
    est_input_tokens: int
    est_output_tokens: int
    input_tokens: int
    output_tokens: int
    invalid: int = 0  # of `failed`: answers that failed a check every time
    reused: int = 0  # answered from the store or by an identical line (not sent)
    saved: float = 0.0  # what the reused answers cost when bought
    requeues: int = 0  # sends after a failed check
    requeue_cost: float = 0.0  # what the answers that failed a check cost (not in actual)


@dataclass(frozen=True, slots=True)
class StatusTotals:
    """A run's requests of one (model, route, status), summed: what `SummaryRow`, the open
    load and the budget's reserve are added up from."""

    model: str
    route: Route | None
    status: RequestStatus
    requests: int
    estimated_cost: float  # on the route each has now (standard until routed)
    reserved_cost: float  # the same, with a cost of 0 on a route counting as unpriced
    actual_cost: float
    est_input_tokens: float
    est_output_tokens: float
    input_tokens: float  # billed, not counting reused answers
    output_tokens: float
    reused: int
    saved: float
    requeues: int
    requeue_cost: float
    load_tokens: float  # charged against TPM: input plus the output cap or estimate


@dataclass(frozen=True, slots=True)
class FailedSend:
    """One real-time send that failed and is tried again: its attempt row closes as `retry`
    and the next send's row opens (due at `not_before`, for `reason`)."""

    custom_id: str
    finished_at: float
    error_kind: str
    status_code: int | None = None
    error_code: str | None = None
    request_id: str | None = None
    not_before: float | None = None
    reason: str | None = None
    fault: bool = False  # a 5xx, timeout or dropped connection: counts against the budget


@dataclass(frozen=True, slots=True)
class NextTry:
    """When a request is tried again, and why (`Store.next_try`)."""

    at: float | None  # our clock; None: at the next round (nothing holds it back)
    reason: str  # in words, from whichever mechanism decided
