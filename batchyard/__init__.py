"""batchyard: get large files of OpenAI API requests answered at the lowest cost that
still meets your deadline, routing each request between real time, flex and the Batch API.

The Python API does everything the CLI does: `Orchestrator` (async) and `Batchyard`
(a synchronous facade). Importing batchyard does not import typer or rich.
"""

from batchyard.config import Settings, load_settings
from batchyard.errors import BatchyardError
from batchyard.orchestrator import (
    CostReport,
    FetchReport,
    Orchestrator,
    RunStatus,
    SubmitResult,
)
from batchyard.router import Plan
from batchyard.sync import Batchyard

__version__ = "0.1.0"

__all__ = [
    "Batchyard",
    "BatchyardError",
    "CostReport",
    "FetchReport",
    "Orchestrator",
    "Plan",
    "RunStatus",
    "Settings",
    "SubmitResult",
    "__version__",
    "load_settings",
]
