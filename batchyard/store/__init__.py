"""The job store: everything batchyard asked, sent, got back and paid, in one SQLite file.

This subpackage is the only part of batchyard that imports `sqlite_utils` or writes SQL,
and the only place any status changes. It makes no network calls and never sees the API
key: no table has a column for one (see docs/store.md for every table and column).

Opening
    store = Store.open(path | None, now=time.time)
        path None -> $BATCHYARD_DB, else <platformdirs user data dir>/batchyard.db.
        The file is created with mode 0600; WAL, busy timeout, foreign keys, migrations
        (`Migrations("batchyard")`, m001_...). A newer schema raises SchemaTooNew.
    default_db_path() -> Path

Every write is one transaction opened with BEGIN IMMEDIATE (see base.py for why), so a
crash leaves each unit fully written or not at all, and two processes on one file are
serialised. Bulk operations commit every `chunk_size` rows (5,000 by default); `chunked`
is the one chunking helper (callers that feed the store in parts use it too).
A Store holds one connection: call it from one thread at a time (it may be used from
worker threads, e.g. `asyncio.to_thread`, if calls are serialised), or open one per thread.

Runs
    create_run(*, source_path, source_sha256, endpoint, models, route_override=AUTO,
               deadline_at=None, budget=None, estimated_cost=0.0, options=None) -> run_id
    get_run(run_id) -> RunRow                     (NotFound)
    list_runs(*, limit=None, source_sha256=None) -> list[RunRow]   newest first
    set_run_state(run_id, RunState) -> RunRow     checked; finished_at on a terminal state
    set_run_estimate(run_id, cost); add_run_cost(run_id, amount, reason=...)
        (results add their own cost to runs.actual_cost; do not add it again)

Requests
    add_requests(run_id, Iterable[NewRequest]) -> int        streamed, chunked, pending
    add_request_values(run_id, Iterable[rows]) -> int   rows made by `request_values`
    set_routes(run_id, Iterable[(custom_id, Route, reason)]) -> int   -> routed (checked)
    release_shard(run_id, shard, route, reason) -> int   a slow-cancel shard's lines -> routed
    batch_creations_since(t) -> int              batches created since t (all runs)
    open_load(run_id) -> {model: (count, tpm tokens)}   unfinished work, for the verdict
    paid_twice(run_id) -> (lines, usd)            answered in batch after being sent again
    output_evidence() -> {(model, endpoint): OutputEvidence}   billed output, mean and p95
    iter_requests(run_id, *, statuses, routes, shard, with_body, with_response)
        -> Iterator[RequestRow]        line order, paged; never loads the whole run
    get_request(run_id, custom_id) -> RequestRow;  get_bodies(run_id, ids) -> {id: body}
    transition_requests(run_id, ids, RequestStatus, *, error_code, error_message) -> int
    count_requests(run_id) -> {(route | None, status): n}
    summary(run_id) -> list[SummaryRow]          per (model, route): counts, costs, tokens
    totals(run_id) -> RunTotals   per (model, route, status): summary, open load and cost
    apply_results(run_id, Iterable[Result]) -> ApplyReport   chunked, idempotent

Real time (claims; intent before the call)
    claim_realtime(run_id, *, owner, limit, routes=(STANDARD, FLEX)) -> list[Claim]
        routed/retryable -> in_flight + attempt row, atomically; never double-claimed
    finish_realtime(run_id, owner, [Result]) -> ApplyReport   stale if no longer ours
    release_realtime(run_id, owner, ids) -> int     in_flight -> routed, call never made
    recover_in_flight(run_id, *, older_than=None, owner=None) -> int
        in_flight -> retryable on resume. A request in flight at a crash may already have
        reached the API: retrying it may bill it twice (an event records how many).
    record_attempt(run_id, custom_id, *, route, outcome, started_at, ...) -> attempt no.

Waits: when a request is tried again (waits.py)
    next_try(run_id, custom_id) -> NextTry(at, reason) | None   the one answer: a line in a
        live batch, its shard's next poll; any other, its own not_before and reason
    waiting_reasons(run_id) -> [(reason, n, first due)]   the same answer, summed (status)
    record_poll(shard, at, reason)   the poll backoff's decision, once per shard and poll
    hold(run_id, ids, until, reason) -> int   routed lines wait (None, None: they go now)
    next_poll(shards) -> float | None   the earliest recorded next poll of those shards

Provider clock (clocks.py)
    add_clock_observations(base_url, [(provider_at, local_at)], keep=48)   newest kept
    clock_observations(base_url, limit=48) -> [(provider_at, local_at)]    oldest first

Webhooks and notifications (hooks.py)
    record_webhook(webhook_id, event_type, provider_batch_id) -> WebhookReceipt
        once per webhook-id (a duplicate changes nothing); marks our batch to poll at once
    poll_marks(run_id) -> set[shard];  clear_poll_mark(shard)
    set_notify(run_id, url);  get_notification(run_id) -> Notification | None
    record_notification(run_id, *, sent, error=None)

Batches (shards) and files
    create_shard(run_id, *, endpoint, model, custom_ids, metadata=None) -> shard id
        metadata gains batchyard_run / batchyard_shard: the tag to find it remotely
    claim_shard(run_id, *, endpoint, model, custom_ids, input_tokens, queue_limit)
        -> shard id, or None when another process took a request first or the model's
        queue (enqueued_tokens(model), all runs) has no room: the loser re-reads
    claim_batch_for_submit(shard, owner, lease_seconds=600) -> bool
    record_file_intent(run_id, FileKind.INPUT, local_path=, bytes=, sha256=, shard=)
        -> file row id; shard planned -> uploading, committed BEFORE the upload
    set_file_remote_id(file_row, remote_id)        right after it; shard -> uploaded
    pending_uploads(run_id=None) -> [FileRow];  abandon_upload(file_row)  (reconcile)
    set_batch_status(shard, CREATING, expect=UPLOADED, owner=...) -> bool  before create
    record_batch_remote(shard, provider_batch_id, provider_json=None) -> BatchRow
        right after create; its requests routed -> submitted, attempt rows written
    update_batch_from_provider(shard, provider_json) -> BatchRow   mapped, checked
    list_batches(run_id=None, *, statuses=None); list_active_batches(run_id=None)
    shard_outcomes(shards) -> {shard: {succeeded|failed|cancelled|re-routed|open: n}}
    get_batch(shard); find_batch(provider_batch_id)
    claim_batch_for_apply(shard, owner, lease_seconds=600) -> bool
    record_downloaded_file(run_id, shard, kind, remote_id=, local_path=, bytes=, sha256=)
    mark_applied(shard, owner, *, leftover=RETRYABLE) -> leftover count
    release_batch_claim(shard, owner);  mark_file_deleted(file_row);  list_files(run_id)

The enqueued-token queue (the organisation's: every run in this store)
    enqueued_tokens(model) -> int;  queue_holders(model) -> {run: tokens in the queue}
    queue_demand(model) -> {run: tokens of routed batch requests in no shard yet}
    mark_driving(run_id, owner); stop_driving(run_id, owner); drivers(run_id, since=)

Fallback models (fallback.py)
    fall_back(run_id, [FallbackMove], *, owner=None) -> [custom_id]   refused lines -> their
        fallback model, routed; the record kept in requests.fallback
    fallback_summary(run_id) -> [FallbackTotals]   per (from, to, reason): lines, outcomes

History (append-only; the database refuses updates and deletes of events)
    add_event(run_id, kind, message, data=None, *, custom_id=None, shard=None) -> id
    list_events(run_id, *, kinds, custom_id, shard, limit) -> list[EventRow]
    list_attempts(run_id, custom_id=None) -> list[AttemptRow]

Allowed status changes: `batchyard.store.transitions` (RUN_/REQUEST_/BATCH_TRANSITIONS).
"""

