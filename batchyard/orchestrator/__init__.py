"""The orchestrator: runs both paths (real time and the Batch API) and the glue between them.

The two paths: `batch/` (`BatchRunner`: split, upload, create, poll, download, apply,
re-submit, reconcile) and `realtime/` (`RealtimeRunner`: admission from rate-limit headers,
retries, breaker, flex). The glue:
- `_orchestrator/`: `Orchestrator`, the facade, and the `Parts` it is made of;
- `_planning/`: `Planner` (intake, the plan, recording a run) and the run's source;
- `_driving/`: `RunDriver` (rounds until a run is done) and steering (re-routing mid-run);
- `_reporting/`: `Reporter` (status, costs, fetch, results), the reports, progress, notify;
- `_routing/`: the router's inputs (policy, features, live limits, history), fallback
  models and the provider's clock;
- `_answers/`: results as typed objects, checks on answers, fan-out variants;
- `_client.py` (the SDK client, the key check), `_retry.py` (the one retry layer),
  `_timing.py` (the injected clock and sleep), `_bucket.py` (the leaky bucket both paths
  pace with), `_intake.py` and `_spill.py` (checking a request file into stored requests).
Imports flow one way: orchestrator → {router, store, tokens}; nothing here writes SQL or
imports typer or rich.
"""

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
