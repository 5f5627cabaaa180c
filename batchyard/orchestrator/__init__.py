"""The orchestrator: runs both paths (real time and the Batch API) and the glue between them.

The two paths: `batch/` (`BatchRunner`: split, upload, create, poll, download, apply,
re-submit, reconcile) and `realtime/` (`RealtimeRunner`: admission from rate-limit headers,
retries, breaker, flex). The glue:
- `_orchestrator/`: `Orchestrator`, the facade, and the `Parts` it is made of;
- `_planning/`: `Planner` (the run's source, checking a request file into a small spilled
  record per line, in worker processes for a large file; the plan; recording the run);
- `_driving/`: `RunDriver` (rounds until a run is done) and steering (re-routing mid-run);
- `_reporting/`: `Reporter` (status, costs, fetch, results), the reports, progress, notify;
- `_routing/`: the router's inputs (policy, features, live limits, history), fallback
  models and the provider's clock;
- `_answers/`: results as typed objects, checks on answers, fan-out variants;
- `_calls/`: how both paths call the API: the SDK client and the key check, what a failure
  is, the one retry layer, the leaky bucket they pace with, the injected clock and sleep.
Imports flow one way: orchestrator → {router, store, tokens}; nothing here writes SQL or
imports typer or rich.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from batchyard import _exports

if TYPE_CHECKING:
    from batchyard.orchestrator._answers.results import Result
    from batchyard.orchestrator._orchestrator import Orchestrator
    from batchyard.orchestrator._reporting.progress import OnProgress
    from batchyard.orchestrator._reporting.reports import (
        BatchInfo,
        CostReport,
        CostRow,
        FetchReport,
        RouteStatus,
        RunInfo,
        RunStatus,
        SubmitResult,
        VariantCost,
        VerifyReport,
    )

# Where each name lives. They are imported on first use (PEP 562), not with the package:
# `Orchestrator` brings the OpenAI SDK (about 0.8 s), which `fetch` and the store's other
# readers inside this package never call.
_HOMES = {
    "Result": "batchyard.orchestrator._answers.results",
    "Orchestrator": "batchyard.orchestrator._orchestrator",
    "OnProgress": "batchyard.orchestrator._reporting.progress",
    **dict.fromkeys(
        (
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
        ),
        "batchyard.orchestrator._reporting.reports",
    ),
}


__getattr__ = _exports(__name__, _HOMES)


__all__ = [
    "BatchInfo",
    "CostReport",
    "CostRow",
    "FetchReport",
    "OnProgress",
    "Orchestrator",
    "RouteStatus",
    "RunInfo",
    "RunStatus",
    "Result",
    "SubmitResult",
    "VariantCost",
    "VerifyReport",
]
