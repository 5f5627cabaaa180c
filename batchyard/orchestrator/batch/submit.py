"""Submitting a run's batch work: re-queue retryables, plan shards, admit, hand them out.

Owns one submission round (`submit_round`): retryable lines of finished shards go back to
the queue (or fail at the cap), routed batch requests are planned into shards per
(endpoint, model), admitted, and each admitted shard is taken through upload and create
by `upload.py`'s `submit_shard`. Admission: a model's shards go out, in order, only while
the input tokens of every unfinished shard of that model (all runs in this store) stay within
its queue limit: the model table's `enqueued_token_limit`, or the limit learned from a
`token_limit_exceeded` failure (recorded as a `batch.limit_learned` event). Before it says
no, the queue's live batches are refreshed and more urgent driven runs come first
(`queue.py`). Shards that do not fit are not created; their requests stay routed and are
planned again next round. Planning stops at the first shard that does not fit (no later one
may go ahead of it): the lines after it are not read one by one (`reading.py` counts what
waits and finds the lines that can never be batched), so a round over a large file that
waits for the queue costs little. Planning is a claim
(`Store.claim_shard`): when another driver planned the same requests first, or filled the
queue, this round stops planning the group. It must not poll or apply results (`apply.py`
does).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, replace

import openai

from batchyard.catalog import lookup
from batchyard.models import BatchStatus, RequestStatus, Route, RunState
from batchyard.orchestrator.batch.lines import NOT_RUN_CODES
from batchyard.orchestrator.batch.queue import Waiter, ahead, holders_text, refresh_model
from batchyard.orchestrator.batch.reading import GroupRead
from batchyard.orchestrator.batch.remote import BatchContext, failure_text
from batchyard.orchestrator.batch.resend import (
    RESENT_REASON,
    Resent,
    Resubmits,
    resent_line,
    settle_resent,
)
from batchyard.orchestrator.batch.upload import submit_shard
from batchyard.shards import Admitting, ShardLimits, plan_shards
from batchyard.store import IN_QUEUE
from batchyard.store.rows import RunRow

__all__ = [
    "IN_QUEUE",
    "SubmitReport",
    "learned_limit",
    "queue_limit",
    "submit_round",
]

B = BatchStatus
LIMIT_EVENT = "batch.limit_learned"
CREATE_LIMIT_EVENT = "batch.create_limit"


@dataclass
class SubmitReport:
    """What one `submit` round did."""

    shards: list[int] = field(default_factory=list)  # created remotely this round
    requests: int = 0  # requests in those shards
    requeued: int = 0  # retryable requests put back in the queue for another batch
    gave_up: int = 0  # retryable requests that ran out of attempts (now failed)
    waiting: int = 0  # planned shards held back (batch creations per hour used up)
    waiting_requests: int = 0  # requests held back: in those, or by the queue (not planned)
    unbatchable: list[str] = field(default_factory=list)  # can never fit a batch: re-route
    resubmits: Resubmits = field(default_factory=Resubmits)  # lines sent again (resend.py)
    errors: list[str] = field(default_factory=list)  # shards whose submission failed
    reasons: list[str] = field(default_factory=list)

    @property
    def submitted(self) -> int:
        """How many shards were created remotely this round."""
        return len(self.shards)


def learned_limit(ctx: BatchContext, run_id: str, model: str) -> int | None:
    """The queue limit learned for `model` from this run's token_limit_exceeded failures."""
    found = None
    for ev in ctx.store.list_events(run_id, kinds=[LIMIT_EVENT]):
        if ev.data.get("model") == model and isinstance(ev.data.get("limit"), int):
            found = int(ev.data["limit"])
    return found


def queue_limit(ctx: BatchContext, run_id: str, model: str) -> int | None:
    info = lookup(ctx.models, model)
    learned = learned_limit(ctx, run_id, model)
    if learned is not None:
        return learned
    return info.enqueued_token_limit if info else None


