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
    """One model as the simulator serves and bills it. Prices are USD per 1M tokens.

    Billing (`billing.py`): cached input tokens at `cached_input_price` (input price when
    None: no cache discount), cache writes at `cache_write_price` (as input when None),
    batch at `batch_discount` x every rate (cached tokens at the batch input rate unless
    `batch_cache_discount`), flex at batch rates, fast at `fast_prices` (input, cached,
    output); above `long_context_threshold` input tokens the whole request is billed at 2x
    input/cached/cache-write and 1.5x output, fast mode too unless `fast_long_context` is
    False (then such a request is served and billed at standard rates).
    """

    encoding: str = "o200k_base"
    context_window: int = 128_000
    rpm: int = 5_000
    tpm: int = 2_000_000
    enqueued_token_limit: int = 2_000_000  # Tier-1 default of the model table
    input_price: float = 0.15
    output_price: float = 0.60
    cached_input_price: float | None = None  # None: no prompt caching discount
    cache_write_price: float | None = None  # None: cache writes billed as input
    batch_discount: float = 0.5
    batch_cache_discount: bool = True  # cached tokens in a batch get the batch cached rate
    flex: bool = False  # accepts service_tier="flex", billed at batch prices
    fast_prices: tuple[float, float, float] | None = None  # fast mode (input, cached, output)
    fast_long_context: bool = True
    long_context_threshold: int | None = None
    reasoning: bool = False  # rejects max_tokens, reports reasoning tokens
    embedding: bool = False  # served by /v1/embeddings only
    moderation: bool = False  # a moderation model (/v1/moderations)
    dimensions: int = 1536  # embeddings only


def default_models() -> dict[str, ModelSpec]:
    """Today's models with their published prices (see `model_table.py`)."""
    from batchyard.simulator.model_table import MODELS

    return {name: spec.model_copy() for name, spec in MODELS.items()}


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
