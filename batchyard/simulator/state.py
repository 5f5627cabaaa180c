"""Everything the simulator remembers: files, batches, the billing ledger, stats.

Owns the in-memory state of one simulator instance and id generation. Request handling
lives in the endpoint modules; this module does no HTTP.
"""

from __future__ import annotations

import random
import secrets
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from batchyard.simulator.clock import SimClock
from batchyard.simulator.config import AnswerSettings, FaultSettings, LimitSettings, SimConfig

if TYPE_CHECKING:
    from batchyard.simulator.batches import BatchRecord

__all__ = ["LedgerEntry", "SimState", "StoredFile"]


@dataclass
class StoredFile:
    id: str
    filename: str
    purpose: str
    created_at: int
    content: bytes
    expires_at: int | None = None

    @property
    def bytes(self) -> int:
        return len(self.content)


@dataclass(frozen=True)
class LedgerEntry:
    """One billed request: what the user would pay OpenAI for."""

    path: str  # "standard" | "flex" | "batch"
    model: str
    endpoint: str
    request_id: str
    custom_id: str | None  # batch lines, and real-time calls that sent X-Client-Request-Id
    batch_id: str | None
    input_tokens: int
    output_tokens: int
    cost: float
    at: float


@dataclass
class SimState:
    config: SimConfig
    clock: SimClock
    rng: random.Random
    faults: FaultSettings
    # None: copies of config.limits/.answers (code that builds a SimState by hand needs none)
    limits: LimitSettings = None  # type: ignore[assignment]
    answers: AnswerSettings = None  # type: ignore[assignment]
    files: dict[str, StoredFile] = field(default_factory=dict)
    batches: dict[str, BatchRecord] = field(default_factory=dict)
    ledger: list[LedgerEntry] = field(default_factory=list)
    stats: Counter[str] = field(default_factory=Counter)
    extra: dict[str, Any] = field(default_factory=dict)  # per-module scratch (e.g. limiters)

    def __post_init__(self) -> None:
        if self.limits is None:
            self.limits = self.config.limits.model_copy()
        if self.answers is None:
            self.answers = self.config.answers.model_copy()

    @classmethod
    def from_config(cls, config: SimConfig) -> SimState:
        return cls(
            config=config,
            clock=SimClock(config.clock.start, config.clock.time_scale),
            rng=random.Random(config.seed),
            faults=config.faults.model_copy(),
        )

    def now(self) -> float:
        return self.clock.now()

    def new_id(self, prefix: str, length: int = 24) -> str:
        """Ids shaped like OpenAI's: `file-` + 22 alphanumerics, `batch_` + 32 hex, ..."""
        if prefix == "file-":
            alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
            return prefix + "".join(secrets.choice(alphabet) for _ in range(22))
        return prefix + secrets.token_hex(length // 2)

    def bill(self, entry: LedgerEntry) -> None:
        self.ledger.append(entry)
        self.stats[f"billed_{entry.path}"] += 1