def _requeue(ctx: BatchContext, run_id: str, report: SubmitReport) -> None:
    """Retryable batch requests from finished shards: back to routed, or failed at the cap.

    `batch_expired` / `batch_cancelled` / not-run lines never executed, so they are allowed
    twice the attempts (a bound, so a batch that always expires cannot loop forever).
    Requests of shards cancelled for escalation are left for the caller to re-route.
    """
    store = ctx.store
    if not store.has_requests(run_id, Route.BATCH, RequestStatus.RETRYABLE):
        return
    done = {b.id for b in store.list_batches(run_id) if b.status in (B.APPLIED,)}
    escalated = {
        ev.shard for ev in store.list_events(run_id, kinds=["batch.escalated"]) if ev.shard
    }
    cap = ctx.settings.max_attempts
    again: list[tuple[str, Route, str]] = []
    give_up: list[str] = []
    for r in store.iter_requests(run_id, statuses=[RequestStatus.RETRYABLE], routes=[Route.BATCH]):
        if r.shard is not None and (r.shard not in done or r.shard in escalated):
            continue
        limit = cap * 2 if r.error_code in NOT_RUN_CODES else cap
        if r.attempts < limit:
            again.append((r.custom_id, Route.BATCH, f"{RESENT_REASON} {r.error_code}"))
        else:
            give_up.append(r.custom_id)
    if again:
        # another driver of this run may have re-submitted some since they were read
        report.requeued += store.set_routes(run_id, again, unless_taken=True)
    if give_up:
        store.transition_requests(run_id, give_up, RequestStatus.FAILED)
        report.gave_up += len(give_up)
        ctx.event(
            run_id,
            "batch.gave_up",
            f"{len(give_up)} request(s) failed after {cap} attempt(s); their last error is kept",
            {"count": len(give_up), "first": give_up[:5]},
        )


Group = tuple[str, str]  # (endpoint, model)


def _resent(ctx: BatchContext, run: RunRow) -> tuple[dict[Group, Resent], dict[str, int]]:
    """The unsharded routed batch lines a batch of this run ran before (a failed or expired
    batch line), with their costs, per (endpoint, model), for `settle_resent`; and their
    input tokens, by custom_id."""
    resent: dict[Group, Resent] = defaultdict(dict)
    tokens: dict[str, int] = {}
    for r in ctx.store.batch_candidates(run.id, sent_before=True):
        if (costs := resent_line(run, r)) is not None:
            resent[(r.endpoint, r.model)][r.custom_id] = costs
            tokens[r.custom_id] = r.est_input_tokens
    return resent, tokens


def _limits(ctx: BatchContext, run_id: str, model: str) -> ShardLimits:
    """The limits of `model`'s shards: its queue limit (learned or configured), and the
    caller's tighter caps where given."""
    info = lookup(ctx.models, model)
    limit = queue_limit(ctx, run_id, model)
    limits = ShardLimits.for_model(info, limit) if info else ShardLimits(model=model)
    if ctx.limits is not None:  # tighter caps from the caller; the queue limit still applies
        limits = replace(
            ctx.limits,
            max_input_tokens=_smaller(ctx.limits.max_input_tokens, limits.max_input_tokens),
            model=model,
        )
    return limits


async def _plan_group(
    ctx: BatchContext,
    run_id: str,
    read: GroupRead,
    tokens: int,
    limits: ShardLimits,
) -> tuple[Admitting, list[Waiter]]:
    """The group's shards, planned as its lines stream past and admitted in order (iterate
    the result; `_held` reports the rest), and the more urgent runs ahead in the queue.
    `tokens`: the lines' input tokens, to know beforehand whether the queue is too full.
    The planner's token cap is the queue's, so no shard is ever too big for it."""
    model = read.model
    # The queue is the organisation's: every run's unfinished shards count, and more urgent
    # runs that wait (and are driven) come first.
    cap = limits.max_input_tokens
    first = ahead(ctx, run_id, model) if cap is not None else []
    reserved = sum(w.tokens for w in first)
    in_queue = ctx.store.enqueued_tokens(model) + reserved
    if cap is not None and in_queue + tokens > cap and await refresh_model(ctx, model):
        in_queue = ctx.store.enqueued_tokens(model) + reserved  # finished unwatched: room
    return Admitting(plan_shards(read.items(ctx, limits), limits), in_queue, cap, model), first


