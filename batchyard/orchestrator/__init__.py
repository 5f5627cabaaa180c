"""The orchestrator: runs both paths (real time and the Batch API) and the glue between them.

`Orchestrator` (in `runs.py`) is the entry point. The executors are `BatchRunner`
(`batches.py`: split, upload, create, poll, download, apply, re-submit, reconcile) and
`RealtimeRunner` (`realtime.py`: admission from rate-limit headers, retries, breaker, flex).
Imports flow one way: orchestrator → {router, store, tokens}; nothing here writes SQL or
imports typer or rich.
"""

from batchyard.orchestrator.answers import Result
from batchyard.orchestrator.reports import (
    BatchInfo,
    CostReport,
    CostRow,
    FetchReport,
    RunStatus,
    SubmitResult,
    VariantCost,
    VerifyReport,
)
from batchyard.orchestrator.runs import Orchestrator, Progress

__all__ = [
    "BatchInfo",
    "CostReport",
    "CostRow",
    "FetchReport",
    "Orchestrator",
    "Progress",
    "RunStatus",
    "Result",
    "SubmitResult",
    "VariantCost",
    "VerifyReport",
]