from __future__ import annotations

from .base import chunked
from .batches import PROVIDER_STATUS
from .core import DB_ENV, Store, default_db_path
from .fallback import FallbackMove, FallbackTotals
from .queue import IN_QUEUE
from .rows import (
    SHARD_TOKENS_KEY,
    ApplyReport,
    AttemptRow,
    BatchRow,
    Claim,
    EventRow,
    FailedSend,
    FileKind,
    FileRow,
    NewRequest,
    OutputEvidence,
    RequestRow,
    Result,
    RunRow,
    StatusTotals,
    SummaryRow,
)
from .summary import RunTotals
from .transitions import BATCH_TRANSITIONS, REQUEST_TRANSITIONS, RUN_TRANSITIONS

__all__ = [
    "BATCH_TRANSITIONS",
    "DB_ENV",
    "IN_QUEUE",
    "PROVIDER_STATUS",
    "REQUEST_TRANSITIONS",
    "RUN_TRANSITIONS",
    "SHARD_TOKENS_KEY",
    "ApplyReport",
    "AttemptRow",
    "BatchRow",
    "Claim",
    "EventRow",
    "FailedSend",
    "FallbackMove",
    "FallbackTotals",
    "FileKind",
    "FileRow",
    "NewRequest",
    "OutputEvidence",
    "RequestRow",
    "Result",
    "RunRow",
    "RunTotals",
    "StatusTotals",
    "Store",
    "SummaryRow",
    "chunked",
    "default_db_path",
]
