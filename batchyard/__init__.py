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
    from collections.abc import Callable, Mapping

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


def _exports(package: str, homes: Mapping[str, str]) -> Callable[[str], Any]:
    """The `__getattr__` (PEP 562) of `package`: each name of `homes` imported from its home
    module on first use and kept in the package; any other name is an AttributeError.
    `batchyard.orchestrator` uses it too, so that a reader of the store (`fetch`) does not
    wait for the OpenAI SDK that `Orchestrator` brings. (Here, not in a module of its own:
    importing `batchyard.router` must load no other batchyard module.)"""

    def __getattr__(name: str) -> Any:
        home = homes.get(name)
        if home is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(home), name)
        setattr(importlib.import_module(package), name, value)
        return value

    return __getattr__


__getattr__ = _exports(__name__, _HOMES)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
