"""The pure router: request features + run policy + capacity + now -> routes with reasons.

Owns the routing policy and the plan. It must not do I/O, read a clock, or import openai,
sqlite_utils, httpx2 or any batchyard module other than `batchyard.models` and
`batchyard.errors`; `now` (unix seconds) is always a parameter. The orchestrator feeds it
and stores every reason it returns as an event.

The policy (batch first, escalate at the last safe moment), per model:

1. `--route` other than auto wins (`realtime` -> standard, `flex`, `batch` without escalation).
2. Real-time quota exhausted: everything waits in batch, nothing escalates.
3. A run at or below the small-run threshold (requests or all-standard USD) goes to real time.
4. Where flex costs what batch costs and its latency fits the deadline, flex it is.
5. No deadline: batch, within the enqueued-token headroom; the rest waits for room.
6. A deadline: real time (flex if allowed, cheaper and fitting, else standard) needs
   `realtime_s` at current RPM/TPM (input + max output tokens per request, plus latency).
   The escalation point is `deadline - realtime_s - margin` (earlier while a breaker is open).
   Ahead of it, work goes to batch; at it, `redecide` cancels the model's shards (finished
   lines kept) and finishes the rest in real time. Without slack, real time starts at once,
   highest priority then highest saving per token first, and the requests that finish late
   are listed (`--strict` refuses). If a batch has under `min_batch_chance` of returning
   before the point, real time starts at once as well.

Rules are objects composed with `|` (first to decide wins), like tenacity's stop/wait:
`DEFAULT_RULES = override | quota | small_run | flex_bargain | no_deadline | deadline`.

Budget (`decide`): the worst case must fit. If it does not, and batch-only fits and can still
finish before the deadline (or there is none), the budget forces batch-only; otherwise
`PlanRefused` gives the numbers and what would fit. Mid-run, `budget_stop_reason` guards each
dispatch against spent + reserved USD.

Costs (`costs.py`): the turnaround distribution (`Turnaround`, log-normal cut at 24 h,
updated from finished batches) only weighs outcomes: best = every batch returns in time,
worst = every batch escalates, expected between; never above all-standard.
"""

from __future__ import annotations

from batchyard.router.costs import Estimate, PlanRow, budget_stop_reason, estimate
from batchyard.router.decision import Assignment, Change, Decision, ModelDecision, Redecision
from batchyard.router.features import (
    DEFAULT_MARGIN_S,
    ModelCapacity,
    PathCosts,
    RequestFeatures,
    RunPolicy,
)
from batchyard.router.parse import (
    format_duration,
    format_time,
    format_usd,
    parse_budget,
    parse_deadline,
)
from batchyard.router.plan import Plan, make_plan, plan_from_decision
from batchyard.router.policy import ShardState, decide, is_small_run, redecide, route
from batchyard.router.rules import (
    BATCH_ONLY_RULES,
    DEFAULT_RULES,
    ModelContext,
    Rule,
    escalation_point,
    realtime_seconds,
)
from batchyard.router.turnaround import BATCH_WINDOW_S, Turnaround

__all__ = [
    "BATCH_ONLY_RULES",
    "BATCH_WINDOW_S",
    "DEFAULT_MARGIN_S",
    "DEFAULT_RULES",
    "Assignment",
    "Change",
    "Decision",
    "Estimate",
    "ModelCapacity",
    "ModelContext",
    "ModelDecision",
    "PathCosts",
    "Plan",
    "PlanRow",
    "Redecision",
    "RequestFeatures",
    "Rule",
    "RunPolicy",
    "ShardState",
    "Turnaround",
    "budget_stop_reason",
    "decide",
    "escalation_point",
    "estimate",
    "format_duration",
    "format_time",
    "format_usd",
    "is_small_run",
    "make_plan",
    "parse_budget",
    "parse_deadline",
    "plan_from_decision",
    "realtime_seconds",
    "redecide",
    "route",
]
