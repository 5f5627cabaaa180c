"""The simulator's configuration: models, limits, prices, latency, faults and the clock.

Owns the TOML schema of `batchyard sim serve --config FILE` (documented in
docs/simulator.md) and its defaults. Imports nothing from the rest of batchyard.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "BatchSettings",
    "ClockSettings",
    "FaultSettings",
    "LatencySettings",
    "ModelSpec",
    "SimConfig",
    "default_models",
    "load_config",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelSpec(_Strict):
    """One model as the simulator serves it. Prices are USD per 1M tokens."""

    encoding: str = "o200k_base"
    context_window: int = 128_000
    rpm: int = 5_000
    tpm: int = 2_000_000
    enqueued_token_limit: int = 20_000_000
    input_price: float = 0.15
    output_price: float = 0.60
    batch_discount: float = 0.5
    flex: bool = False  # accepts service_tier="flex", billed at batch prices
    reasoning: bool = False  # rejects max_tokens, reports reasoning tokens
    embedding: bool = False  # served by /v1/embeddings only
    dimensions: int = 1536  # embeddings only


def default_models() -> dict[str, ModelSpec]:
    """A small table of current models with their published prices."""
    return {
        "gpt-4o-mini": ModelSpec(input_price=0.15, output_price=0.60, rpm=5_000, tpm=2_000_000),
        "gpt-4o": ModelSpec(input_price=2.50, output_price=10.00, rpm=5_000, tpm=800_000),
        "gpt-4.1-mini": ModelSpec(input_price=0.40, output_price=1.60, context_window=1_047_576),
        "gpt-5": ModelSpec(
            input_price=1.25, output_price=10.00, flex=True, reasoning=True, context_window=400_000
        ),
        "gpt-5-mini": ModelSpec(
            input_price=0.25, output_price=2.00, flex=True, reasoning=True, context_window=400_000
        ),
        "o4-mini": ModelSpec(
            input_price=1.10, output_price=4.40, flex=True, reasoning=True, context_window=200_000
        ),
        "text-embedding-3-small": ModelSpec(
            encoding="cl100k_base",
            input_price=0.02,
            output_price=0.0,
            embedding=True,
            context_window=8_191,
            dimensions=1536,
        ),
    }


class LatencySettings(_Strict):
    """Real-time latency in real (not simulated) milliseconds."""

    fixed_ms: float = 0.0
    jitter_ms: float = 0.0
    per_output_token_ms: float = 0.0


class FaultSettings(_Strict):
    """Faults, each off by default. Rates are probabilities per request (0..1)."""

    error_5xx_rate: float = 0.0
    slow_rate: float = 0.0
    slow_seconds: float = 30.0  # real seconds a slow response stalls
    drop_rate: float = 0.0  # connection dropped before a response
    lost_create_rate: float = 0.0  # batch created, but the response is lost
    flex_unavailable_rate: float = 0.0  # unbilled 429 "resource unavailable"
    quota_exhausted: bool = False  # every call: 429 insufficient_quota
    batch_line_error_rate: float = 0.0  # lines failing with a 500 inside a batch
    batch_line_timeout_rate: float = 0.0  # lines failing with request_timeout


class BatchSettings(_Strict):
    """How fast batches move, in simulated seconds."""

    validation_seconds: float = 30.0
    turnaround_seconds: float = 1_800.0  # median time from in_progress to finalizing
    turnaround_sigma: float = 0.0  # lognormal spread of that time (0: fixed)
    finalizing_seconds: float = 60.0
    cancelling_seconds: float = 30.0
    completion_window_seconds: float = 86_400.0
    # per-model median turnaround, overriding turnaround_seconds for that model
    model_turnaround_seconds: dict[str, float] = Field(default_factory=dict)
    max_file_bytes: int = 200 * 1024 * 1024  # upload cap for purpose=batch
    max_requests: int = 50_000  # lines per batch input file
    max_embedding_inputs: int = 50_000  # embedding inputs across a /v1/embeddings batch


class ClockSettings(_Strict):
    """Simulated time: `now = start + real_elapsed * time_scale + advanced`."""

    start: float | None = None  # unix seconds; None: the real time at start-up
    time_scale: float = 1.0  # 3600: one real second is one simulated hour


class SimConfig(_Strict):
    models: dict[str, ModelSpec] = Field(default_factory=default_models)
    latency: LatencySettings = Field(default_factory=LatencySettings)
    faults: FaultSettings = Field(default_factory=FaultSettings)
    batch: BatchSettings = Field(default_factory=BatchSettings)
    clock: ClockSettings = Field(default_factory=ClockSettings)
    rate_limits: bool = True  # enforce RPM/TPM with 429s
    organization: str = "org-simulated"
    seed: int = 0


def load_config(path: str | Path | None = None, **overrides: Any) -> SimConfig:
    """Read a TOML config; models given there are merged over the default table."""
    data: dict[str, Any] = {}
    if path is not None:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    data.update(overrides)
    models = {name: spec.model_dump() for name, spec in default_models().items()}
    for name, spec in (data.pop("models", None) or {}).items():
        models[name] = {**models.get(name, {}), **spec}
    return SimConfig.model_validate({**data, "models": models})
