"""The progress callback the orchestrator and both of its paths report through.

Owns `OnProgress`, the one type of `on_progress(kind, data)`: `kind` names what happened
(`realtime`, `batch.submitted`, `route.plan`, ...) and `data` carries its fields (run_id,
shard, message; for `realtime`, the fields of a `RealtimeEvent`). It must not import the
store, the SDK or either path.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["OnProgress"]

OnProgress = Callable[[str, dict[str, Any]], None]
"""`on_progress(kind, data)`, called for every event the orchestrator reports."""
