"""batchyard: get large files of OpenAI API requests answered at the lowest cost that
still meets your deadline, routing each request between real time, flex and the Batch API.

The Python API does everything the CLI does: `Orchestrator` (async) and `Batchyard`
(a synchronous facade). Names are imported on first use, so `import batchyard.router`
stays pure and `import batchyard` never imports typer or rich.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from batchyard.build import Request
    from batchyard.config import Settings, load_settings
    from batchyard.errors import BatchyardError
    from batchyard.orchestrator import (
        CostReport,
        FetchReport,
        Orchestrator,
        Result,
        RunInfo,
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
    "Request",
    "Result",
    "RunInfo",
    "RunStatus",
    "Settings",
    "SubmitResult",
    "__version__",
    "load_settings",
]

_HOMES = {
    "Batchyard": "batchyard.sync",
    "BatchyardError": "batchyard.errors",
    "CostReport": "batchyard.orchestrator",
    "FetchReport": "batchyard.orchestrator",
    "Orchestrator": "batchyard.orchestrator",
    "Plan": "batchyard.router",
    "Request": "batchyard.build",
    "Result": "batchyard.orchestrator",
    "RunInfo": "batchyard.orchestrator",
    "RunStatus": "batchyard.orchestrator",
    "Settings": "batchyard.config",
    "SubmitResult": "batchyard.orchestrator",
    "load_settings": "batchyard.config",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'batchyard' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
