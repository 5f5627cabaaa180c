"""The pure router: request features + run policy + capacity + now -> routes with reasons.

Owns the routing policy and the plan. It must not do I/O, read a clock, or import openai,
sqlite_utils, httpx2 or any batchyard module other than `batchyard.models` and
`batchyard.errors`; `now` (unix seconds) is always a parameter. The orchestrator feeds it
and stores every reason it returns as an event.

The policy (batch first whenever there is room to try; escalate at the last safe moment),
per model, on per-model sums (`work.py`), never one record per request:

1. `--route` other than auto wins (`realtime` -> standard, `flex`, `batch` without escalation).
2. Real-time quota exhausted: everything waits in batch, nothing escalates.
3. A run at or below the small-run threshold (requests or all-standard USD) goes to real time.
4. Where flex costs what batch costs and its latency fits the deadline, flex it is.
5. No deadline: batch, within the enqueued-token headroom; the rest waits for room.
6. A deadline: the escalation point is the last moment to cancel the model's batches and
   still finish their unanswered lines in real time (flex if allowed, cheaper and fitting,
   else standard) before the deadline, keeping free a small floor, the spread of real-time
   throughput and the cancel's latency (`escalation.escalation_point`; it moves later as the
   batches make progress). While that point is at least a new shard's setup time away,
   open work goes to batch: the turnaround model only says how likely each outcome is
   (finished lines are kept at half price either way). Real time starts at once only when
   there is no room to try, or when trying is expected to cost more (lines paid twice on a
   slow cancel). At the point, `redecide` cancels the model's shards; a cancel that has not
   finished by the last moment real time can still start sends their lines anyway
   (`escalation.release_point`). Without slack, real time starts at once, highest priority
   first, and the requests that finish late are listed (`--strict` refuses).

Rules are objects composed with `|` (first to decide wins), like tenacity's stop/wait:
`DEFAULT_RULES = override | quota | small_run | flex_bargain | no_deadline | deadline`.
Lines get their routes from the decision as they stream past (`assign.Assigner`);
`decide_lines` decides a run from its sums (`Tally`) and a way to stream its lines again,
so that planning a file of any size holds no record per request.

Budget (`decide`): the worst case must fit. If it does not, and batch-only fits and can still
finish before the deadline (or there is none), the budget forces batch-only; otherwise
`PlanRefused` gives the numbers and what would fit. Mid-run, `budget_stop_reason` guards each
dispatch against spent + reserved USD.

Costs (`costs.py`): the policy played over the turnaround distribution (`Turnaround`,
log-normal, updated from the store's batches, censored ones included) gives best, expected
and worst cost; never above all-standard apart from lines paid twice to hold a deadline.
"""

from __future__ import annotations

from batchyard.router.assign import Assigner
from batchyard.router.budget import decide, decide_lines
from batchyard.router.costs import Estimate, PlanRow, budget_stop_reason, estimate
from batchyard.router.decision import Assignment, Change, Decision, ModelDecision, Redecision
from batchyard.router.escalation import escalation_point, release_point
from batchyard.router.features import (
    DEFAULT_MARGIN_S,
    ModelCapacity,
    PathCosts,
    RequestFeatures,
    RunPolicy,
)
from batchyard.router.lines import KEEP_LATE, LineSource, Memo, Routes, route_lines
from batchyard.router.pace import Safety, latest_start, realtime_seconds
from batchyard.router.parse import (
    format_duration,
    format_time,
    format_usd,
    parse_budget,
    parse_deadline,
)
from batchyard.router.plan import Plan, make_plan, plan_from_decision
from batchyard.router.policy import is_small_run, redecide, route, route_work
from batchyard.router.resubmit import (
    Leftovers,
    ResubmitAction,
    ResubmitRule,
    resubmission,
    waits_until,
)
from batchyard.router.rules import (
    BATCH_ONLY_RULES,
    DEFAULT_RULES,
    ModelContext,
    Rule,
)
from batchyard.router.turnaround import BATCH_WINDOW_S, Turnaround
from batchyard.router.work import NO_WORK, ModelWork, ShardState, Tally, Work, WorkSum

__all__ = [
    "BATCH_ONLY_RULES",
    "NO_WORK",
    "BATCH_WINDOW_S",
    "DEFAULT_MARGIN_S",
    "DEFAULT_RULES",
    "KEEP_LATE",
    "Assigner",
    "Assignment",
    "Change",
    "Decision",
    "Estimate",
    "LineSource",
    "Memo",
    "Routes",
    "Leftovers",
    "ModelCapacity",
    "ModelContext",
    "ModelDecision",
    "ModelWork",
    "PathCosts",
    "Plan",
    "PlanRow",
    "Redecision",
    "RequestFeatures",
    "ResubmitAction",
    "ResubmitRule",
    "Rule",
    "RunPolicy",
    "Safety",
    "ShardState",
    "Tally",
    "Turnaround",
    "Work",
    "WorkSum",
    "budget_stop_reason",
    "decide",
    "decide_lines",
    "escalation_point",
    "estimate",
    "format_duration",
    "format_time",
    "format_usd",
    "is_small_run",
    "latest_start",
    "make_plan",
    "parse_budget",
    "parse_deadline",
    "plan_from_decision",
    "realtime_seconds",
    "redecide",
    "release_point",
    "resubmission",
    "route",
    "route_lines",
    "route_work",
    "waits_until",
]
