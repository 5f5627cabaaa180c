"""The simulator's configuration: models, limits, prices, latency, faults and the clock.

Owns the TOML schema of `batchyard sim serve --config FILE` (documented in
docs/simulator.md) and its defaults. Imports nothing from the rest of batchyard.
"""

from __future__ import annotations

import base64
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

__all__ = [
    "BATCH_EVENTS",
    "AnswerSettings",
    "BatchSettings",
    "ClockSettings",
    "FaultSettings",
    "LatencySettings",
    "LimitSettings",
    "ModelSpec",
    "NameSettings",
    "SimConfig",
    "WebhookEndpointSettings",
    "WebhookSettings",
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
    # x-ratelimit-*/retry-after headers: "all", "not_on_429" (429s come bare, as behind some
    # proxies and OpenAI-compatible servers) or "none" (never sent)
    rate_limit_headers: Literal["all", "not_on_429", "none"] = "all"


class AnswerSettings(_Strict):
    """Bad answers at given rates (0..1 per chat/responses answer, real time and batch lines
    alike); also changeable at runtime (/_sim/answers)."""

    truncated_rate: float = Field(default=0.0, ge=0.0, le=1.0)  # finish_reason "length"
    content_filter_rate: float = Field(default=0.0, ge=0.0, le=1.0)  # "content_filter"
    refusal_rate: float = Field(default=0.0, ge=0.0, le=1.0)  # message.refusal, content null
    # text that does not parse, where the request asked for JSON
    malformed_json_rate: float = Field(default=0.0, ge=0.0, le=1.0)


class LimitSettings(_Strict):
    """How real-time rate limits count; also changeable at runtime (/_sim/limits)."""

    charge_rejected_requests: bool = True  # a 429'd request still uses one request of RPM
    charge_rejected_tokens: bool = False  # ... and its token estimate of TPM
    # a second client on the same key uses this share of every RPM and TPM limit, all the time
    other_client_share: float = Field(default=0.0, ge=0.0, lt=1.0)
    other_client_models: list[str] = Field(default_factory=list)  # only these (empty: all)


class BatchSettings(_Strict):
    """How fast batches move, in simulated seconds."""

    validation_seconds: float = 30.0
    turnaround_seconds: float = 1_800.0  # median time from in_progress to finalizing
    turnaround_sigma: float = 0.0  # lognormal spread of that time (0: fixed)
    finalizing_seconds: float = 60.0
    cancelling_seconds: float = 30.0  # median time from cancelling to cancelled
    cancelling_sigma: float = 0.0  # lognormal spread of that time (0: fixed)
    realtime_speed: bool = False  # every batch runs its lines at the real-time path's pace
    completion_window_seconds: float = 86_400.0
    # per-model median turnaround, overriding turnaround_seconds for that model
    model_turnaround_seconds: dict[str, float] = Field(default_factory=dict)
    max_file_bytes: int = 200 * 1024 * 1024  # upload cap for purpose=batch
    max_requests: int = 50_000  # lines per batch input file
    max_embedding_inputs: int = 50_000  # embedding inputs across a /v1/embeddings batch
    max_creates_per_hour: int = 2_000  # batch creations per hour per organisation (429 past it)


class NameSettings(_Strict):
    """Model names beyond the table (dated snapshots and ft: names resolve by themselves)."""

    aliases: dict[str, str] = Field(default_factory=dict)  # extra name -> table entry
    listed: list[str] = Field(default_factory=list)  # extra ids GET /v1/models lists


BATCH_EVENTS = ("batch.completed", "batch.failed", "batch.expired", "batch.cancelled")
# Retries after a failed delivery, in simulated seconds after the failed attempt (the
# simulator's choice; OpenAI documents exponential backoff for up to 72 hours).
WEBHOOK_RETRIES = (5.0, 300.0, 1_800.0, 7_200.0, 18_000.0, *([36_000.0] * 6))


class WebhookEndpointSettings(_Strict):
    """One URL that receives the simulator's batch events, signed with its secret."""

    url: str
    # "whsec_" + base64 (as OpenAI issues them; the SDK's unwrap decodes it), or raw text
    secret: SecretStr
    events: list[str] = Field(default_factory=lambda: list(BATCH_EVENTS))

    @field_validator("secret")
    @classmethod
    def _decodable(cls, secret: SecretStr) -> SecretStr:
        value = secret.get_secret_value()
        if value.startswith("whsec_"):
            try:
                base64.b64decode(value.removeprefix("whsec_"), validate=True)
            except ValueError:
                raise ValueError("a whsec_ secret must be base64 after the prefix") from None
        return secret

    @field_validator("events")
    @classmethod
    def _known(cls, events: list[str]) -> list[str]:
        unknown = sorted(set(events) - set(BATCH_EVENTS))
        if unknown:
            raise ValueError(f"unknown events {unknown}; use {', '.join(BATCH_EVENTS)}")
        return events


class WebhookSettings(_Strict):
    """Batch events delivered to URLs, Standard Webhooks style (see docs/simulator.md)."""

    endpoints: list[WebhookEndpointSettings] = Field(default_factory=list)
    retry_seconds: list[float] = Field(default_factory=lambda: list(WEBHOOK_RETRIES))
    give_up_seconds: float = 72 * 3600.0  # no attempt later than this after the event
    timeout_seconds: float = 10.0  # real seconds one delivery may take
    pump_seconds: float = 0.2  # real seconds between delivery rounds of a served simulator
    # webhook-timestamp from the real clock (what the SDK checks, 300 s tolerance) or the
    # simulated one (to test a receiver's refusal of stale deliveries)
    timestamp_clock: Literal["real", "simulated"] = "real"


class ClockSettings(_Strict):
    """Simulated time: `now = start + real_elapsed * time_scale + advanced`."""

    start: float | None = None  # unix seconds; None: the real time at start-up
    time_scale: float = 1.0  # 3600: one real second is one simulated hour


class SimConfig(_Strict):
    models: dict[str, ModelSpec] = Field(default_factory=default_models)
    latency: LatencySettings = Field(default_factory=LatencySettings)
    faults: FaultSettings = Field(default_factory=FaultSettings)
    limits: LimitSettings = Field(default_factory=LimitSettings)
    answers: AnswerSettings = Field(default_factory=AnswerSettings)
    batch: BatchSettings = Field(default_factory=BatchSettings)
    clock: ClockSettings = Field(default_factory=ClockSettings)
    names: NameSettings = Field(default_factory=NameSettings)
    webhooks: WebhookSettings = Field(default_factory=WebhookSettings)
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
