"""The orchestrator: runs both paths (real time and the Batch API) and the glue between them.

`Orchestrator` (in `_orchestrator.py`: planning and submitting, on `_driving.py`'s rounds
and `_core.py`'s shared parts and reading) is the entry point. The executors are `BatchRunner`
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
