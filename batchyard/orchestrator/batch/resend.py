"""Lines of a failed or expired batch that are sent again: where they go this round.

Owns applying the router's pure rule (`router.resubmission`) to one (endpoint, model)
group of lines about to be planned into shards: lines sent before join new lines, fill a
worthwhile shard (setting `resubmit_min_lines`), wait for one while the model's batches may
still return more, or move to real time when that costs no more or the escalation point
leaves no time to wait. Each decision is an event (`batch.resubmit`) with
the rule's reason, and is recorded on the lines as their wait (`Store.hold`, one statement
per group): lines that wait get `not_before` (the model's running batches' next poll, when
lines may come back and the rule looks again with news, at the latest `waits_until`) and
the reason; lines that go out lose it. It must not plan, upload or create shards
(`submit.py` does).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from batchyard.models import BatchStatus, Route, RouteOverride
from batchyard.orchestrator.batch.remote import BatchContext
from batchyard.router import Leftovers, ResubmitAction, ResubmitRule, resubmission, waits_until
from batchyard.store.rows import BatchCandidate, RequestRow, RunRow

__all__ = ["RESENT_REASON", "RESUBMIT_EVENT", "Resent", "Resubmits", "resent_line", "settle_resent"]

RESUBMIT_EVENT = "batch.resubmit"
RESENT_REASON = "re-submitted to batch after"  # the route reason of a line sent again
_RUNNING = (
    BatchStatus.VALIDATING,
    BatchStatus.IN_PROGRESS,
    BatchStatus.FINALIZING,
    BatchStatus.CANCELLING,
)
Resent = dict[str, tuple[float, float, float, Route]]
"""custom_id -> (batch, real-time, standard USD, the real-time route it would take)."""


@dataclass
class Resubmits:
    """What the rule did with lines sent again in one round."""

    to_realtime: int = 0  # moved to real time
    held: int = 0  # waiting for a worthwhile shard
    reasons: list[str] = field(default_factory=list)


def resent_line(
    run: RunRow, r: RequestRow | BatchCandidate
) -> tuple[float, float, float, Route] | None:
    """A routed batch line's costs and real-time route, if a batch of this run ran it
    before and it is sent again (else None)."""
    if r.attempts <= 0 or not (r.route_reason or "").startswith(RESENT_REASON):
        return None
    flex = run.route_override in (RouteOverride.AUTO, RouteOverride.FLEX)
    flex = flex and r.est_cost_flex is not None
    return (
        r.est_cost_batch if r.est_cost_batch is not None else r.est_cost_standard,
        r.est_cost_flex if flex and r.est_cost_flex is not None else r.est_cost_standard,
        r.est_cost_standard,
        Route.FLEX if flex else Route.STANDARD,
    )


def settle_resent(
    ctx: BatchContext,
    run: RunRow,
    group: tuple[str, str],
    lines: int,
    resent: Resent,
    done: Resubmits,
) -> bool:
    """Apply the rule to `group` (endpoint, model), whose `lines` unsharded lines include
    the `resent` ones; returns whether those are planned with the others now."""
    if not resent:
        return True
    endpoint, model = group
    fresh = lines - len(resent)
    shards = [
        b
        for b in ctx.store.list_active_batches(run.id)
        if b.model == model and b.endpoint == endpoint and b.status in _RUNNING
    ]
    running = sum(b.request_count for b in shards)
    costs = list(resent.values())
    left = Leftovers(
        lines=len(resent),
        cost_batch=sum(c[0] for c in costs),
        cost_realtime=sum(c[1] for c in costs),
        cost_standard=sum(c[2] for c in costs),
        joinable=fresh,
        running=running,
    )
    settings = ctx.settings
    rule = ResubmitRule(
        min_lines=settings.resubmit_min_lines,
        realtime_allowed=run.route_override is not RouteOverride.BATCH,
    )
    escalation, turnaround = (
        ctx.deadline_view(run.id, model) if ctx.deadline_view else (run.deadline_at, 3600.0)
    )
    now = ctx.clock()
    action, reason = resubmission(
        left,
        rule,
        now,
        escalation_at=escalation,
        setup_s=settings.batch_setup_seconds,
        turnaround_s=turnaround,
    )
    said = ctx.store.list_events(run.id, kinds=[RESUBMIT_EVENT])
    news = not said or said[-1].message != reason  # rounds repeat a wait: store it once
    data = {"model": model, "lines": left.lines, "action": action.value}
    ctx.event(run.id, RESUBMIT_EVENT, reason, data, store=news)
    done.reasons.append(reason)
    if action is ResubmitAction.BATCH:
        ctx.store.hold(run.id, resent, None, None)
        return True
    if action is ResubmitAction.REALTIME:  # `set_routes` drops their wait with the move
        moves = [(cid, c[3], reason) for cid, c in resent.items()]
        # another driver of this run may have re-submitted some since they were read
        done.to_realtime += ctx.store.set_routes(run.id, moves, unless_taken=True)
    else:
        looks = ctx.store.next_poll(b.id for b in shards)  # None: due at the next round
        until = max(now, looks) if looks is not None else now
        latest = waits_until(escalation, settings.batch_setup_seconds, turnaround)
        if latest is not None:
            until = max(now, min(until, latest))
        ctx.store.hold(run.id, resent, until, reason)
        done.held += left.lines
    return False