def _held(
    ctx: BatchContext,
    run_id: str,
    group: Group,
    admitting: Admitting,
    waiting: tuple[int, int],
    first: list[Waiter],
    report: SubmitReport,
) -> None:
    """Report the requests of a group that wait for queue room, `waiting` (requests,
    tokens), and the shards that can never fit it."""
    requests, tokens = waiting
    if not requests and not admitting.too_big:
        return
    endpoint, model = group
    report.waiting_requests += requests + admitting.too_big_requests
    reason = admitting.reason(requests, tokens)
    if who := holders_text(ctx.store, run_id, model, first):
        reason += f"; {who}"
    report.reasons.append(reason)
    data = {
        "model": model,
        "endpoint": endpoint,
        "ahead": [w.run_id for w in first],
        "requests": requests,
        "tokens": tokens,
    }
    ctx.event(run_id, "batch.waiting", reason, data)


def _smaller(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)


async def submit_round(ctx: BatchContext, run_id: str, *, requeue: bool = True) -> SubmitReport:
    """One submission round for `run_id` (see the module docstring)."""
    store = ctx.store
    report = SubmitReport()
    run = store.get_run(run_id)
    if run.state in (RunState.CANCELLING, RunState.CANCELLED, RunState.COMPLETED):
        report.reasons.append(f"run {run_id} is {run.state}; nothing is submitted")
        return report
    if requeue:
        _requeue(ctx, run_id, report)
    todo = [b.id for b in store.list_batches(run_id, statuses=[B.PLANNED, B.UPLOADED])]
    creations = ctx.settings.batch_creates_per_hour
    left = creations - store.batch_creations_since(ctx.clock() - 3600.0)
    resent, resent_tokens = _resent(ctx, run)
    for group, (lines, tokens) in store.batch_candidate_groups(run_id).items():
        endpoint, model = group
        again = resent.get(group, {})
        with_resent = settle_resent(ctx, run, group, lines, again, report.resubmits)
        skip = {} if with_resent else again
        if lines == len(skip):
            continue
        read, limits = GroupRead(run_id, endpoint, model, skip), _limits(ctx, run_id, model)
        admitting, first = await _plan_group(ctx, run_id, read, tokens, limits)
        for shard in admitting:
            # A claim: another driver (of this run or another) may have planned these
            # requests or filled the queue since they were read; then stop and re-read
            # next round.
            shard_id = store.claim_shard(
                run_id,
                endpoint=endpoint,
                model=model,
                custom_ids=shard.custom_ids,
                input_tokens=shard.input_tokens,
                queue_limit=queue_limit(ctx, run_id, model),
            )
            if shard_id is None:
                break
            todo.append(shard_id)
            read.went(shard)
        else:
            if admitting.blocked:
                read.never_fit_after(ctx, limits)
            left_out = sum(resent_tokens[c] for c in skip)
            waiting = read.waiting((lines, tokens), left_out, admitting)
            _held(ctx, run_id, group, admitting, waiting, first, report)
        report.unbatchable.extend(read.unbatchable)
    for i, shard_id in enumerate(todo):
        if left <= 0:
            _creations_bind(ctx, run_id, report, todo[i:], creations)
            break
        try:
            created = await submit_shard(ctx, run_id, shard_id)
        except openai.APIError as exc:  # one shard's failure must not stop the others
            message = f"Shard {shard_id} could not be submitted: {failure_text(exc)}"
            report.errors.append(message)
            ctx.event(run_id, "batch.submit_failed", message, shard=shard_id)
            continue
        if created:
            left -= 1
            report.shards.append(shard_id)
            report.requests += store.get_batch(shard_id).request_count
    return report


def _creations_bind(
    ctx: BatchContext, run_id: str, report: SubmitReport, held: list[int], per_hour: int
) -> None:
    """The organisation's batch creations for the last hour are used up: the shards not
    yet created wait (planned, nothing uploaded) until the oldest creation is an hour old."""
    waiting = sum(ctx.store.get_batch(s).request_count for s in held)
    report.waiting += len(held)
    report.waiting_requests += waiting
    message = (
        f"{len(held)} shard(s) ({waiting:,} request(s)) wait: {per_hour:,} batch creations "
        "in the last hour is OpenAI's limit per organisation (setting batch_creates_per_hour)"
    )
    report.reasons.append(message)
    # Stored (for `status` in any terminal) at most every 10 minutes; rounds repeat it.
    said = ctx.store.list_events(run_id, kinds=[CREATE_LIMIT_EVENT])
    fresh = not any(e.at >= ctx.clock() - 600.0 for e in said)
    ctx.event(run_id, CREATE_LIMIT_EVENT, message, {"held": len(held)}, store=fresh)
