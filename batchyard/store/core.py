"""`Store`: the one object the rest of batchyard uses to read and change the job database.

Owns opening (path resolution, 0600 file, pragmas, migrations, newer-schema refusal) and
the composition of the mixins that hold the operations. It must not hold SQL of its own.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from batchyard.config import DB_ENV, default_db_path

from .answers import AnswersMixin
from .batchlines import BatchLinesMixin
from .claims import ClaimsMixin
from .clocks import ClocksMixin
from .codec import DEFAULT_MIN_BYTES
from .fallback import FallbackMixin
from .hooks import HooksMixin
from .leases import BatchLeasesMixin
from .migrations import migrate
from .opening import connect
from .prune import PruneMixin
from .queue import QueueMixin
from .recording import RecordingMixin
from .requests import RequestsMixin
from .runs import RunsMixin
from .shards import ShardsMixin
from .summary import SummaryMixin
from .waits import WaitsMixin

__all__ = ["DB_ENV", "Store", "default_db_path"]


class Store(
    ShardsMixin,
    BatchLinesMixin,
    AnswersMixin,
    BatchLeasesMixin,
    ClaimsMixin,
    WaitsMixin,
    RecordingMixin,
    RequestsMixin,
    SummaryMixin,
    RunsMixin,
    HooksMixin,
    PruneMixin,
    FallbackMixin,
    ClocksMixin,
    QueueMixin,
):
    """The job store. Open with `Store.open(path)`; see the package docstring."""

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str] | None = None,
        *,
        now: Callable[[], float] = time.time,
        busy_timeout: float = 30.0,
        compress_min_bytes: int = DEFAULT_MIN_BYTES,
    ) -> Store:
        """Open (creating, mode 0600, and migrating) the database at `path`.

        `path` None means `default_db_path()` (`--db` should be passed as `path`).
        Raises `SchemaTooNew` for a database from a newer batchyard.
        """
        resolved = Path(path).expanduser() if path is not None else default_db_path()
        db = connect(resolved, busy_timeout=busy_timeout)
        try:
            migrate(db, resolved)
        except BaseException:
            db.close()
            raise
        return cls(db, resolved, now=now, compress_min_bytes=compress_min_bytes)

    def __enter__(self) -> Store:
        return self
