"""The orchestrator: runs both paths (real time and the Batch API) and the glue between them.

`Orchestrator` (`_orchestrator.py`) is the entry point: a facade that owns its parts and
hands its calls to three collaborators, a `Planner` (`_planner.py`: intake, the plan,
recording a run), a `RunDriver` (`_driving.py`: rounds until a run is done) and a `Reporter`
(`_reporter.py`: status, costs, fetch, results). The executors are `BatchRunner`
(`batch/runner.py`: split, upload, create, poll, download, apply, re-submit, reconcile) and
`RealtimeRunner` (`realtime/runner.py`: admission from rate-limit headers, retries, breaker, flex).
Imports flow one way: orchestrator → {router, store, tokens}; nothing here writes SQL or
imports typer or rich.
"""

from batchyard.orchestrator._answers import Result
from batchyard.orchestrator._orchestrator import Orchestrator
from batchyard.orchestrator._progress import OnProgress
from batchyard.orchestrator._reports import (
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
