"""The facade: `Orchestrator` (`facade.py`) and the parts it is made of (`parts.py`).

`Orchestrator` is what the Python API and the CLI call; it hands each call to one of its
collaborators (`Planner`, `RunDriver`, `Reporter`), which `Parts` makes on first use from
what the orchestrator was given and wires to each other.
"""

from batchyard.orchestrator._orchestrator.facade import Orchestrator

__all__ = ["Orchestrator"]
